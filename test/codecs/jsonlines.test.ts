import { describe, expect, it } from 'vitest';
import { formatJsonLines, parseJsonLines } from '../../src/codecs/jsonlines.js';

const limits = (maxRows: number) => ({ maxRows, maxColumns: 10, maxJsonDepth: 32 });

import { apiErrorOf } from '../helpers.js';

describe('JSON Lines bodies', () => {
  it('reads one array per line, skipping blank lines and CRLF endings', () => {
    const matrix = parseJsonLines('[1,2]\r\n\n[3,4]\n', limits(10));
    expect(matrix).toMatchObject({ rows: 2, cols: 2 });
    expect(Array.from(matrix.data)).toEqual([1, 2, 3, 4]);
  });

  it.each([
    ['broken JSON', '[1,2]\n[3,\n', 'invalid_jsonlines', 'line 2'],
    ['an object line', '[1]\n\n{"a":1}\n', 'invalid_body', 'line 3'],
    ['a string value', '["1"]\n', 'not_a_number', 'line 1, column 1'],
    ['ragged lines', '[1,2]\n[1]\n', 'ragged_rows', 'line 2'],
    ['nothing', '\n', 'empty_matrix', 'body'],
  ])('refuses %s naming the line', (_, text, code, field) => {
    expect(apiErrorOf(() => parseJsonLines(text, limits(10)))).toMatchObject({ code, field, status: 400 });
  });

  it('stops at the row limit with a 413', () => {
    expect(apiErrorOf(() => parseJsonLines('[1]\n[2]\n[3]\n', limits(2)))).toMatchObject({
      code: 'too_many_rows',
      status: 413,
    });
  });

  it('writes one array per row', () => {
    expect(formatJsonLines({ data: Float32Array.from([1, 2]), rows: 2, cols: 1 })).toBe('[1]\n[2]\n');
  });
});
