import { describe, expect, it } from 'vitest';
import {
  checkFeatureNames,
  columnarResponse,
  modelMetadata,
  modelStatus,
  parsePredictRequest,
  predictResponse,
  splitVerb,
} from '../../src/codecs/tf-serving.js';
import { apiErrorOf } from '../helpers.js';

const limits = { maxRows: 3, maxColumns: 3 };
const matrix = (data: number[], rows: number, cols: number) => ({ data: Float64Array.from(data), rows, cols });

describe('parsePredictRequest', () => {
  it.each<[string, unknown, string[] | undefined]>([
    [
      'rows',
      {
        instances: [
          [1, 2],
          [3, 4],
        ],
      },
      undefined,
    ],
    ['{"input": row} instances', { instances: [{ input: [1, 2] }, { input: [3, 4] }] }, undefined],
    [
      'per-feature instances, keys in any order',
      {
        instances: [
          { a: 1, b: 2 },
          { b: 4, a: 3 },
        ],
      },
      ['a', 'b'],
    ],
    [
      'columnar rows',
      {
        inputs: [
          [1, 2],
          [3, 4],
        ],
      },
      undefined,
    ],
    [
      'columnar {"input": rows}',
      {
        inputs: {
          input: [
            [1, 2],
            [3, 4],
          ],
        },
      },
      undefined,
    ],
    ['columnar per feature', { inputs: { a: [1, 3], b: [2, 4] } }, ['a', 'b']],
  ])('reads %s into the same row-major matrix', (_layout, body, features) => {
    const read = parsePredictRequest(body, limits);
    expect(read.matrix).toEqual(matrix([1, 2, 3, 4], 2, 2));
    expect(read.features).toEqual(features);
    expect(read.format).toBe('instances' in (body as object) ? 'row' : 'columnar');
  });

  it.each<[unknown, string, string]>([
    [{ instances: [[1, 2, 3, 4]] }, 'too_many_columns', 'instances[0]'],
    [{ instances: [[1], [2], [3], [4]] }, 'too_many_rows', 'instances'],
    [{ inputs: { a: [1, 2, 3, 4] } }, 'too_many_rows', 'inputs.a'],
    [{ inputs: { a: [1], b: [1], c: [1], d: [1] } }, 'too_many_columns', 'inputs'],
    [
      {
        instances: [
          [1, 2],
          [1, Number.NaN],
        ],
      },
      'non_finite_value',
      'instances[1][1]',
    ],
    [
      {
        instances: [
          [1, 2],
          [1, 2, 3],
        ],
      },
      'ragged_rows',
      'instances[1]',
    ],
    [{ instances: [{ input: [1] }, { input: [1, 'x'] }] }, 'ragged_rows', 'instances[1].input'],
    [{ inputs: { input: [[1], [true]] } }, 'not_a_number', 'inputs.input[1][0]'],
  ])('refuses %j: %s at %s', (body, code, field) => {
    expect(apiErrorOf(() => parsePredictRequest(body, limits))).toMatchObject({ code, field });
  });

  it('checks every row before allocating: a huge first row with short rows after is refused, not allocated', () => {
    const rows = [Array(1000).fill(1), ...Array(99_999).fill([1])];
    const error = apiErrorOf(() => parsePredictRequest({ instances: rows }, { maxRows: 100_000, maxColumns: 1000 }));
    expect(error).toMatchObject({ code: 'ragged_rows', field: 'instances[1]' });
  });

  it('handles many per-feature keys in linear time', () => {
    const keys = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`f${i}`, i]));
    const instances = Array(100).fill(keys);
    const started = performance.now();
    const read = parsePredictRequest({ instances }, { maxRows: 1000, maxColumns: 1000 });
    expect(read.matrix.cols).toBe(1000);
    expect(performance.now() - started).toBeLessThan(2000);
  });
});

describe('checkFeatureNames', () => {
  it('refuses unknown (truncated) and missing names', () => {
    const long = 'z'.repeat(200);
    expect(apiErrorOf(() => checkFeatureNames(['a', long], ['a', 'b'], 'inputs'))).toMatchObject({
      code: 'unknown_feature',
      field: 'inputs',
    });
    expect(() => checkFeatureNames(['a', long], ['a', 'b'], 'inputs')).toThrow(`"${'z'.repeat(40)}…"`);
    expect(apiErrorOf(() => checkFeatureNames(['a'], ['a', 'b'], 'instances'))).toMatchObject({
      code: 'missing_feature',
    });
    expect(() => checkFeatureNames(['b', 'a'], ['a', 'b'], 'inputs')).not.toThrow();
  });
});

describe('answers', () => {
  it('gives one number per row for one output, else objects or lists by output name', () => {
    expect(predictResponse(['power'], matrix([1, 2], 2, 1))).toEqual({ predictions: [1, 2] });
    expect(predictResponse(['a', 'b'], matrix([1, 2, 3, 4], 2, 2))).toEqual({
      predictions: [
        { a: 1, b: 2 },
        { a: 3, b: 4 },
      ],
    });
    expect(columnarResponse(['power'], matrix([1, 2], 2, 1))).toEqual({ outputs: [1, 2] });
    expect(columnarResponse(['a', 'b'], matrix([1, 2, 3, 4], 2, 2))).toEqual({ outputs: { a: [1, 3], b: [2, 4] } });
  });

  it('maps version states to TF Serving’s, newest first', () => {
    const states = ['loading', 'available', 'unloading', 'unloaded', 'failed'] as const;
    const answer = modelStatus(states.map((state, i) => ({ version: i + 1, state, reason: 'boom' })));
    expect(answer.model_version_status.map((v) => [v.version, v.state, v.status.error_code])).toEqual([
      ['5', 'END', 'UNKNOWN'],
      ['4', 'END', 'OK'],
      ['3', 'UNLOADING', 'OK'],
      ['2', 'AVAILABLE', 'OK'],
      ['1', 'LOADING', 'OK'],
    ]);
    expect(answer.model_version_status[0]?.status.error_message).toBe('boom');
  });

  it('describes the signature and puts the feature names beside it', () => {
    const meta = modelMetadata({ name: 'm', version: 3, backend: 'onnx', features: ['a', 'b'], outputs: ['y'] });
    expect(meta.model_spec).toEqual({ name: 'm', signature_name: '', version: '3' });
    expect(meta.metadata.signature_def.signature_def.serving_default.inputs.input.tensor_shape.dim).toEqual([
      { size: '-1', name: '' },
      { size: '2', name: '' },
    ]);
    expect(meta.metadata.feature_names).toEqual({ input: ['a', 'b'] });
  });

  it('splits the :predict verb off a URL segment, 404 for anything else', () => {
    expect(splitVerb('m:predict', 'name')).toBe('m');
    expect(splitVerb('a:b:predict', 'name')).toBe('a:b');
    expect(apiErrorOf(() => splitVerb('m:classify', 'name'))).toMatchObject({ code: 'not_found', status: 404 });
    expect(apiErrorOf(() => splitVerb('m', 'name'))).toMatchObject({ code: 'not_found' });
  });
});
