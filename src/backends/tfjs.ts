import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { asFloat32 } from '../matrix.js';
import { isInside } from '../paths.js';
import { type Backend, type LoadedModel, outputMatrix, readJsonFile } from './backend.js';

const MODEL_FILE = 'model.json';

/** Keras models converted to the TF.js layers format: model.json plus binary weight shards. */
export const tfjsBackend: Backend = {
  name: 'tfjs',
  claims: (files) => files.includes(MODEL_FILE),
  async load(dir) {
    const runtime = await tfjsRuntime();
    const model = await tf.loadLayersModel(fileLoader(dir));
    try {
      return layersModel(model, `tfjs ${runtime}`);
    } catch (error) {
      model.dispose();
      throw error;
    }
  },
};

function layersModel(model: tf.LayersModel, runtime: string): LoadedModel {
  if (model.inputs.length !== 1 || model.outputs.length !== 1) {
    throw new Error('the model must have exactly one input and one output');
  }
  const inputShape = model.inputs[0]?.shape ?? [];
  if (inputShape.length !== 2) {
    throw new Error(`the model input has shape [${inputShape.join(', ')}]; expected [rows, features]`);
  }
  const width = inputShape[1];
  return {
    runtime,
    inputWidth: typeof width === 'number' ? width : undefined,
    async predict(matrix) {
      const output = tf.tidy(() => {
        const input = tf.tensor2d(asFloat32(matrix.data), [matrix.rows, matrix.cols], 'float32');
        // The default batch size (32) splits a large request into many small calls.
        return model.predict(input, { batchSize: matrix.rows }) as tf.Tensor;
      });
      try {
        return outputMatrix((await output.data()) as Float32Array, matrix.rows);
      } finally {
        output.dispose();
      }
    },
    async dispose() {
      model.dispose();
    },
  };
}

/**
 * Reads model.json and its weight shards from a folder. tfjs's own `file://` loader needs
 * tfjs-node, which is optional; this works with pure tfjs. Shard paths must stay in the folder.
 */
export function fileLoader(dir: string): tf.io.IOHandler {
  return {
    async load() {
      const modelJson = (await readJsonFile(path.join(dir, MODEL_FILE))) as tf.io.ModelJSON;
      if (modelJson.format !== undefined && modelJson.format !== 'layers-model') {
        throw new Error(`model.json is a ${modelJson.format}; wattserve loads the layers format (Keras models)`);
      }
      if (!Array.isArray(modelJson.weightsManifest)) throw new Error('model.json has no weightsManifest');
      return tf.io.getModelArtifactsForJSON(modelJson, async (manifest) => {
        const shards = await Promise.all(
          manifest.flatMap((group) => group.paths).map((shard) => readFile(insideFolder(dir, shard))),
        );
        const weightData = tf.io.concatenateArrayBuffers(
          shards.map((b) => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer),
        );
        return [manifest.flatMap((group) => group.weights), weightData];
      });
    },
  };
}

function insideFolder(dir: string, relative: string): string {
  const resolved = path.resolve(dir, relative);
  if (!isInside(path.resolve(dir), resolved)) {
    throw new Error(`weight shard "${relative}" lies outside the model folder`);
  }
  return resolved;
}

let runtime: Promise<string> | undefined;

/**
 * Chooses tfjs's compute backend once: tfjs-node when it is installed (an optional dependency
 * that needs libtensorflow), else WebAssembly, else plain JavaScript.
 */
export function tfjsRuntime(): Promise<string> {
  runtime ??= chooseRuntime();
  return runtime;
}

async function chooseRuntime(): Promise<string> {
  const candidates: Array<[string, () => Promise<unknown>]> = [
    ['tensorflow', () => import('@tensorflow/tfjs-node' as string)],
    ['wasm', () => import('@tensorflow/tfjs-backend-wasm')],
  ];
  for (const [name, register] of candidates) {
    try {
      await register();
      if (await tf.setBackend(name)) return name;
    } catch {
      // not installed or not loadable here: try the next one
    }
  }
  await tf.setBackend('cpu');
  return 'cpu';
}
