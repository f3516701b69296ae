/**
 * Fuzz of the JSON prediction routes: POST /predict, /predict/:model and /invocations with
 * application/json, and of the URLs of the read routes. Invariants: no 5xx, the catalogue's error
 * body for every refusal, the JSON parser's verdict respected (bodies that are not JSON or carry a
 * pollution key are invalid_json; JSON that parses never is), finite predictions, one per row,
 * nothing leaked, Object.prototype untouched, and a good request still served after every run.
 */
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { describe, expect, it } from 'vitest';
import { KEPLER, LINEAR, MLP } from '../helpers.js';
import { type Baseline, expectStillServing, withShippedApp } from './apps.js';
import {
  acceptHeader,
  fuzzString,
  headerValue,
  jsonContentType,
  jsonObject,
  pollutionEntry,
  predictBody,
  predictEntries,
  sometimes,
} from './arbitraries.js';
import {
  type Answer,
  describeExchange,
  expectJsonVerdict,
  expectKeplerFailure,
  expectNoLeak,
  expectPredictionBody,
  expectPrototypesUntouched,
  expectWellFormed,
  fuzzParams,
  fuzzTimeout,
  jsonVerdict,
  rowCount,
  type Sent,
  send,
  Tally,
} from './support.js';

/** A path segment: a model's name mostly, else anything, percent-encoded or raw and broken. */
const modelSegment: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(LINEAR, MLP, KEPLER) },
  { weight: 2, arbitrary: fuzzString.map(encodeURIComponent) },
  {
    weight: 1,
    arbitrary: fc.constantFrom('%', '%ZZ', '..', '%2e%2e', 'a%2Fb', '%F0%9F%99%82', '%00', '%C0%AF', '%FF', ''),
  },
);

/** The URL: /predict, /predict/<the model the body names> (or a shipped one), or any segment. */
const predictPath = fc.oneof(
  { weight: 3, arbitrary: fc.constant('/predict') },
  { weight: 4, arbitrary: fc.constant('same') },
  { weight: 3, arbitrary: modelSegment.map((segment) => `/predict/${segment}`) },
);

function pathFor(choice: string, body: string): string {
  return choice === 'same' ? `/predict/${encodeURIComponent(namedModel(body))}` : choice;
}

/** The model a body names, when it parses and names one, else the linear model. */
function namedModel(body: string): string {
  const verdict = jsonVerdict(body);
  const named = verdict.kind === 'parsed' ? (verdict.value as { model?: unknown } | null)?.model : undefined;
  return typeof named === 'string' && /^[\x20-\x7e]+$/.test(named) ? named : LINEAR;
}

const mostlyJson = fc.oneof(
  { weight: 6, arbitrary: fc.constant('application/json') },
  { weight: 1, arbitrary: jsonContentType },
);

/** X-Amzn-SageMaker-Target-Model: the model the body names (or a shipped one), another, or junk. */
const targetModel = fc.oneof(
  { weight: 6, arbitrary: fc.constant('same') },
  { weight: 2, arbitrary: fc.constantFrom(LINEAR, MLP, KEPLER) },
  { weight: 1, arbitrary: headerValue },
);

function targetFor(choice: string, body: string): string {
  return choice === 'same' ? namedModel(body) : choice;
}

function expectInvocationAnswer(sent: Sent, answer: Answer, accept: string | undefined, rows: number | undefined) {
  const where = describeExchange(sent, answer);
  const type = String(answer.headers['content-type']);
  // The plain cases of negotiation: one type asked for, or none (SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT).
  const asked = accept === undefined || accept === '*/*' ? 'application/json' : accept;
  if (['application/json', 'text/csv', 'application/jsonlines'].includes(asked)) {
    expect(type.split(';')[0], `asked for ${asked}: ${where}`).toBe(asked);
  }
  if (/^application\/json(;|$)/.test(type)) {
    expectPredictionBody(sent, answer, rows);
    return;
  }
  const lines = answer.body.split('\n');
  expect(lines.pop(), `the answer ends with a newline: ${where}`).toBe('');
  if (rows !== undefined) expect(lines.length, where).toBe(rows);
  if (type.startsWith('text/csv')) {
    for (const line of lines)
      for (const cell of line.split(',')) expect(Number.isFinite(Number(cell)), where).toBe(true);
  } else {
    expect(type, `${accept} answered as ${type}: ${where}`).toMatch(/^application\/jsonlines/);
    for (const line of lines) {
      const row = JSON.parse(line) as unknown;
      expect(Array.isArray(row) && row.every(Number.isFinite), where).toBe(true);
    }
  }
}

describe('fuzz: JSON prediction routes', () => {
  let app: FastifyInstance;
  let baseline: Baseline;
  withShippedApp((ready, before) => {
    app = ready;
    baseline = before;
  });

  it(
    'POST /predict[/:model]: every body gets a prediction or a catalogue 4xx',
    async () => {
      const tally = new Tally();
      await fc.assert(
        fc.asyncProperty(predictPath, mostlyJson, predictBody, async (path, type, body) => {
          const url = pathFor(path, body);
          const sent: Sent = { method: 'POST', url, headers: { 'content-type': type }, payload: body };
          const answer = await send(app, sent);
          const outcome = expectWellFormed(sent, answer);
          tally.add(outcome);
          const verdict = expectJsonVerdict(sent, answer, outcome);
          if (outcome === '2xx') {
            expectPredictionBody(sent, answer, verdict.kind === 'parsed' ? rowCount(verdict.value) : undefined);
          }
          expectPrototypesUntouched();
          await expectStillServing(app, baseline);
        }),
        fuzzParams(),
      );
      tally.expectVariety({ distinct: 8, parserCodes: ['invalid_json'] });
    },
    fuzzTimeout(),
  );

  it(
    'a __proto__ or constructor.prototype key anywhere in a JSON body is refused as invalid_json',
    async () => {
      await fc.assert(
        fc.asyncProperty(
          predictEntries,
          pollutionEntry,
          fc.nat(),
          fc.constantFrom('/predict', `/predict/${LINEAR}`, '/invocations'),
          async (entries, polluting, at, url) => {
            const [key, value] = polluting;
            // Where the key goes: the top level, or inside a row of instances.
            const nested = at % 3 === 0;
            const body = nested
              ? jsonObject([['instances', `[${jsonObject([[key, value]])}]`]])
              : jsonObject([
                  ...entries.slice(0, at % (entries.length + 1)),
                  polluting,
                  ...entries.slice(at % (entries.length + 1)),
                ]);
            const sent: Sent = {
              method: 'POST',
              url,
              headers: { 'content-type': 'application/json', 'x-amzn-sagemaker-target-model': LINEAR },
              payload: body,
            };
            const answer = await send(app, sent);
            const outcome = expectWellFormed(sent, answer);
            const verdict = expectJsonVerdict(sent, answer, outcome);
            if (verdict.kind === 'forbidden') expect(outcome, describeExchange(sent, answer)).toBe('invalid_json');
            expectPrototypesUntouched();
          },
        ),
        fuzzParams(0.5),
      );
    },
    fuzzTimeout(0.5),
  );

  it(
    'POST /invocations (application/json): every body and Accept gets an answer in a promised type or a catalogue 4xx',
    async () => {
      const tally = new Tally();
      await fc.assert(
        fc.asyncProperty(
          mostlyJson,
          acceptHeader,
          sometimes(targetModel, 80),
          sometimes(headerValue, 60),
          predictBody,
          async (type, accept, target, attributes, body) => {
            const headers: Record<string, string> = { 'content-type': type };
            if (accept !== undefined) headers.accept = accept;
            if (target !== null) headers['x-amzn-sagemaker-target-model'] = targetFor(target, body);
            if (attributes !== null) headers['x-amzn-sagemaker-custom-attributes'] = attributes;
            const sent: Sent = { method: 'POST', url: '/invocations', headers, payload: body };
            const answer = await send(app, sent);
            const outcome = expectWellFormed(sent, answer);
            tally.add(outcome);
            const verdict = expectJsonVerdict(sent, answer, outcome);
            if (attributes !== null) {
              expect(answer.headers['x-amzn-sagemaker-custom-attributes'], describeExchange(sent, answer)).toBe(
                attributes,
              );
            }
            if (outcome === '2xx') {
              expectInvocationAnswer(
                sent,
                answer,
                accept,
                verdict.kind === 'parsed' ? rowCount(verdict.value) : undefined,
              );
            }
            expectPrototypesUntouched();
            await expectStillServing(app, baseline);
          },
        ),
        fuzzParams(),
      );
      tally.expectVariety({ distinct: 8, parserCodes: ['invalid_json'] });
    },
    fuzzTimeout(),
  );

  it(
    'any URL, method and X-Request-Id on the public routes: 2xx or the route’s error shape, never a 5xx; the id echoed when plain',
    async () => {
      const segment = fc.oneof(modelSegment, fuzzString.map(encodeURIComponent), fc.constantFrom('models', 'kepler'));
      const path = fc.oneof(
        fc.constantFrom('/models', '/live', '/ping', '/predict', '/invocations', '/model', '/kepler/estimate'),
        segment.map((s) => `/models/${s}`),
        fc.array(segment, { minLength: 1, maxLength: 4 }).map((parts) => `/${parts.join('/')}`),
      );
      const query = sometimes(
        fc
          .array(fc.tuple(fuzzString, fuzzString), { maxLength: 3 })
          .map((pairs) => pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&')),
        30,
      );
      const requestId = fc.oneof(
        { weight: 2, arbitrary: fc.constant(null) },
        {
          weight: 2,
          arbitrary: fc.string({
            unit: fc.constantFrom(...'abcXYZ019_.:-'.split('')),
            minLength: 1,
            maxLength: 140,
          }),
        },
        { weight: 1, arbitrary: headerValue },
      );
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom('GET', 'GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'),
          path.filter((p) => !/^\/(docs|metrics)\b/.test(p)),
          query,
          requestId,
          async (method, url, q, id) => {
            const sent: Sent = {
              method,
              url: q === null ? url : `${url}?${q}`,
              headers: id === null ? {} : { 'x-request-id': id },
            };
            const answer = await send(app, sent);
            const where = describeExchange(sent, answer);
            if (method === 'POST' && url === '/kepler/estimate') {
              expect(answer.statusCode, where).toBeLessThan(500);
              expectNoLeak(sent, answer);
              expectKeplerFailure(sent, answer);
            } else {
              const outcome = expectWellFormed(sent, answer);
              if (outcome === '2xx' && url.startsWith('/models/') && method === 'GET') {
                const body = JSON.parse(answer.body) as { name: string };
                expect([LINEAR, MLP, KEPLER]).toContain(body.name);
              }
            }
            const echoed = answer.headers['x-request-id'];
            if (id !== null && /^[A-Za-z0-9_.:-]{1,128}$/.test(id)) expect(echoed, where).toBe(id);
            else expect(echoed, where).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
            expectPrototypesUntouched();
          },
        ),
        fuzzParams(0.5),
      );
    },
    fuzzTimeout(0.5),
  );
});
