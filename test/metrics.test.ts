import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { describe, expect, it, vi } from 'vitest';
import { bearer, SECRET } from './admin/helpers.js';
import { freePort, LINEAR, makeRepository, PODS, startApp, versionedEntries } from './helpers.js';
import { keplerRequest } from './kepler-reference.js';
import { parseMetrics, sampleValue, scrape } from './metrics-scrape.js';

const PROMTOOL = '/usr/bin/promtool';

describe('GET /metrics', () => {
  it('counts an answered prediction by route, model, version and status class, and times it', async () => {
    const app = await startApp();
    await request(app.server).post(`/predict/${LINEAR}`).send({ instances: PODS }).expect(200);
    const samples = await scrape(app);
    const labels = { route: '/predict/:model', model: LINEAR, version: '1' };
    expect(sampleValue(samples, 'wattserve_http_requests_total', { ...labels, status: '2xx' })).toBe(1);
    expect(
      sampleValue(samples, 'wattserve_http_request_duration_seconds_count', {
        route: '/predict/:model',
        model: LINEAR,
      }),
    ).toBe(1);
    const inference = { model: LINEAR, version: '1', backend: 'onnx' };
    expect(sampleValue(samples, 'wattserve_inference_duration_seconds_count', inference)).toBe(1);
    expect(sampleValue(samples, 'wattserve_inference_duration_seconds_sum', inference)).toBeGreaterThan(0);
    expect(sampleValue(samples, 'wattserve_request_pods_sum', { model: LINEAR })).toBe(PODS.length);
    expect(sampleValue(samples, 'wattserve_pods_predicted_total', { model: LINEAR })).toBe(PODS.length);
  });

  it('adds each pod’s predicted watts to the power histogram of its model and output', async () => {
    const app = await startApp();
    const { body } = await request(app.server).post(`/predict/${LINEAR}`).send({ instances: PODS }).expect(200);
    const samples = await scrape(app);
    const labels = { model: LINEAR, output: 'power' };
    expect(sampleValue(samples, 'wattserve_predicted_power_watts_count', labels)).toBe(PODS.length);
    const sum = (body.predictions as number[]).reduce((a, b) => a + b, 0);
    expect(sampleValue(samples, 'wattserve_predicted_power_watts_sum', labels)).toBeCloseTo(sum, 4);
    const oneWatt = sampleValue(samples, 'wattserve_predicted_power_watts_bucket', { ...labels, le: '1' });
    expect(oneWatt).toBe((body.predictions as number[]).filter((watts) => watts <= 1).length);
  });

  it('counts a refused request under its status class, with no model when none was chosen', async () => {
    const app = await startApp();
    await request(app.server)
      .post(`/predict/${LINEAR}`)
      .send({ instances: [[1, 2]] })
      .expect(400);
    await request(app.server).post('/invocations').set('content-type', 'text/csv').send('1,2\n').expect(400);
    const samples = await scrape(app);
    // wrong_width is found once the model is chosen, so it carries the model; a bad CSV body does not get that far.
    const refused = { route: '/predict/:model', model: LINEAR, status: '4xx' };
    expect(sampleValue(samples, 'wattserve_http_requests_total', refused)).toBe(1);
    expect(
      sampleValue(samples, 'wattserve_http_requests_total', { route: '/invocations', model: '', status: '4xx' }),
    ).toBe(1);
    expect(sampleValue(samples, 'wattserve_inference_duration_seconds_count', { model: LINEAR })).toBe(0);
  });

  it('adds no label values for 1,000 requests naming made-up models or URLs', async () => {
    const app = await startApp();
    await request(app.server).post(`/predict/${LINEAR}`).send({ instances: PODS }).expect(200);
    const before = await scrape(app);
    for (let i = 0; i < 1000; i++) {
      const made = `model-${Math.random().toString(36).slice(2)}`;
      const response = await app.inject({
        method: 'POST',
        url: i % 2 === 0 ? `/predict/${made}` : `/${made}`,
        payload: { instances: [[1]] },
      });
      expect(response.statusCode).toBe(404);
    }
    const after = await scrape(app);
    const series = (samples: typeof before) =>
      new Set(
        samples.filter((s) => s.name.startsWith('wattserve_http_')).map((s) => `${s.name}${JSON.stringify(s.labels)}`),
      );
    const added = [...series(after)].filter((key) => !series(before).has(key));
    // The two new series families are the 404s themselves: one route pattern each, no model.
    expect(added.every((key) => !/model-[a-z0-9]/.test(key))).toBe(true);
    expect(
      sampleValue(after, 'wattserve_http_requests_total', { route: '/predict/:model', model: '', status: '4xx' }),
    ).toBe(500);
    expect(sampleValue(after, 'wattserve_http_requests_total', { route: 'unmatched', status: '4xx' })).toBe(500);
  });

  it('counts a request whose client left before the answer as aborted', async () => {
    const app = await startApp();
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    const { connect } = await import('node:net');
    const socket = connect(port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    // Headers promising a body that never comes, then the client hangs up.
    socket.write(
      `POST /predict/${LINEAR} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{`,
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    socket.destroy();
    await vi.waitFor(async () => {
      const samples = await scrape(app);
      expect(
        sampleValue(samples, 'wattserve_http_requests_total', { route: '/predict/:model', status: 'aborted' }),
      ).toBe(1);
      expect(sampleValue(samples, 'wattserve_http_requests_in_flight')).toBe(1);
    });
  });

  it('counts a URL that does not decode, and returns its request id', async () => {
    const app = await startApp();
    const response = await app.inject({ method: 'GET', url: '/%zz', headers: { 'x-request-id': 'bad-url-1' } });
    expect(response.statusCode).toBe(400);
    expect(response.headers['x-request-id']).toBe('bad-url-1');
    const samples = await scrape(app);
    expect(sampleValue(samples, 'wattserve_http_requests_total', { route: 'unmatched', status: '4xx' })).toBe(1);
  });

  it('counts a negative prediction as 0 W, so the watts sum never goes down', async () => {
    const app = await startApp({ MODEL_REPOSITORY: await makeRepository(versionedEntries('m', [1])) });
    // y = 1·a + b: [1, -5] predicts -4 W, [2, 1] predicts 3 W.
    await request(app.server)
      .post('/predict/m')
      .send({
        instances: [
          [1, -5],
          [2, 1],
        ],
      })
      .expect(200);
    const samples = await scrape(app);
    expect(sampleValue(samples, 'wattserve_predicted_power_watts_sum', { model: 'm', output: 'y0' })).toBe(3);
    expect(
      sampleValue(samples, 'wattserve_predicted_power_watts_bucket', { model: 'm', output: 'y0', le: '0.1' }),
    ).toBe(1);
  });

  it('refuses to start when METRICS_PORT is taken, rather than run without metrics', async () => {
    const { createServer } = await import('node:net');
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    const { port } = squatter.address() as AddressInfo;
    try {
      await expect(startApp({ METRICS_PORT: String(port), HOST: '127.0.0.1' })).rejects.toThrow(/EADDRINUSE/);
    } finally {
      squatter.close();
    }
  });

  it('counts Kepler estimator predictions like any other', async () => {
    const app = await startApp();
    await request(app.server)
      .post('/kepler/estimate')
      .send(
        keplerRequest({
          metrics: ['bpf_cpu_time_ms', 'bpf_page_cache_hit'],
          values: [
            [120, 4000],
            [30, 100],
          ],
        }),
      )
      .expect(200);
    const samples = await scrape(app);
    expect(sampleValue(samples, 'wattserve_pods_predicted_total', { model: 'kepler-ec2-rapl-bpfonly' })).toBe(2);
    expect(
      sampleValue(samples, 'wattserve_predicted_power_watts_count', {
        model: 'kepler-ec2-rapl-bpfonly',
        output: 'package',
      }),
    ).toBe(2);
  });

  it('shows each version’s state, the serving version, swaps and load failures, and moves them on a swap', async () => {
    const repository = await makeRepository({ ...versionedEntries('m', [1, 2]), 'm/3/model.onnx': 'junk' });
    const app = await startApp({ MODEL_REPOSITORY: repository, ADMIN_JWT_SECRET: SECRET });
    let samples = await scrape(app);
    expect(sampleValue(samples, 'wattserve_model_versions', { model: 'm', version: '2', state: 'available' })).toBe(1);
    expect(sampleValue(samples, 'wattserve_model_versions', { model: 'm', version: '3', state: 'failed' })).toBe(1);
    expect(sampleValue(samples, 'wattserve_model_serving_version', { model: 'm' })).toBe(2);
    expect(sampleValue(samples, 'wattserve_model_load_failures_total', { reason: 'backend_error' })).toBe(1);
    expect(sampleValue(samples, 'wattserve_model_load_duration_seconds_count', { backend: 'onnx' })).toBe(2);

    await request(app.server).post('/admin/models/m/promote').set(bearer()).send({ version: 1 }).expect(200);
    await request(app.server).delete('/admin/models/m/versions/2').set(bearer()).expect(200);
    samples = await scrape(app);
    expect(sampleValue(samples, 'wattserve_model_serving_version', { model: 'm' })).toBe(1);
    expect(sampleValue(samples, 'wattserve_model_swaps_total', { model: 'm' })).toBe(1);
    expect(sampleValue(samples, 'wattserve_model_versions', { model: 'm', version: '2', state: 'unloaded' })).toBe(1);
    expect(sampleValue(samples, 'wattserve_model_versions', { model: 'm', version: '2', state: 'available' })).toBe(0);
  });

  it('counts admin actions by outcome, and tokens refused by reason', async () => {
    const app = await startApp({
      MODEL_REPOSITORY: await makeRepository(versionedEntries('m', [1, 2])),
      ADMIN_JWT_SECRET: SECRET,
    });
    await request(app.server).post('/admin/models/m/promote').set(bearer()).send({ version: 1 }).expect(200);
    await request(app.server).post('/admin/models/m/promote').set(bearer()).send({ version: 9 }).expect(404);
    await request(app.server).get('/admin/models').expect(401);
    await request(app.server).get('/admin/models').set(bearer('x.y.z')).expect(401);
    const samples = await scrape(app);
    expect(sampleValue(samples, 'wattserve_admin_actions_total', { action: 'promote', outcome: 'done' })).toBe(1);
    expect(
      sampleValue(samples, 'wattserve_admin_actions_total', { action: 'promote', outcome: 'unknown_version' }),
    ).toBe(1);
    expect(sampleValue(samples, 'wattserve_admin_auth_failures_total', { reason: 'missing' })).toBe(1);
    expect(sampleValue(samples, 'wattserve_admin_auth_failures_total', { reason: 'invalid' })).toBe(1);
  });

  it('includes the process and Node.js runtime metrics: event-loop lag, heap, GC', async () => {
    const samples = await scrape(await startApp());
    const names = new Set(samples.map((s) => s.name));
    for (const name of [
      'wattserve_nodejs_eventloop_lag_p99_seconds',
      'wattserve_nodejs_heap_size_used_bytes',
      'wattserve_process_resident_memory_bytes',
      'wattserve_process_cpu_seconds_total',
    ]) {
      expect(names).toContain(name);
    }
  });

  it('is off with METRICS_ENABLED=false', async () => {
    const app = await startApp({ METRICS_ENABLED: 'false' });
    await request(app.server).get('/metrics').expect(404);
    await request(app.server).post(`/predict/${LINEAR}`).send({ instances: PODS }).expect(200);
  });

  it('moves to its own port with METRICS_PORT, off the app’s port', async () => {
    const app = await startApp({ METRICS_PORT: String(await freePort()) });
    await app.listen({ port: 0, host: '127.0.0.1' });
    await request(app.server).get('/metrics').expect(404);
    const metricsPort = app.config.metricsPort;
    const response = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    expect(response.status).toBe(200);
    expect(parseMetrics(await response.text()).some((s) => s.name === 'wattserve_http_requests_in_flight')).toBe(true);
    expect((await fetch(`http://127.0.0.1:${metricsPort}/predict`)).status).toBe(404);
  });

  it.skipIf(!existsSync(PROMTOOL) && process.env.CI === undefined)(
    'passes `promtool check metrics` (Prometheus’ own linter)',
    async () => {
      const app = await startApp();
      await request(app.server).post(`/predict/${LINEAR}`).send({ instances: PODS }).expect(200);
      const { body } = await app.inject({ method: 'GET', url: '/metrics' });
      const child = execFile(PROMTOOL, ['check', 'metrics']);
      child.stdin?.end(body);
      const [code, output] = await new Promise<[number | null, string]>((resolve) => {
        let text = '';
        child.stdout?.on('data', (chunk) => (text += chunk));
        child.stderr?.on('data', (chunk) => (text += chunk));
        child.on('close', (exitCode) => resolve([exitCode, text]));
      });
      expect(output).toBe('');
      expect(code).toBe(0);
    },
  );
});
