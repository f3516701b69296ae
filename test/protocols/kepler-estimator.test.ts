import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { makeRepository, type RepositoryEntry, startApp } from '../helpers.js';
import {
  closeTo,
  expectFixtureWatts,
  fixtureWeights,
  KEPLER_METRICS,
  KEPLER_MODELS,
  KEPLER_PODS,
  keplerRequest,
  PICKLE_ONLY,
  referenceWatts,
} from '../kepler-reference.js';

const ALL_FIXTURES: Record<string, RepositoryEntry> = {
  'sgd-bpf/1': { kepler: KEPLER_MODELS[0].path },
  'sgd-basic/1': { kepler: KEPLER_MODELS[1].path },
  'log-bpf/1': { kepler: KEPLER_MODELS[2].path },
  'exp-bpfirq/1': { kepler: KEPLER_MODELS[3].path },
  'sgd-acpi/1': { kepler: KEPLER_MODELS[4].path },
  'gradient-boosting/1': { kepler: PICKLE_ONLY },
};

const sourceOf = (fixture: (typeof KEPLER_MODELS)[number]) => (fixture.path.includes('/acpi/') ? 'acpi' : 'intel_rapl');

describe('POST /kepler/estimate', () => {
  it.each(KEPLER_MODELS)('answers the watts of $path for shuffled metrics with extras', async (fixture) => {
    const app = await startApp({ MODEL_REPOSITORY: await makeRepository({ 'm/1': { kepler: fixture.path } }) });
    const { body } = await request(app.server)
      .post('/kepler/estimate')
      .send(keplerRequest({ source: sourceOf(fixture) }))
      .expect(200);
    expect(body).toMatchObject({ msg: '', core_ratio: 1 });
    expectFixtureWatts(body.powers, fixture);
  });

  it('picks the lowest-mae model that fits, and honours trainer_name and filter', async () => {
    const app = await startApp({ MODEL_REPOSITORY: await makeRepository(ALL_FIXTURES) });
    const estimate = (overrides: Record<string, unknown>) =>
      request(app.server).post('/kepler/estimate').send(keplerRequest(overrides));

    // Among rapl AbsPower models the Basic SGD (mae 23.95) beats BPFIRQ exponential (24.04).
    expectFixtureWatts((await estimate({})).body.powers, KEPLER_MODELS[1]);
    // Without counters the Basic model's features are missing: BPFIRQ exponential is next.
    const bpfOnly = KEPLER_METRICS.filter((m) => !['cache_miss', 'cpu_cycles', 'cpu_instructions'].includes(m));
    const bpfValues = KEPLER_PODS.map((pod) => bpfOnly.map((m) => pod[m] ?? 0));
    const withoutCounters = await estimate({ metrics: bpfOnly, values: bpfValues });
    expect(Object.keys(withoutCounters.body.powers)).toEqual(['package', 'core', 'uncore', 'dram']);
    expect(
      closeTo(
        withoutCounters.body.powers.package[0],
        referenceWatts(
          fixtureWeights(KEPLER_MODELS[3].path),
          'exponential',
          'BPFIRQ',
          KEPLER_PODS[0] as Record<string, number>,
        ).package as number,
      ),
    ).toBe(true);

    expectFixtureWatts(
      (await estimate({ trainer_name: 'LogarithmicRegressionTrainer' })).body.powers,
      KEPLER_MODELS[2],
    );
    expectFixtureWatts(
      (await estimate({ trainer_name: 'SGDRegressorTrainer', filter: 'mae:50' })).body.powers,
      KEPLER_MODELS[1],
    );
    expectFixtureWatts((await estimate({ source: 'acpi' })).body.powers, KEPLER_MODELS[4]);

    const none = await estimate({ filter: 'mae:5' }).expect(400);
    expect(none.body).toEqual({ powers: {}, msg: expect.stringContaining('filter mae:5') });
    const dynamic = await estimate({ output_type: 'DynPower' }).expect(400);
    expect(dynamic.body.powers).toEqual({});
  });

  it('adds the categorical weights of the node’s system features', async () => {
    const weights = {
      platform: {
        All_Weights: {
          Bias_Weight: 10,
          Categorical_Variables: { node_info: { '1': { weight: 4.25 } } },
          Numerical_Variables: {
            bpf_cpu_time_ms: { scale: 1000, weight: 2 },
            bpf_page_cache_hit: { scale: 1, weight: 0 },
          },
        },
      },
    };
    const metadata = {
      model_name: 'SGDRegressorTrainer_7',
      features: ['bpf_cpu_time_ms', 'bpf_page_cache_hit'],
      output_type: 'AbsPower',
      mae: 1,
    };
    const root = await makeRepository({
      'm/1/weight.json': JSON.stringify(weights),
      'm/1/metadata.json': JSON.stringify(metadata),
    });
    const app = await startApp({ MODEL_REPOSITORY: root });
    const { body } = await request(app.server)
      .post('/kepler/estimate')
      .send(keplerRequest({ source: 'acpi', system_features: ['node_info'], system_values: ['1'] }))
      .expect(200);
    expect(body.powers.platform[0]).toBeCloseTo(4.25 + 10 + 2 * (61234.5 / 1000), 5);
    expect(body.powers.platform[2]).toBeCloseTo(14.25, 9);
  });

  it('answers no rows with empty lists per component', async () => {
    const app = await startApp({
      MODEL_REPOSITORY: await makeRepository({ 'm/1': { kepler: KEPLER_MODELS[0].path } }),
    });
    const { body } = await request(app.server)
      .post('/kepler/estimate')
      .send(keplerRequest({ values: [] }))
      .expect(200);
    expect(body.powers).toEqual({ package: [], core: [], uncore: [], dram: [] });
  });

  it.each([
    ['malformed JSON', '{"metrics": [', 400],
    ['values that are not numbers', JSON.stringify(keplerRequest({ values: [['a']] })), 400],
    ['rows shorter than the metrics', JSON.stringify(keplerRequest({ values: [[1, 2]] })), 400],
    ['no output_type', JSON.stringify(keplerRequest({ output_type: undefined })), 400],
    ['system values without features', JSON.stringify(keplerRequest({ system_values: ['x'] })), 400],
    ['a bare array', '[]', 400],
  ])('answers %s in Kepler’s error shape with a 4xx', async (_, body, status) => {
    const app = await startApp({
      MODEL_REPOSITORY: await makeRepository({ 'm/1': { kepler: KEPLER_MODELS[0].path } }),
    });
    const response = await request(app.server)
      .post('/kepler/estimate')
      .set('content-type', 'application/json')
      .send(body);
    expect(response.status).toBe(status);
    expect(response.body).toEqual({ powers: {}, msg: expect.any(String) });
    expect(response.body.msg).not.toBe('');
  });
});

describe('Kepler models over the other protocols', () => {
  it.each(KEPLER_MODELS)(
    '/predict answers $path with one array per pod and the components as outputs',
    async (fixture) => {
      const app = await startApp({ MODEL_REPOSITORY: await makeRepository({ 'm/1': { kepler: fixture.path } }) });
      const { body: model } = await request(app.server).get('/models/m').expect(200);
      const features = [...(model.features as string[])].reverse();
      const { body } = await request(app.server)
        .post('/predict/m')
        .send({ features, instances: KEPLER_PODS.map((pod) => features.map((f) => pod[f] ?? 0)) })
        .expect(200);
      const components = Object.keys(fixtureWeights(fixture.path));
      // One component (acpi's platform) answers a number per pod; several answer an array per pod.
      const rows: number[][] = components.length === 1 ? body.predictions.map((w: number) => [w]) : body.predictions;
      if (components.length > 1) expect(body.outputs).toEqual(components);
      expect(model.outputs).toEqual(components);
      expectFixtureWatts(
        Object.fromEntries(components.map((name, c) => [name, rows.map((row) => row[c] as number)])),
        fixture,
      );
    },
  );

  it('/invocations answers CSV with one column per component', async () => {
    const fixture = KEPLER_MODELS[0];
    const app = await startApp({ MODEL_REPOSITORY: await makeRepository({ 'm/1': { kepler: fixture.path } }) });
    const response = await request(app.server)
      .post('/invocations')
      .set('content-type', 'text/csv')
      .set('accept', 'text/csv')
      .send('61234.5,812\n0,0\n')
      .expect(200);
    const lines = response.text
      .trim()
      .split('\n')
      .map((line) => line.split(',').map(Number));
    const weights = fixtureWeights(fixture.path);
    const idle = referenceWatts(weights, 'linear', 'BPFOnly', { bpf_cpu_time_ms: 0, bpf_page_cache_hit: 0 });
    expect(lines).toHaveLength(2);
    expect(lines[1]).toEqual(Object.values(idle).map((w) => expect.closeTo(w, 4)));
  });

  it('skips a pickle-only archive at start-up and serves the rest', async () => {
    const app = await startApp({ MODEL_REPOSITORY: await makeRepository(ALL_FIXTURES) });
    const { body } = await request(app.server).get('/models').expect(200);
    const names = (body.models as Array<{ name: string }>).map((m) => m.name);
    expect(names).toEqual(['exp-bpfirq', 'log-bpf', 'sgd-acpi', 'sgd-basic', 'sgd-bpf']);
    expect(app.models.failures).toEqual([
      expect.objectContaining({
        name: 'gradient-boosting',
        reason: expect.stringMatching(/GradientBoostingRegressorTrainer.*ONNX/),
      }),
    ]);
  });
});
