import type { FastifyInstance } from 'fastify';
import { describe, expect, it, vi } from 'vitest';
import { splitRows, stackRows } from '../src/batching.js';
import { loadConfig } from '../src/config.js';
import type { Matrix } from '../src/matrix.js';
import { captureLogs, LINEAR, MLP, PODS, startApp } from './helpers.js';

/** `count` different pods, scaled from the example ones. */
function pods(count: number, scale: number): number[][] {
  return Array.from({ length: count }, (_, i) =>
    (PODS[i % PODS.length] as number[]).map((value) => value * scale * (1 + i / 10)),
  );
}

const predict = (app: FastifyInstance, model: string, instances: number[][]) =>
  app.inject({ method: 'POST', url: `/predict/${model}`, payload: { instances } });

/** Counts the serving version's model calls, and lets a test make them fail. */
function watch(app: FastifyInstance, model: string) {
  const handle = app.models.acquire(model);
  const loaded = handle.model.model;
  handle.release();
  let failWhen: ((input: Matrix) => boolean) | undefined;
  const original = loaded.predict.bind(loaded);
  const spy = vi.spyOn(loaded, 'predict').mockImplementation(async (input: Matrix) => {
    if (failWhen?.(input)) throw new Error('backend failure');
    return original(input);
  });
  return {
    calls: () => spy.mock.calls.map(([input]) => (input as Matrix).rows),
    failWhen(rule: (input: Matrix) => boolean) {
      failWhen = rule;
    },
  };
}

describe('dynamic batching', () => {
  it.each([LINEAR, MLP])(
    'answers each of many concurrent %s requests what it answers alone, in fewer model calls',
    async (model) => {
      const requests = Array.from({ length: 12 }, (_, i) => pods(1 + (i % 5), 1 + i / 7));
      const alone = await startApp({ BATCH_MAX_ROWS: '0' });
      const expected: number[][] = [];
      for (const instances of requests) expected.push((await predict(alone, model, instances)).json().predictions);

      const app = await startApp();
      const calls = watch(app, model);
      const answers = await Promise.all(requests.map((instances) => predict(app, model, instances)));
      expect(answers.map((a) => a.statusCode)).toEqual(requests.map(() => 200));
      const predictions = answers.map((a) => a.json().predictions as number[]);
      for (const [i, values] of predictions.entries()) {
        const wanted = expected[i] as number[];
        // Bit for bit: a row's answer does not depend on the rows it was batched with.
        expect(values).toEqual(wanted);
      }
      const made = calls.calls();
      expect(made.length).toBeLessThan(requests.length);
      expect(made.reduce((sum, rows) => sum + rows, 0)).toBe(requests.reduce((sum, r) => sum + r.length, 0));
    },
  );

  it('never puts more than BATCH_MAX_ROWS rows in one call; a larger request runs alone', async () => {
    const app = await startApp({ BATCH_MAX_ROWS: '10' });
    const model = watch(app, LINEAR);
    const requests = [pods(4, 1), pods(4, 2), pods(4, 3), pods(25, 1), pods(2, 4)];
    const answers = await Promise.all(requests.map((instances) => predict(app, LINEAR, instances)));
    expect(answers.map((a) => a.statusCode)).toEqual([200, 200, 200, 200, 200]);
    expect(Math.max(...model.calls().filter((rows) => rows !== 25))).toBeLessThanOrEqual(10);
    expect(model.calls()).toContain(25);
  });

  it('runs the requests of a failed batch one by one: only the failing one gets its 500', async () => {
    const app = await startApp();
    const model = watch(app, LINEAR);
    const poisoned = pods(3, 1000);
    // The backend fails on any input holding the poisoned rows, batched or alone.
    model.failWhen((input) => Array.from(input.data).some((value) => value === (poisoned[0] as number[])[0]));
    const requests = [pods(2, 1), poisoned, pods(2, 2)];
    const answers = await Promise.all(requests.map((instances) => predict(app, LINEAR, instances)));
    expect(answers.map((a) => a.statusCode)).toEqual([200, 500, 200]);
    expect(answers[1]?.json().error.code).toBe('prediction_failed');
    // One batched call of all 7 rows, then each request alone; the fault was one request's, so
    // the version is still batched.
    expect(model.calls()).toEqual([7, 2, 3, 2]);
    await Promise.all([1, 2].map((scale) => predict(app, LINEAR, pods(2, scale))));
    expect(model.calls().slice(4)).toEqual([4]);
  });

  it('stops batching a version whose batched calls fail three times in a row where lone ones succeed, and says so once', async () => {
    const { lines, logStream } = captureLogs();
    const app = await startApp({ LOG_LEVEL: 'warn' }, { logStream });
    const model = watch(app, LINEAR);
    // A model that takes at most 3 rows a call, as one exported with a fixed batch size would.
    model.failWhen((input) => input.rows > 3);
    const warnings = () => lines.filter((line) => String(line.msg).startsWith('a batched prediction failed'));
    for (let round = 1; round <= 3; round++) {
      const answers = await Promise.all([2, 3, 2].map((rows) => predict(app, LINEAR, pods(rows, round))));
      expect(answers.map((a) => a.statusCode)).toEqual([200, 200, 200]);
      expect(model.calls().slice(-4)).toEqual([7, 2, 3, 2]);
      expect(warnings()).toHaveLength(round === 3 ? 1 : 0);
    }
    const again = await Promise.all([2, 2].map((rows) => predict(app, LINEAR, pods(rows, 4))));
    expect(again.map((a) => a.statusCode)).toEqual([200, 200]);
    expect(model.calls().slice(12)).toEqual([2, 2]);
    expect(warnings()).toEqual([expect.objectContaining({ model: LINEAR, version: 1 })]);
  });

  it('keeps batching a version whose batched call failed once and then succeeded', async () => {
    const app = await startApp();
    const model = watch(app, LINEAR);
    let failures = 1;
    model.failWhen((input) => input.rows > 3 && failures-- > 0);
    for (let round = 1; round <= 4; round++) {
      const answers = await Promise.all([2, 2].map((rows) => predict(app, LINEAR, pods(rows, round))));
      expect(answers.map((a) => a.statusCode)).toEqual([200, 200]);
    }
    // The first batch failed and ran alone; every later pair shared one call.
    expect(model.calls()).toEqual([4, 2, 2, 4, 4, 4]);
  });

  it('runs a batch as soon as it is full, without waiting out BATCH_MAX_DELAY_US', async () => {
    const app = await startApp({ BATCH_MAX_ROWS: '10', BATCH_MAX_DELAY_US: '1000000' });
    const model = watch(app, LINEAR);
    const started = performance.now();
    const answers = await Promise.all([1, 2].map((scale) => predict(app, LINEAR, pods(5, scale))));
    expect(answers.map((a) => a.statusCode)).toEqual([200, 200]);
    expect(model.calls()).toEqual([10]);
    // Waiting for the timer would take the whole second.
    expect(performance.now() - started).toBeLessThan(900);
  });

  it('is off with BATCH_MAX_ROWS=0: one model call per request', async () => {
    const app = await startApp({ BATCH_MAX_ROWS: '0' });
    const model = watch(app, LINEAR);
    await Promise.all([1, 2, 3].map((scale) => predict(app, LINEAR, pods(2, scale))));
    expect(model.calls()).toEqual([2, 2, 2]);
  });

  it('waits up to BATCH_MAX_DELAY_US for more requests when set', async () => {
    const app = await startApp({ BATCH_MAX_DELAY_US: '300000' });
    const model = watch(app, LINEAR);
    const first = predict(app, LINEAR, pods(2, 1));
    await new Promise((resolve) => setTimeout(resolve, 2));
    const second = predict(app, LINEAR, pods(2, 2));
    expect((await first).statusCode).toBe(200);
    expect((await second).statusCode).toBe(200);
    expect(model.calls()).toEqual([4]);
  });
});

describe('BATCH_MAX_ROWS and BATCH_MAX_DELAY_US', () => {
  it('default to batching what arrives together, without waiting', () => {
    expect(loadConfig({}).batching).toEqual({ maxRows: 1000, maxDelayUs: 0 });
    expect(loadConfig({ BATCH_MAX_ROWS: '0' }).batching).toBeUndefined();
  });

  it('refuse a delay over a second, and negative numbers', () => {
    expect(() => loadConfig({ BATCH_MAX_DELAY_US: '1000001' })).toThrow(/BATCH_MAX_DELAY_US/);
    expect(() => loadConfig({ BATCH_MAX_ROWS: '-1' })).toThrow(/BATCH_MAX_ROWS/);
  });

  it('refuse a delay that a request or a retired version could not wait out', () => {
    expect(() => loadConfig({ BATCH_MAX_DELAY_US: '50000', DRAIN_TIMEOUT_MS: '50' })).toThrow(
      /BATCH_MAX_DELAY_US: must be below DRAIN_TIMEOUT_MS and REQUEST_TIMEOUT_MS \(50 ms\)/,
    );
    expect(() => loadConfig({ BATCH_MAX_DELAY_US: '100000', REQUEST_TIMEOUT_MS: '100' })).toThrow(/BATCH_MAX_DELAY_US/);
    expect(loadConfig({ BATCH_MAX_DELAY_US: '40000', DRAIN_TIMEOUT_MS: '50' }).batching?.maxDelayUs).toBe(40000);
    expect(
      loadConfig({ BATCH_MAX_ROWS: '0', BATCH_MAX_DELAY_US: '100000', REQUEST_TIMEOUT_MS: '100' }).batching,
    ).toBeUndefined();
  });
});

describe('stackRows and splitRows', () => {
  it('stack matrices one under the other and cut the answer back', () => {
    const a = { data: Float64Array.of(1, 2, 3, 4), rows: 2, cols: 2 };
    const b = { data: Float64Array.of(5, 6), rows: 1, cols: 2 };
    const stacked = stackRows([a, b]);
    expect(stacked).toEqual({ data: Float64Array.of(1, 2, 3, 4, 5, 6), rows: 3, cols: 2 });
    const answer = { data: Float32Array.of(10, 20, 30), rows: 3, cols: 1 };
    expect(splitRows(answer, [2, 1])).toEqual([
      { data: Float32Array.of(10, 20), rows: 2, cols: 1 },
      { data: Float32Array.of(30), rows: 1, cols: 1 },
    ]);
  });

  it('refuse matrices of different widths, and an answer with the wrong number of rows', () => {
    const a = { data: Float64Array.of(1, 2), rows: 1, cols: 2 };
    const b = { data: Float64Array.of(1, 2, 3), rows: 1, cols: 3 };
    expect(() => stackRows([a, b])).toThrow(/cannot stack/);
    expect(() => splitRows({ data: Float32Array.of(1, 2), rows: 2, cols: 1 }, [1, 2])).toThrow(/2 rows for 3/);
  });
});
