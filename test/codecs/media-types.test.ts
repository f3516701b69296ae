import { describe, expect, it } from 'vitest';
import { negotiateResponseType } from '../../src/codecs/media-types.js';

describe('choosing the response type from Accept', () => {
  it.each([
    [undefined, 'application/json'],
    ['', 'application/json'],
    ['*/*', 'application/json'],
    ['text/csv', 'text/csv'],
    ['application/jsonlines', 'application/jsonlines'],
    ['text/csv;q=0.5, application/jsonlines;q=0.9', 'application/jsonlines'],
    ['text/*', 'text/csv'],
    ['text/html, text/csv;q=0.1', 'text/csv'],
    ['application/json; charset=utf-8', 'application/json'],
    ['text/csv;charset=utf-8;q=0.9, application/json;q=0.1', 'text/csv'],
    ['application/jsonlines; q=0.8; charset=utf-8, text/csv; q=0.3', 'application/jsonlines'],
  ])('Accept %j gives %s', (accept, expected) => {
    expect(negotiateResponseType(accept, 'application/json')).toBe(expected);
  });

  it('uses the configured default when anything goes', () => {
    expect(negotiateResponseType('*/*', 'text/csv')).toBe('text/csv');
    expect(negotiateResponseType(undefined, 'application/jsonlines')).toBe('application/jsonlines');
  });

  it('finds nothing acceptable for types it cannot write', () => {
    expect(negotiateResponseType('text/html', 'application/json')).toBeUndefined();
    expect(negotiateResponseType('application/json;q=0', 'application/json')).toBeUndefined();
    expect(negotiateResponseType('text/csv;charset=utf-8;q=0', 'text/csv')).toBeUndefined();
  });
});
