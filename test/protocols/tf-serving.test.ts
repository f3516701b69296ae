import type { FastifyInstance, InjectOptions } from 'fastify';
import { describe, expect, it, vi } from 'vitest';
import {
  captureLogs,
  FEATURES,
  KEPLER,
  LINEAR,
  MLP,
  makeRepository,
  PODS,
  startApp,
  versionedEntries,
} from '../helpers.js';
import { messageError, stall } from './message-errors.js';

const KEPLER_FEATURES = ['bpf_cpu_time_ms', 'bpf_page_cache_hit'];
const KEPLER_OUTPUTS = ['package', 'core', 'uncore', 'dram'];
const KEPLER_ROWS = [
  [50000, 12],
  [0, 0],
];

const predict = (app: FastifyInstance, path: string, payload: unknown, options: Partial<InjectOptions> = {}) =>
  app.inject({ method: 'POST', url: `/v1/models/${path}`, payload: payload as string, ...options });

async function predictions(app: FastifyInstance, model: string, instances: number[][]) {
  const response = await app.inject({ method: 'POST', url: `/predict/${model}`, payload: { instances } });
  expect(response.statusCode).toBe(200);
  return response.json().predictions as number[] | number[][];
}

describe('POST /v1/models/{name}:predict, row format', () => {
  it.each([LINEAR, MLP])('answers %s {"predictions": [one number per instance]}, as /predict does', async (name) => {
    const app = await startApp();
    const expected = await predictions(app, name, PODS);
    const response = await predict(app, `${name}:predict`, { instances: PODS });
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toMatch(/^application\/json/);
    expect(response.json()).toEqual({ predictions: expected });
    const signed = await predict(app, `${name}:predict`, { signature_name: 'serving_default', instances: PODS });
    expect(signed.json()).toEqual({ predictions: expected });
  });

  it('answers a multi-output model (Kepler) with one object per instance', async () => {
    const app = await startApp();
    const expected = (await predictions(app, KEPLER, KEPLER_ROWS)) as number[][];
    const response = await predict(app, `${KEPLER}:predict`, { instances: KEPLER_ROWS });
    expect(response.json()).toEqual({
      predictions: expected.map((row) => Object.fromEntries(KEPLER_OUTPUTS.map((name, c) => [name, row[c]]))),
    });
  });

  it('takes {"input": [values]} and one key per feature (any order), with the same answer', async () => {
    const app = await startApp();
    const expected = await predictions(app, LINEAR, PODS);
    const named = await predict(app, `${LINEAR}:predict`, { instances: PODS.map((row) => ({ input: row })) });
    expect(named.json()).toEqual({ predictions: expected });
    const perFeature = PODS.map((row) =>
      Object.fromEntries([...FEATURES].reverse().map((name) => [name, row[FEATURES.indexOf(name)]])),
    );
    const keyed = await predict(app, `${LINEAR}:predict`, { instances: perFeature });
    expect(keyed.json()).toEqual({ predictions: expected });
  });
});

describe('POST /v1/models/{name}:predict, columnar format', () => {
  it.each([
    ['a list of rows', () => PODS],
    ['{"input": rows}', () => ({ input: PODS })],
    ['one list per feature', () => Object.fromEntries(FEATURES.map((name, c) => [name, PODS.map((row) => row[c])]))],
  ])('takes %s and answers {"outputs": [values]}', async (_layout, inputs) => {
    const app = await startApp();
    const expected = await predictions(app, LINEAR, PODS);
    const response = await predict(app, `${LINEAR}:predict`, { inputs: inputs() });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ outputs: expected });
  });

  it('answers a multi-output model (Kepler) with {"outputs": {output: [values]}}', async () => {
    const app = await startApp();
    const expected = (await predictions(app, KEPLER, KEPLER_ROWS)) as number[][];
    const inputs = { bpf_page_cache_hit: [12, 0], bpf_cpu_time_ms: [50000, 0] };
    const response = await predict(app, `${KEPLER}:predict`, { inputs });
    expect(response.json()).toEqual({
      outputs: Object.fromEntries(KEPLER_OUTPUTS.map((name, c) => [name, expected.map((row) => row[c])])),
    });
  });
});

describe('versions and labels', () => {
  it('predicts with the version in the URL, the label’s version, or the serving one', async () => {
    const app = await startApp({ MODEL_REPOSITORY: await makeRepository(versionedEntries('m', [1, 2])) });
    await app.models.setLabel('m', 'stable', 1);
    const rows = [[10, 1]];
    expect((await predict(app, 'm:predict', { instances: rows })).json()).toEqual({ predictions: [21] });
    expect((await predict(app, 'm/versions/1:predict', { instances: rows })).json()).toEqual({ predictions: [11] });
    expect((await predict(app, 'm/labels/stable:predict', { instances: rows })).json()).toEqual({
      predictions: [11],
    });
    expect((await app.inject({ url: '/v1/models/m/labels/stable/metadata' })).json().model_spec.version).toBe('1');
    const label = await messageError(await predict(app, 'm/labels/canary:predict', { instances: rows }));
    expect(label).toEqual({ status: 404, error: 'label: model "m" has no label "canary"; labels: stable' });
    const version = await messageError(await predict(app, 'm/versions/3:predict', { instances: rows }));
    expect(version).toEqual({ status: 404, error: expect.stringContaining('version: model "m" has no version "3"') });
    const latest = await messageError(await predict(app, 'm/versions/latest:predict', { instances: rows }));
    expect(latest.status).toBe(404);
  });

  it('takes an empty signature_name as the default one, and labels predictions apart from status in the metrics', async () => {
    const app = await startApp();
    expect((await predict(app, `${LINEAR}:predict`, { signature_name: '', instances: PODS })).statusCode).toBe(200);
    expect((await app.inject({ url: `/v1/models/${LINEAR}` })).statusCode).toBe(200);
    const text = (await app.inject({ url: '/metrics' })).body;
    expect(text).toMatch(/wattserve_http_requests_total\{route="\/v1\/models\/:name:predict",model="pod-power-linear"/);
    expect(text).toMatch(/wattserve_http_requests_total\{route="\/v1\/models\/:name",model=""/);
  });

  it('reads the verb only as :predict, also percent-encoded; another verb or none is a 404', async () => {
    const app = await startApp();
    const body = { instances: PODS };
    expect((await predict(app, `${LINEAR}%3Apredict`, body)).statusCode).toBe(200);
    const classify = await messageError(await predict(app, `${LINEAR}:classify`, body));
    expect(classify).toEqual({ status: 404, error: 'name: "classify" is not served; the only verb is :predict' });
    expect((await messageError(await predict(app, `${LINEAR}:regress`, body))).status).toBe(404);
    expect((await messageError(await predict(app, LINEAR, body))).error).toContain('needs a verb');
    expect((await messageError(await predict(app, `${LINEAR}/versions/1`, body))).status).toBe(404);
  });
});

describe('GET /v1/models/{name}[/versions/{version}]: model status', () => {
  it('lists every version, newest first, AVAILABLE with error_code OK', async () => {
    const app = await startApp({ MODEL_REPOSITORY: await makeRepository(versionedEntries('m', [1, 2])) });
    const ok = { error_code: 'OK', error_message: '' };
    expect((await app.inject({ url: '/v1/models/m' })).json()).toEqual({
      model_version_status: [
        { version: '2', state: 'AVAILABLE', status: ok },
        { version: '1', state: 'AVAILABLE', status: ok },
      ],
    });
    expect((await app.inject({ url: '/v1/models/m/versions/1' })).json()).toEqual({
      model_version_status: [{ version: '1', state: 'AVAILABLE', status: ok }],
    });
    expect((await messageError(await app.inject({ url: '/v1/models/m/versions/5' }))).status).toBe(404);
    expect((await messageError(await app.inject({ url: '/v1/models/nope' }))).error).toBe(
      'name: no model named "nope"',
    );
  });

  it('gives the status of the version a label points at', async () => {
    const app = await startApp({ MODEL_REPOSITORY: await makeRepository(versionedEntries('m', [1, 2])) });
    await app.models.setLabel('m', 'stable', 1);
    expect((await app.inject({ url: '/v1/models/m/labels/stable' })).json()).toEqual({
      model_version_status: [{ version: '1', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } }],
    });
    expect((await messageError(await app.inject({ url: '/v1/models/m/labels/canary' }))).status).toBe(404);
  });

  it('answers 503, not 404, for a model that is known but has no version available (a retry may succeed)', async () => {
    const root = await makeRepository({ 'm/1/model.onnx': 'junk', 'm/1/metadata.json': '{"features": ["a"]}' });
    const app = await startApp({ MODEL_REPOSITORY: root });
    for (const answer of [
      await predict(app, 'm:predict', { instances: [[1]] }),
      await app.inject({ url: '/v1/models/m/metadata' }),
      await app.inject({
        method: 'POST',
        url: '/v2/models/m/infer',
        payload: { inputs: [{ name: 'input', shape: [1, 1], datatype: 'FP32', data: [1] }] },
      }),
    ]) {
      expect(answer.statusCode).toBe(503);
      expect(Object.keys(answer.json())).toEqual(['error']);
    }
    // Model readiness is a 4xx in the Open Inference Protocol, whatever the reason.
    expect((await app.inject({ url: '/v2/models/m/ready' })).statusCode).toBe(404);
  });

  it('shows a version that failed to load as END, error_code UNKNOWN, with the reason', async () => {
    const root = await makeRepository({ ...versionedEntries('m', [1]), 'm/2/model.onnx': 'junk' });
    const app = await startApp({ MODEL_REPOSITORY: root });
    const [failed, available] = (await app.inject({ url: '/v1/models/m' })).json().model_version_status;
    expect(available).toMatchObject({ version: '1', state: 'AVAILABLE' });
    expect(failed).toMatchObject({ version: '2', state: 'END', status: { error_code: 'UNKNOWN' } });
    expect(failed.status.error_message).not.toBe('');
  });
});

describe('GET /v1/models/{name}[/versions/{version}]/metadata', () => {
  it.each([
    [LINEAR, 'DT_FLOAT', FEATURES, ['power']],
    [MLP, 'DT_FLOAT', FEATURES, ['power']],
    [KEPLER, 'DT_DOUBLE', KEPLER_FEATURES, KEPLER_OUTPUTS],
  ])(
    'describes %s as TF Serving does: serving_default, input [-1, features]',
    async (name, dtype, features, outputs) => {
      const app = await startApp();
      const shape = (sizes: number[]) => ({
        dim: sizes.map((size) => ({ size: String(size), name: '' })),
        unknown_rank: false,
      });
      for (const url of [`/v1/models/${name}/metadata`, `/v1/models/${name}/versions/1/metadata`]) {
        const response = await app.inject({ url });
        expect(response.statusCode).toBe(200);
        expect(response.json()).toEqual({
          model_spec: { name, signature_name: '', version: '1' },
          metadata: {
            signature_def: {
              signature_def: {
                serving_default: {
                  inputs: { input: { dtype, tensor_shape: shape([-1, features.length]), name: 'input' } },
                  outputs: Object.fromEntries(
                    outputs.map((output) => [output, { dtype: 'DT_DOUBLE', tensor_shape: shape([-1]), name: output }]),
                  ),
                  method_name: 'tensorflow/serving/predict',
                },
              },
            },
            feature_names: { input: [...features] },
          },
        });
      }
    },
  );

  it.each([
    ['/v1/models/nope/metadata', 'no model named "nope"'],
    [`/v1/models/${LINEAR}/versions/2/metadata`, 'has no version "2"'],
    [`/v1/models/${LINEAR}/labels/x/metadata`, 'has no label "x"'],
  ])('answers 404 {error} for %s', async (url, message) => {
    const app = await startApp();
    const answer = await messageError(await app.inject({ url }));
    expect(answer.status).toBe(404);
    expect(answer.error).toContain(message);
  });
});

describe('/v1 errors are {"error": "<field>: <problem>"} with wattserve statuses', () => {
  const pod = PODS[0] as number[];

  it.each<[string, unknown, number, string]>([
    ['a body that is not an object', [pod], 400, 'body: the body must be a JSON object'],
    ['neither instances nor inputs', {}, 400, 'body: missing "instances" (row format) or "inputs"'],
    ['both instances and inputs', { instances: [pod], inputs: [pod] }, 400, 'body: send either'],
    ['an unknown field', { instances: [pod], outputs: ['power'] }, 400, 'outputs: unknown field'],
    ['another signature', { signature_name: 'classify', instances: [pod] }, 400, 'signature_name: no signature'],
    ['a signature that is not a string', { signature_name: 1, instances: [pod] }, 400, 'signature_name: must be'],
    ['instances not an array', { instances: { a: 1 } }, 400, 'instances: must be an array'],
    ['no instances', { instances: [] }, 400, 'instances: the request holds no rows'],
    ['a scalar instance', { instances: [1, 2] }, 400, 'instances[0]: must be a list'],
    ['a ragged row', { instances: [pod, pod.slice(1)] }, 400, 'instances[1]: has 7 values where row 0 has 8'],
    [
      'a string value',
      { instances: [pod, [...pod.slice(0, 2), 'x', ...pod.slice(3)]] },
      400,
      'instances[1][2]: must be a number',
    ],
    [
      'a value beyond float32',
      { instances: [pod, pod, [1e39, ...pod.slice(1)]] },
      400,
      'instances[2][0]: must be a finite',
    ],
    ['a null value', { instances: [[null, ...pod.slice(1)]] }, 400, 'instances[0][0]: must be a number, got null'],
    ['an empty row', { instances: [[]] }, 400, 'instances[0]: the rows hold no values'],
    ['the wrong width', { instances: [pod.slice(1)] }, 400, 'instances: rows have 7 values'],
    ['the wrong width, columnar', { inputs: [pod.slice(1)] }, 400, 'inputs: rows have 7 values'],
    ['a string in a column', { inputs: { cpu_cycles: [1, 'x'] } }, 400, 'inputs.cpu_cycles[1]: must be a number'],
    [
      'columns of different lengths',
      { inputs: { a: [1, 2], b: [1] } },
      400,
      'inputs.b: has 1 values where inputs.a has 2',
    ],
    ['a column that is not a list', { inputs: { a: 1 } }, 400, 'inputs.a: must be an array'],
    ['empty inputs', { inputs: {} }, 400, 'inputs: names no input'],
    ['input mixed with features', { inputs: { input: [pod], a: [1] } }, 400, 'inputs.input: "input" holds whole rows'],
    ['an input value that is a row', { inputs: { input: pod } }, 400, 'inputs.input[0]: must be an array'],
    ['instances naming different inputs', { instances: [{ a: 1 }, { b: 1 }] }, 400, 'instances[1].b: names an input'],
    ['instances naming fewer inputs', { instances: [{ a: 1, b: 2 }, { a: 1 }] }, 400, 'instances[1]: names 1 inputs'],
    ['an instance that is not an object', { instances: [{ a: 1 }, [1]] }, 400, 'instances[1]: must be an object'],
    ['a name too long', { instances: [{ ['x'.repeat(300)]: 1 }] }, 400, `instances[0].${'x'.repeat(40)}…: input names`],
    ['a key too long to echo', { instances: [pod], ['k'.repeat(300)]: 1 }, 400, `${'k'.repeat(40)}…: unknown field`],
  ])('%s: %i', async (_what, payload, status, message) => {
    const app = await startApp();
    const answer = await messageError(await predict(app, `${LINEAR}:predict`, payload));
    expect(answer.status).toBe(status);
    expect(answer.error).toContain(message);
    expect(answer.error.length).toBeLessThan(1200);
  });

  it.each<[string, unknown, string]>([
    [
      'an unknown feature',
      { instances: [{ bpf_cpu_time_ms: 1, bpf_page_cache_hit: 2, heat: 3 }] },
      'instances: the model has no feature "heat"',
    ],
    ['a missing feature', { inputs: { bpf_cpu_time_ms: [1] } }, 'inputs: missing "bpf_page_cache_hit"'],
  ])('per-feature names with %s: 400 before the model runs', async (_what, payload, message) => {
    const app = await startApp();
    const handle = app.models.acquire(KEPLER);
    const spy = vi.spyOn(handle.model.model, 'predict');
    handle.release();
    const answer = await messageError(await predict(app, `${KEPLER}:predict`, payload));
    expect(answer).toEqual({ status: 400, error: expect.stringContaining(message) });
    expect(spy).not.toHaveBeenCalled();
  });

  it('answers 413 past MAX_ROWS and MAX_COLUMNS, and past the body limit', async () => {
    const app = await startApp({ MAX_ROWS: '2', MAX_COLUMNS: '4', MAX_BODY_BYTES: '4096' });
    const rows = await messageError(await predict(app, `${LINEAR}:predict`, { instances: PODS }));
    expect(rows).toEqual({
      status: 413,
      error: expect.stringContaining('instances: the request holds more than 2 rows (MAX_ROWS)'),
    });
    const columnRows = await messageError(await predict(app, `${LINEAR}:predict`, { inputs: { a: [1, 2, 3] } }));
    expect(columnRows).toEqual({
      status: 413,
      error: expect.stringContaining('inputs.a: the request holds more than 2'),
    });
    const columns = await messageError(await predict(app, `${LINEAR}:predict`, { instances: [pod] }));
    expect(columns).toEqual({
      status: 413,
      error: expect.stringContaining('instances[0]: rows hold more than 4 values (MAX_COLUMNS)'),
    });
    const keys = Object.fromEntries(FEATURES.map((name) => [name, 1]));
    const named = await messageError(await predict(app, `${LINEAR}:predict`, { instances: [keys] }));
    expect(named).toEqual({ status: 413, error: expect.stringContaining('MAX_COLUMNS') });
    const big = await messageError(await predict(app, `${LINEAR}:predict`, { instances: [pod], x: 'y'.repeat(5000) }));
    expect(big).toEqual({ status: 413, error: expect.stringContaining('body: the body is larger than') });
  });

  it('answers invalid and too deeply nested JSON in the TF Serving shape', async () => {
    const app = await startApp({ MAX_JSON_DEPTH: '4' });
    const headers = { 'content-type': 'application/json' };
    const invalid = await messageError(await predict(app, `${LINEAR}:predict`, '{"instances": [', { headers }));
    expect(invalid).toEqual({ status: 400, error: expect.stringContaining('not valid JSON') });
    const deep = await messageError(await predict(app, `${LINEAR}:predict`, { instances: [[[[[1]]]]] }));
    expect(deep).toEqual({ status: 400, error: expect.stringContaining('MAX_JSON_DEPTH') });
    const proto = await messageError(await predict(app, `${LINEAR}:predict`, '{"__proto__": {}}', { headers }));
    expect(proto.status).toBe(400);
  });

  it('answers 415 to a body that is not JSON, and 404 to an unknown model or route', async () => {
    const app = await startApp();
    const csv = await messageError(
      await predict(app, `${LINEAR}:predict`, pod.join(','), { headers: { 'content-type': 'text/csv' } }),
    );
    expect(csv).toEqual({ status: 415, error: 'content-type: the /v1 routes take application/json' });
    const model = await messageError(await predict(app, 'nope:predict', { instances: [pod] }));
    expect(model).toEqual({ status: 404, error: 'name: no model named "nope" is loaded' });
    const route = await messageError(await app.inject({ url: '/v1/models/x/y/z' }));
    expect(route).toEqual({ status: 404, error: 'no route GET /v1/models/x/y/z' });
  });

  it('answers 429 with Retry-After past MAX_CONCURRENT_PER_MODEL, and 504 past the deadline', async () => {
    const app = await startApp({
      MAX_CONCURRENT_PER_MODEL: '1',
      RETRY_AFTER_SECONDS: '7',
      BATCH_MAX_ROWS: '0',
      REQUEST_TIMEOUT_MS: '300',
    });
    const stuck = stall(app, LINEAR);
    const first = predict(app, `${LINEAR}:predict`, { instances: PODS });
    await vi.waitFor(() => expect(stuck.calls()).toBe(1));
    const busy = await predict(app, `${LINEAR}:predict`, { instances: PODS });
    expect(busy.headers['retry-after']).toBe('7');
    expect(await messageError(busy)).toEqual({
      status: 429,
      error: expect.stringContaining('MAX_CONCURRENT_PER_MODEL'),
    });
    expect(await messageError(await first)).toEqual({
      status: 504,
      error: expect.stringContaining('REQUEST_TIMEOUT_MS'),
    });
    stuck.release();
  });

  it('answers a backend failure with a generic 500, the cause only in the log', async () => {
    const logs = captureLogs();
    const app = await startApp({ LOG_LEVEL: 'error' }, { logStream: logs.logStream });
    stall(app, LINEAR, new Error('secret path /opt/models/boom'));
    const response = await predict(app, `${LINEAR}:predict`, { instances: PODS });
    expect(await messageError(response)).toEqual({ status: 500, error: 'internal error' });
    expect(response.body).not.toContain('secret');
    expect(JSON.stringify(logs.lines)).toContain('secret path');
  });

  it('answers 503 overloaded in the TF Serving shape under pressure', async () => {
    const app = await startApp(
      { MAX_HEAP_USED_BYTES: '1', MAX_EVENT_LOOP_DELAY_MS: '0', RETRY_AFTER_SECONDS: '7' },
      { pressureSampleIntervalMs: 100 },
    );
    await expect
      .poll(async () => (await predict(app, `${LINEAR}:predict`, { instances: PODS })).statusCode, {
        timeout: 5000,
        interval: 100,
      })
      .toBe(503);
    const refused = await predict(app, `${LINEAR}:predict`, { instances: PODS });
    expect(refused.headers['retry-after']).toBe('7');
    expect(await messageError(refused)).toEqual({ status: 503, error: expect.stringContaining('overloaded') });
  });
});
