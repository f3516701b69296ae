import { readFileSync } from 'node:fs';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { describe, expect, it, vi } from 'vitest';
import { captureLogs, FEATURES, KEPLER, LINEAR, MLP, makeRepository, PODS, startApp } from '../helpers.js';
import { messageError, stall } from './message-errors.js';

const PACKAGE_VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

const KEPLER_FEATURES = ['bpf_cpu_time_ms', 'bpf_page_cache_hit'];
const KEPLER_OUTPUTS = ['package', 'core', 'uncore', 'dram'];

const infer = (app: FastifyInstance, model: string, payload: unknown, options: Partial<InjectOptions> = {}) =>
  app.inject({ method: 'POST', url: `/v2/models/${model}/infer`, payload: payload as string, ...options });

/** The spec's 2-D layout: one tensor [rows, features], data flat. */
const matrixInput = (rows: number[][], datatype = 'FP32') => ({
  name: 'input',
  shape: [rows.length, rows[0]?.length ?? 0],
  datatype,
  data: rows.flat(),
});

/** The per-feature layout: one tensor of shape [rows] per feature. */
const featureInputs = (names: readonly string[], rows: number[][], datatype = 'FP64') =>
  names.map((name, col) => ({ name, shape: [rows.length], datatype, data: rows.map((row) => row[col]) }));

async function predictions(app: FastifyInstance, model: string, instances: number[][]) {
  const response = await app.inject({ method: 'POST', url: `/predict/${model}`, payload: { instances } });
  expect(response.statusCode).toBe(200);
  return response.json() as { predictions: number[] | number[][]; version: number };
}

describe('GET /v2 and health', () => {
  it('describes the server', async () => {
    const app = await startApp();
    const response = await app.inject({ url: '/v2' });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ name: 'wattserve', version: PACKAGE_VERSION, extensions: [] });
  });

  it('is live and ready when every model serves', async () => {
    const app = await startApp();
    expect((await app.inject({ url: '/v2/health/live' })).json()).toEqual({ live: true });
    const ready = await app.inject({ url: '/v2/health/ready' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({ ready: true });
  });

  it('is live but answers 503 {error} with the reason while a model that should serve does not', async () => {
    const app = await startApp({ DEFAULT_MODEL: 'missing' });
    expect((await app.inject({ url: '/v2/health/live' })).statusCode).toBe(200);
    const ready = await messageError(await app.inject({ url: '/v2/health/ready' }));
    expect(ready.status).toBe(503);
    expect(ready.error).toContain('missing');
  });

  it('stays live with no servable model at all', async () => {
    const app = await startApp({ MODEL_REPOSITORY: await makeRepository({ 'm/1/model.onnx': 'junk' }) });
    expect((await app.inject({ url: '/v2/health/live' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/v2/health/ready' })).statusCode).toBe(503);
    const model = await messageError(await app.inject({ url: '/v2/models/m/ready' }));
    expect(model).toEqual({ status: 404, error: expect.stringContaining('no available version') });
  });
});

describe('model metadata', () => {
  it.each([
    [LINEAR, 'onnxruntime_onnx', 'FP32', FEATURES, ['power']],
    [MLP, 'tensorflow_js', 'FP32', FEATURES, ['power']],
    [KEPLER, 'kepler', 'FP64', KEPLER_FEATURES, KEPLER_OUTPUTS],
  ])(
    'describes %s: platform %s, one input [-1, features], an output per model output',
    async (name, platform, datatype, features, outputs) => {
      const app = await startApp();
      for (const url of [`/v2/models/${name}`, `/v2/models/${name}/versions/1`]) {
        const response = await app.inject({ url });
        expect(response.statusCode).toBe(200);
        expect(response.json()).toEqual({
          name,
          versions: ['1'],
          platform,
          inputs: [{ name: 'input', datatype, shape: [-1, features.length] }],
          outputs: outputs.map((output) => ({ name: output, datatype: 'FP64', shape: [-1] })),
          parameters: { version: '1', features: features.join(','), outputs: outputs.join(',') },
        });
      }
    },
  );

  it('lists every version and describes the one asked for', async () => {
    const root = await makeRepository({ 'm/1': { model: LINEAR }, 'm/2': { model: MLP } });
    const app = await startApp({ MODEL_REPOSITORY: root });
    const serving = (await app.inject({ url: '/v2/models/m' })).json();
    expect(serving).toMatchObject({ versions: ['1', '2'], platform: 'tensorflow_js', parameters: { version: '2' } });
    const first = (await app.inject({ url: '/v2/models/m/versions/1' })).json();
    expect(first).toMatchObject({ versions: ['1', '2'], platform: 'onnxruntime_onnx', parameters: { version: '1' } });
  });

  it.each([
    ['/v2/models/nope', 'no model named "nope"'],
    ['/v2/models/nope/versions/1', 'no model named "nope"'],
    [`/v2/models/${LINEAR}/versions/2`, 'has no version 2'],
    [`/v2/models/${LINEAR}/versions/latest`, 'has no version "latest"'],
  ])('answers 404 {error} for %s', async (url, message) => {
    const app = await startApp();
    const answer = await messageError(await app.inject({ url }));
    expect(answer.status).toBe(404);
    expect(answer.error).toContain(message);
  });
});

describe('model readiness', () => {
  it('is 200 for a model and version that serve, 404 otherwise', async () => {
    const app = await startApp();
    const ready = await app.inject({ url: `/v2/models/${LINEAR}/ready` });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({ name: LINEAR, ready: true });
    expect((await app.inject({ url: `/v2/models/${KEPLER}/versions/1/ready` })).statusCode).toBe(200);
    expect((await app.inject({ url: '/v2/models/nope/ready' })).statusCode).toBe(404);
    const version = await messageError(await app.inject({ url: `/v2/models/${MLP}/versions/3/ready` }));
    expect(version).toEqual({ status: 404, error: expect.stringContaining('no version 3') });
  });
});

describe('POST /v2/models/{name}/infer', () => {
  it('refuses an unknown output before the model runs, and answers every output for an empty list', async () => {
    const app = await startApp();
    const handle = app.models.acquire(KEPLER);
    const spy = vi.spyOn(handle.model.model, 'predict');
    handle.release();
    const body = { inputs: featureInputs(KEPLER_FEATURES, [[50000, 12]]) };
    const unknown = await messageError(await infer(app, KEPLER, { ...body, outputs: [{ name: 'heat' }] }));
    expect(unknown.status).toBe(400);
    expect(spy).not.toHaveBeenCalled();
    const all = await infer(app, KEPLER, { ...body, outputs: [] });
    expect(all.json().outputs.map((output: { name: string }) => output.name)).toEqual(KEPLER_OUTPUTS);
  });

  it.each([LINEAR, MLP])('answers %s with exactly what /predict answers for the same rows', async (name) => {
    const app = await startApp();
    const expected = await predictions(app, name, PODS);
    const response = await infer(app, name, { inputs: [matrixInput(PODS)] });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({
      model_name: name,
      model_version: '1',
      outputs: [{ name: 'power', datatype: 'FP64', shape: [PODS.length], data: expected.predictions }],
    });
  });

  it('answers the Kepler model with one FP64 tensor per component, as /predict does', async () => {
    const app = await startApp();
    const rows = [
      [50000, 12],
      [0, 0],
    ];
    const expected = (await predictions(app, KEPLER, rows)).predictions as number[][];
    const { outputs } = (await infer(app, KEPLER, { inputs: [matrixInput(rows, 'INT64')] })).json();
    expect(outputs).toEqual(
      KEPLER_OUTPUTS.map((name, column) => ({
        name,
        datatype: 'FP64',
        shape: [2],
        data: expected.map((row) => row[column]),
      })),
    );
  });

  it('takes one tensor per feature, in any order, mapped by name', async () => {
    const app = await startApp();
    const expected = await predictions(app, LINEAR, PODS);
    const order = [7, 2, 0, 5, 1, 6, 3, 4];
    const names = order.map((i) => FEATURES[i] as string);
    const shuffled = PODS.map((row) => order.map((i) => row[i] as number));
    const flat = await infer(app, LINEAR, { inputs: featureInputs(names, shuffled) });
    expect(flat.statusCode).toBe(200);
    expect(flat.json().outputs[0].data).toEqual(expected.predictions);
    // [rows, 1] tensors, nested, are the same thing.
    const columns = featureInputs(names, shuffled).map((tensor) => ({
      ...tensor,
      shape: [PODS.length, 1],
      data: tensor.data.map((value) => [value]),
    }));
    expect((await infer(app, LINEAR, { inputs: columns })).json().outputs[0].data).toEqual(expected.predictions);
  });

  it('takes a lone [rows, 1] tensor named after the only feature of a one-feature model', async () => {
    const root = await makeRepository({
      'one/1/model.onnx': (await import('../../scripts/onnx-linear.js')).linearOnnxModel({ weights: [[2]], bias: [1] }),
      'one/1/metadata.json': JSON.stringify({ features: ['cpu'] }),
    });
    const app = await startApp({ MODEL_REPOSITORY: root });
    const byName = await infer(app, 'one', {
      inputs: [{ name: 'cpu', shape: [2, 1], datatype: 'FP32', data: [1, 2] }],
    });
    expect(byName.json().outputs[0].data).toEqual([3, 5]);
    const asMatrix = await infer(app, 'one', {
      inputs: [{ name: 'input', shape: [2, 1], datatype: 'FP32', data: [1, 2] }],
    });
    expect(asMatrix.json().outputs[0].data).toEqual([3, 5]);
  });

  it.each(['FP32', 'FP64', 'INT32', 'INT64'])(
    'accepts %s data, nested or flat, with the same answer',
    async (datatype) => {
      const app = await startApp();
      const rows = [
        [50000, 12],
        [7, 0],
      ];
      const expected = (await predictions(app, KEPLER, rows)).predictions as number[][];
      const flat = await infer(app, KEPLER, { inputs: [{ ...matrixInput(rows, datatype) }] });
      const nested = await infer(app, KEPLER, { inputs: [{ ...matrixInput(rows, datatype), data: rows }] });
      expect(flat.statusCode).toBe(200);
      expect(flat.json()).toEqual(nested.json());
      expect(flat.json().outputs[0].data).toEqual(expected.map((row) => row[0]));
    },
  );

  it('answers only the outputs asked for, in the order asked', async () => {
    const app = await startApp();
    const { outputs } = (
      await infer(app, KEPLER, {
        inputs: [matrixInput([[50000, 12]])],
        outputs: [{ name: 'dram' }, { name: 'package' }],
      })
    ).json();
    expect(outputs.map((output: { name: string }) => output.name)).toEqual(['dram', 'package']);
  });

  it('echoes the request id, and accepts parameters', async () => {
    const app = await startApp();
    const response = await infer(app, LINEAR, {
      id: 'req-42',
      parameters: { binary_data_output: false },
      inputs: [{ ...matrixInput(PODS), parameters: { content_type: 'np' } }],
    });
    expect(response.json()).toMatchObject({ id: 'req-42', model_name: LINEAR, model_version: '1' });
    const anonymous = await infer(app, LINEAR, { inputs: [matrixInput(PODS)] });
    expect(anonymous.json()).not.toHaveProperty('id');
  });

  it('uses the version in the URL, and the serving one without', async () => {
    const root = await makeRepository({ 'm/1': { model: LINEAR }, 'm/2': { model: MLP } });
    const app = await startApp({ MODEL_REPOSITORY: root });
    const pinned = await app.inject({
      method: 'POST',
      url: '/v2/models/m/versions/1/infer',
      payload: { inputs: [matrixInput(PODS)] },
    });
    expect(pinned.json()).toMatchObject({ model_name: 'm', model_version: '1' });
    expect((await infer(app, 'm', { inputs: [matrixInput(PODS)] })).json().model_version).toBe('2');
  });

  it('answers the spec example shapes: a [1, n] tensor and flat data', async () => {
    const app = await startApp();
    const response = await infer(app, LINEAR, {
      id: '42',
      inputs: [{ name: 'input', shape: [1, 8], datatype: 'FP32', data: PODS[0] }],
      outputs: [{ name: 'power' }],
    });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ id: '42', outputs: [{ name: 'power', datatype: 'FP64', shape: [1] }] });
  });
});

describe('/v2 errors are {"error": "<field>: <problem>"} with wattserve statuses', () => {
  const pod = PODS[0] as number[];
  const one = (tensor: Record<string, unknown>) => ({ inputs: [{ ...matrixInput([pod]), ...tensor }] });

  it.each<[string, unknown, number, string]>([
    ['a body that is not an object', [pod], 400, 'body:'],
    ['no inputs', {}, 400, 'inputs: is required'],
    ['empty inputs', { inputs: [] }, 400, 'inputs: must be a non-empty array'],
    ['an unknown field', { inputs: [matrixInput([pod])], instances: [pod] }, 400, 'instances: unknown field'],
    ['an id that is not a string', { id: 7, inputs: [matrixInput([pod])] }, 400, 'id: must be a string'],
    ['a tensor with no name', one({ name: '' }), 400, 'inputs[0].name'],
    ['BYTES data', one({ datatype: 'BYTES' }), 400, 'inputs[0].datatype: unsupported datatype "BYTES"'],
    ['BOOL data', one({ datatype: 'BOOL' }), 400, 'inputs[0].datatype'],
    ['no datatype', one({ datatype: undefined }), 400, 'inputs[0].datatype: is required'],
    ['a negative dimension', one({ shape: [-1, 8] }), 400, 'inputs[0].shape: must be an array of non-negative'],
    ['fewer values than the shape says', one({ shape: [2, 8] }), 400, 'holds 8 values where its shape [2, 8] says 16'],
    [
      'more values than the shape says',
      one({ data: [...pod, ...pod, 1] }),
      400,
      'holds 17 values where its shape [1, 8] says 8',
    ],
    ['a string value', one({ data: [...pod.slice(1), 'x'] }), 400, 'inputs[0].data[7]: must be a number'],
    ['a value beyond float32', one({ data: [1e39, ...pod.slice(1)] }), 400, 'inputs[0].data[0]: must be a finite'],
    ['a fraction in INT32', one({ datatype: 'INT32', data: [0.5, ...pod.slice(1)] }), 400, 'must be an integer'],
    ['INT32 out of range', one({ datatype: 'INT32', data: [2 ** 31, ...pod.slice(1)] }), 400, 'INT32 range'],
    ['data that is not an array', one({ data: 3 }), 400, 'inputs[0].data: must be an array'],
    ['zero rows', one({ shape: [0, 8], data: [] }), 400, 'no rows'],
    ['the wrong width', one({ shape: [1, 7], data: pod.slice(1) }), 400, 'inputs: rows have 7 values'],
    ['an unknown output', { inputs: [matrixInput([pod])], outputs: [{ name: 'heat' }] }, 400, 'no output "heat"'],
    [
      'an output asked twice',
      { inputs: [matrixInput([pod])], outputs: [{ name: 'power' }, { name: 'power' }] },
      400,
      'twice',
    ],
    ['a 3-D tensor', one({ shape: [1, 8, 1] }), 400, 'inputs[0].shape: has shape [1, 8, 1]'],
    ['INT64 beyond its range', one({ datatype: 'INT64', data: [2 ** 63, ...pod.slice(1)] }), 400, 'INT64 range'],
    ['a name too long to echo', one({ name: 'x'.repeat(300) }), 400, 'inputs[0].name: must be a string of 1 to 256'],
    [
      'data nested otherwise than its shape',
      one({ shape: [2, 4], data: [pod.slice(0, 2), pod.slice(2, 4), pod.slice(4, 6), pod.slice(6)] }),
      400,
      'inputs[0].data: has 4 items at depth 0 where the shape [2, 4] says 2',
    ],
  ])('%s: %i', async (_what, payload, status, message) => {
    const app = await startApp();
    const answer = await messageError(await infer(app, LINEAR, payload));
    expect(answer.status).toBe(status);
    expect(answer.error).toContain(message);
  });

  it.each<[string, (names: string[]) => unknown, string]>([
    ['an unknown feature', (names) => [...names.slice(0, 7), 'gpu_watts'], 'no feature "gpu_watts"'],
    ['a missing feature', (names) => names.slice(1), `missing "${FEATURES[0]}"`],
    ['a feature twice', (names) => [...names.slice(0, 7), names[0]], 'named twice'],
  ])('per-feature tensors with %s: 400 naming it', async (_what, rename, message) => {
    const app = await startApp();
    const names = rename([...FEATURES]) as string[];
    const inputs = featureInputs(
      names,
      PODS.map((row) => row.slice(0, names.length)),
    );
    const answer = await messageError(await infer(app, LINEAR, { inputs }));
    expect(answer).toEqual({ status: 400, error: expect.stringMatching(/^inputs: /) });
    expect(answer.error).toContain(message);
  });

  it('refuses per-feature tensors with different row counts', async () => {
    const app = await startApp();
    const inputs = featureInputs(FEATURES, PODS);
    inputs[3] = { ...inputs[3], shape: [2], data: [1, 2] } as (typeof inputs)[number];
    const answer = await messageError(await infer(app, LINEAR, { inputs }));
    expect(answer).toEqual({ status: 400, error: expect.stringContaining('inputs[3].shape: has 2 rows') });
  });

  it('answers 413 past MAX_ROWS and MAX_COLUMNS, and past the body limit', async () => {
    const app = await startApp({ MAX_ROWS: '2', MAX_COLUMNS: '4', MAX_BODY_BYTES: '4096' });
    const rows = await messageError(await infer(app, LINEAR, { inputs: [matrixInput(PODS)] }));
    expect(rows).toEqual({ status: 413, error: expect.stringContaining('MAX_ROWS') });
    const columns = await messageError(await infer(app, LINEAR, { inputs: [matrixInput([[1, 2, 3, 4, 5]])] }));
    expect(columns).toEqual({ status: 413, error: expect.stringContaining('MAX_COLUMNS') });
    const features = await messageError(
      await infer(app, LINEAR, { inputs: featureInputs(FEATURES, [PODS[0] as number[]]) }),
    );
    expect(features).toEqual({ status: 413, error: expect.stringContaining('MAX_COLUMNS') });
    const big = await messageError(await infer(app, LINEAR, { id: 'x'.repeat(5000), inputs: [matrixInput([pod])] }));
    expect(big).toEqual({ status: 413, error: expect.stringContaining('body: the body is larger than') });
  });

  it('answers invalid and too deeply nested JSON in the V2 shape', async () => {
    const app = await startApp({ MAX_JSON_DEPTH: '5' });
    const headers = { 'content-type': 'application/json' };
    const invalid = await messageError(await infer(app, LINEAR, '{"inputs": [', { headers }));
    expect(invalid).toEqual({ status: 400, error: expect.stringContaining('not valid JSON') });
    const empty = await messageError(await infer(app, LINEAR, '', { headers }));
    expect(empty.status).toBe(400);
    const deep = { inputs: [{ ...matrixInput([pod]), data: [[[[[pod]]]]] }] };
    const tooDeep = await messageError(await infer(app, LINEAR, deep));
    expect(tooDeep).toEqual({ status: 400, error: expect.stringContaining('MAX_JSON_DEPTH') });
    const proto = await messageError(await infer(app, LINEAR, '{"__proto__": {}, "inputs": []}', { headers }));
    expect(proto.status).toBe(400);
  });

  it('answers 415 to a body that is not JSON, and 404 to an unknown model or version', async () => {
    const app = await startApp();
    const csv = await messageError(
      await infer(app, LINEAR, pod.join(','), { headers: { 'content-type': 'text/csv' } }),
    );
    expect(csv).toEqual({ status: 415, error: expect.stringContaining('application/json') });
    const xml = await messageError(
      await infer(app, LINEAR, '<x/>', { headers: { 'content-type': 'application/xml' } }),
    );
    expect(xml.status).toBe(415);
    const model = await messageError(await infer(app, 'nope', { inputs: [matrixInput([pod])] }));
    expect(model).toEqual({ status: 404, error: expect.stringContaining('no model named "nope"') });
    const version = await messageError(
      await app.inject({
        method: 'POST',
        url: `/v2/models/${LINEAR}/versions/9/infer`,
        payload: { inputs: [matrixInput([pod])] },
      }),
    );
    expect(version).toEqual({
      status: 404,
      error: expect.stringContaining('version: model "pod-power-linear" has no version 9'),
    });
  });

  it('answers an unknown /v2 route with 404 {error}', async () => {
    const app = await startApp();
    const answer = await messageError(await app.inject({ url: '/v2/repository/index' }));
    expect(answer).toEqual({ status: 404, error: 'no route GET /v2/repository/index' });
  });

  it('answers 429 with Retry-After past MAX_CONCURRENT_PER_MODEL, and 504 past the deadline', async () => {
    const app = await startApp({
      MAX_CONCURRENT_PER_MODEL: '1',
      RETRY_AFTER_SECONDS: '7',
      BATCH_MAX_ROWS: '0',
      REQUEST_TIMEOUT_MS: '300',
    });
    const stuck = stall(app, LINEAR);
    const first = infer(app, LINEAR, { inputs: [matrixInput(PODS)] });
    await vi.waitFor(() => expect(stuck.calls()).toBe(1));
    const busy = await infer(app, LINEAR, { inputs: [matrixInput(PODS)] });
    expect(busy.headers['retry-after']).toBe('7');
    expect(await messageError(busy)).toEqual({
      status: 429,
      error: expect.stringContaining('MAX_CONCURRENT_PER_MODEL'),
    });
    const late = await messageError(await first);
    expect(late).toEqual({ status: 504, error: expect.stringContaining('REQUEST_TIMEOUT_MS') });
    stuck.release();
    await vi.waitFor(async () =>
      expect((await infer(app, LINEAR, { inputs: [matrixInput(PODS)] })).statusCode).toBe(200),
    );
  });

  it('answers a backend failure with a generic 500, the cause only in the log', async () => {
    const logs = captureLogs();
    const app = await startApp({ LOG_LEVEL: 'error' }, { logStream: logs.logStream });
    stall(app, LINEAR, new Error('secret path /opt/models/boom'));
    const response = await infer(app, LINEAR, { inputs: [matrixInput(PODS)] });
    expect(await messageError(response)).toEqual({ status: 500, error: 'internal error' });
    expect(response.body).not.toContain('secret');
    expect(JSON.stringify(logs.lines)).toContain('secret path');
  });

  it('answers 503 overloaded in the V2 shape under pressure, and keeps /v2/health/live served', async () => {
    const app = await startApp(
      { MAX_HEAP_USED_BYTES: '1', MAX_EVENT_LOOP_DELAY_MS: '0', RETRY_AFTER_SECONDS: '7' },
      { pressureSampleIntervalMs: 100 },
    );
    await expect
      .poll(async () => (await app.inject({ url: '/v2/health/ready' })).statusCode, { timeout: 5000, interval: 100 })
      .toBe(503);
    const refused = await infer(app, LINEAR, { inputs: [matrixInput(PODS)] });
    expect(refused.headers['retry-after']).toBe('7');
    expect(await messageError(refused)).toEqual({ status: 503, error: expect.stringContaining('overloaded') });
    expect(await messageError(await app.inject({ url: '/v2' }))).toMatchObject({ status: 503 });
    const live = await app.inject({ url: '/v2/health/live' });
    expect(live.statusCode).toBe(200);
    expect(live.json()).toEqual({ live: true });
  });

  it('keeps the other routes in the catalogue shape', async () => {
    const app = await startApp();
    const response = await app.inject({
      method: 'POST',
      url: '/predict',
      payload: '{',
      headers: { 'content-type': 'application/json' },
    });
    expect(response.json().error).toMatchObject({ code: 'invalid_json' });
  });
});
