import { describe, expect, it } from 'vitest';
import { linearOnnxModel } from '../../scripts/onnx-linear.js';
import { loadVersion } from '../../src/registry/loader.js';
import { scanRepository } from '../../src/registry/repository.js';
import { FEATURES, LINEAR, MLP, makeRepository } from '../helpers.js';

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
