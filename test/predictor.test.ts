import { mkdtemp, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { describe, expect, it, vi } from 'vitest';
import { InFlightLimit } from '../src/in-flight.js';
import type { Matrix } from '../src/matrix.js';
import { Predictor } from '../src/predictor.js';
import { PredictionPool } from '../src/workers/pool.js';
import { captureLogs, FEATURES, LINEAR, MLP, makeRepository, PODS, startApp } from './helpers.js';

/** `count` plausible pods, each a little different. */
function pods(count: number): number[][] {
  return Array.from({ length: count }, (_, i) =>
    (PODS[i % PODS.length] as number[]).map((value) => value * (1 + i / count)),
  );
}

const csv = (rows: number[][]) => `${rows.map((row) => row.join(',')).join('\n')}\n`;

function invoke(app: FastifyInstance, model: string, payload: string, type = 'text/csv') {
  return app.inject({
    method: 'POST',
    url: '/invocations',
    headers: { 'content-type': type, 'x-amzn-sagemaker-target-model': model },
    payload,
  });
}

const predict = (app: FastifyInstance, model: string, instances: number[][]) =>
  app.inject({ method: 'POST', url: `/predict/${model}`, payload: { instances } });

/** Makes the serving version of a model hang on every prediction until the returned function is called. */
function hang(app: FastifyInstance, model: string): { release: () => void; calls: () => number } {
  const handle = app.models.acquire(model);
  const loaded = handle.model.model;
  handle.release();
  const waiting: Array<() => void> = [];
  const original = loaded.predict.bind(loaded);
  const spy = vi
    .spyOn(loaded, 'predict')
    .mockImplementation(
      (input: Matrix) => new Promise<Matrix>((resolve) => waiting.push(() => resolve(original(input)))),
    );
  return {
    release: () => {
      spy.mockRestore();
      for (const resume of waiting.splice(0)) resume();
    },
    calls: () => spy.mock.calls.length,
  };
}

describe('MAX_CONCURRENT_PER_MODEL', () => {
  it('answers 429 model_busy with a retry hint past the limit, for that model only', async () => {
    // Without batching, each request is one model call: the two calls show both places are taken.
    const app = await startApp({ MAX_CONCURRENT_PER_MODEL: '2', RETRY_AFTER_SECONDS: '7', BATCH_MAX_ROWS: '0' });
    const stuck = hang(app, LINEAR);
    const first = [predict(app, LINEAR, PODS), predict(app, LINEAR, PODS)];
    await vi.waitFor(() => expect(stuck.calls()).toBe(2));

    const busy = await predict(app, LINEAR, PODS);
    expect(busy.statusCode).toBe(429);
    expect(busy.headers['retry-after']).toBe('7');
    expect(busy.json()).toEqual({
      error: {
        code: 'model_busy',
        message: expect.stringContaining('MAX_CONCURRENT_PER_MODEL'),
        field: 'model',
        retryAfterSeconds: 7,
      },
    });
    expect((await predict(app, MLP, PODS)).statusCode).toBe(200);

    stuck.release();
    expect((await Promise.all(first)).map((response) => response.statusCode)).toEqual([200, 200]);
    expect((await predict(app, LINEAR, PODS)).statusCode).toBe(200);
  });
});

describe('REQUEST_TIMEOUT_MS', () => {
  it('answers 504 deadline_exceeded when the model does not answer in time, and keeps serving', async () => {
    const app = await startApp({ REQUEST_TIMEOUT_MS: '200', MAX_CONCURRENT_PER_MODEL: '1' });
    const stuck = hang(app, LINEAR);
    const late = await predict(app, LINEAR, PODS);
    expect(late.statusCode).toBe(504);
    expect(late.json().error.code).toBe('deadline_exceeded');

    // The hung computation still holds its place until it ends: the model is busy, not overrun.
    expect((await predict(app, LINEAR, PODS)).statusCode).toBe(429);
    stuck.release();
    await vi.waitFor(async () => expect((await predict(app, LINEAR, PODS)).statusCode).toBe(200));
    expect(app.models.get(LINEAR)?.serving.version).toBe(1);
  });
});

describe('large requests in worker threads', () => {
  const workers = { WORKER_THREADS: '1', WORKER_ROWS_THRESHOLD: '10' };

  it('answer exactly as the event loop does, in every media type', async () => {
    const inThread = await startApp();
    const pooled = await startApp(workers);
    const rows = pods(40);
    const header = `${[...FEATURES].reverse().join(',')}\n`;
    const reversed = csv(rows.map((row) => [...row].reverse()));
    const cases: Array<[string, string, Record<string, string>]> = [
      ['text/csv', csv(rows), {}],
      ['text/csv; header=present', header + reversed, {}],
      ['application/jsonlines', rows.map((row) => JSON.stringify(row)).join('\n'), { accept: 'text/csv' }],
      ['application/json', JSON.stringify({ instances: rows }), { accept: 'application/jsonlines' }],
    ];
    for (const model of [LINEAR, MLP]) {
      for (const [type, payload, headers] of cases) {
        const ask = (app: FastifyInstance) =>
          app.inject({
            method: 'POST',
            url: '/invocations',
            headers: { 'content-type': type, 'x-amzn-sagemaker-target-model': model, ...headers },
            payload,
          });
        const [expected, actual] = [await ask(inThread), await ask(pooled)];
        expect(actual.statusCode, `${model} ${type}`).toBe(200);
        expect(actual.headers['content-type']).toBe(expected.headers['content-type']);
        expect(actual.body).toBe(expected.body);
      }
      const native = await predict(pooled, model, rows);
      expect(native.headers['content-type']).toMatch(/^application\/json/);
      expect(native.json()).toEqual((await predict(inThread, model, rows)).json());
    }
  });

  it('compute large requests off the event loop and small ones on it', async () => {
    const app = await startApp(workers);
    const handle = app.models.acquire(LINEAR);
    vi.spyOn(handle.model.model, 'predict').mockRejectedValue(new Error('not on the event loop'));
    handle.release();
    expect((await invoke(app, LINEAR, csv(pods(40)))).statusCode).toBe(200);
    expect((await invoke(app, LINEAR, csv(pods(3)))).statusCode).toBe(500);
  });

  it('refuse a bad large body with the same code and field as a small one', async () => {
    const app = await startApp(workers);
    const rows = pods(40).map((row) => row.join(','));
    rows[30] = rows[30]?.replace(/^[^,]+/, 'oops') ?? '';
    const response = await invoke(app, LINEAR, `${rows.join('\n')}\n`);
    expect(response.statusCode).toBe(400);
    expect(response.json().error).toMatchObject({ code: 'not_a_number', field: 'line 31, column 1' });
    // Deeper than MAX_JSON_DEPTH (3 here) in a body large enough for the worker: refused there too.
    const nested = [...pods(39), [[1]]] as unknown as number[][];
    const deep = await predict(await startApp({ ...workers, MAX_JSON_DEPTH: '3' }), LINEAR, nested);
    expect(deep.json().error).toMatchObject({ code: 'json_too_deep', field: 'body' });
  });

  it('run on the event loop, same answers, when the threads cannot start at all', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'wattserve-broken-worker-'));
    const broken = path.join(dir, 'worker.mjs');
    await writeFile(broken, "throw new Error('the native addon does not load');\n");
    const app = await startApp();
    const failures: Error[] = [];
    const predictor = new Predictor(app.models, {
      limits: app.config.limits,
      inFlight: new InFlightLimit(10, 5),
      pool: new PredictionPool(
        1,
        5,
        (error, startFailed) => startFailed && failures.push(error),
        pathToFileURL(broken),
      ),
      workerRowsThreshold: 10,
      workerBytesThreshold: 1_000_000,
      requestTimeoutMs: 10_000,
      log: app.log,
    });
    const media = { type: 'text/csv', header: false } as const;
    const rows = pods(40);
    const deadline = predictor.deadline(0);
    const request = await predictor.decode(media, Buffer.from(csv(rows)), deadline);
    const { model, result } = await predictor.predict({ ...request, model: LINEAR }, undefined, deadline);
    const encoded = await predictor.encode(model, result, 'text/csv', deadline);
    const inThread = await app.inject({
      method: 'POST',
      url: '/invocations',
      headers: { 'content-type': 'text/csv', accept: 'text/csv', 'x-amzn-sagemaker-target-model': LINEAR },
      payload: csv(rows),
    });
    expect(String(encoded)).toBe(inThread.body);
    expect(failures).toHaveLength(1);
  });

  it('fall back to the event loop when a worker cannot load the version as it was loaded', async () => {
    const root = await makeRepository({ 'm/1': { model: LINEAR } });
    const { lines, logStream } = captureLogs();
    const app = await startApp({ ...workers, MODEL_REPOSITORY: root, LOG_LEVEL: 'warn' }, { logStream });
    // The file's time changes: to a worker it is no longer the version the registry loaded.
    const later = new Date(Date.now() + 60_000);
    await utimes(path.join(root, 'm/1/model.onnx'), later, later);
    const first = await invoke(app, 'm', csv(pods(40)));
    const second = await invoke(app, 'm', csv(pods(40)));
    expect([first.statusCode, second.statusCode]).toEqual([200, 200]);
    expect(second.body).toBe(first.body);
    const warnings = lines.filter((line) => String(line.msg).includes('a worker thread cannot load this version'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ model: 'm', version: 1 });
  });
});
