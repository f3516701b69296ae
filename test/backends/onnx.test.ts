import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readLinearOnnx } from '../../scripts/onnx-linear.js';
import { onnxBackend } from '../../src/backends/onnx.js';
import type { Matrix } from '../../src/matrix.js';
import { LINEAR, makeRepository, PODS, SHIPPED_MODELS } from '../helpers.js';

const matrixOf = (rows: number[][]): Matrix => ({
  data: Float32Array.from(rows.flat()),
  rows: rows.length,
  cols: rows[0]?.length ?? 0,
});

describe('onnx backend', () => {
  it('claims folders holding model.onnx', () => {
    expect(onnxBackend.claims(['model.onnx', 'metadata.json'])).toBe(true);
    expect(onnxBackend.claims(['model.json'])).toBe(false);
  });

  it('reads the input width from the model and predicts W·x + b for every row', async () => {
    const dir = path.join(SHIPPED_MODELS, LINEAR, '1');
    const { weights, bias } = readLinearOnnx(await readFile(path.join(dir, 'model.onnx')));
    const model = await onnxBackend.load(dir, ['model.onnx']);
    try {
      expect(model.inputWidth).toBe(8);
      const output = await model.predict(matrixOf(PODS));
      expect(output).toMatchObject({ rows: PODS.length, cols: 1 });
      PODS.forEach((row, r) => {
        const expected = row.reduce((sum, value, c) => sum + value * (weights[c]?.[0] ?? 0), bias[0] ?? 0);
        expect(output.data[r]).toBeCloseTo(expected, 3);
      });
    } finally {
      await model.dispose();
    }
  });

  it('refuses a file that is not an ONNX model', async () => {
    const root = await makeRepository({ 'model.onnx': 'not a protobuf' });
    await expect(onnxBackend.load(root, ['model.onnx'])).rejects.toThrow();
  });
});
