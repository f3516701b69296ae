import { describe, expect, it } from 'vitest';
import { parseNativeBody } from '../../src/codecs/json.js';

const LIMITS = { maxRows: 10, maxColumns: 10 };

import { apiErrorOf } from '../helpers.js';

describe('native JSON bodies', () => {
  it('reads model, version, feature names and instances', () => {
    const request = parseNativeBody({ model: 'm', version: '2', features: ['a', 'b'], instances: [[1, 2]] }, LIMITS);
    expect(request).toMatchObject({ model: 'm', version: 2, features: ['a', 'b'] });
    expect(Array.from(request.matrix.data)).toEqual([1, 2]);
  });

  it('takes a bare array of rows as the instances', () => {
    expect(parseNativeBody([[1], [2]], LIMITS)).toMatchObject({ model: undefined, matrix: { rows: 2, cols: 1 } });
  });

  it.each([
    ['a string body', 'hello', 'body'],
    ['null', null, 'body'],
    ['no instances', { model: 'm' }, 'instances'],
    ['a misspelt field', { instances: [[1]], feature: ['a'] }, 'feature'],
    ['a numeric model', { instances: [[1]], model: 3 }, 'model'],
    ['a fractional version', { instances: [[1]], version: 1.5 }, 'version'],
    ['version zero', { instances: [[1]], version: 0 }, 'version'],
    ['feature names that are not strings', { instances: [[1]], features: [1] }, 'features'],
  ])('refuses %s, naming the field', (_, body, field) => {
    expect(apiErrorOf(() => parseNativeBody(body, LIMITS))).toMatchObject({ code: 'invalid_body', field, status: 400 });
  });
});
