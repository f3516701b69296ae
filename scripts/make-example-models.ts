/**
 * Builds the example models shipped in models/ from synthetic pod data (scripts/synthetic-pods.ts):
 *   pod-power-linear/1  least-squares linear regression, written as an ONNX graph (MatMul + Add)
 *   pod-power-mlp/1     a small Keras-style MLP trained with TF.js layers, saved in the TF.js layers
 *                       format (model.json + weight shard), the format tensorflowjs_converter
 *                       produces from a Keras model
 * Run: npm run models   (writes into ./models, or into the folder given as the first argument)
 * Everything is seeded: a rerun rewrites the same numbers. metadata.json carries the fit on held-out
 * pods and `feature_stats` of the training rows (src/feature-stats.ts), the reference for drift.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import MLR from 'ml-regression-multivariate-linear';
import { featureStatsOfRows } from '../src/feature-stats.js';
import { linearOnnxModel } from './onnx-linear.js';
import {
  columnStats,
  FEATURES,
  EXAMPLE_SEED as SEED,
  samplePods,
  EXAMPLE_TEST_ROWS as TEST_ROWS,
  EXAMPLE_TRAIN_ROWS as TRAIN_ROWS,
} from './synthetic-pods.js';

const OUTPUTS = [{ name: 'power', unit: 'W' }];

const root = path.resolve(process.argv[2] ?? 'models');
const train = samplePods(TRAIN_ROWS, SEED);
const test = samplePods(TEST_ROWS, SEED + 1);
const { mean, std } = columnStats(train.x);
const standardise = (row: readonly number[]) => row.map((value, c) => (value - (mean[c] ?? 0)) / (std[c] ?? 1));

await tf.setBackend('cpu');
await writeLinear();
await writeMlp();

async function writeLinear(): Promise<void> {
  // Fitted on standardised columns (the raw ones span 1 to 1e10), then folded back to raw units.
  const fit = new MLR(
    train.x.map(standardise),
    train.y.map((watts) => [watts]),
  );
  const scaled = fit.weights.slice(0, FEATURES.length).map((w) => w[0] ?? 0);
  const weights = scaled.map((w, c) => w / (std[c] ?? 1));
  const bias =
    (fit.weights[FEATURES.length]?.[0] ?? 0) -
    scaled.reduce((sum, w, c) => sum + (w * (mean[c] ?? 0)) / (std[c] ?? 1), 0);
  const predictRaw = (row: readonly number[]) => row.reduce((sum, value, c) => sum + value * (weights[c] ?? 0), bias);

  const model = linearOnnxModel({
    weights: weights.map((w) => [w]),
    bias: [bias],
    graphName: 'pod_power_linear',
    outputName: 'power',
  });
  const dir = await versionDir('pod-power-linear');
  await writeFile(path.join(dir, 'model.onnx'), model);
  await writeMetadata(dir, 'Linear regression of pod power on Kepler-style counters (ONNX).', predictRaw);
}

async function writeMlp(): Promise<void> {
  const trained = mlp(FEATURES.length, 1);
  trained.compile({ optimizer: tf.train.adam(0.01), loss: 'meanSquaredError' });
  const xs = tf.tensor2d(train.x.map(standardise));
  const ys = tf.tensor2d(train.y, [TRAIN_ROWS, 1]);
  await trained.fit(xs, ys, { epochs: 120, batchSize: 128, shuffle: false, verbose: 0 });
  xs.dispose();
  ys.dispose();

  // Fold the standardisation into the first layer so the served model takes raw counters:
  // W' = W / std (row-wise), b' = b - Σ_i (mean_i / std_i) · W_i.
  const [kernel, bias, ...rest] = trained.getWeights();
  if (kernel === undefined || bias === undefined) throw new Error('the MLP has no first layer');
  const [foldedKernel, foldedBias] = tf.tidy(() => {
    const scale = tf.tensor2d(std, [FEATURES.length, 1]);
    const shift = tf.tensor2d(
      mean.map((m, c) => m / (std[c] ?? 1)),
      [1, FEATURES.length],
    );
    return [kernel.div(scale), bias.sub(shift.matMul(kernel).reshape([-1]))];
  });
  const served = mlp(FEATURES.length, 1);
  served.setWeights([foldedKernel, foldedBias, ...rest]);

  const predictRaw = (row: readonly number[]) =>
    tf.tidy(() => (served.predict(tf.tensor2d([row as number[]])) as tf.Tensor).dataSync()[0] ?? Number.NaN);
  const check = tf.tidy(
    () => (trained.predict(tf.tensor2d([standardise(test.x[0] ?? [])])) as tf.Tensor).dataSync()[0],
  );
  if (Math.abs((check ?? 0) - predictRaw(test.x[0] ?? [])) > 1e-3)
    throw new Error('folding the scaler changed the MLP');

  const dir = await versionDir('pod-power-mlp');
  await served.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const shard = 'group1-shard1of1.bin';
      const modelJson = {
        format: 'layers-model',
        generatedBy: `TensorFlow.js tfjs-layers v${tf.version_layers}`,
        convertedBy: null,
        modelTopology: artifacts.modelTopology,
        weightsManifest: [{ paths: [shard], weights: artifacts.weightSpecs }],
      };
      await writeFile(path.join(dir, 'model.json'), `${JSON.stringify(modelJson, null, 2)}\n`);
      await writeFile(path.join(dir, shard), new Uint8Array(artifacts.weightData as ArrayBuffer));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  await writeMetadata(
    dir,
    'Two-hidden-layer MLP (16-16, ReLU, softplus output) of pod power on Kepler-style counters (TF.js layers).',
    predictRaw,
  );
}

/** Keras Sequential MLP; seeded initialisers make training repeatable. */
function mlp(inputs: number, outputs: number): tf.Sequential {
  const init = (seed: number) => tf.initializers.glorotUniform({ seed });
  return tf.sequential({
    name: 'pod_power_mlp',
    layers: [
      tf.layers.dense({
        inputShape: [inputs],
        units: 16,
        activation: 'relu',
        kernelInitializer: init(1),
        name: 'hidden_1',
      }),
      tf.layers.dense({ units: 16, activation: 'relu', kernelInitializer: init(2), name: 'hidden_2' }),
      tf.layers.dense({ units: outputs, activation: 'softplus', kernelInitializer: init(3), name: 'power' }),
    ],
  });
}

async function versionDir(name: string): Promise<string> {
  const dir = path.join(root, name, '1');
  await mkdir(dir, { recursive: true });
  return dir;
}

/** metadata.json with the fit quality measured on held-out pods. */
async function writeMetadata(dir: string, description: string, predictRaw: (row: readonly number[]) => number) {
  const errors = test.x.map((row, i) => predictRaw(row) - (test.y[i] ?? 0));
  const mae = errors.reduce((sum, e) => sum + Math.abs(e), 0) / errors.length;
  const meanY = test.y.reduce((sum, v) => sum + v, 0) / test.y.length;
  const r2 = 1 - errors.reduce((s, e) => s + e * e, 0) / test.y.reduce((s, v) => s + (v - meanY) ** 2, 0);
  const metadata = {
    description,
    source: `synthetic pods from scripts/synthetic-pods.ts (seed ${SEED}, ${TRAIN_ROWS} training rows); built by scripts/make-example-models.ts`,
    features: FEATURES,
    outputs: OUTPUTS,
    fit: { test_rows: TEST_ROWS, mae_watts: round(mae), r2: round(r2) },
    // The reference input drift is measured against: the rows the model was fitted on.
    feature_stats: featureStatsOfRows(FEATURES, train.x),
  };
  await writeFile(path.join(dir, 'metadata.json'), `${JSON.stringify(metadata, null, 2)}\n`);
  console.log(
    `${path.relative(process.cwd(), dir)}: MAE ${round(mae)} W, R² ${round(r2)} on ${TEST_ROWS} held-out pods`,
  );
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}
