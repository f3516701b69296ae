import type { FastifyInstance, InjectOptions, RouteOptions } from 'fastify';
import { describe, expect, it } from 'vitest';
import { ADMIN_SERVED_UNDER_PRESSURE } from '../../src/plugins/backpressure.js';
import { bearer, SECRET } from '../admin/helpers.js';
import { captureLogs, LINEAR, makeRepository, PODS, startApp } from '../helpers.js';

// Load is sampled this often in these tests (1 s in service). Not much less: a sample in which the
// loop was too busy to measure itself even once counts as infinite delay.
const SAMPLE_MS = 100;

const ping = async (app: FastifyInstance) => (await app.inject({ url: '/ping' })).statusCode;

/** Over the heap limit from the first sample on: MAX_HEAP_USED_BYTES=1. */
async function heapPressedApp(env: Record<string, string> = {}) {
  const logs = captureLogs();
  const app = await startApp(
    {
      MAX_HEAP_USED_BYTES: '1',
      MAX_EVENT_LOOP_DELAY_MS: '0',
      RETRY_AFTER_SECONDS: '7',
      ADMIN_JWT_SECRET: SECRET,
      LOG_LEVEL: 'warn',
      ...env,
    },
    { pressureSampleIntervalMs: SAMPLE_MS, logStream: logs.logStream },
  );
  await expect.poll(() => ping(app), { timeout: 5000, interval: SAMPLE_MS }).toBe(503);
  return { app, logs };
}

const csv = PODS.map((row) => row.join(',')).join('\n');
const refusable: Array<[string, InjectOptions]> = [
  ['GET /ping', { url: '/ping' }],
  ['POST /predict/:model', { method: 'POST', url: `/predict/${LINEAR}`, payload: { instances: PODS } }],
  ['POST /predict', { method: 'POST', url: '/predict', payload: { model: LINEAR, instances: PODS } }],
  ['POST /invocations', { method: 'POST', url: '/invocations', headers: { 'content-type': 'text/csv' }, payload: csv }],
  ['POST /model', { method: 'POST', url: '/model', payload: {} }],
  ['GET /models', { url: '/models' }],
  ['GET /docs', { url: '/docs' }],
  ['an unknown route', { url: '/nowhere' }],
  ['admin upload', { method: 'PUT', url: `/admin/models/${LINEAR}/versions/9`, headers: bearer(), payload: 'x' }],
  ['admin load', { method: 'POST', url: `/admin/models/${LINEAR}/versions/9/load`, headers: bearer() }],
  ['admin reload', { method: 'POST', url: `/admin/models/${LINEAR}/reload`, headers: bearer() }],
];

describe('backpressure', () => {
  it('refuses every route but /live, /metrics and the remedial admin ones with 503 overloaded and a retry hint', async () => {
    const { app } = await heapPressedApp();
    for (const [what, options] of refusable) {
      const answer = await app.inject(options);
      expect({ what, status: answer.statusCode }).toEqual({ what, status: 503 });
      expect(answer.json()).toEqual({
        error: { code: 'overloaded', message: expect.stringContaining('heap used'), retryAfterSeconds: 7 },
      });
      expect(answer.headers['retry-after']).toBe('7');
      // The other onRequest hooks still ran: request id and security headers are there.
      expect(answer.headers['x-request-id']).toBeDefined();
      expect(answer.headers['x-content-type-options']).toBe('nosniff');
    }

    // Kepler's estimator keeps its own error shape.
    const kepler = await app.inject({ method: 'POST', url: '/kepler/estimate', payload: { metrics: [], values: [] } });
    expect(kepler.statusCode).toBe(503);
    expect(kepler.json()).toEqual({ powers: {}, msg: expect.stringContaining('overloaded') });
    expect(kepler.headers['retry-after']).toBe('7');

    // SageMaker's custom attributes are echoed on the refusal too.
    const invocation = await app.inject({
      method: 'POST',
      url: '/invocations',
      headers: { 'content-type': 'text/csv', 'x-amzn-sagemaker-custom-attributes': 'trace=42' },
      payload: csv,
    });
    expect([invocation.statusCode, invocation.headers['x-amzn-sagemaker-custom-attributes']]).toEqual([
      503,
      'trace=42',
    ]);

    expect((await app.inject({ url: '/live' })).json()).toEqual({ status: 'live' });
    expect((await app.inject({ method: 'HEAD', url: '/live' })).statusCode).toBe(200);
    const metrics = await app.inject({ url: '/metrics' });
    expect(metrics.statusCode).toBe(200);
    // The refusals are counted like any answer.
    expect(metrics.body).toMatch(/wattserve_http_requests_total\{[^}]*route="\/ping"[^}]*status="5xx"[^}]*\} \d/);

    // Admin reads and remedies reach the token check, and then the route.
    expect((await app.inject({ url: '/admin/models' })).statusCode).toBe(401);
    expect((await app.inject({ url: '/admin/models', headers: bearer() })).statusCode).toBe(200);
    const promote = await app.inject({
      method: 'POST',
      url: `/admin/models/${LINEAR}/promote`,
      headers: bearer(),
      payload: { version: 1 },
    });
    expect(promote.statusCode).toBe(200);
    const label = await app.inject({
      method: 'PUT',
      url: `/admin/models/${LINEAR}/labels/stable`,
      headers: bearer(),
      payload: { version: 1 },
    });
    expect(label.statusCode).toBe(200);
  });

  it('logs once at warn when pressure starts, naming the threshold, not once per refused request', async () => {
    const { app, logs } = await heapPressedApp();
    for (let i = 0; i < 5; i++) await app.inject({ url: '/ping' });
    await expect
      .poll(() => logs.lines.filter((line) => line.msg?.toString().startsWith('under pressure')))
      .toEqual([expect.objectContaining({ level: 40, over: ['heap used'], maxHeapUsedBytes: 1 })]);
    expect(logs.lines.filter((line) => line.msg?.toString().includes('overloaded') && line.level !== 40)).toEqual([]);
  });

  it('turns /ping 503 while the event loop lags, and back to 200 when it catches up', async () => {
    const logs = captureLogs();
    const app = await startApp(
      { MAX_EVENT_LOOP_DELAY_MS: '30', MAX_HEAP_USED_BYTES: '0', LOG_LEVEL: 'warn' },
      { pressureSampleIntervalMs: SAMPLE_MS, logStream: logs.logStream },
    );
    // Loading the models may have kept the loop busy: start from a calm one.
    await expect.poll(() => ping(app), { timeout: 10_000, interval: SAMPLE_MS }).toBe(200);

    // Keep the loop busy 80 ms at a time, leaving it a moment in between (so requests still run).
    const busy = setInterval(() => {
      const until = performance.now() + 80;
      while (performance.now() < until) {
        // busy-wait: the event loop is blocked
      }
    }, 5);
    try {
      await expect.poll(() => ping(app), { timeout: 10_000, interval: SAMPLE_MS }).toBe(503);
      const refused = await app.inject({ method: 'POST', url: `/predict/${LINEAR}`, payload: { instances: PODS } });
      expect(refused.json().error).toMatchObject({
        code: 'overloaded',
        message: expect.stringContaining('event-loop'),
      });
    } finally {
      clearInterval(busy);
    }

    await expect.poll(() => ping(app), { timeout: 10_000, interval: SAMPLE_MS }).toBe(200);
    await expect
      .poll(() => logs.lines.slice(-2).map((line) => [line.msg, line.over]))
      .toEqual([
        ['under pressure: refusing requests with 503 overloaded', ['event-loop delay']],
        ['pressure over: serving requests again', []],
      ]);
  });

  it('is off when both thresholds are 0', async () => {
    const app = await startApp({ MAX_EVENT_LOOP_DELAY_MS: '0', MAX_HEAP_USED_BYTES: '0' });
    expect(app.hasDecorator('isUnderPressure')).toBe(false);
    expect(await ping(app)).toBe(200);
  });

  it('lists only admin routes that exist (with the admin API, or in SageMaker multi-model mode)', async () => {
    const routes = new Set<string>();
    const onRoute = (route: RouteOptions) => {
      for (const method of [route.method].flat()) routes.add(`${method} ${route.url}`);
    };
    await startApp({ ADMIN_JWT_SECRET: SECRET }, { onRoute });
    const repository = await makeRepository({});
    await startApp({ SAGEMAKER_MULTI_MODEL: 'true', MODEL_REPOSITORY: repository }, { onRoute });
    expect([...ADMIN_SERVED_UNDER_PRESSURE].filter((route) => !routes.has(route))).toEqual([]);
  });
});
