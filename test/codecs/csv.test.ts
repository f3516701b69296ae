import { describe, expect, it } from 'vitest';
import { formatCsv, parseCsv } from '../../src/codecs/csv.js';
import { apiErrorOf } from '../helpers.js';

const parse = (text: string, header = false, maxRows = 100) =>
  parseCsv(text, { header, maxRows, maxColumns: 1000, maxCsvLineBytes: 65536 });
const values = (text: string, header = false) => Array.from(parse(text, header).matrix.data);

describe('CSV bodies', () => {
  it('reads one row per line and one column per value', () => {
    const { matrix, columns } = parse('1,2,3\n4,5,6\n');
    expect(matrix).toMatchObject({ rows: 2, cols: 3 });
    expect(Array.from(matrix.data)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(columns).toBeUndefined();
  });

  it('accepts CRLF, a byte-order mark, blank lines, spaces, quoted fields and exponents', () => {
    expect(values('\uFEFF1, 2\r\n\r\n"3",4e2\r\n')).toEqual([1, 2, 3, 400]);
    expect(values('-1.5,+.5\n')).toEqual([-1.5, 0.5]);
  });

  it('breaks lines at LF and CRLF only, whether or not a field is quoted', () => {
    for (const text of ['1,2\r\n3,4\n5,6\n', '"1",2\r\n3,4\n5,6\n']) {
      expect(values(text)).toEqual([1, 2, 3, 4, 5, 6]);
    }
    for (const text of ['1,2\r3,4\r', '"1",2\r3,4\r']) {
      expect(apiErrorOf(() => parse(text)).code).toBe('not_a_number');
    }
  });

  it('reads the header line as column names when asked', () => {
    const { matrix, columns } = parse('b,a\n1,2\n', true);
    expect(columns).toEqual(['b', 'a']);
    expect(matrix).toMatchObject({ rows: 1, cols: 2 });
  });

  it.each([
    ['an empty body', '', 'empty_matrix', 'body'],
    ['only blank lines', '\n\n', 'empty_matrix', 'body'],
    ['ragged rows', '1,2\n3\n', 'ragged_rows', 'line 2'],
    ['a word', '1,abc\n', 'not_a_number', 'line 1, column 2'],
    ['an empty field', '1,,3\n', 'not_a_number', 'line 1, column 2'],
    ['hexadecimal', '0x10\n', 'not_a_number', 'line 1, column 1'],
    ['NaN', '1\nNaN\n', 'non_finite_value', 'line 2, column 1'],
    ['infinity', '-inf\n', 'non_finite_value', 'line 1, column 1'],
    ['an overflowing number', '1e999\n', 'non_finite_value', 'line 1, column 1'],
    ['a number beyond float32', '1,3.5e38\n', 'non_finite_value', 'line 1, column 2'],
    ['an unclosed quote', '1,"2\n3,4\n', 'invalid_csv', undefined],
  ])('refuses %s with a 400', (_, text, code, field) => {
    const error = apiErrorOf(() => parse(text));
    expect(error).toMatchObject({ code, status: 400 });
    if (field !== undefined) expect(error.field).toBe(field);
  });

  it('counts the line of a bad value past blank lines, quoted or not', () => {
    expect(apiErrorOf(() => parse('1\n\n\nx\n')).field).toBe('line 4, column 1');
    expect(apiErrorOf(() => parse('"1"\n\n\nx\n')).field).toBe('line 4, column 1');
  });

  it('reads quoted and unquoted bodies alike', () => {
    expect(values('"1", "2"\r\n3 ,4\r\n')).toEqual(values('1, 2\r\n3 ,4\r\n'));
    expect(parse('"b", a\n1,2\n', true).columns).toEqual(parse('b, a\n1,2\n', true).columns);
  });

  it('stops at the row limit with a 413', () => {
    expect(apiErrorOf(() => parse('1\n2\n3\n', false, 2))).toMatchObject({ code: 'too_many_rows', status: 413 });
    expect(parse('h\n1\n2\n', true, 2).matrix.rows).toBe(2);
  });

  it('writes one line per row with one column per output', () => {
    expect(formatCsv({ data: Float32Array.from([1.5, 2, 3, 4]), rows: 2, cols: 2 })).toBe('1.5,2\n3,4\n');
  });
});
