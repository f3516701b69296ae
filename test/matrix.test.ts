import { describe, expect, it } from 'vitest';
import { instancesField, matrixToRows, rowsToMatrix } from '../src/matrix.js';
import { apiErrorOf } from './helpers.js';

const toMatrix = (rows: unknown, maxRows = 10, maxColumns = 10) =>
  rowsToMatrix(rows, { maxRows, maxColumns }, 'instances', instancesField);

describe('rows of numbers into a matrix', () => {
  it('packs rows in row-major order', () => {
    const matrix = toMatrix([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    expect(matrix).toMatchObject({ rows: 2, cols: 3 });
    expect(Array.from(matrix.data)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it.each([
    ['a non-array', { a: 1 }, { code: 'invalid_body', field: 'instances' }],
    ['no rows', [], { code: 'empty_matrix', field: 'instances' }],
    ['empty rows', [[], []], { code: 'empty_matrix', field: 'instances[0]' }],
    ['a row that is not an array', [[1], 2], { code: 'invalid_body', field: 'instances[1]' }],
    ['ragged rows', [[1, 2], [3]], { code: 'ragged_rows', field: 'instances[1]' }],
    ['a string', [[1, '2']], { code: 'not_a_number', field: 'instances[0][1]' }],
    ['a null', [[null, 2]], { code: 'not_a_number', field: 'instances[0][0]' }],
    ['a nested array', [[[1], 2]], { code: 'not_a_number', field: 'instances[0][0]' }],
    ['Infinity', [[1, Number.POSITIVE_INFINITY]], { code: 'non_finite_value', field: 'instances[0][1]' }],
    ['NaN', [[Number.NaN]], { code: 'non_finite_value', field: 'instances[0][0]' }],
    ['a number beyond float32', [[1, -1e39]], { code: 'non_finite_value', field: 'instances[0][1]' }],
  ])('refuses %s with a 400 naming the place', (_, rows, expected) => {
    expect(apiErrorOf(() => toMatrix(rows))).toEqual({ ...expected, status: 400 });
  });

  it('refuses more rows than the limit with a 413', () => {
    expect(apiErrorOf(() => toMatrix([[1], [2], [3]], 2))).toEqual({
      code: 'too_many_rows',
      field: 'instances',
      status: 413,
    });
  });

  it('gives single-output results as plain numbers and multi-output ones as rows', () => {
    expect(matrixToRows({ data: Float32Array.from([1, 2]), rows: 2, cols: 1 })).toEqual([1, 2]);
    expect(matrixToRows({ data: Float32Array.from([1, 2, 3, 4]), rows: 2, cols: 2 })).toEqual([
      [1, 2],
      [3, 4],
    ]);
  });
});
