import path from 'node:path';
import { strFromU8, unzipSync } from 'fflate';
import { describe, expect, it } from 'vitest';
import { loadVersion, type ModelVersion } from '../../src/registry/loader.js';
import { scanRepository } from '../../src/registry/repository.js';
import { makeRepository, type RepositoryEntry } from '../helpers.js';
import {
  closeTo,
  fixtureWeights,
  KEPLER_MODELS,
  KEPLER_PODS,
  PICKLE_ONLY,
  referenceWatts,
} from '../kepler-reference.js';

async function loadOnly(entries: Record<string, RepositoryEntry>): Promise<ModelVersion> {
  const {
    versions: [source],
  } = await scanRepository(await makeRepository(entries), 'model');
  if (source === undefined) throw new Error('no model in the repository');
  return loadVersion(source);
}

async function predictPods(version: ModelVersion, pods = KEPLER_PODS, system?: Map<string, string>) {
  const data = Float64Array.from(pods.flatMap((pod) => version.features.map((f) => pod[f] ?? 0)));
  const output = await version.model.predict({ data, rows: pods.length, cols: version.features.length }, { system });
  return pods.map((_, r) =>
    Object.fromEntries(version.outputs.map((name, c) => [name, output.data[r * output.cols + c] as number])),
  );
}

function expectClose(actual: Array<Record<string, number>>, expected: Array<Record<string, number>>) {
  expect(actual.map((row) => Object.keys(row))).toEqual(expected.map((row) => Object.keys(row)));
  actual.forEach((row, r) => {
    for (const [component, watts] of Object.entries(row)) {
      const want = expected[r]?.[component] as number;
      expect(closeTo(watts, want), `row ${r} ${component}: ${watts} vs ${want}`).toBe(true);
    }
  });
}

describe('kepler backend on real kepler-model-db models', () => {
  it.each(KEPLER_MODELS)('$path gives the watts of its formula for every component', async (fixture) => {
    const version = await loadOnly({ 'm/1': { kepler: fixture.path } });
    const weights = fixtureWeights(fixture.path);
    expect(version.backend).toBe('kepler');
    expect(version.outputs).toEqual(Object.keys(weights));
    expect(version.model.kepler).toMatchObject({ modelName: path.basename(fixture.path), outputType: 'AbsPower' });
    const expected = KEPLER_PODS.map((pod) => referenceWatts(weights, fixture.kind, fixture.group, pod));
    expectClose(await predictPods(version), expected);
  });

  it('knows the energy source from the components: platform is acpi, the rest rapl-sysfs', async () => {
    const acpi = await loadOnly({ 'm/1': { kepler: 'specpower-0.7.11/acpi/AbsPower/BPFOnly/SGDRegressorTrainer_1' } });
    const rapl = await loadOnly({ 'm/1': { kepler: 'ec2-0.7.11/rapl-sysfs/AbsPower/BPFOnly/SGDRegressorTrainer_0' } });
    expect(acpi.model.kepler?.energySource).toBe('acpi');
    expect(rapl.model.kepler?.energySource).toBe('rapl-sysfs');
    expect(rapl.model.kepler?.attributes.mae).toBe(60.78);
  });

  it('refuses an archive with no weights file, naming the trainer and suggesting ONNX', async () => {
    await expect(loadOnly({ 'm/1': { kepler: PICKLE_ONLY } })).rejects.toThrow(
      /GradientBoostingRegressorTrainer has no weights file.*ONNX/,
    );
  });

  it('loads the unpacked layout (metadata.json + weight.json), as the archive it serves unpacks', async () => {
    const fixture = KEPLER_MODELS[3];
    const zipped = await loadOnly({ 'm/1': { kepler: fixture.path } });
    const archive = await zipped.model.kepler?.archive();
    if (archive === undefined) throw new Error('no archive');
    const files = unzipSync(archive);
    expect(Object.keys(files)).toEqual(expect.arrayContaining(['metadata.json', 'weight.json']));
    expect(JSON.parse(strFromU8(files['weight.json'] as Uint8Array))).toEqual(fixtureWeights(fixture.path));
    const unpacked: Record<string, RepositoryEntry> = {};
    for (const [name, bytes] of Object.entries(files)) unpacked[`m/1/${name}`] = bytes;
    const version = await loadOnly(unpacked);
    const weights = fixtureWeights(fixture.path);
    expectClose(
      await predictPods(version),
      KEPLER_PODS.map((pod) => referenceWatts(weights, fixture.kind, fixture.group, pod)),
    );
  });

  it.each([
    ['Basic', ['cache_miss', 'cpu_cycles', 'cpu_instructions', 'bpf_cpu_time_ms', 'bpf_page_cache_hit']],
    ['CounterOnly', ['cache_miss', 'cpu_cycles', 'cpu_instructions']],
    [
      'CounterIRQCombined',
      ['cache_miss', 'cpu_cycles', 'cpu_instructions', 'bpf_block_irq', 'bpf_net_rx_irq', 'bpf_net_tx_irq'],
    ],
  ])('fits %s curves on its main feature, and dram on its own', async (group, features) => {
    const scales = Object.fromEntries(features.map((f, i) => [f, { scale: 10 ** (i + 3) }]));
    const component = (curve: number[]) => ({ All_Weights: { Numerical_Variables: scales, CurveFit_Weights: curve } });
    const weights = { package: component([40, 0.8, 60]), dram: component([5, 0.3, 9]) };
    const metadata = { model_name: 'LogarithmicRegressionTrainer_5', features, output_type: 'AbsPower', mae: 1 };
    const version = await loadOnly({
      'm/1/metadata.json': JSON.stringify(metadata),
      'm/1/weight.json': JSON.stringify(weights),
    });
    expectClose(
      await predictPods(version),
      KEPLER_PODS.map((pod) => referenceWatts(weights, 'logarithmic', group, pod)),
    );
  });

  it('takes the archive’s features and components over a metadata.json beside it, which may not contradict them', async () => {
    const fixture = KEPLER_MODELS[1];
    const about = { description: 'EC2 node model' };
    const described = await loadOnly({ 'm/1': { kepler: fixture.path }, 'm/1/metadata.json': JSON.stringify(about) });
    expect(described.about.description).toBe('EC2 node model');
    expect(described.outputs).toEqual(['package', 'core', 'uncore', 'dram']);
    const reversed = [...described.features].reverse();
    await expect(
      loadOnly({ 'm/1': { kepler: fixture.path }, 'm/1/metadata.json': JSON.stringify({ features: reversed }) }),
    ).rejects.toThrow('metadata.json lists features');
    await expect(
      loadOnly({
        'm/1': { kepler: fixture.path },
        'm/1/metadata.json': JSON.stringify({ outputs: ['a', 'b', 'c', 'd'] }),
      }),
    ).rejects.toThrow('metadata.json lists outputs');
  });

  it('adds categorical weights for the node’s system features, and evaluates logistic curves', async () => {
    const weights = {
      platform: {
        All_Weights: {
          Categorical_Variables: { cpu_architecture: { Sapphire: { weight: 7.5 }, Ice: { weight: 2 } } },
          Numerical_Variables: { bpf_cpu_time_ms: { scale: 1000 }, bpf_page_cache_hit: { scale: 10 } },
          CurveFit_Weights: [120, 0.4, 3.5, 20],
        },
      },
    };
    const metadata = {
      model_name: 'LogisticRegressionTrainer_4',
      features: ['bpf_cpu_time_ms', 'bpf_page_cache_hit'],
      output_type: 'AbsPower',
      mae: 3,
    };
    const version = await loadOnly({
      'm/1/metadata.json': JSON.stringify(metadata),
      'm/1/weight.json': JSON.stringify(weights),
    });
    const system = { cpu_architecture: 'Sapphire' };
    const got = await predictPods(version, KEPLER_PODS, new Map(Object.entries(system)));
    expectClose(
      got,
      KEPLER_PODS.map((pod) => referenceWatts(weights, 'logistic', 'BPFOnly', pod, system)),
    );
    const plain = await predictPods(version);
    expect((got[0]?.platform as number) - (plain[0]?.platform as number)).toBeCloseTo(7.5, 9);
  });

  it('evaluates any trainer’s linear weights file, and refuses curves of trainers it does not know', async () => {
    const linear = {
      platform: {
        All_Weights: {
          Bias_Weight: 50,
          Numerical_Variables: {
            bpf_cpu_time_ms: { scale: 1000, weight: 3 },
            bpf_page_cache_hit: { scale: 10, weight: -1 },
          },
        },
      },
    };
    const metadata = (name: string) =>
      JSON.stringify({
        model_name: name,
        features: ['bpf_cpu_time_ms', 'bpf_page_cache_hit'],
        output_type: 'AbsPower',
      });
    const version = await loadOnly({
      'm/1/metadata.json': metadata('LinearRegressionTrainer_3'),
      'm/1/weight.json': JSON.stringify(linear),
    });
    expectClose(
      await predictPods(version),
      KEPLER_PODS.map((pod) => referenceWatts(linear, 'linear', 'BPFOnly', pod)),
    );
    const curve = { platform: { All_Weights: { ...linear.platform.All_Weights, CurveFit_Weights: [1, 2, 3] } } };
    await expect(
      loadOnly({
        'm/1/metadata.json': metadata('PolynomialRegressionTrainer_1'),
        'm/1/weight.json': JSON.stringify(curve),
      }),
    ).rejects.toThrow('PolynomialRegressionTrainer has CurveFit_Weights');
  });

  it('takes main_feature from metadata over the feature-group table', async () => {
    const weights = {
      platform: {
        All_Weights: {
          Numerical_Variables: { bpf_cpu_time_ms: { scale: 1000 }, bpf_page_cache_hit: { scale: 10 } },
          CurveFit_Weights: [2, 0.5, 1],
        },
      },
    };
    const metadata = {
      model_name: 'ExponentialRegressionTrainer_9',
      features: ['bpf_cpu_time_ms', 'bpf_page_cache_hit'],
      output_type: 'AbsPower',
      main_feature: 'bpf_page_cache_hit',
    };
    const version = await loadOnly({
      'm/1/metadata.json': JSON.stringify(metadata),
      'm/1/weight.json': JSON.stringify(weights),
    });
    const [busy] = await predictPods(version);
    expect(busy?.platform).toBeCloseTo(2 * Math.exp(0.5 * (812 / 10)) + 1, 6);
  });
});
