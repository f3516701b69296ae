import { cp, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { tfjsBackend, tfjsRuntime } from '../../src/backends/tfjs.js';
import { MLP, makeRepository, PODS, SHIPPED_MODELS } from '../helpers.js';

const SHIPPED_MLP = path.join(SHIPPED_MODELS, MLP, '1');
const pods = { data: Float32Array.from(PODS.flat()), rows: PODS.length, cols: 8 };

/** The MLP's forward pass in plain JavaScript, from the weights in its shard. */
async function referenceForwardPass(dir: string): Promise<(row: number[]) => number> {
  const json = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8'));
  const specs = json.weightsManifest[0].weights;
  const shard = await readFile(path.join(dir, json.weightsManifest[0].paths[0]));
  const tensors = tf.io.decodeWeights(shard.buffer.slice(shard.byteOffset, shard.byteOffset + shard.byteLength), specs);
  const layers = ['hidden_1', 'hidden_2', 'power'].map((name) => ({
    kernel: tensors[`${name}/kernel`]?.arraySync() as number[][],
    bias: tensors[`${name}/bias`]?.arraySync() as number[],
  }));
  const dense = (x: number[], { kernel, bias }: (typeof layers)[number]) =>
    bias.map((b, j) => x.reduce((sum, v, i) => sum + v * (kernel[i]?.[j] ?? 0), b));
  const relu = (x: number[]) => x.map((v) => Math.max(0, v));
  const softplus = (v: number) => Math.log1p(Math.exp(v));
  return (row) => {
    const [first, second, last] = layers;
    if (!first || !second || !last) throw new Error('expected three layers');
    return softplus(dense(relu(dense(relu(dense(row, first)), second)), last)[0] ?? Number.NaN);
  };
}

describe('tfjs backend (TF.js layers format)', () => {
  it('runs on WebAssembly (or tfjs-node when installed), not the slow JavaScript fallback', async () => {
    expect(['tensorflow', 'wasm']).toContain(await tfjsRuntime());
  });

  it('claims folders holding model.json', () => {
    expect(tfjsBackend.claims(['model.json', 'group1-shard1of1.bin'])).toBe(true);
    expect(tfjsBackend.claims(['model.onnx'])).toBe(false);
  });

  it('predicts what the network computes for every row, with the width read from the model', async () => {
    const reference = await referenceForwardPass(SHIPPED_MLP);
    const model = await tfjsBackend.load(SHIPPED_MLP, []);
    try {
      expect(model.inputWidth).toBe(8);
      const output = await model.predict(pods);
      expect(output).toMatchObject({ rows: 3, cols: 1 });
      expect(Array.from(output.data)).toEqual(PODS.map((row) => expect.closeTo(reference(row), 3)));
    } finally {
      await model.dispose();
    }
  });

  it('predicts a large batch in one call with the same values as row by row', async () => {
    const model = await tfjsBackend.load(SHIPPED_MLP, []);
    try {
      const rows = Array.from({ length: 100 }, (_, i) => PODS[i % PODS.length] as number[]);
      const batch = await model.predict({ data: Float32Array.from(rows.flat()), rows: 100, cols: 8 });
      const single = await model.predict({ data: Float32Array.from(PODS[1] as number[]), rows: 1, cols: 8 });
      expect(batch.rows).toBe(100);
      expect(batch.data[1]).toBeCloseTo(single.data[0] ?? Number.NaN, 5);
    } finally {
      await model.dispose();
    }
  });

  it('loads model.json as tensorflowjs_converter writes it from Keras (topology under model_config)', async () => {
    const root = await makeRepository({});
    await cp(SHIPPED_MLP, root, { recursive: true });
    const json = JSON.parse(await readFile(path.join(root, 'model.json'), 'utf8'));
    json.modelTopology = { keras_version: '2.15.0', backend: 'tensorflow', model_config: json.modelTopology };
    json.convertedBy = 'TensorFlow.js Converter v4.22.0';
    await writeFile(path.join(root, 'model.json'), JSON.stringify(json));
    const reference = await referenceForwardPass(SHIPPED_MLP);
    const model = await tfjsBackend.load(root, []);
    try {
      expect((await model.predict(pods)).data[0]).toBeCloseTo(reference(PODS[0] as number[]), 3);
    } finally {
      await model.dispose();
    }
  });

  it('refuses weight shards outside the model folder', async () => {
    const root = await makeRepository({ 'secret.bin': 'x' });
    await cp(SHIPPED_MLP, path.join(root, 'model'), { recursive: true });
    const json = JSON.parse(await readFile(path.join(root, 'model', 'model.json'), 'utf8'));
    json.weightsManifest[0].paths = ['../secret.bin'];
    await writeFile(path.join(root, 'model', 'model.json'), JSON.stringify(json));
    await expect(tfjsBackend.load(path.join(root, 'model'), [])).rejects.toThrow('outside the model folder');
  });

  it('refuses graph models with a message naming the format', async () => {
    const root = await makeRepository({ 'model.json': JSON.stringify({ format: 'graph-model', weightsManifest: [] }) });
    await expect(tfjsBackend.load(root, [])).rejects.toThrow('layers format');
  });
});
