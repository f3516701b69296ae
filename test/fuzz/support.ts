/**
 * Shared machinery of the fuzz suite: run counts and seed, the invariants every answer must keep,
 * the prototype guard, and a tally of outcomes that proves a property reached past the parsers.
 */
import { fileURLToPath } from 'node:url';
import type fc from 'fast-check';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { expect } from 'vitest';
import { ERRORS } from '../../src/errors.js';

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value)) throw new Error(`${name} must be an integer, got ${raw}`);
  return value;
}

/** Runs per property: `FUZZ_RUNS` (npm run fuzz sets 2000); the default keeps `npm test` quick. */
export const RUNS = Math.max(1, envInt('FUZZ_RUNS', 60));
/** `FUZZ_SEED=<integer>` replays a run; `FUZZ_SEED=random` draws a new seed (printed on failure). */
export const SEED: number | undefined =
  process.env.FUZZ_SEED === 'random' ? undefined : envInt('FUZZ_SEED', 20_260_101);

/** fast-check parameters: `factor` scales the runs for properties that cost more per run. */
export function fuzzParams<T>(factor = 1, options: { stateful?: boolean } = {}): fc.Parameters<T> {
  return {
    numRuns: Math.max(1, Math.round(RUNS * factor)),
    ...(SEED !== undefined && { seed: SEED }),
    // A property whose runs change the server (uploads, promotions) cannot be shrunk meaningfully:
    // replays meet another state. Its first counterexample is the one to read.
    ...(options.stateful && { endOnFailure: true }),
  };
}

/** A vitest timeout for a property of `factor` × RUNS runs, each taking up to `msPerRun`. */
export function fuzzTimeout(factor = 1, msPerRun = 40): number {
  return Math.max(30_000, Math.round(RUNS * factor * msPerRun) + 20_000);
}

/** Whether enough runs were made to expect the outcome tally to show variety. */
export const ENOUGH_RUNS_FOR_VARIETY = RUNS >= 40;

const REPOSITORY_ROOT = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');

/** Text that must never reach a client: stack frames, source positions, the server's own paths. */
function leakMarkers(extraPaths: readonly string[]): string[] {
  return ['    at ', '.ts:', '.js:', 'node_modules', REPOSITORY_ROOT, ...extraPaths];
}

export type Answer = LightMyRequestResponse;

/** One request as sent, kept so that a failure can show it and echoes of it are not taken for leaks. */
export interface Sent {
  method: string;
  url: string;
  headers: Record<string, string>;
  payload?: string | Buffer;
}

export async function send(app: FastifyInstance, sent: Sent): Promise<Answer> {
  const options: InjectOptions = {
    method: sent.method as InjectOptions['method'],
    url: sent.url,
    headers: sent.headers,
  };
  if (sent.payload !== undefined) options.payload = sent.payload;
  return app.inject(options);
}

function sentText(sent: Sent): string {
  const payload = sent.payload === undefined ? '' : Buffer.from(sent.payload).toString('utf8');
  // Messages quote inputs through JSON.stringify; both spellings count as an echo.
  return `${sent.url}\n${JSON.stringify(sent.headers)}\n${payload}\n${JSON.stringify(payload)}`;
}

function describeExchange(sent: Sent, answer: Answer): string {
  const payload =
    sent.payload === undefined
      ? ''
      : typeof sent.payload === 'string'
        ? JSON.stringify(sent.payload.length > 600 ? `${sent.payload.slice(0, 600)}…` : sent.payload)
        : `<${sent.payload.length} bytes>`;
  const body = answer.body.length > 600 ? `${answer.body.slice(0, 600)}…` : answer.body;
  return `${sent.method} ${sent.url} ${JSON.stringify(sent.headers)} ${payload}\n→ ${answer.statusCode} ${body}`;
}

/** No stack trace, source position or absolute server path in the answer (unless the client sent it). */
export function expectNoLeak(sent: Sent, answer: Answer, extraPaths: readonly string[] = [], echoable = ''): void {
  const input = `${sentText(sent)}\n${echoable}\n${JSON.stringify(echoable)}`;
  for (const marker of leakMarkers(extraPaths)) {
    if (answer.body.includes(marker) && !input.includes(marker)) {
      throw new Error(`the answer leaks ${JSON.stringify(marker)}:\n${describeExchange(sent, answer)}`);
    }
  }
}

const ERROR_KEYS = new Set(['code', 'message', 'field', 'retryAfterSeconds']);

/**
 * The catalogue's error body, exactly: `{"error": {code, message, field?, retryAfterSeconds?}}`
 * as JSON, with the status the catalogue gives the code. Returns the code.
 */
export function expectCatalogueError(sent: Sent, answer: Answer): string {
  const where = describeExchange(sent, answer);
  expect(answer.headers['content-type'], where).toMatch(/^application\/json/);
  let body: unknown;
  try {
    body = JSON.parse(answer.body);
  } catch {
    throw new Error(`the error answer is not JSON:\n${where}`);
  }
  expect(body !== null && typeof body === 'object' && !Array.isArray(body), where).toBe(true);
  expect(Object.keys(body as object), where).toEqual(['error']);
  const error = (body as { error: unknown }).error;
  expect(error !== null && typeof error === 'object' && !Array.isArray(error), where).toBe(true);
  const fields = error as Record<string, unknown>;
  for (const key of Object.keys(fields)) expect(ERROR_KEYS.has(key), `unexpected key ${key} in ${where}`).toBe(true);
  const { code, message, field, retryAfterSeconds } = fields;
  expect(typeof code === 'string' && Object.hasOwn(ERRORS, code), `unknown code in ${where}`).toBe(true);
  expect(answer.statusCode, where).toBe(ERRORS[code as keyof typeof ERRORS]);
  expect(typeof message === 'string' && message.length > 0, `message in ${where}`).toBe(true);
  if (field !== undefined) expect(typeof field, `field in ${where}`).toBe('string');
  if (retryAfterSeconds !== undefined) {
    expect(Number.isSafeInteger(retryAfterSeconds), `retryAfterSeconds in ${where}`).toBe(true);
  }
  return code as string;
}

/**
 * The invariants of every answer on a catalogue route: no 5xx, nothing leaked, and any answer
 * that is not 2xx is the catalogue's error body. Returns the outcome: `2xx` or the error code.
 */
export function expectWellFormed(
  sent: Sent,
  answer: Answer,
  extraPaths: readonly string[] = [],
  /** Text the request carried in a form the leak check cannot read (names inside a compressed archive). */
  echoable = '',
): string {
  expect(answer.statusCode, `5xx:\n${describeExchange(sent, answer)}`).toBeLessThan(500);
  expectNoLeak(sent, answer, extraPaths, echoable);
  if (answer.statusCode >= 200 && answer.statusCode < 300) return '2xx';
  // HEAD answers carry no body: the status and type are all there is to check.
  if (sent.method === 'HEAD') {
    expect(answer.body, describeExchange(sent, answer)).toBe('');
    return `HEAD ${answer.statusCode}`;
  }
  return expectCatalogueError(sent, answer);
}

/** Kepler's estimator failure: a 4xx whose body is exactly `{"powers": {}, "msg": "…"}`. */
export function expectKeplerFailure(sent: Sent, answer: Answer): string {
  const where = describeExchange(sent, answer);
  expect(answer.statusCode, where).toBeGreaterThanOrEqual(400);
  expect(answer.statusCode, where).toBeLessThan(500);
  expect(answer.headers['content-type'], where).toMatch(/^application\/json/);
  const body = JSON.parse(answer.body) as Record<string, unknown>;
  expect(Object.keys(body).sort(), where).toEqual(['msg', 'powers']);
  expect(body.powers, where).toEqual({});
  expect(typeof body.msg === 'string' && body.msg.length > 0, where).toBe(true);
  return `kepler ${answer.statusCode}`;
}

export { describeExchange };

/** Property names planted by the pollution payloads; none may ever appear on a plain object. */
export const POLLUTION_PROPERTIES = ['polluted', 'fuzzPolluted', 'isAdmin'] as const;

const GUARDED = [Object.prototype, Array.prototype, Function.prototype, String.prototype, Number.prototype];

type Snapshot = Array<Array<[string | symbol, unknown, unknown, unknown]>>;

function snapshotPrototypes(): Snapshot {
  return GUARDED.map((proto) =>
    Reflect.ownKeys(proto).map((key) => {
      const descriptor = Object.getOwnPropertyDescriptor(proto, key);
      return [key, descriptor?.value, descriptor?.get, descriptor?.set];
    }),
  );
}

const BASELINE = snapshotPrototypes();

/** Object.prototype (and its siblings) exactly as they were when the suite was loaded. */
export function expectPrototypesUntouched(): void {
  const probe = {} as Record<string, unknown>;
  const list = [] as unknown as Record<string, unknown>;
  for (const name of POLLUTION_PROPERTIES) {
    expect(probe[name], `({}).${name}`).toBeUndefined();
    expect(list[name], `[].${name}`).toBeUndefined();
  }
  expect(Object.getPrototypeOf(probe)).toBe(Object.prototype);
  const now = snapshotPrototypes();
  for (let i = 0; i < GUARDED.length; i++) {
    const before = BASELINE[i] ?? [];
    const after = now[i] ?? [];
    expect(
      after.map(([key]) => String(key)),
      'prototype property names',
    ).toEqual(before.map(([key]) => String(key)));
    for (let k = 0; k < before.length; k++) {
      const [key, value, get, set] = before[k] ?? [];
      const [, valueNow, getNow, setNow] = after[k] ?? [];
      const same = Object.is(value, valueNow) && Object.is(get, getNow) && Object.is(set, setNow);
      expect(same, `prototype property ${String(key)} was replaced`).toBe(true);
    }
  }
}

/** What the answers of a property were: `2xx` or error codes, counted. */
export class Tally {
  readonly counts = new Map<string, number>();

  add(outcome: string): void {
    this.counts.set(outcome, (this.counts.get(outcome) ?? 0) + 1);
  }

  get total(): number {
    return [...this.counts.values()].reduce((a, b) => a + b, 0);
  }

  share(outcome: string): number {
    return (this.counts.get(outcome) ?? 0) / Math.max(1, this.total);
  }

  toString(): string {
    return JSON.stringify(Object.fromEntries([...this.counts].sort((a, b) => b[1] - a[1])));
  }

  /**
   * The generated inputs reached past the parsers: some succeeded, several distinct refusals, and
   * no single parser refusal took most of the runs. Checked only with enough runs to expect it.
   */
  expectVariety(options: { distinct: number; successes?: boolean; parserCodes?: readonly string[] }): void {
    if (process.env.FUZZ_VERBOSE) console.log(`outcomes: ${this}`);
    if (!ENOUGH_RUNS_FOR_VARIETY) return;
    const errorCodes = [...this.counts.keys()].filter((outcome) => outcome !== '2xx');
    expect(errorCodes.length, `too few distinct outcomes: ${this}`).toBeGreaterThanOrEqual(options.distinct);
    if (options.successes ?? true) expect(this.counts.get('2xx') ?? 0, `no success: ${this}`).toBeGreaterThan(0);
    const parserShare = (options.parserCodes ?? []).reduce((sum, code) => sum + this.share(code), 0);
    expect(parserShare, `mostly refused by the parser: ${this}`).toBeLessThan(0.5);
  }
}

/**
 * What Fastify's JSON parser must make of a body: `unparseable` (not JSON, or empty), `forbidden`
 * (a `__proto__` key, or a `constructor` holding a `prototype`, anywhere), or `parsed` with its value.
 * A leading BOM is skipped, as the parser does.
 */
export function jsonVerdict(text: string): { kind: 'unparseable' | 'forbidden' } | { kind: 'parsed'; value: unknown } {
  const stripped = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  let value: unknown;
  try {
    value = JSON.parse(stripped);
  } catch {
    return { kind: 'unparseable' };
  }
  if (stripped.trim() === '') return { kind: 'unparseable' };
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const node = stack.pop();
    if (node === null || typeof node !== 'object') continue;
    const record = node as Record<string, unknown>;
    if (Object.hasOwn(record, '__proto__')) return { kind: 'forbidden' };
    const ctor = Object.hasOwn(record, 'constructor') ? record.constructor : undefined;
    if (ctor !== null && typeof ctor === 'object' && Object.hasOwn(ctor, 'prototype')) return { kind: 'forbidden' };
    for (const key of Object.keys(record)) stack.push(record[key]);
  }
  return { kind: 'parsed', value };
}

/** Codes a body refused before its JSON is read may get instead of invalid_json. */
const BEFORE_OR_AROUND_PARSING = new Set([
  'invalid_json',
  'json_too_deep',
  'body_too_large',
  'unsupported_media_type',
  // Refused on its URL or Accept, which are read before the body.
  'bad_request',
  'not_acceptable',
]);

/**
 * The JSON parser's part of the answer: bodies that are not JSON, or carry a pollution key, are
 * refused as invalid_json (or json_too_deep, or too large); JSON that parses is never called invalid.
 */
export function expectJsonVerdict(sent: Sent, answer: Answer, outcome: string): ReturnType<typeof jsonVerdict> {
  const text = typeof sent.payload === 'string' ? sent.payload : '';
  const verdict = jsonVerdict(text);
  const where = describeExchange(sent, answer);
  if (verdict.kind === 'parsed') expect(outcome, `valid JSON refused as invalid:\n${where}`).not.toBe('invalid_json');
  else expect(BEFORE_OR_AROUND_PARSING.has(outcome), `${verdict.kind} JSON answered ${outcome}:\n${where}`).toBe(true);
  return verdict;
}

/** How many rows a parsed prediction body holds (a bare array or `instances`). */
export function rowCount(value: unknown): number | undefined {
  if (Array.isArray(value)) return value.length;
  const instances = (value as { instances?: unknown } | null)?.instances;
  return Array.isArray(instances) ? instances.length : undefined;
}

/** A 2xx JSON prediction answer: the model and version, and finite numbers for each row. */
export function expectPredictionBody(sent: Sent, answer: Answer, rows: number | undefined): number[] | number[][] {
  const where = describeExchange(sent, answer);
  expect(answer.headers['content-type'], where).toMatch(/^application\/json/);
  const body = JSON.parse(answer.body) as { model: unknown; version: unknown; predictions: unknown };
  expect(typeof body.model, where).toBe('string');
  expect(Number.isSafeInteger(body.version), where).toBe(true);
  expect(Array.isArray(body.predictions), where).toBe(true);
  const predictions = body.predictions as unknown[];
  if (rows !== undefined) expect(predictions.length, where).toBe(rows);
  for (const value of predictions.flat()) expect(Number.isFinite(value), where).toBe(true);
  return predictions as number[] | number[][];
}
