import type { FastifyInstance } from 'fastify';
import { describe, expect, it } from 'vitest';
import { linearOnnxModel } from '../../scripts/onnx-linear.js';
import { makeRepository, startApp, versionedEntries, versionedPredictions } from '../helpers.js';
import { sampleValue, scrape } from '../metrics-scrape.js';
import { bearer, SECRET } from './helpers.js';

const ROWS = [
  [1, 2],
  [3, 4],
];

/** Model m with versions 1 and 2 (y = v·a + b); version 1 serves, label `stable` on 1, `canary` on 2. */
async function canaryApp(extra: Record<string, Uint8Array | string> = {}): Promise<FastifyInstance> {
  const repository = await makeRepository({ ...versionedEntries('m', [1, 2]), ...extra });
  const app = await startApp({ MODEL_REPOSITORY: repository, ADMIN_JWT_SECRET: SECRET });
  await adminCall(app, 'POST', '/admin/models/m/promote', { version: 1 }, 200);
  await adminCall(app, 'PUT', '/admin/models/m/labels/stable', { version: 1 }, 200);
  await adminCall(app, 'PUT', '/admin/models/m/labels/canary', { version: 2 }, 200);
  return app;
}

async function adminCall(
  app: FastifyInstance,
  method: 'PUT' | 'POST' | 'DELETE',
  url: string,
  body: unknown,
  status: number,
) {
  const response = await app.inject({
    method,
    url,
    headers: bearer(),
    ...(body !== undefined && { payload: body as object }),
  });
  expect(response.statusCode, response.body).toBe(status);
  return response.json();
}

/** A prediction naming no version: which version answered, checked against that version's own answer and header. */
async function answeringVersion(app: FastifyInstance, requestId?: string, url = '/predict'): Promise<number> {
  const response = await app.inject({
    method: 'POST',
    url,
    headers: requestId === undefined ? {} : { 'x-request-id': requestId },
    payload: { model: 'm', instances: ROWS },
  });
  expect(response.statusCode).toBe(200);
  const body = response.json();
  expect(body.predictions).toEqual(versionedPredictions(body.version, ROWS));
  expect(response.headers['x-model-version']).toBe(String(body.version));
  return body.version;
}

describe('a weighted canary', () => {
  it('sends its share of 10,000 requests to the canary label, within 2 percentage points', async () => {
    const app = await canaryApp();
    await adminCall(app, 'PUT', '/admin/models/m/traffic', { split: { canary: 0.1 } }, 200);
    let canary = 0;
    for (let i = 0; i < 10_000; i++) if ((await answeringVersion(app)) === 2) canary += 1;
    expect(Math.abs(canary / 10_000 - 0.1)).toBeLessThanOrEqual(0.02);
  }, 60_000);

  it('is sticky per X-Request-Id: the same id reaches the same version every time', async () => {
    const app = await canaryApp();
    await adminCall(app, 'PUT', '/admin/models/m/traffic', { split: { canary: 0.5 } }, 200);
    const seen = new Set<number>();
    for (let i = 0; i < 40; i++) {
      const first = await answeringVersion(app, `client-${i}`);
      seen.add(first);
      for (let again = 0; again < 3; again++) expect(await answeringVersion(app, `client-${i}`)).toBe(first);
    }
    expect([...seen].sort()).toEqual([1, 2]);
  });

  it('leaves requests that name a version or a label alone', async () => {
    const app = await canaryApp();
    await adminCall(app, 'PUT', '/admin/models/m/traffic', { split: { canary: 1 } }, 200);
    expect(await answeringVersion(app)).toBe(2);
    const pinned = await app.inject({
      method: 'POST',
      url: '/predict',
      payload: { model: 'm', version: 1, instances: ROWS },
    });
    expect(pinned.json().version).toBe(1);
    const byLabel = await app.inject({
      method: 'POST',
      url: '/v1/models/m/labels/stable:predict',
      payload: { instances: ROWS },
    });
    expect(byLabel.json().predictions).toEqual(versionedPredictions(1, ROWS));
    expect(byLabel.headers['x-model-version']).toBe('1');
    const unpinned = await app.inject({ method: 'POST', url: '/v1/models/m:predict', payload: { instances: ROWS } });
    expect(unpinned.json().predictions).toEqual(versionedPredictions(2, ROWS));
    expect(unpinned.headers['x-model-version']).toBe('2');
  });

  it('is listed with the model, and cleared by DELETE', async () => {
    const app = await canaryApp();
    await adminCall(app, 'PUT', '/admin/models/m/traffic', { split: { canary: 0.25 }, shadow: 'stable' }, 200);
    const status = await app.inject({ method: 'GET', url: '/admin/models/m', headers: bearer() });
    expect(status.json().traffic).toEqual({ split: { canary: 0.25 }, shadow: 'stable', shadowShare: 1 });
    const cleared = await adminCall(app, 'DELETE', '/admin/models/m/traffic', undefined, 200);
    expect(cleared.status.traffic).toBeUndefined();
    for (let i = 0; i < 20; i++) expect(await answeringVersion(app)).toBe(1);
  });

  it('loses the share of a version that is unloaded: it goes to the serving version', async () => {
    const app = await canaryApp();
    await adminCall(app, 'PUT', '/admin/models/m/traffic', { split: { canary: 1 } }, 200);
    const unloaded = await adminCall(app, 'DELETE', '/admin/models/m/versions/2', undefined, 200);
    expect(unloaded.status.traffic).toBeUndefined();
    expect(unloaded.status.labels).toEqual({ stable: 1 });
    for (let i = 0; i < 20; i++) expect(await answeringVersion(app)).toBe(1);
  });

  it('follows its label when the label moves', async () => {
    const app = await canaryApp();
    await adminCall(app, 'PUT', '/admin/models/m/traffic', { split: { canary: 1 } }, 200);
    await adminCall(app, 'PUT', '/admin/models/m/labels/canary', { version: 1 }, 200);
    for (let i = 0; i < 10; i++) expect(await answeringVersion(app)).toBe(1);
  });
});

describe('a traffic policy is checked', () => {
  it.each([
    [{ split: { canary: 1.5 } }, 400, 'split.canary'],
    [{ split: { canary: 0.6, stable: 0.6 } }, 400, 'split'],
    [{ split: { canary: '0.1' } }, 400, 'split.canary'],
    [{ split: { nowhere: 0.1 } }, 404, 'split.nowhere'],
    [{ shadow: 'nowhere' }, 404, 'shadow'],
    [{ shadow: 7 }, 400, 'shadow'],
    [{ canary: 0.1 }, 400, 'body'],
    [{ shadow: 'stable', shadowShare: 1.5 }, 400, 'shadowShare'],
    [
      Object.fromEntries([['split', Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`l${i}`, 0]))]]),
      400,
      'split',
    ],
    [null, 400, 'body'],
  ])('%j is refused with %i naming %s; the policy stays as it was', async (body, status, field) => {
    const app = await canaryApp();
    await adminCall(app, 'PUT', '/admin/models/m/traffic', { split: { canary: 0.2 } }, 200);
    const refused = await adminCall(app, 'PUT', '/admin/models/m/traffic', body, status);
    expect(refused.error.field).toBe(field);
    const listed = await app.inject({ method: 'GET', url: '/admin/models/m', headers: bearer() });
    expect(listed.json().traffic).toEqual({ split: { canary: 0.2 } });
  });

  it('keeps the labels it uses: removing one is a 409 until the policy changes', async () => {
    const app = await canaryApp();
    await adminCall(app, 'PUT', '/admin/models/m/traffic', { split: { canary: 0.1 }, shadow: 'stable' }, 200);
    expect((await adminCall(app, 'DELETE', '/admin/models/m/labels/canary', undefined, 409)).error.field).toBe('label');
    await adminCall(app, 'DELETE', '/admin/models/m/labels/stable', undefined, 409);
    await adminCall(app, 'PUT', '/admin/models/m/traffic', { shadow: 'stable' }, 200);
    await adminCall(app, 'DELETE', '/admin/models/m/labels/canary', undefined, 200);
  });

  it('needs the write scope, like every change', async () => {
    const app = await canaryApp();
    const { token } = await import('./helpers.js');
    const response = await app.inject({
      method: 'PUT',
      url: '/admin/models/m/traffic',
      headers: bearer(token({ scope: 'models:read' })),
      payload: { split: { canary: 0.1 } },
    });
    expect(response.statusCode).toBe(403);
  });
});

/** Waits until every shadow copy sent so far has an outcome, and returns the shadow metrics. */
async function shadowMetrics(app: FastifyInstance, expected: number) {
  for (let attempt = 0; attempt < 200; attempt++) {
    const samples = await scrape(app);
    const outcomes = samples.filter((s) => s.name === 'wattserve_shadow_predictions_total');
    if (outcomes.reduce((sum, s) => sum + s.value, 0) >= expected) return samples;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('the shadow copies never finished');
}

describe('a shadow label', () => {
  it('gets a copy of every request; the client only ever sees the serving answer', async () => {
    const app = await canaryApp();
    await adminCall(app, 'PUT', '/admin/models/m/traffic', { shadow: 'canary' }, 200);
    const requests = 30;
    for (let i = 0; i < requests; i++) expect(await answeringVersion(app)).toBe(1);
    const samples = await shadowMetrics(app, requests);
    const labels = { model: 'm', label: 'canary' };
    expect(sampleValue(samples, 'wattserve_shadow_predictions_total', { ...labels, outcome: 'compared' })).toBe(
      requests,
    );
    // Version 2 answers 2a + b where version 1 answers a + b: |error| = a, for each row.
    const perRequest = ROWS.reduce((sum, [a = 0]) => sum + a, 0);
    expect(sampleValue(samples, 'wattserve_shadow_absolute_error_watts_count', labels)).toBe(requests * ROWS.length);
    expect(sampleValue(samples, 'wattserve_shadow_absolute_error_watts_sum', labels)).toBeCloseTo(
      requests * perRequest,
      9,
    );
    // Copies are not requests: the request metrics count only what clients were answered.
    const answered = sampleValue(samples, 'wattserve_http_requests_total', {
      route: '/predict',
      model: 'm',
      version: '2',
      status: '2xx',
    });
    expect(answered).toBe(0);
  });

  it('that fails on the input leaves the client answered and counts the failure', async () => {
    // Version 3 takes features x and y: a copy naming a and b is refused by it.
    const other = {
      'm/3/model.onnx': linearOnnxModel({ weights: [[3], [1]], bias: [0] }),
      'm/3/metadata.json': JSON.stringify({ features: ['x', 'y'] }),
    };
    const app = await canaryApp(other);
    await adminCall(app, 'PUT', '/admin/models/m/labels/odd', { version: 3 }, 200);
    await adminCall(app, 'PUT', '/admin/models/m/traffic', { shadow: 'odd' }, 200);
    for (let i = 0; i < 5; i++) {
      const response = await app.inject({
        method: 'POST',
        url: '/predict',
        payload: { model: 'm', features: ['a', 'b'], instances: ROWS },
      });
      expect(response.statusCode).toBe(200);
      expect(response.json().predictions).toEqual(versionedPredictions(1, ROWS));
    }
    const samples = await shadowMetrics(app, 5);
    const labels = { model: 'm', label: 'odd' };
    expect(sampleValue(samples, 'wattserve_shadow_predictions_total', { ...labels, outcome: 'failed' })).toBe(5);
    expect(sampleValue(samples, 'wattserve_shadow_absolute_error_watts_count', labels)).toBe(0);
  });

  it('gets its shadowShare of the copies', async () => {
    const app = await canaryApp();
    await adminCall(app, 'PUT', '/admin/models/m/traffic', { shadow: 'canary', shadowShare: 0.5 }, 200);
    const requests = 400;
    for (let i = 0; i < requests; i++) await answeringVersion(app);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const samples = await scrape(app);
    const copies = sampleValue(samples, 'wattserve_shadow_predictions_total', {
      model: 'm',
      label: 'canary',
      outcome: 'compared',
    });
    // Binomial(400, 0.5): 5.5 standard deviations either side.
    expect(copies).toBeGreaterThan(145);
    expect(copies).toBeLessThan(255);
  });

  it('skips requests large enough for the worker threads: their copy would hold the event loop', async () => {
    const repository = await makeRepository(versionedEntries('m', [1, 2]));
    const app = await startApp({ MODEL_REPOSITORY: repository, ADMIN_JWT_SECRET: SECRET, WORKER_ROWS_THRESHOLD: '1' });
    await adminCall(app, 'POST', '/admin/models/m/promote', { version: 1 }, 200);
    await adminCall(app, 'PUT', '/admin/models/m/labels/canary', { version: 2 }, 200);
    await adminCall(app, 'PUT', '/admin/models/m/traffic', { shadow: 'canary' }, 200);
    for (let i = 0; i < 5; i++) expect(await answeringVersion(app)).toBe(1);
    const samples = await shadowMetrics(app, 5);
    const labels = { model: 'm', label: 'canary' };
    expect(sampleValue(samples, 'wattserve_shadow_predictions_total', { ...labels, outcome: 'skipped' })).toBe(5);
    expect(sampleValue(samples, 'wattserve_shadow_predictions_total', { ...labels, outcome: 'compared' })).toBe(0);
  });

  it("copies only the serving version's answers, so that the errors compare one pair of versions", async () => {
    const app = await canaryApp();
    await adminCall(app, 'PUT', '/admin/models/m/traffic', { split: { canary: 1 }, shadow: 'stable' }, 200);
    for (let i = 0; i < 5; i++) expect(await answeringVersion(app)).toBe(2);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const samples = await scrape(app);
    expect(samples.filter((s) => s.name === 'wattserve_shadow_predictions_total')).toEqual([]);
  });

  it('is not copied to when it is the version that answered', async () => {
    const app = await canaryApp();
    await adminCall(app, 'PUT', '/admin/models/m/traffic', { shadow: 'stable' }, 200);
    for (let i = 0; i < 5; i++) expect(await answeringVersion(app)).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const samples = await scrape(app);
    expect(samples.filter((s) => s.name === 'wattserve_shadow_predictions_total')).toEqual([]);
  });
});
