/**
 * Differential fuzz of the worker threads: the same requests, sent one by one to an app that
 * computes everything on the event loop and all at once to an app that sends every request of two
 * rows or more to a worker thread (decoding, prediction, encoding). Invariants: no 5xx, the
 * catalogue's error body, and the same answer from both, byte for byte, each to its own request.
 */
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KEPLER, LINEAR, MLP } from '../helpers.js';
import { fuzzApp } from './apps.js';
import {
  acceptHeader,
  csvBody,
  csvHeaderContentType,
  jsonLinesBody,
  jsonLinesContentType,
  predictBody,
} from './arbitraries.js';
import {
  type Answer,
  describeExchange,
  expectPrototypesUntouched,
  expectWellFormed,
  fuzzParams,
  fuzzTimeout,
  type Sent,
  send,
  Tally,
} from './support.js';

const model = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(LINEAR, MLP) },
  { weight: 1, arbitrary: fc.constant(KEPLER) },
);

/** A prediction request in any of the three encodings, to /predict or /invocations. */
const predictionRequest: fc.Arbitrary<Sent> = fc.oneof(
  fc.tuple(model, predictBody).map(([name, body]) => ({
    method: 'POST',
    url: `/predict/${name}`,
    headers: { 'content-type': 'application/json' },
    payload: body,
  })),
  fc
    .tuple(model, acceptHeader, predictBody)
    .map(([name, accept, body]) => invocation(name, accept, 'application/json', body)),
  fc
    .tuple(model, acceptHeader, csvBody, csvHeaderContentType)
    .map(([name, accept, { text, header }, headerType]) =>
      invocation(name, accept, header ? headerType : 'text/csv', text),
    ),
  fc
    .tuple(model, acceptHeader, jsonLinesBody, jsonLinesContentType)
    .map(([name, accept, body, type]) => invocation(name, accept, type, body)),
);

function invocation(name: string, accept: string | undefined, type: string, body: string): Sent {
  const headers: Record<string, string> = { 'content-type': type, 'x-amzn-sagemaker-target-model': name };
  if (accept !== undefined) headers.accept = accept;
  return { method: 'POST', url: '/invocations', headers, payload: body };
}

describe('fuzz: worker threads against the event loop', () => {
  let inThread: FastifyInstance;
  let workers: FastifyInstance;

  beforeAll(async () => {
    inThread = await fuzzApp({ WORKER_THREADS: '0' });
    workers = await fuzzApp({ WORKER_THREADS: '1', WORKER_ROWS_THRESHOLD: '1' });
  });

  afterAll(async () => {
    await Promise.all([inThread?.close(), workers?.close()]);
  });

  it(
    'requests sent at once to the worker threads get the answers the event loop gives them one by one',
    async () => {
      const tally = new Tally();
      await fc.assert(
        fc.asyncProperty(fc.array(predictionRequest, { minLength: 1, maxLength: 6 }), async (requests) => {
          const expected: Answer[] = [];
          for (const sent of requests) expected.push(await send(inThread, sent));
          const answers = await Promise.all(requests.map((sent) => send(workers, sent)));
          requests.forEach((sent, i) => {
            const reference = expected[i];
            const answer = answers[i];
            if (reference === undefined || answer === undefined) throw new Error('missing answer');
            tally.add(expectWellFormed(sent, reference));
            expectWellFormed(sent, answer);
            const where = `event loop:\n${describeExchange(sent, reference)}\nworkers:\n${describeExchange(sent, answer)}`;
            expect(answer.statusCode, where).toBe(reference.statusCode);
            expect(answer.headers['content-type'], where).toBe(reference.headers['content-type']);
            expect(answer.body, where).toBe(reference.body);
          });
          expectPrototypesUntouched();
        }),
        fuzzParams(0.5),
      );
      tally.expectVariety({ distinct: 5 });
    },
    fuzzTimeout(0.5, 200),
  );
});
