/**
 * The invariants themselves, on answers made by hand: each check fails on what it must catch (a
 * check that cannot fail would let every property pass).
 */
import { describe, expect, it } from 'vitest';
import {
  type Answer,
  expectCatalogueError,
  expectKeplerFailure,
  expectNoLeak,
  expectPrototypesUntouched,
  jsonVerdict,
  type Sent,
} from './support.js';

const sent: Sent = { method: 'POST', url: '/predict', headers: {}, payload: '{}' };
const answer = (statusCode: number, body: unknown, type = 'application/json; charset=utf-8') =>
  ({
    statusCode,
    headers: { 'content-type': type },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  }) as unknown as Answer;

describe('fuzz invariants', () => {
  it('the catalogue error check takes exactly the catalogue’s body', () => {
    expect(expectCatalogueError(sent, answer(400, { error: { code: 'invalid_body', message: 'm', field: 'f' } }))).toBe(
      'invalid_body',
    );
    const bad = [
      answer(400, { error: { code: 'invalid_body', message: 'm' }, stack: 'x' }),
      answer(400, { error: { code: 'invalid_body', message: 'm', detail: 1 } }),
      answer(400, { error: { code: 'no_such_code', message: 'm' } }),
      answer(404, { error: { code: 'invalid_body', message: 'm' } }),
      answer(400, { error: { code: 'invalid_body' } }),
      answer(400, { error: { code: 'invalid_body', message: 'm', field: 3 } }),
      answer(429, { error: { code: 'model_busy', message: 'm', retryAfterSeconds: 1.5 } }),
      answer(400, 'Bad Request', 'text/plain'),
      answer(400, 'not json'),
    ];
    for (const a of bad) expect(() => expectCatalogueError(sent, a), a.body).toThrow();
  });

  it('the leak check catches stack frames and paths, unless the client sent them', () => {
    expect(() => expectNoLeak(sent, answer(500, { msg: 'Error\n    at f (x)' }))).toThrow();
    expect(() => expectNoLeak(sent, answer(400, { msg: 'in /src/app.ts:12' }))).toThrow();
    expect(() => expectNoLeak(sent, answer(400, { msg: `in ${process.cwd()}/models` }))).toThrow();
    expect(() => expectNoLeak(sent, answer(400, { msg: 'in /tmp/repo' }), ['/tmp/repo'])).toThrow();
    expect(() => expectNoLeak({ ...sent, payload: '"a.js:"' }, answer(400, { msg: 'got "a.js:"' }))).not.toThrow();
  });

  it('the Kepler failure check takes exactly {"powers": {}, "msg"} with a 4xx', () => {
    expect(() => expectKeplerFailure(sent, answer(400, { powers: {}, msg: 'no' }))).not.toThrow();
    for (const a of [
      answer(500, { powers: {}, msg: 'no' }),
      answer(400, { powers: { package: [] }, msg: 'no' }),
      answer(400, { powers: {}, msg: 'no', core_ratio: 1 }),
      answer(400, { error: { code: 'invalid_body', message: 'm' } }),
    ]) {
      expect(() => expectKeplerFailure(sent, a), a.body).toThrow();
    }
  });

  it('the prototype check notices a planted or replaced property', () => {
    expectPrototypesUntouched();
    const proto = Object.prototype as Record<string, unknown>;
    try {
      proto.polluted = 'yes';
      expect(() => expectPrototypesUntouched()).toThrow();
    } finally {
      delete proto.polluted;
    }
    const original = Object.getOwnPropertyDescriptor(Object.prototype, '__lookupSetter__') as PropertyDescriptor;
    try {
      Object.defineProperty(Object.prototype, '__lookupSetter__', { ...original, value: () => undefined });
      expect(() => expectPrototypesUntouched()).toThrow();
    } finally {
      Object.defineProperty(Object.prototype, '__lookupSetter__', original);
    }
    expectPrototypesUntouched();
  });

  it('the JSON verdict mirrors the parser: pollution keys anywhere, BOM skipped, empty bodies refused', () => {
    expect(jsonVerdict('{"a":[{"__proto__":1}]}').kind).toBe('forbidden');
    expect(jsonVerdict('{"constructor":{"prototype":{}}}').kind).toBe('forbidden');
    expect(jsonVerdict('{"constructor":{"prototype":1},"constructor":1}').kind).toBe('parsed');
    expect(jsonVerdict('{"constructor":1}').kind).toBe('parsed');
    expect(jsonVerdict('\uFEFF[1]').kind).toBe('parsed');
    expect(jsonVerdict('').kind).toBe('unparseable');
    expect(jsonVerdict('\uFEFF').kind).toBe('unparseable');
    expect(jsonVerdict('[1,]').kind).toBe('unparseable');
  });
});
