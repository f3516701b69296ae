import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { linearOnnxModel } from '../../scripts/onnx-linear.js';
import { loadVersion } from '../../src/registry/loader.js';
import { scanRepository } from '../../src/registry/repository.js';
import { FEATURES, KEPLER, LINEAR, MLP, makeRepository, PODS, startApp } from '../helpers.js';

async function loadOnly(entries: Parameters<typeof makeRepository>[0]) {
  const {
    versions: [source],
  } = await scanRepository(await makeRepository(entries), 'model');
  if (source === undefined) throw new Error('no model in the repository');
  return loadVersion(source);
}

describe('loading and checking one model version', () => {
  it.each([
    [LINEAR, 'onnx'],
    [MLP, 'tfjs'],
  ])('loads %s with the backend %s, its features and outputs from metadata.json', async (name, backend) => {
    const version = await loadOnly({ [`${name}/1`]: { model: name } });
    try {
      expect(version).toMatchObject({ name, version: 1, backend, features: FEATURES, outputs: ['power'] });
    } finally {
      await version.model.dispose();
    }
  });

  it('names features f0… and outputs y0… after the model when metadata.json does not', async () => {
    const version = await loadOnly({ 'm/1': { model: LINEAR }, 'm/1/metadata.json': '{}' });
    try {
      expect(version.features).toEqual(['f0', 'f1', 'f2', 'f3', 'f4', 'f5', 'f6', 'f7']);
      expect(version.outputs).toEqual(['y0']);
    } finally {
      await version.model.dispose();
    }
  });

  it.each([
    ['features that do not match the input width', { features: ['a', 'b'] }, '2 features but the model takes 8'],
    ['outputs that do not match the model', { outputs: ['package', 'dram'] }, '2 outputs but the model returns 1'],
    ['duplicate feature names', { features: [...FEATURES.slice(0, 7), 'cpu_cycles'] }, 'unique'],
  ])('refuses metadata.json with %s', async (_, metadata, message) => {
    await expect(loadOnly({ 'm/1': { model: LINEAR }, 'm/1/metadata.json': JSON.stringify(metadata) })).rejects.toThrow(
      message,
    );
  });

  it('refuses outputs named twice: their series would merge in metrics and replies', async () => {
    const twoOutputs = linearOnnxModel({ weights: [[1, 2]], bias: [0, 0] });
    const metadata = JSON.stringify({ features: ['a'], outputs: ['package', 'package'] });
    await expect(loadOnly({ 'm/1/model.onnx': twoOutputs, 'm/1/metadata.json': metadata })).rejects.toThrow(
      'output names must be unique',
    );
  });

  it('refuses a metadata.json that is not JSON', async () => {
    await expect(loadOnly({ 'm/1': { model: MLP }, 'm/1/metadata.json': '{oops' })).rejects.toThrow('metadata.json');
  });

  it('refuses a folder with no model file, saying what it looked for', async () => {
    await expect(loadOnly({ 'm/1/weights.bin': '' })).rejects.toThrow('no model file found');
  });
});

describe('metadata.json feature_stats, the training reference for drift', () => {
  const stats = (overrides: Record<string, unknown> = {}) => ({
    min: 0,
    max: 100,
    mean: 30,
    std: 12.5,
    deciles: [1, 2, 5, 10, 20, 40, 60, 80, 90],
    ...overrides,
  });
  const withStats = (featureStats: unknown) =>
    loadOnly({
      'm/1': { model: LINEAR },
      'm/1/metadata.json': JSON.stringify({ features: FEATURES, feature_stats: featureStats }),
    });

  it('reach the ModelVersion, for some of the features too', async () => {
    const given = {
      cpu_cycles: stats(),
      bpf_net_rx_irq: stats({
        min: 5,
        max: 5,
        mean: 5,
        std: 0,
        deciles: Array(9).fill(5),
        cdf_at_deciles: Array(9).fill(1),
      }),
      // Older metadata has no cdf_at_deciles (cpu_cycles); newer has it.
      cgroupfs_cpu_usage_us: stats({
        deciles: [0, 0, 0, 0, 20, 40, 60, 80, 100],
        cdf_at_deciles: [0.45, 0.45, 0.45, 0.45, 0.5, 0.6, 0.7, 0.8, 1],
      }),
    };
    const version = await withStats(given);
    try {
      expect(version.featureStats).toEqual(given);
    } finally {
      await version.model.dispose();
    }
  });

  it('are absent for a model without them, a Kepler model and an empty feature_stats, and those still serve', async () => {
    const repository = await makeRepository({
      'plain/1': { model: LINEAR },
      'plain/1/metadata.json': JSON.stringify({ features: FEATURES }),
      'empty/1': { model: LINEAR },
      'empty/1/metadata.json': JSON.stringify({ features: FEATURES, feature_stats: {} }),
      'bare/1': { model: LINEAR },
      'bare/1/metadata.json': '{}',
      [`${KEPLER}/1`]: { model: KEPLER },
    });
    const { versions } = await scanRepository(repository, 'unused');
    for (const name of ['plain', 'empty', 'bare', KEPLER]) {
      const source = versions.find((v) => v.name === name);
      if (source === undefined) throw new Error(`no ${name}`);
      const version = await loadVersion(source);
      try {
        expect(version.featureStats, name).toBeUndefined();
      } finally {
        await version.model.dispose();
      }
    }
    const app = await startApp({ MODEL_REPOSITORY: repository });
    for (const [model, instances] of [
      ['plain', PODS],
      ['bare', PODS],
      [KEPLER, [[50000, 12]]],
    ] as const) {
      await request(app.server).post('/predict').send({ model, instances }).expect(200);
    }
  });

  it.each([
    ['an entry that is not an object', { cpu_cycles: 3 }, 'feature_stats.cpu_cycles'],
    ['a missing field', { cpu_cycles: { ...stats(), mean: undefined } }, 'feature_stats.cpu_cycles.mean'],
    ['a field that is not a number', { cpu_cycles: stats({ max: '100' }) }, 'feature_stats.cpu_cycles.max'],
    ['min above max', { cpu_cycles: stats({ min: 101 }) }, 'feature_stats.cpu_cycles.min'],
    ['a negative std', { cpu_cycles: stats({ std: -1 }) }, 'feature_stats.cpu_cycles.std'],
    ['8 deciles', { cpu_cycles: stats({ deciles: [1, 2, 3, 4, 5, 6, 7, 8] }) }, 'feature_stats.cpu_cycles.deciles'],
    [
      '10 deciles',
      { cpu_cycles: stats({ deciles: [1, 2, 3, 4, 5, 6, 7, 8, 9, 9] }) },
      'feature_stats.cpu_cycles.deciles',
    ],
    [
      'a decile that is not a number',
      { cpu_cycles: stats({ deciles: [1, 2, 3, null, 5, 6, 7, 8, 9] }) },
      'feature_stats.cpu_cycles.deciles.3',
    ],
    [
      'decreasing deciles',
      { cpu_cycles: stats({ deciles: [1, 2, 3, 4, 3, 6, 7, 8, 9] }) },
      'feature_stats.cpu_cycles.deciles.4',
    ],
    ['a decile below min', { cpu_cycles: stats({ min: 2 }) }, 'feature_stats.cpu_cycles.deciles.0'],
    ['a decile above max', { cpu_cycles: stats({ max: 89 }) }, 'feature_stats.cpu_cycles.deciles.8'],
    ['a list instead of an object', [stats()], 'feature_stats'],
    [
      '8 shares at the deciles',
      { cpu_cycles: stats({ cdf_at_deciles: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8] }) },
      'feature_stats.cpu_cycles.cdf_at_deciles',
    ],
    [
      'a share above 1',
      { cpu_cycles: stats({ cdf_at_deciles: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.1] }) },
      'feature_stats.cpu_cycles.cdf_at_deciles.8',
    ],
    [
      'a negative share',
      { cpu_cycles: stats({ cdf_at_deciles: [-0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9] }) },
      'feature_stats.cpu_cycles.cdf_at_deciles.0',
    ],
    [
      'decreasing shares',
      { cpu_cycles: stats({ cdf_at_deciles: [0.1, 0.2, 0.3, 0.4, 0.35, 0.6, 0.7, 0.8, 0.9] }) },
      'feature_stats.cpu_cycles.cdf_at_deciles.4',
    ],
    [
      'different shares at equal deciles',
      {
        cpu_cycles: stats({
          deciles: [0, 0, 5, 10, 20, 40, 60, 80, 90],
          cdf_at_deciles: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
        }),
      },
      'feature_stats.cpu_cycles.cdf_at_deciles.1',
    ],
    [
      'a share below 1 at a decile equal to max',
      {
        cpu_cycles: stats({
          deciles: [1, 2, 5, 10, 20, 40, 60, 80, 100],
          cdf_at_deciles: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
        }),
      },
      'feature_stats.cpu_cycles.cdf_at_deciles.8',
    ],
  ])('refuses %s as invalid_metadata, naming the field', async (_, featureStats, field) => {
    await expect(withStats(featureStats)).rejects.toMatchObject({
      reason: 'invalid_metadata',
      message: expect.stringMatching(
        new RegExp(`^metadata\\.json is invalid: .*${field.replaceAll('.', '\\.')}(:|\\.)`),
      ),
    });
  });

  it('refuses statistics of a feature the model does not take, naming it', async () => {
    await expect(withStats({ cpu_cycles: stats(), cpu_cycle: stats() })).rejects.toMatchObject({
      reason: 'invalid_metadata',
      message: expect.stringContaining(
        'feature_stats names a feature the model does not take: cpu_cycle (its features are',
      ),
    });
  });

  it('checks the keys against the features the model is named by when metadata.json lists none', async () => {
    const load = (featureStats: unknown) =>
      loadOnly({ 'm/1': { model: LINEAR }, 'm/1/metadata.json': JSON.stringify({ feature_stats: featureStats }) });
    const version = await load({ f7: stats() });
    await version.model.dispose();
    expect(version.featureStats).toEqual({ f7: stats() });
    await expect(load({ f8: stats() })).rejects.toMatchObject({
      reason: 'invalid_metadata',
      message: expect.stringContaining('f8'),
    });
  });
});
