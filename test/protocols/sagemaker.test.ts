import { execFileSync } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { FEATURES, LINEAR, MLP, makeRepository, PODS, startApp, testConfig } from '../helpers.js';

const csv = (rows: number[][]) => `${rows.map((row) => row.join(',')).join('\n')}\n`;
const jsonLines = (rows: number[][]) => rows.map((row) => JSON.stringify(row)).join('\n');

describe('GET /ping', () => {
  it('answers 200 with an empty body when every model serves', async () => {
    const app = await startApp();
    const response = await request(app.server).get('/ping').expect(200);
    expect(response.text).toBe('');
  });

  it('answers 503 when no model could be loaded', async () => {
    const root = await makeRepository({ 'm/1/model.onnx': 'garbage' });
    const app = await startApp({ MODEL_REPOSITORY: root });
    const { body } = await request(app.server).get('/ping').expect(503);
    expect(body.error.code).toBe('not_ready');
  });

  it('answers 503 while models load behind a live server, then 200', async () => {
    // The weight shard is a named pipe: loading blocks on it until the test writes the real bytes.
    const root = await makeRepository({ 'm/1': { model: MLP } });
    const shard = path.join(root, 'm/1/group1-shard1of1.bin');
    const bytes = await readFile(shard);
    await rm(shard);
    execFileSync('mkfifo', [shard]);
    const app = await buildApp(testConfig({ MODEL_REPOSITORY: root }), { waitForModels: false });
    let released = false;
    const release = async () => {
      if (!released) await writeFile(shard, bytes);
      released = true;
    };
    try {
      await app.ready();
      const ping = await request(app.server).get('/ping').expect(503);
      expect(ping.body.error.code).toBe('not_ready');
      const early = await request(app.server).post('/predict/m').send({ instances: PODS }).expect(503);
      expect(early.body.error.code).toBe('not_ready');
      await release();
      await expect.poll(async () => (await request(app.server).get('/ping')).status, { timeout: 10_000 }).toBe(200);
      await request(app.server).post('/predict/m').send({ instances: PODS }).expect(200);
    } finally {
      await release();
      await app.close();
    }
  });

  it('answers 503 when DEFAULT_MODEL is not among the loaded models', async () => {
    const app = await startApp({ DEFAULT_MODEL: 'missing' });
    await request(app.server).get('/ping').expect(503);
  });
});

describe('POST /invocations', () => {
  it('gives the same predictions for CSV, JSON and JSON Lines', async () => {
    const app = await startApp({ DEFAULT_MODEL: MLP });
    const post = (type: string, body: string) =>
      request(app.server).post('/invocations').set('content-type', type).send(body).expect(200);
    const fromCsv = await post('text/csv', csv(PODS));
    const fromJson = await post('application/json', JSON.stringify({ instances: PODS }));
    const fromBareJson = await post('application/json', JSON.stringify(PODS));
    const fromJsonLines = await post('application/jsonlines', jsonLines(PODS));
    const native = await request(app.server).post(`/predict/${MLP}`).send({ instances: PODS });
    expect(fromCsv.body).toEqual(native.body);
    expect(fromJson.body).toEqual(native.body);
    expect(fromBareJson.body).toEqual(native.body);
    expect(fromJsonLines.body).toEqual(native.body);
  });

  it('answers in the type Accept prefers, honouring q-values, with the same numbers', async () => {
    const app = await startApp({ DEFAULT_MODEL: LINEAR });
    const post = (accept: string) =>
      request(app.server).post('/invocations').set('content-type', 'text/csv').set('accept', accept).send(csv(PODS));
    const asJson = await post('application/json');
    const predictions = asJson.body.predictions as number[];

    const asCsv = await post('text/csv;q=0.9, application/json;q=0.5');
    expect(asCsv.headers['content-type']).toMatch(/^text\/csv/);
    expect(asCsv.text.trim().split('\n').map(Number)).toEqual(predictions);

    const asLines = await post('application/jsonlines, text/csv;q=0.2');
    expect(asLines.headers['content-type']).toMatch(/^application\/jsonlines/);
    expect(
      asLines.text
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line)),
    ).toEqual(predictions.map((p) => [p]));
  });

  it('answers with SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT when Accept allows anything', async () => {
    const app = await startApp({ DEFAULT_MODEL: LINEAR, SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT: 'text/csv' });
    for (const accept of [undefined, '*/*']) {
      const call = request(app.server).post('/invocations').set('content-type', 'text/csv');
      const response = await (accept === undefined ? call : call.set('accept', accept)).send(csv(PODS)).expect(200);
      expect(response.headers['content-type']).toMatch(/^text\/csv/);
      expect(response.text.trim().split('\n')).toHaveLength(PODS.length);
    }
  });

  it('refuses an Accept it cannot satisfy with 406 and an unknown Content-Type with 415', async () => {
    const app = await startApp({ DEFAULT_MODEL: LINEAR });
    const refused = await request(app.server)
      .post('/invocations')
      .set('content-type', 'text/csv')
      .set('accept', 'text/html')
      .send(csv(PODS))
      .expect(406);
    expect(refused.body.error).toMatchObject({ code: 'not_acceptable', field: 'accept' });
    const unsupported = await request(app.server)
      .post('/invocations')
      .set('content-type', 'application/x-protobuf')
      .send('x')
      .expect(415);
    expect(unsupported.body.error.code).toBe('unsupported_media_type');
  });

  it('picks the model from X-Amzn-SageMaker-Target-Model and echoes the custom attributes', async () => {
    const app = await startApp();
    const response = await request(app.server)
      .post('/invocations')
      .set('content-type', 'text/csv')
      .set('X-Amzn-SageMaker-Target-Model', MLP)
      .set('X-Amzn-SageMaker-Custom-Attributes', 'trace=abc123')
      .send(csv(PODS))
      .expect(200);
    expect(response.body.model).toBe(MLP);
    expect(response.headers['x-amzn-sagemaker-custom-attributes']).toBe('trace=abc123');

    const failed = await request(app.server)
      .post('/invocations')
      .set('content-type', 'text/csv')
      .set('X-Amzn-SageMaker-Target-Model', 'nope')
      .set('X-Amzn-SageMaker-Custom-Attributes', 'trace=def')
      .send(csv(PODS))
      .expect(404);
    expect(failed.headers['x-amzn-sagemaker-custom-attributes']).toBe('trace=def');
  });

  it.each([
    ['an unsupported Content-Type', 'application/xml', '<x/>', 415],
    ['malformed JSON', 'application/json', '{"instances":', 400],
    ['a body over the limit', 'text/csv', '1\n'.repeat(5000), 413],
  ])('echoes the custom attributes on errors too: %s', async (_, type, body, status) => {
    const app = await startApp({ DEFAULT_MODEL: LINEAR, MAX_BODY_BYTES: '4096' });
    const response = await request(app.server)
      .post('/invocations')
      .set('content-type', type)
      .set('X-Amzn-SageMaker-Custom-Attributes', 'trace=xyz')
      .send(body)
      .expect(status);
    expect(response.headers['x-amzn-sagemaker-custom-attributes']).toBe('trace=xyz');
  });

  it('refuses a body naming another model than X-Amzn-SageMaker-Target-Model', async () => {
    const app = await startApp();
    const { body } = await request(app.server)
      .post('/invocations')
      .set('content-type', 'application/json')
      .set('X-Amzn-SageMaker-Target-Model', MLP)
      .send({ model: LINEAR, instances: PODS })
      .expect(400);
    expect(body.error).toMatchObject({ code: 'invalid_body', field: 'model' });
  });

  it('maps CSV columns by name when the header is present', async () => {
    const app = await startApp({ DEFAULT_MODEL: LINEAR });
    const reversed = [...FEATURES].reverse();
    const body = `${reversed.join(',')}\n${csv(PODS.map((row) => [...row].reverse()))}`;
    const withHeader = await request(app.server)
      .post('/invocations')
      .set('content-type', 'text/csv; header=present')
      .send(body)
      .expect(200);
    const plain = await request(app.server).post('/invocations').set('content-type', 'text/csv').send(csv(PODS));
    expect(withHeader.body.predictions).toEqual(plain.body.predictions);
  });

  it('answers a multi-output model in CSV with one column per output', async () => {
    const { linearOnnxModel } = await import('../../scripts/onnx-linear.js');
    const root = await makeRepository({
      'm/1/model.onnx': linearOnnxModel({
        weights: [
          [1, 0],
          [0, 1],
        ],
        bias: [0, 10],
      }),
    });
    const app = await startApp({ MODEL_REPOSITORY: root });
    const response = await request(app.server)
      .post('/invocations')
      .set('content-type', 'text/csv')
      .set('accept', 'text/csv')
      .send('1,2\n3,4\n')
      .expect(200);
    expect(response.text).toBe('1,12\n3,14\n');
  });

  it('serves a SageMaker /opt/ml/model layout (model files at the root) as one model', async () => {
    const root = await makeRepository({ '.': { model: LINEAR } });
    const app = await startApp({ MODEL_REPOSITORY: root });
    const { body } = await request(app.server)
      .post('/invocations')
      .set('content-type', 'text/csv')
      .send(csv(PODS))
      .expect(200);
    expect(body).toMatchObject({ model: 'model', version: 1 });
    expect((await request(app.server).get('/models')).body.models[0]).toMatchObject({ name: 'model', modelUrl: '.' });
  });

  it('honours SAGEMAKER_MAX_PAYLOAD_IN_MB', async () => {
    const app = await startApp({ DEFAULT_MODEL: LINEAR, SAGEMAKER_MAX_PAYLOAD_IN_MB: '1' });
    const row = `${(PODS[0] as number[]).join(',')}\n`;
    const justUnder = row.repeat(Math.floor((1024 * 1024) / row.length));
    await request(app.server).post('/invocations').set('content-type', 'text/csv').send(justUnder).expect(200);
    const over = await request(app.server)
      .post('/invocations')
      .set('content-type', 'text/csv')
      .send(justUnder + row.repeat(10))
      .expect(413);
    expect(over.body.error.code).toBe('body_too_large');
  });
});
