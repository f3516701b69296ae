import type { FastifyInstance } from 'fastify';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { seededRandom as random } from '../../scripts/synthetic-pods.js';
import { buildApp } from '../../src/app.js';
import { featureStatsOfRows } from '../../src/feature-stats.js';
import type { FeatureStats } from '../../src/registry/metadata.js';
import { bearer, SECRET, token } from '../admin/helpers.js';
import { makeRepository, testConfig, versionedEntries, versionedModel } from '../helpers.js';
import { type Sample, sampleValue, scrape } from '../metrics-scrape.js';

/** Hand-written training statistics, for exact counts: a uniform on [0, 10], b uniform on [0, 100]. */
const STATS: Record<'a' | 'b', FeatureStats> = {
  a: { min: 0, max: 10, mean: 5, std: 2.887, deciles: [1, 2, 3, 4, 5, 6, 7, 8, 9] },
  b: { min: 0, max: 100, mean: 50, std: 28.87, deciles: [10, 20, 30, 40, 50, 60, 70, 80, 90] },
};

/** versionedModel(version) (y = version·a + b), its metadata.json giving the training statistics. */
function modelWithStats(
  name: string,
  version: number,
  stats: Record<string, FeatureStats> = STATS,
): Record<string, Uint8Array | string> {
  const files = versionedModel(version);
  return {
    [`${name}/${version}/model.onnx`]: files['model.onnx'] as Uint8Array,
    [`${name}/${version}/metadata.json`]: JSON.stringify({ features: ['a', 'b'], feature_stats: stats }),
  };
}

const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

/** The app over a repository, with the admin API, closed after the test. */
async function driftApp(entries: Record<string, Uint8Array | string>, env: Record<string, string> = {}) {
  const repository = await makeRepository(entries);
  const app = await buildApp(testConfig({ MODEL_REPOSITORY: repository, ADMIN_JWT_SECRET: SECRET, ...env }));
  apps.push(app);
  await app.ready();
  return app;
}

/**
 * The training distribution: a uniform on [0, 10]; b a zero-heavy counter (idle pods), 0 for 49% of
 * the rows (its edges at 10% … 40% are all 0, and P(b = 0) is well above 0.4) and otherwise uniform
 * on [1, 100].
 */
function trainingRows(count: number, seed: number): number[][] {
  const next = random(seed);
  return Array.from({ length: count }, () => [10 * next(), next() < 0.49 ? 0 : 1 + 99 * next()]);
}

/** The statistics of 20,000 training rows, computed as `npm run stats` would. */
const TRAINED = featureStatsOfRows(['a', 'b'], trainingRows(20_000, 1));

async function predict(app: FastifyInstance, model: string, rows: number[][], status = 200) {
  for (let start = 0; start < rows.length; start += 100) {
    await request(app.server)
      .post(`/predict/${model}`)
      .send({ instances: rows.slice(start, start + 100) })
      .expect(status);
  }
}

const drifted = (samples: Sample[]) =>
  samples.filter((sample) => /^wattserve_(feature|raw_predictions)/.test(sample.name));

describe('drift signals in /metrics', () => {
  it('keeps PSI below 0.1 for rows drawn from the training distribution, and above 0.25 once they shift', async () => {
    const app = await driftApp(modelWithStats('m', 1, TRAINED), { DRIFT_WINDOW_ROWS: '2000' });
    // Fresh rows from the training distribution (not the training rows themselves).
    await predict(app, 'm', trainingRows(2000, 2));
    let samples = await scrape(app);
    expect(sampleValue(samples, 'wattserve_feature_drift_window_rows', { model: 'm', version: '1' })).toBe(2000);
    for (const feature of ['a', 'b']) {
      const value = sampleValue(samples, 'wattserve_feature_drift_psi', { model: 'm', version: '1', feature });
      expect(value).toBeGreaterThan(0);
      expect(value).toBeLessThan(0.1);
    }
    // b's first bin, (-∞, 0], holds the real mass at 0 in the training data, not four tenths.
    const { body } = await request(app.server).get('/admin/models/m/drift').set(bearer()).expect(200);
    const zeros = TRAINED.b?.cdf_at_deciles?.[0] as number;
    expect(zeros).toBeGreaterThan(0.48);
    expect(body.versions[0].features.b.bins[0]).toEqual({ upTo: 0, reference: zeros, window: expect.any(Number) });
    expect(body.versions[0].features.b.bins[0].window).toBeCloseTo(0.49, 1);
    expect(body.versions[0].reference.b).toEqual(TRAINED.b);
    // The same kind of rows, all values × 3: the window fills with them.
    await predict(
      app,
      'm',
      trainingRows(2000, 3).map((row) => row.map((value) => value * 3)),
    );
    samples = await scrape(app);
    for (const feature of ['a', 'b']) {
      expect(
        sampleValue(samples, 'wattserve_feature_drift_psi', { model: 'm', version: '1', feature }),
      ).toBeGreaterThan(0.25);
    }
    // About two thirds of the shifted values lie above the training maximum.
    const above = sampleValue(samples, 'wattserve_feature_out_of_range_total', {
      model: 'm',
      feature: 'a',
      side: 'above',
    });
    expect(above).toBeGreaterThan(1200);
    expect(above).toBeLessThan(1450);
  });

  it('counts values outside the training range exactly, by feature and side', async () => {
    const app = await driftApp(modelWithStats('m', 1));
    const rows = [
      [-1, 50],
      [11, 50],
      [5, 100.5],
      [5, -0.5],
      [10, 100],
      [0, 0],
      [-3, -3],
    ];
    await predict(app, 'm', rows);
    await predict(app, 'm', [[12, 101]]);
    const samples = await scrape(app);
    const count = (feature: string, side: string) =>
      sampleValue(samples, 'wattserve_feature_out_of_range_total', { model: 'm', version: '1', feature, side });
    expect([count('a', 'below'), count('a', 'above'), count('b', 'below'), count('b', 'above')]).toEqual([2, 2, 2, 2]);
  });

  it('labels only loaded versions and their declared features; a model without stats has none and still serves', async () => {
    const app = await driftApp({
      ...modelWithStats('m', 1),
      ...modelWithStats('m', 2),
      ...versionedEntries('plain', [1]),
    });
    await predict(app, 'm', [[1, 2]]);
    await request(app.server)
      .post('/predict/plain')
      .send({ instances: [[1, 2]] })
      .expect(200);
    let samples = drifted(await scrape(app));
    const features = samples.filter((sample) => sample.name.startsWith('wattserve_feature_'));
    expect(new Set(features.map((sample) => sample.labels.model))).toEqual(new Set(['m']));
    expect(new Set(features.map((sample) => sample.labels.feature).filter(Boolean))).toEqual(new Set(['a', 'b']));
    expect(new Set(features.map((sample) => sample.labels.version))).toEqual(new Set(['1', '2']));
    // PSI only where rows came: version 2 serves.
    expect(
      samples.filter((sample) => sample.name === 'wattserve_feature_drift_psi').map((s) => s.labels.version),
    ).toEqual(['2', '2']);
    expect(sampleValue(samples, 'wattserve_raw_predictions_total', { model: 'plain', kind: 'non_negative' })).toBe(1);

    // Unloading version 1 takes its series away.
    await request(app.server).delete('/admin/models/m/versions/1').set(bearer()).expect(200);
    samples = drifted(await scrape(app));
    expect(samples.filter((sample) => sample.labels.version === '1' && sample.labels.model === 'm')).toEqual([]);
    expect(samples.some((sample) => sample.labels.version === '2')).toBe(true);
  });

  it('counts negative and non-finite raw predictions, so PromQL can take their share', async () => {
    // Version 2: y = 2a + b.
    const app = await driftApp(modelWithStats('m', 2));
    await predict(app, 'm', [
      [1, -5],
      [1, 5],
      [0, -1],
      [0, 0],
    ]);
    // 2 · 3e38 overflows float32: the model answers Infinity, the request is refused.
    await predict(app, 'm', [[3e38, 0]], 422);
    const samples = await scrape(app);
    const raw = (kind: string) => sampleValue(samples, 'wattserve_raw_predictions_total', { model: 'm', kind });
    expect([raw('non_negative'), raw('negative'), raw('non_finite')]).toEqual([2, 2, 1]);
    const { body } = await request(app.server).get('/admin/models/m/drift').set(bearer()).expect(200);
    expect(body.versions[0].predictions).toEqual({
      values: 5,
      negative: 2,
      nonFinite: 1,
      negativeShare: 0.4,
      nonFiniteShare: 0.2,
    });
  });
});

describe('GET /admin/models/:name/drift', () => {
  it('answers a reader the figures of every loaded version, with the window size and the reference', async () => {
    const app = await driftApp(
      { ...modelWithStats('m', 1), ...versionedEntries('plain', [1]) },
      { DRIFT_WINDOW_ROWS: '4' },
    );
    await predict(app, 'm', [
      [0.5, 5],
      [-1, 0.5],
      [9.5, 95],
      [9.5, 95],
      [9.5, 200],
    ]);
    const reader = bearer(token({ scope: 'models:read' }));
    const { body } = await request(app.server).get('/admin/models/m/drift').set(reader).expect(200);
    expect(body).toMatchObject({
      model: 'm',
      windowSize: 4,
      thresholds: { stable: 0.1, shifted: 0.25 },
      versions: [
        {
          version: 1,
          serving: true,
          reference: STATS,
          windowRows: 4,
          rowsSeen: 5,
          features: {
            a: { psi: expect.any(Number), outOfRange: { below: 1, above: 0 } },
            b: { psi: expect.any(Number), outOfRange: { below: 0, above: 1 } },
          },
          predictions: { values: 5, negative: 1, nonFinite: 0, negativeShare: 0.2, nonFiniteShare: 0 },
        },
      ],
    });
    const a = body.versions[0].features.a;
    expect(a.bins).toHaveLength(10);
    expect(a.bins[0]).toEqual({ upTo: 1, reference: expect.closeTo(0.1, 12), window: 0.25 });
    expect(a.bins[9]).toEqual({ upTo: null, reference: expect.closeTo(0.1, 12), window: 0.75 });
    expect(a.psi).toBeGreaterThan(0.25);

    const plain = await request(app.server).get('/admin/models/plain/drift').set(reader).expect(200);
    expect(plain.body.versions).toEqual([
      expect.objectContaining({ version: 1, serving: true, reference: null, features: {}, windowRows: 0 }),
    ]);
  });

  it('needs a token, and answers 404 for a model it does not know', async () => {
    const app = await driftApp(modelWithStats('m', 1));
    await request(app.server).get('/admin/models/m/drift').expect(401);
    const { body } = await request(app.server).get('/admin/models/nope/drift').set(bearer()).expect(404);
    expect(body.error).toMatchObject({ code: 'unknown_model', field: 'name' });
    await request(app.server).get('/admin/models/bad%20name/drift').set(bearer()).expect(400);
  });

  it('works with metrics off', async () => {
    const app = await driftApp(modelWithStats('m', 1), { METRICS_ENABLED: 'false' });
    await predict(app, 'm', [[11, 5]]);
    const { body } = await request(app.server).get('/admin/models/m/drift').set(bearer()).expect(200);
    expect(body.versions[0].features.a.outOfRange).toEqual({ below: 0, above: 1 });
  });
});
