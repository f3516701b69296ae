import { describe, expect, it } from 'vitest';
import { nestingExceeds, parseJsonText } from '../../src/codecs/json.js';
import {
  type DecodeLimits,
  decodePrediction,
  estimateRows,
  type RequestMediaType,
  requestMediaType,
} from '../../src/codecs/prediction.js';
import { apiErrorOf } from '../helpers.js';

const LIMITS: DecodeLimits = { maxRows: 100, maxColumns: 4, maxJsonDepth: 5, maxCsvLineBytes: 40 };
const JSON_BODY = { type: 'application/json', header: false } as const;
const CSV = { type: 'text/csv', header: false } as const;
const CSV_HEADER = { type: 'text/csv', header: true } as const;
const JSON_LINES = { type: 'application/jsonlines', header: false } as const;

const decodeError = (media: { type: RequestMediaType; header: boolean }, text: string) =>
  apiErrorOf(() => decodePrediction(media, text, LIMITS));

describe('prediction bodies, whatever their media type', () => {
  it('decode to the same matrix from JSON, CSV and JSON Lines', () => {
    for (const [media, text] of [
      [JSON_BODY, '{"instances": [[1, 2], [3, 4]]}'],
      [CSV, '1,2\n3,4\n'],
      [JSON_LINES, '[1,2]\n[3,4]\n'],
    ] as const) {
      const { matrix } = decodePrediction(media, text, LIMITS);
      expect([matrix.rows, matrix.cols, ...matrix.data]).toEqual([2, 2, 1, 2, 3, 4]);
    }
  });

  it('take the media type from Content-Type, and refuse others with 415', () => {
    expect(requestMediaType('text/csv; header=Present')).toEqual({ type: 'text/csv', header: true });
    expect(requestMediaType('application/json; charset=utf-8')).toEqual(JSON_BODY);
    expect(apiErrorOf(() => requestMediaType('text/plain'))).toMatchObject({
      code: 'unsupported_media_type',
      status: 415,
    });
  });
});

describe('MAX_COLUMNS', () => {
  it('refuses wider rows with 413 too_many_columns in every media type', () => {
    const wide = [1, 2, 3, 4, 5];
    expect(decodeError(JSON_BODY, JSON.stringify({ instances: [wide] }))).toEqual({
      code: 'too_many_columns',
      field: 'instances[0]',
      status: 413,
    });
    expect(decodeError(CSV, `1,2,3,4\n${wide.join(',')}\n`)).toMatchObject({
      code: 'too_many_columns',
      field: 'line 2',
    });
    expect(decodeError(CSV_HEADER, 'a,b,c,d,e\n1,2,3,4,5\n')).toMatchObject({
      code: 'too_many_columns',
      field: 'line 1',
    });
    expect(decodeError(JSON_LINES, `${JSON.stringify(wide)}\n`)).toMatchObject({
      code: 'too_many_columns',
      field: 'line 1',
    });
  });

  it('takes rows exactly as wide as the limit', () => {
    expect(decodePrediction(CSV, '1,2,3,4\n', LIMITS).matrix.cols).toBe(4);
  });
});

describe('MAX_CSV_LINE_BYTES', () => {
  it('refuses a longer line with 413 csv_line_too_long naming the line, quoted or not', () => {
    const long = `${'1'.repeat(45)}\n`;
    expect(decodeError(CSV, `1\n${long}`)).toEqual({ code: 'csv_line_too_long', field: 'line 2', status: 413 });
    expect(decodeError(CSV, `"1"\n${long}`)).toMatchObject({ code: 'csv_line_too_long', status: 413 });
    // Commas, quotes and spaces count too, as they do without quotes.
    const commas = `${Array(4).fill('"1"').join(',')}${' '.repeat(30)}\n`;
    expect(decodeError(CSV, commas)).toMatchObject({ code: 'csv_line_too_long', field: 'line 1' });
  });

  it('counts a line without its CRLF', () => {
    expect(decodePrediction(CSV, `${'0'.repeat(40)}\r\n`, LIMITS).matrix.rows).toBe(1);
  });
});

describe('MAX_JSON_DEPTH', () => {
  it('refuses deeper nesting with 400 json_too_deep, before parsing', () => {
    expect(apiErrorOf(() => parseJsonText('[[[[[[1]]]]]]', 5))).toEqual({
      code: 'json_too_deep',
      field: 'body',
      status: 400,
    });
    expect(decodeError(JSON_BODY, '{"instances": [[1]], "x": {"a": {"b": {"c": [[1]]}}}}')).toMatchObject({
      code: 'json_too_deep',
    });
    // A million nested arrays is 2 MB that V8 needs about a second to parse: refused without parsing.
    expect(apiErrorOf(() => parseJsonText(`${'['.repeat(1e6)}${']'.repeat(1e6)}`, 32)).code).toBe('json_too_deep');
  });

  it('does not count brackets inside strings', () => {
    expect(nestingExceeds('{"a": "[[[[[[[[", "b": "\\"[[[[[["}', 2)).toBe(false);
    expect(nestingExceeds('[[["]"]]]', 2)).toBe(true);
  });

  it('refuses JSON Lines rows nested too deep', () => {
    expect(decodeError(JSON_LINES, '[1]\n[[[[[[1]]]]]]\n')).toMatchObject({ code: 'json_too_deep', field: 'line 2' });
  });

  it('still refuses prototype keys, and says the body is not JSON when it is not', () => {
    expect(apiErrorOf(() => parseJsonText('{"__proto__": {"x": 1}}', 5)).code).toBe('invalid_json');
    expect(apiErrorOf(() => parseJsonText('{"constructor": {"prototype": {}}}', 5)).code).toBe('invalid_json');
    expect(apiErrorOf(() => parseJsonText('{"a": ', 5)).code).toBe('invalid_json');
    expect(apiErrorOf(() => parseJsonText('', 5)).code).toBe('invalid_json');
  });
});

describe('row estimates (which decide what goes to a worker thread)', () => {
  it('count lines of CSV and JSON Lines and opening brackets of JSON', () => {
    expect(estimateRows('text/csv', Buffer.from('1,2\n3,4\n5,6\n'))).toBe(3);
    expect(estimateRows('application/jsonlines', Buffer.from('[1]\n[2]\n'))).toBe(2);
    expect(estimateRows('application/json', Buffer.from('{"instances": [[1], [2], [3]]}'))).toBe(4);
  });
});
