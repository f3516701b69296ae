import path from 'node:path';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { linearOnnxModel } from '../../scripts/onnx-linear.js';
import { BACKENDS } from '../../src/backends/index.js';
import { FEATURES, KEPLER, LINEAR, MLP, makeRepository, PODS, SHIPPED_MODELS, startApp } from '../helpers.js';

/** What the backend itself answers for the pods, loaded straight from the shipped folder. */
async function backendOutput(name: string, rows: number[][]): Promise<number[]> {
  const dir = path.join(SHIPPED_MODELS, name, '1');
  const backend = BACKENDS.find((b) => b.name === (name === LINEAR ? 'onnx' : 'tfjs'));
  const model = await backend?.load(dir, []);
  if (model === undefined) throw new Error('no backend');
  try {
    const output = await model.predict({ data: Float32Array.from(rows.flat()), rows: rows.length, cols: 8 });
    return Array.from(output.data);
  } finally {
    await model.dispose();
  }
}

describe('POST /predict', () => {
  it.each([LINEAR, MLP])('answers what the %s backend computes for each pod', async (name) => {
    const app = await startApp();
    const response = await request(app.server).post(`/predict/${name}`).send({ instances: PODS }).expect(200);
    expect(response.body).toEqual({ model: name, version: 1, predictions: await backendOutput(name, PODS) });
  });

  it.each([LINEAR, MLP])('%s gives plausible pod watts: positive, and more for busier pods', async (name) => {
    const app = await startApp();
    const { body } = await request(app.server).post('/predict').send({ model: name, instances: PODS }).expect(200);
    const [busy, light, idle] = body.predictions as number[];
    expect(idle).toBeGreaterThanOrEqual(0);
    expect(light).toBeGreaterThan(idle as number);
    expect(busy).toBeGreaterThan(light as number);
    expect(busy).toBeLessThan(50);
  });

  it('maps columns to the model by feature name', async () => {
    const app = await startApp();
    const order = [7, 2, 0, 5, 1, 6, 3, 4];
    const shuffled = {
      model: LINEAR,
      features: order.map((i) => FEATURES[i]),
      instances: PODS.map((row) => order.map((i) => row[i])),
    };
    const inOrder = await request(app.server).post('/predict').send({ model: LINEAR, instances: PODS });
    const mapped = await request(app.server).post('/predict').send(shuffled).expect(200);
    expect(mapped.body.predictions).toEqual(inOrder.body.predictions);
  });

  it.each([
    ['an unknown name', [...FEATURES.slice(0, 7), 'gpu_watts'], 'unknown_feature', 'gpu_watts'],
    ['a name twice', [...FEATURES.slice(0, 7), FEATURES[0]], 'duplicate_feature', FEATURES[0]],
    ['too few names', FEATURES.slice(0, 7), 'wrong_width', '7 features'],
  ])('refuses feature names with %s, listing them', async (_, features, code, mentioned) => {
    const app = await startApp();
    const { body } = await request(app.server)
      .post('/predict')
      .send({ model: LINEAR, features, instances: PODS })
      .expect(400);
    expect(body.error).toMatchObject({ code, field: 'features' });
    expect(body.error.message).toContain(mentioned);
  });

  it('names the features a request leaves out', async () => {
    const app = await startApp();
    const { body } = await request(app.server)
      .post('/predict')
      .send({ model: LINEAR, features: FEATURES.slice(1), instances: PODS.map((row) => row.slice(1)) })
      .expect(400);
    expect(body.error).toMatchObject({ code: 'missing_feature', field: 'features' });
    expect(body.error.message).toContain(FEATURES[0]);
  });

  it('uses the version asked for, and the highest when none is', async () => {
    const root = await makeRepository({ 'm/1': { model: LINEAR }, 'm/2': { model: MLP } });
    const app = await startApp({ MODEL_REPOSITORY: root });
    const latest = await request(app.server).post('/predict/m').send({ instances: PODS }).expect(200);
    const pinned = await request(app.server).post('/predict/m').send({ version: 1, instances: PODS }).expect(200);
    expect(latest.body.predictions).toEqual(await backendOutput(MLP, PODS));
    expect(pinned.body).toEqual({ model: 'm', version: 1, predictions: await backendOutput(LINEAR, PODS) });
    const missing = await request(app.server).post('/predict/m').send({ version: 3, instances: PODS }).expect(404);
    expect(missing.body.error).toMatchObject({ code: 'unknown_version', field: 'version' });
  });

  it('uses DEFAULT_MODEL when the request names none', async () => {
    const app = await startApp({ DEFAULT_MODEL: MLP });
    const { body } = await request(app.server).post('/predict').send({ instances: PODS }).expect(200);
    expect(body.model).toBe(MLP);
  });

  it('answers a multi-output model with one array per pod and the output names', async () => {
    const weights = FEATURES.map((_, i) => [1e-3 * (i + 1), 0]);
    const root = await makeRepository({
      'split/1/model.onnx': linearOnnxModel({ weights, bias: [1, 2] }),
      'split/1/metadata.json': JSON.stringify({
        features: FEATURES,
        outputs: ['package', { name: 'dram', unit: 'W' }],
      }),
    });
    const app = await startApp({ MODEL_REPOSITORY: root });
    const row = [1, 1, 1, 1, 1, 1, 1, 1];
    const { body } = await request(app.server)
      .post('/predict')
      .send({ instances: [row, row] })
      .expect(200);
    expect(body.outputs).toEqual(['package', 'dram']);
    expect(body.predictions).toHaveLength(2);
    expect(body.predictions[0][0]).toBeCloseTo(1 + 0.036, 5);
    expect(body.predictions[0][1]).toBe(2);
  });

  it('answers 422, not null or Infinity, when the model overflows on extreme inputs', async () => {
    const root = await makeRepository({ 'm/1/model.onnx': linearOnnxModel({ weights: [[1e30]], bias: [0] }) });
    const app = await startApp({ MODEL_REPOSITORY: root });
    const { body } = await request(app.server)
      .post('/predict')
      .send({ instances: [[1], [1e10]] })
      .expect(422);
    expect(body.error).toMatchObject({ code: 'non_finite_prediction' });
    expect(body.error.message).toContain('row 1');
  });

  it('refuses a model named in the body that differs from the URL', async () => {
    const app = await startApp();
    const { body } = await request(app.server)
      .post(`/predict/${LINEAR}`)
      .send({ model: MLP, instances: PODS })
      .expect(400);
    expect(body.error).toMatchObject({ code: 'invalid_body', field: 'model' });
  });

  it('serves a repository whose broken model is skipped', async () => {
    const root = await makeRepository({ 'good/1': { model: LINEAR }, 'bad/1/model.onnx': 'garbage' });
    const app = await startApp({ MODEL_REPOSITORY: root });
    await request(app.server).post('/predict').send({ instances: PODS }).expect(200);
    const { body } = await request(app.server).get('/models').expect(200);
    expect(body.models.map((m: { name: string }) => m.name)).toEqual(['good']);
  });

  it('refuses CSV, pointing at /invocations', async () => {
    const app = await startApp();
    const { body } = await request(app.server).post('/predict').type('text/csv').send('1,2\n').expect(415);
    expect(body.error.message).toContain('/invocations');
  });
});

describe('GET /models', () => {
  it('lists every shipped model with its versions, backend, features and outputs', async () => {
    const app = await startApp();
    const { body } = await request(app.server).get('/models').expect(200);
    expect(body.models).toEqual([
      expect.objectContaining({
        name: KEPLER,
        backend: 'kepler',
        features: ['bpf_cpu_time_ms', 'bpf_page_cache_hit'],
        outputs: ['package', 'core', 'uncore', 'dram'],
      }),
      expect.objectContaining({
        name: LINEAR,
        version: 1,
        versions: [1],
        backend: 'onnx',
        features: FEATURES,
        outputs: ['power'],
        modelName: LINEAR,
        modelUrl: `${LINEAR}/1`,
      }),
      expect.objectContaining({ name: MLP, backend: 'tfjs', modelName: MLP }),
    ]);
  });

  it('shows one model, or a 404 naming the unknown one', async () => {
    const app = await startApp();
    const { body } = await request(app.server).get(`/models/${MLP}`).expect(200);
    expect(body).toMatchObject({ name: MLP, version: 1, backend: 'tfjs' });
    const missing = await request(app.server).get('/models/nope').expect(404);
    expect(missing.body.error).toMatchObject({ code: 'unknown_model' });
  });
});

describe('GET /live', () => {
  it('answers 200 while no model can serve: liveness is about the process, readiness is /ping', async () => {
    const app = await startApp({ MODEL_REPOSITORY: await makeRepository({ 'm/1/model.onnx': 'junk' }) });
    const { body } = await request(app.server).get('/live').expect(200);
    expect(body).toEqual({ status: 'live' });
    await request(app.server).get('/ping').expect(503);
  });
});
