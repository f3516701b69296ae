import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { type DecodeLimits, decodePrediction } from '../../src/codecs/prediction.js';
import { ApiError } from '../../src/errors.js';
import { PredictionPool, WorkerUnavailable } from '../../src/workers/pool.js';
import { ownBuffer } from '../../src/workers/tasks.js';

const LIMITS: DecodeLimits = { maxRows: 1000, maxColumns: 10, maxJsonDepth: 8, maxCsvLineBytes: 1000 };
const CSV = { type: 'text/csv', header: false } as const;
const body = (text: string) => new Uint8Array(Buffer.from(text));

let pool: PredictionPool | undefined;
afterEach(async () => {
  await pool?.close();
  pool = undefined;
});

describe('memory moved to a worker', () => {
  it('is the array’s own, copied when it shares Node’s Buffer pool (Node 21+ refuses to move that)', () => {
    const small = Buffer.from('1,2\n');
    expect(small.buffer.byteLength).toBeGreaterThan(small.byteLength);
    const moved = ownBuffer(small);
    expect(moved.buffer).not.toBe(small.buffer);
    expect([moved.byteOffset, moved.buffer.byteLength, Buffer.from(moved).toString()]).toEqual([0, 4, '1,2\n']);
    const own = new Float64Array(3);
    expect(ownBuffer(own)).toBe(own);
    const view = new Float64Array(own.buffer, 8, 2);
    expect(ownBuffer(view).buffer.byteLength).toBe(16);
  });
});

describe('the worker pool', () => {
  it('decodes as the event loop does', async () => {
    pool = new PredictionPool(1, 5);
    const text = '1,2\n3,4\n';
    const request = await pool.decode(CSV, Buffer.from(text), LIMITS, Date.now() + 10_000);
    expect(Array.from(request.matrix.data)).toEqual(Array.from(decodePrediction(CSV, text, LIMITS).matrix.data));
  });

  it('passes client errors back with their code and field', async () => {
    pool = new PredictionPool(1, 5);
    const refused = await pool.decode(CSV, body('1,2\n3,x\n'), LIMITS, Date.now() + 10_000).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ApiError);
    expect(refused).toMatchObject({ code: 'not_a_number', field: 'line 2, column 2' });
  });

  it('skips a task that starts past its deadline with a 504, and goes on serving', async () => {
    pool = new PredictionPool(1, 5);
    const late = await pool.decode(CSV, body('1,2\n'), LIMITS, Date.now() - 1).catch((e: unknown) => e);
    expect(late).toMatchObject({ code: 'deadline_exceeded', statusCode: 504 });
    const request = await pool.decode(CSV, body('1,2\n'), LIMITS, Date.now() + 10_000);
    expect(request.matrix.rows).toBe(1);
  });
});

describe('threads that cannot start', () => {
  it('fail the requests waiting for them as unavailable (not an uncaught error), once, and then every request', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'wattserve-broken-worker-'));
    const broken = path.join(dir, 'worker.mjs');
    await writeFile(broken, "throw new Error('the native addon does not load');\n");
    const failures: Error[] = [];
    pool = new PredictionPool(1, 5, (error, startFailed) => startFailed && failures.push(error), pathToFileURL(broken));
    expect(pool.usable).toBe(true);
    const waiting = pool.decode(CSV, body('1,2\n'), LIMITS, Date.now() + 10_000).catch((e: unknown) => e);
    expect(await waiting).toBeInstanceOf(WorkerUnavailable);
    expect(pool.usable).toBe(false);
    const later = await pool.decode(CSV, body('1,2\n'), LIMITS, Date.now() + 10_000).catch((e: unknown) => e);
    expect(later).toBeInstanceOf(WorkerUnavailable);
    expect(failures.map((error) => error.message)).toEqual(['the native addon does not load']);
    // What piscina had queued for the thread that never came is dropped, bodies and all.
    const queued = Array.from({ length: 5 }, () => pool?.decode(CSV, body('1,2\n'), LIMITS, Date.now() + 10_000));
    for (const task of queued) await expect(task).rejects.toBeInstanceOf(WorkerUnavailable);
  });
});
