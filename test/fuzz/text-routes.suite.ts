/**
 * Fuzz of POST /invocations with text bodies: text/csv (with and without `header=present`) and
 * application/jsonlines, under any Accept. Invariants: no 5xx, the catalogue's error body, the
 * custom attributes echoed, answers in a promised type with finite numbers, nothing leaked,
 * Object.prototype untouched, the server still serving. Two properties hold answers to account:
 * the same rows give the same predictions in every encoding and layout, and quoting a field (which
 * sends the body through another CSV parser) changes nothing.
 */
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { describe, expect, it } from 'vitest';
import { FEATURES, KEPLER, LINEAR, MLP } from '../helpers.js';
import { type Baseline, expectStillServing, FUZZ_LIMITS, withShippedApp } from './apps.js';
import {
  acceptHeader,
  csvBody,
  csvContentType,
  csvHeaderContentType,
  headerValue,
  jsonLinesBody,
  jsonLinesContentType,
  shuffled,
  sometimes,
} from './arbitraries.js';
import {
  type Answer,
  describeExchange,
  expectPrototypesUntouched,
  expectWellFormed,
  fuzzParams,
  fuzzTimeout,
  jsonVerdict,
  type Sent,
  send,
  Tally,
} from './support.js';

const MAX_ROWS = Number(FUZZ_LIMITS.MAX_ROWS);

const target = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(LINEAR, MLP) },
  { weight: 1, arbitrary: fc.constant(KEPLER) },
  { weight: 1, arbitrary: headerValue },
);

/** The rows of a 2xx answer in whichever of the three types it came, each checked to be finite. */
function answerRows(sent: Sent, answer: Answer): number[][] {
  const where = describeExchange(sent, answer);
  const type = String(answer.headers['content-type']);
  if (/^application\/json(;|$)/.test(type)) {
    const body = JSON.parse(answer.body) as { predictions: Array<number | number[]> };
    const rows = body.predictions.map((p) => (Array.isArray(p) ? p : [p]));
    for (const value of rows.flat()) expect(Number.isFinite(value), where).toBe(true);
    return rows;
  }
  const lines = answer.body.split('\n');
  expect(lines.pop(), `the answer ends with a newline: ${where}`).toBe('');
  if (!/^text\/csv/.test(type)) expect(type, where).toMatch(/^application\/jsonlines/);
  const rows = /^text\/csv/.test(type)
    ? lines.map((line) => line.split(',').map(Number))
    : lines.map((line) => JSON.parse(line) as number[]);
  for (const value of rows.flat()) expect(Number.isFinite(value), where).toBe(true);
  return rows;
}

function invocation(
  body: string,
  type: string,
  options: { accept?: string | undefined; target?: string | null; attributes?: string | null },
): Sent {
  const headers: Record<string, string> = { 'content-type': type };
  if (options.accept !== undefined) headers.accept = options.accept;
  if (options.target !== undefined && options.target !== null)
    headers['x-amzn-sagemaker-target-model'] = options.target;
  if (options.attributes !== undefined && options.attributes !== null) {
    headers['x-amzn-sagemaker-custom-attributes'] = options.attributes;
  }
  return { method: 'POST', url: '/invocations', headers, payload: body };
}

/**
 * The first line that is not JSON, as the format defines lines: split on LF (a CR before it is
 * whitespace), blank lines skipped, each other line one JSON value. A line with a pollution key
 * comes first: whether it is refused or read as a (bad) row is the server's choice.
 */
function firstBadJsonLine(text: string): { line: number; kind: 'unparseable' | 'forbidden' } | undefined {
  const lines = text.replace(/^\uFEFF/, '').split('\n');
  let rows = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] ?? '').trim();
    if (line === '') continue;
    if (++rows > MAX_ROWS) return undefined;
    const verdict = jsonVerdict(line);
    if (verdict.kind !== 'parsed') return { line: i + 1, kind: verdict.kind };
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Valid rows in every encoding

interface Layout {
  /** CRLF or LF (one kind per body: mixed line ends are the quoting property's business). */
  crlf: boolean;
  bom: boolean;
  trailing: boolean;
  blankAt: number[];
  quoteAt: number[];
  padAt: number[];
}

const layout: fc.Arbitrary<Layout> = fc.record({
  crlf: fc.boolean(),
  bom: fc.boolean(),
  trailing: fc.boolean(),
  blankAt: fc.array(fc.nat(), { maxLength: 2 }),
  quoteAt: fc.array(fc.nat(), { maxLength: 3 }),
  padAt: fc.array(fc.nat(), { maxLength: 3 }),
});

/** Lines laid out as the layout says: CRLF or LF, empty lines, a BOM, a trailing newline or not. */
function laidOut(lines: readonly string[], l: Layout): string {
  const all = [...lines];
  for (const at of l.blankAt) all.splice(at % (all.length + 1), 0, '');
  let text = l.bom ? '\uFEFF' : '';
  all.forEach((line, i) => {
    text += line;
    if (i < all.length - 1 || l.trailing) text += l.crlf ? '\r\n' : '\n';
  });
  return text;
}

/** CSV of the rows, some fields quoted or padded with spaces (both allowed), a header line if asked. */
function csvOf(rows: readonly (readonly number[])[], l: Layout, header?: readonly string[]): string {
  const width = rows[0]?.length ?? 1;
  const field = (value: string, r: number, c: number) => {
    const index = r * width + c;
    let text = value;
    if (l.padAt.some((at) => at % (rows.length * width + width) === index)) text = ` ${text}\t`;
    if (l.quoteAt.some((at) => at % (rows.length * width + width) === index)) text = `"${text.trim()}"`;
    return text;
  };
  const lines = rows.map((row, r) => row.map((v, c) => field(String(v), r + 1, c)).join(','));
  if (header !== undefined) lines.unshift(header.map((name, c) => field(name, 0, c)).join(','));
  return laidOut(lines, l);
}

const validRows = fc.array(
  fc.array(fc.oneof(fc.double({ min: 0, max: 1e9, noNaN: true }), fc.nat(100_000)), { minLength: 8, maxLength: 8 }),
  {
    minLength: 1,
    maxLength: 5,
  },
);

describe('fuzz: /invocations with text bodies', () => {
  let app: FastifyInstance;
  let baseline: Baseline;
  withShippedApp((ready, before) => {
    app = ready;
    baseline = before;
  });

  it(
    'text/csv (header=present or not): every body gets an answer in a promised type or a catalogue 4xx',
    async () => {
      const tally = new Tally();
      await fc.assert(
        fc.asyncProperty(
          csvBody,
          fc.oneof({ weight: 9, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
          acceptHeader,
          sometimes(target, 90),
          sometimes(headerValue, 30),
          csvContentType,
          csvHeaderContentType,
          async ({ text, header }, matchingType, accept, model, attributes, plainType, headerType) => {
            // Mostly the type that matches the body; a header line sent as data, or data as a header, at times.
            const type = (matchingType ? header : !header) ? headerType : plainType;
            const sent = invocation(text, type, { accept, target: model, attributes });
            const answer = await send(app, sent);
            const outcome = expectWellFormed(sent, answer);
            tally.add(outcome);
            if (attributes !== null) expect(answer.headers['x-amzn-sagemaker-custom-attributes']).toBe(attributes);
            expect(['invalid_json', 'invalid_jsonlines'], describeExchange(sent, answer)).not.toContain(outcome);
            if (outcome === '2xx') answerRows(sent, answer);
            expectPrototypesUntouched();
            await expectStillServing(app, baseline);
          },
        ),
        fuzzParams(),
      );
      tally.expectVariety({ distinct: 6, parserCodes: ['invalid_csv'] });
    },
    fuzzTimeout(),
  );

  it(
    'application/jsonlines: every body gets an answer or a catalogue 4xx; a line that is not JSON is named',
    async () => {
      const tally = new Tally();
      await fc.assert(
        fc.asyncProperty(
          jsonLinesBody,
          jsonLinesContentType,
          acceptHeader,
          sometimes(target, 90),
          async (text, type, accept, model) => {
            const sent = invocation(text, type, { accept, target: model });
            const answer = await send(app, sent);
            const outcome = expectWellFormed(sent, answer);
            tally.add(outcome);
            const where = describeExchange(sent, answer);
            const bad = firstBadJsonLine(text);
            if (outcome !== 'not_acceptable') {
              if (bad === undefined) expect(outcome, where).not.toBe('invalid_jsonlines');
              else if (bad.kind === 'unparseable') {
                expect(outcome, where).toBe('invalid_jsonlines');
                expect((JSON.parse(answer.body) as { error: { field?: string } }).error.field, where).toBe(
                  `line ${bad.line}`,
                );
              }
            }
            if (outcome === '2xx') answerRows(sent, answer);
            expectPrototypesUntouched();
            await expectStillServing(app, baseline);
          },
        ),
        fuzzParams(),
      );
      tally.expectVariety({ distinct: 5, parserCodes: ['invalid_jsonlines'] });
    },
    fuzzTimeout(),
  );

  it(
    'the same rows get the same predictions as JSON, CSV (CRLF, BOM, quotes, blank lines, a header in any order) and JSON Lines',
    async () => {
      await fc.assert(
        fc.asyncProperty(
          validRows,
          fc.constantFrom(LINEAR, MLP),
          layout,
          layout,
          shuffled(FEATURES.map((_, i) => i)),
          fc.constantFrom('application/json', 'text/csv', 'application/jsonlines'),
          async (rows, model, csvLayout, linesLayout, order, accept) => {
            const reference: Sent = {
              method: 'POST',
              url: `/predict/${model}`,
              headers: { 'content-type': 'application/json' },
              payload: JSON.stringify({ instances: rows }),
            };
            const referenceAnswer = await send(app, reference);
            expect(referenceAnswer.statusCode, describeExchange(reference, referenceAnswer)).toBe(200);
            const expected = answerRows(reference, referenceAnswer);
            const permuted = rows.map((row) => order.map((i) => row[i] as number));
            const variants: Sent[] = [
              invocation(JSON.stringify({ instances: rows }), 'application/json', { accept, target: model }),
              invocation(
                JSON.stringify({ features: order.map((i) => FEATURES[i]), instances: permuted }),
                'application/json',
                {
                  accept,
                  target: model,
                },
              ),
              invocation(csvOf(rows, csvLayout), 'text/csv', { accept, target: model }),
              invocation(
                csvOf(
                  permuted,
                  csvLayout,
                  order.map((i) => FEATURES[i] as string),
                ),
                'text/csv; header=present',
                { accept, target: model },
              ),
              invocation(
                laidOut(
                  rows.map((row) => JSON.stringify(row)),
                  linesLayout,
                ),
                'application/jsonlines',
                { accept, target: model },
              ),
            ];
            for (const sent of variants) {
              const answer = await send(app, sent);
              expect(answer.statusCode, describeExchange(sent, answer)).toBe(200);
              expect(answerRows(sent, answer), describeExchange(sent, answer)).toEqual(expected);
            }
            expectPrototypesUntouched();
          },
        ),
        fuzzParams(0.5),
      );
    },
    fuzzTimeout(0.5),
  );

  it(
    'quoting a CSV field (another parser reads the body then) changes neither the answer nor the error code',
    async () => {
      // LF, CRLF, a lone CR, mixed in one body: both parsers must split lines alike.
      const separators = fc.array(fc.constantFrom('\n', '\r\n', '\r'), { minLength: 1, maxLength: 3 });
      const blank = fc.constantFrom('', '', ' ', '\t', '\uFEFF');
      const cell = fc.oneof(
        { weight: 10, arbitrary: fc.nat(100_000).map(String) },
        { weight: 1, arbitrary: fc.constantFrom('', ' 1 ', 'x', 'NaN', '1e39', '+1', '.5', '1 2') },
      );
      const lines = fc.array(
        fc.oneof(
          { weight: 8, arbitrary: fc.array(cell, { minLength: 8, maxLength: 8 }).map((c) => c.join(',')) },
          { weight: 1, arbitrary: blank },
        ),
        { minLength: 1, maxLength: 5 },
      );
      await fc.assert(
        fc.asyncProperty(
          lines,
          separators,
          fc.boolean(),
          fc.nat(),
          fc.constantFrom(LINEAR, MLP),
          async (rows, breaks, bom, at, model) => {
            let plain = bom ? '\uFEFF' : '';
            rows.forEach((line, i) => {
              plain += line + (breaks[i % breaks.length] ?? '\n');
            });
            // Quote one field that is a plain number, so that both bodies mean the same.
            const numbers = [...plain.matchAll(/(?<=^|[,\n\r\uFEFF])\d+(?=$|[,\r\n])/g)];
            const chosen = numbers[at % Math.max(1, numbers.length)];
            fc.pre(chosen !== undefined);
            const index = chosen?.index ?? 0;
            const digits = chosen?.[0] ?? '';
            const quoted = `${plain.slice(0, index)}"${digits}"${plain.slice(index + digits.length)}`;
            const first = invocation(plain, 'text/csv', { target: model, accept: 'application/json' });
            const second = invocation(quoted, 'text/csv', { target: model, accept: 'application/json' });
            const [a, b] = [await send(app, first), await send(app, second)];
            const outcomeA = expectWellFormed(first, a);
            const outcomeB = expectWellFormed(second, b);
            expect(outcomeB, `unquoted:\n${describeExchange(first, a)}\nquoted:\n${describeExchange(second, b)}`).toBe(
              outcomeA,
            );
            if (outcomeA === '2xx') expect(answerRows(second, b)).toEqual(answerRows(first, a));
            expectPrototypesUntouched();
          },
        ),
        fuzzParams(0.5),
      );
    },
    fuzzTimeout(0.5),
  );
});
