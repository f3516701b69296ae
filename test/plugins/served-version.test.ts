import type { FastifyInstance } from 'fastify';
import { describe, expect, it } from 'vitest';
import { makeRepository, startApp, versionedEntries } from '../helpers.js';
import { KEPLER_MODELS, keplerRequest } from '../kepler-reference.js';

const ROWS = [
  [1, 2],
  [3, 4],
];

/** Model m, versions 1 to 3 (3 serves), and a Kepler model k, version 7. */
async function versionsApp(env: Record<string, string> = {}): Promise<FastifyInstance> {
  const repository = await makeRepository({
    ...versionedEntries('m', [1, 2, 3]),
    'k/7': { kepler: KEPLER_MODELS[0].path },
  });
  return startApp({ MODEL_REPOSITORY: repository, DEFAULT_MODEL: 'm', ...env });
}

describe('every answer a model version gave says which version it was (X-Model-Version)', () => {
  it.each([
    ['/predict', { model: 'm', instances: ROWS }, 'application/json', '3'],
    ['/predict', { model: 'm', version: 2, instances: ROWS }, 'application/json', '2'],
    ['/invocations', '1,2\n3,4\n', 'text/csv', '3'],
    ['/v1/models/m/versions/1:predict', { instances: ROWS }, 'application/json', '1'],
    [
      '/v2/models/m/versions/2/infer',
      { inputs: [{ name: 'input', shape: [2, 2], datatype: 'FP64', data: ROWS }] },
      'application/json',
      '2',
    ],
  ])('POST %s %j → version %s', async (url, payload, type, version) => {
    const app = await versionsApp();
    const response = await app.inject({
      method: 'POST',
      url,
      headers: { 'content-type': type },
      payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
    });
    expect(response.statusCode, response.body).toBe(200);
    expect(response.headers['x-model-version']).toBe(version);
    if (url === '/predict') expect(response.json().version).toBe(Number(version));
    if (url.startsWith('/v2')) expect(response.json().model_version).toBe(version);
  });

  it('on the Kepler estimator too', async () => {
    const app = await versionsApp();
    const response = await app.inject({ method: 'POST', url: '/kepler/estimate', payload: keplerRequest({}) });
    expect(response.statusCode, response.body).toBe(200);
    expect(response.headers['x-model-version']).toBe('7');
  });

  it('on a refusal by the chosen version, and not when no version was chosen', async () => {
    const app = await versionsApp();
    const tooWide = await app.inject({
      method: 'POST',
      url: '/predict',
      payload: { model: 'm', instances: [[1, 2, 3]] },
    });
    expect(tooWide.statusCode).toBe(400);
    expect(tooWide.headers['x-model-version']).toBe('3');
    const unknown = await app.inject({ method: 'POST', url: '/predict', payload: { model: 'nope', instances: ROWS } });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.headers['x-model-version']).toBeUndefined();
  });

  it('with metrics turned off as well', async () => {
    const app = await versionsApp({ METRICS_ENABLED: 'false' });
    const response = await app.inject({ method: 'POST', url: '/predict', payload: { model: 'm', instances: ROWS } });
    expect(response.headers['x-model-version']).toBe('3');
  });
});
