/**
 * Fuzz of Kepler's protocols over HTTP: POST /kepler/estimate (errors in Kepler's shape,
 * `{"powers": {}, "msg"}`, with a 4xx) and POST /model (the catalogue's errors). Invariants: no
 * 5xx, the route's error shape, watts for every pod and component or the selected model's weights
 * or zip, nothing leaked, Object.prototype untouched, the server still serving.
 */
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { describe, expect, it } from 'vitest';
import { type Baseline, expectStillServing, withShippedApp } from './apps.js';
import {
  decorated,
  deepNesting,
  fuzzString,
  jsonObject,
  jsonString,
  jsonText,
  KEPLER_FEATURES,
  keyText,
  mangled,
  pollutionEntry,
  rowOf,
  shuffled,
} from './arbitraries.js';
import {
  describeExchange,
  expectJsonVerdict,
  expectKeplerFailure,
  expectNoLeak,
  expectPrototypesUntouched,
  expectWellFormed,
  fuzzParams,
  fuzzTimeout,
  jsonVerdict,
  type Sent,
  send,
  Tally,
} from './support.js';

const EXTRA_METRICS = ['bpf_block_irq', 'bpf_net_rx_irq', 'bpf_net_tx_irq', 'cpu_cycles', 'cgroupfs_cpu_usage_us'];

/** `metrics` as a list: the model's features among others, in any order, mostly; else anything. */
const metrics: fc.Arbitrary<string[] | string> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.subarray(EXTRA_METRICS).chain((extra) => shuffled([...KEPLER_FEATURES, ...extra])),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(shuffled([...KEPLER_FEATURES, ...EXTRA_METRICS]), fc.nat(), fuzzString, fc.boolean())
      .map(([names, at, odd, drop]) => {
        const copy = [...names];
        if (drop) copy.splice(at % copy.length, 1);
        else copy[at % copy.length] = odd;
        return copy;
      }),
  },
  { weight: 1, arbitrary: jsonText },
);

const choice = (good: readonly string[], odd: readonly string[]) =>
  fc.oneof(
    { weight: 16, arbitrary: fc.constantFrom(...good).map(jsonString) },
    { weight: 2, arbitrary: fc.constantFrom(...odd).map(jsonString) },
    { weight: 1, arbitrary: fuzzString.map(jsonString) },
    { weight: 1, arbitrary: jsonText },
  );

/** The selection fields both Kepler routes read, as JSON text entries. */
const selectionFields = {
  output_type: choice(['AbsPower'], ['DynPower', '', 'abspower']),
  source: choice(['intel_rapl', 'rapl', 'rapl-sysfs'], ['acpi', '', 'RAPL', 'trained']),
  trainer_name: fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom('""', 'null') },
    { weight: 2, arbitrary: fc.constantFrom('SGDRegressorTrainer', 'SGD', 'Xgboost', 'S').map(jsonString) },
    { weight: 1, arbitrary: fuzzString.map(jsonString) },
    { weight: 1, arbitrary: jsonText },
  ),
  filter: fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom('""', 'null') },
    {
      weight: 3,
      arbitrary: fc
        .constantFrom(
          'mae:50;abs_max_corr:0.5',
          'mae:1e9',
          'mae:0',
          'abs_max_corr:-1',
          'mae:',
          ';;',
          'mae:x',
          'toString:1',
          '__proto__:1',
          'constructor:0',
          'hasOwnProperty:1e9',
          'mae:1:2',
          ':5',
          'mae:Infinity',
          'mae:-1e999',
        )
        .map(jsonString),
    },
    { weight: 1, arbitrary: fuzzString.map(jsonString) },
    { weight: 1, arbitrary: jsonText },
  ),
};

/** Entries of a request, shuffled, with extra, repeated and pollution keys at times. */
function withExtras(entries: fc.Arbitrary<Array<[string, string]>>): fc.Arbitrary<string> {
  return fc
    .tuple(
      entries,
      fc.oneof(
        { weight: 6, arbitrary: fc.constant([] as Array<[string, string]>) },
        { weight: 1, arbitrary: fc.array(fc.tuple(keyText, jsonText), { minLength: 1, maxLength: 2 }) },
        { weight: 1, arbitrary: fc.array(pollutionEntry, { minLength: 1, maxLength: 1 }) },
      ),
    )
    .chain(([fields, extra]) => shuffled([...fields, ...extra]))
    .map(jsonObject);
}

function presentEntries(record: Record<string, string | undefined>): Array<[string, string]> {
  return Object.entries(record).filter((entry): entry is [string, string] => entry[1] !== undefined);
}

/** Kepler's estimator request: rows as wide as `metrics` mostly, system features paired or not. */
const estimateEntries: fc.Arbitrary<Array<[string, string]>> = metrics.chain((names) => {
  const width = Array.isArray(names) ? names.length : 2;
  return fc
    .record(
      {
        metrics: fc.constant(Array.isArray(names) ? JSON.stringify(names) : names),
        values: fc.oneof(
          { weight: 8, arbitrary: fc.array(rowOf(width), { maxLength: 4 }).map((rows) => `[${rows.join(',')}]`) },
          {
            weight: 1,
            arbitrary: fc.array(rowOf(width + 1), { minLength: 1, maxLength: 2 }).map((rows) => `[${rows.join(',')}]`),
          },
          {
            weight: 1,
            arbitrary: fc.integer({ min: 51, max: 70 }).map(
              (n) =>
                `[${Array(n)
                  .fill(`[${Array(width).fill('1').join(',')}]`)
                  .join(',')}]`,
            ),
          },
          { weight: 1, arbitrary: jsonText },
        ),
        ...selectionFields,
        system: fc.oneof(
          { weight: 6, arbitrary: fc.constant(['null', 'null']) },
          {
            weight: 2,
            arbitrary: fc
              .constantFrom('Sapphire Rapids', '__proto__', '', 'constructor')
              .map((value) => ['["cpu_architecture"]', JSON.stringify([value])]),
          },
          { weight: 1, arbitrary: fc.tuple(jsonText, jsonText) },
        ),
      },
      { requiredKeys: ['metrics', 'values', 'output_type', 'source'] },
    )
    .map(({ system, ...fields }) =>
      presentEntries({ ...fields, system_features: system?.[0], system_values: system?.[1] }),
    );
});

const estimateBody: fc.Arbitrary<string> = decorated(
  fc.oneof(
    { weight: 12, arbitrary: withExtras(estimateEntries) },
    { weight: 1, arbitrary: jsonText },
    { weight: 1, arbitrary: deepNesting },
    { weight: 1, arbitrary: mangled(withExtras(estimateEntries)) },
  ),
);

const modelEntries: fc.Arbitrary<Array<[string, string]>> = fc
  .record(
    {
      metrics: metrics.map((names) => (Array.isArray(names) ? JSON.stringify(names) : names)),
      ...selectionFields,
      node_type: fc.oneof(
        { weight: 6, arbitrary: fc.constantFrom('0', '1', '-1', '"x"', 'null') },
        { weight: 1, arbitrary: jsonText },
      ),
      weight: fc.oneof(
        { weight: 6, arbitrary: fc.constantFrom('true', 'false') },
        { weight: 1, arbitrary: fc.constantFrom('"true"', '1', '0', 'null', '[]') },
      ),
    },
    { requiredKeys: ['metrics', 'output_type', 'source'] },
  )
  .map(presentEntries);

const modelBody: fc.Arbitrary<string> = decorated(
  fc.oneof(
    { weight: 12, arbitrary: withExtras(modelEntries) },
    { weight: 1, arbitrary: jsonText },
    { weight: 1, arbitrary: mangled(withExtras(modelEntries)) },
  ),
);

describe('fuzz: Kepler protocols over HTTP', () => {
  let app: FastifyInstance;
  let baseline: Baseline;
  withShippedApp((ready, before) => {
    app = ready;
    baseline = before;
  });

  it(
    'POST /kepler/estimate: watts per component and pod, or a 4xx in Kepler’s failure shape',
    async () => {
      const tally = new Tally();
      await fc.assert(
        fc.asyncProperty(estimateBody, async (body) => {
          const sent: Sent = {
            method: 'POST',
            url: '/kepler/estimate',
            headers: { 'content-type': 'application/json' },
            payload: body,
          };
          const answer = await send(app, sent);
          const where = describeExchange(sent, answer);
          expect(answer.statusCode, `5xx: ${where}`).toBeLessThan(500);
          expectNoLeak(sent, answer);
          const verdict = jsonVerdict(body);
          if (answer.statusCode === 200) {
            expect(verdict.kind, where).toBe('parsed');
            const reply = JSON.parse(answer.body) as {
              powers: Record<string, unknown>;
              msg: unknown;
              core_ratio: unknown;
            };
            expect(Object.keys(reply).sort(), where).toEqual(['core_ratio', 'msg', 'powers']);
            expect(reply.msg, where).toBe('');
            const values = (verdict.kind === 'parsed' ? (verdict.value as { values: unknown[] }).values : []).length;
            const components = Object.keys(reply.powers);
            expect(components.sort(), where).toEqual(['core', 'dram', 'package', 'uncore']);
            for (const watts of Object.values(reply.powers)) {
              expect(Array.isArray(watts) && watts.length === values, where).toBe(true);
              for (const w of watts as unknown[])
                expect(typeof w === 'number' && Number.isFinite(w) && w >= 0, where).toBe(true);
            }
            tally.add('2xx');
          } else {
            tally.add(expectKeplerFailure(sent, answer));
            // The reason, not the shape, tells the refusals apart.
            const { msg } = JSON.parse(answer.body) as { msg: string };
            const reason = (msg.split(':')[0] ?? '').replace(/\[\d+\]/g, '[]').replace(/(matches \S+ \S+).*/s, '$1');
            tally.add(`msg ${reason}`);
          }
          expectPrototypesUntouched();
          await expectStillServing(app, baseline);
        }),
        fuzzParams(),
      );
      tally.expectVariety({ distinct: 6 });
    },
    fuzzTimeout(),
  );

  it(
    'POST /model: the selected model’s weights or zip, or a catalogue 4xx',
    async () => {
      const tally = new Tally();
      await fc.assert(
        fc.asyncProperty(modelBody, async (body) => {
          const sent: Sent = {
            method: 'POST',
            url: '/model',
            headers: { 'content-type': 'application/json' },
            payload: body,
          };
          const answer = await send(app, sent);
          const outcome = expectWellFormed(sent, answer);
          tally.add(outcome);
          const verdict = expectJsonVerdict(sent, answer, outcome);
          if (outcome === '2xx') {
            const where = describeExchange(sent, answer);
            const weight = verdict.kind === 'parsed' ? (verdict.value as { weight?: unknown }).weight : undefined;
            if (weight === true) {
              const reply = JSON.parse(answer.body) as { model_name?: unknown };
              expect(reply.model_name, where).toBe('SGDRegressorTrainer_0');
            } else {
              expect(answer.headers['content-type'], where).toBe('application/zip');
              expect(answer.rawPayload.subarray(0, 2).toString('latin1'), where).toBe('PK');
            }
          }
          expectPrototypesUntouched();
          await expectStillServing(app, baseline);
        }),
        fuzzParams(),
      );
      tally.expectVariety({ distinct: 3, parserCodes: ['invalid_json'] });
    },
    fuzzTimeout(),
  );
});
