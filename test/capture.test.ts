import { appendFile, link, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  type CaptureFile,
  type CaptureLog,
  CaptureWriter,
  type CaptureWriterOptions,
  CURRENT_FILE,
  captureRecord,
  captureTap,
  type FileOpener,
  openForAppend,
  rowsJson,
} from '../src/capture.js';
import type { Matrix } from '../src/matrix.js';
import type { ModelVersion } from '../src/registry/loader.js';

/** How long an asynchronous write may take to show: generous, for a loaded machine. */
const WAIT = { timeout: 10_000 };

const folders: string[] = [];
const writers: CaptureWriter[] = [];

afterEach(async () => {
  await Promise.all(writers.splice(0).map((writer) => writer.close(1000)));
  await Promise.all(folders.splice(0).map((folder) => rm(folder, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'wattserve-capture-'));
  folders.push(dir);
  return dir;
}

function quietLog(): CaptureLog & { warnings: string[]; infos: string[] } {
  const warnings: string[] = [];
  const infos: string[] = [];
  return {
    warnings,
    infos,
    warn: (_details, message) => warnings.push(message),
    info: (_details, message) => infos.push(message),
  };
}

function writer(options: Partial<CaptureWriterOptions> & { dir: string }): CaptureWriter {
  const made = new CaptureWriter({
    maxFileBytes: 1 << 20,
    maxFiles: 3,
    bufferBytes: 1 << 20,
    log: quietLog(),
    ...options,
  });
  writers.push(made);
  return made;
}

/** `{"n":i,"pad":"xxx…"}`: a record of exactly `bytes` bytes with its newline. */
function record(n: number, bytes = 40): string {
  const bare = JSON.stringify({ n, pad: '' });
  return JSON.stringify({ n, pad: 'x'.repeat(bytes - bare.length - 1) });
}

async function linesOf(file: string): Promise<unknown[]> {
  const text = await readFile(file, 'utf8');
  expect(text === '' || text.endsWith('\n'), 'a file ends with a whole line').toBe(true);
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line));
}

/** A file whose appends wait until released, or fail while `failing` is set; counts its writes. */
function fakeDisk() {
  const disk = {
    writes: 0,
    bytes: Buffer.alloc(0),
    failing: undefined as string | undefined,
    held: false,
    release: () => {},
  };
  const opener: FileOpener = async () => {
    const file: CaptureFile = {
      size: disk.bytes.byteLength,
      async append(parts) {
        disk.writes++;
        const data = Buffer.concat(parts);
        if (disk.held) await new Promise<void>((resolve) => (disk.release = resolve));
        if (disk.failing !== undefined) {
          // Half the batch reaches the disk before it fills up.
          disk.bytes = Buffer.concat([disk.bytes, data.subarray(0, Math.floor(data.byteLength / 2))]);
          throw Object.assign(new Error('no space left on device'), { code: disk.failing });
        }
        disk.bytes = Buffer.concat([disk.bytes, data]);
      },
      async truncate(size) {
        disk.bytes = disk.bytes.subarray(0, size);
      },
      async close() {},
    };
    return file;
  };
  return { disk, opener };
}

describe('CaptureWriter', () => {
  it('writes every record as one whole line, in order, and close() flushes what waits', async () => {
    const dir = await tempDir();
    const capture = writer({ dir: path.join(dir, 'made', 'for', 'it') });
    for (let n = 0; n < 500; n++) expect(capture.append(record(n))).toBe(true);
    await capture.close();
    const lines = await linesOf(path.join(dir, 'made', 'for', 'it', CURRENT_FILE));
    expect(lines).toEqual(Array.from({ length: 500 }, (_, n) => JSON.parse(record(n))));
    expect(capture.stats.written).toBe(500);
    expect(capture.append(record(500))).toBe(false);
    expect(capture.stats.dropped.closed).toBe(1);
  });

  it('appends to the file a previous run left', async () => {
    const dir = await tempDir();
    const first = writer({ dir });
    first.append(record(1));
    await first.close();
    const second = writer({ dir });
    second.append(record(2));
    await second.close();
    expect(await linesOf(path.join(dir, CURRENT_FILE))).toEqual([JSON.parse(record(1)), JSON.parse(record(2))]);
  });

  it('rotates before a file would pass maxFileBytes, names rotated files by age and keeps the newest maxFiles', async () => {
    const dir = await tempDir();
    let clock = Date.parse('2030-01-02T03:04:05.006Z');
    // 40-byte lines, 100-byte files: two lines per file.
    const capture = writer({ dir, maxFileBytes: 100, maxFiles: 3, now: () => new Date(clock), pid: 42 });
    for (let n = 0; n < 11; n++) {
      capture.append(record(n));
      // One write per record, a second apart.
      await vi.waitFor(() => expect(capture.stats.written).toBe(n + 1), WAIT);
      clock += 1000;
    }
    await capture.close();
    const files = (await readdir(dir)).sort();
    expect(files).toEqual([
      'capture-20300102T030413006Z-42-0000.jsonl',
      'capture-20300102T030415006Z-42-0000.jsonl',
      CURRENT_FILE,
    ]);
    const kept = [];
    for (const file of files) {
      expect((await readFile(path.join(dir, file))).byteLength).toBeLessThanOrEqual(100);
      kept.push(...(await linesOf(path.join(dir, file))));
    }
    // The newest records, oldest first: 6 and 7, 8 and 9, then 10 in the current file.
    expect(kept).toEqual([6, 7, 8, 9, 10].map((n) => JSON.parse(record(n))));
  });

  it('names two rotations in one millisecond apart, in order', async () => {
    const dir = await tempDir();
    const capture = writer({ dir, maxFileBytes: 40, maxFiles: 10, now: () => new Date(0), pid: 7 });
    for (let n = 0; n < 4; n++) capture.append(record(n));
    await capture.close();
    expect((await readdir(dir)).sort()).toEqual([
      'capture-19700101T000000000Z-7-0000.jsonl',
      'capture-19700101T000000000Z-7-0001.jsonl',
      'capture-19700101T000000000Z-7-0002.jsonl',
      CURRENT_FILE,
    ]);
    expect(await linesOf(path.join(dir, 'capture-19700101T000000000Z-7-0001.jsonl'))).toEqual([JSON.parse(record(1))]);
  });

  it('never overwrites a rotated file already there (a restart in the same millisecond, a clock set back)', async () => {
    const dir = await tempDir();
    const taken = 'capture-19700101T000000000Z-7-0000.jsonl';
    await writeFile(path.join(dir, taken), 'kept\n');
    const capture = writer({ dir, maxFileBytes: 40, maxFiles: 10, now: () => new Date(0), pid: 7 });
    for (let n = 0; n < 2; n++) capture.append(record(n));
    await capture.close();
    expect(await readFile(path.join(dir, taken), 'utf8')).toBe('kept\n');
    expect((await readdir(dir)).sort()).toEqual([taken, 'capture-19700101T000000000Z-7-0001.jsonl', CURRENT_FILE]);
    expect(await linesOf(path.join(dir, 'capture-19700101T000000000Z-7-0001.jsonl'))).toEqual([JSON.parse(record(0))]);
    expect(await linesOf(path.join(dir, CURRENT_FILE))).toEqual([JSON.parse(record(1))]);
  });

  it('lets go of a current file still linked under a rotated name (a crash mid-rotation) rather than append to both', async () => {
    const dir = await tempDir();
    const rotated = path.join(dir, 'capture-19700101T000000000Z-7-0000.jsonl');
    await writeFile(rotated, `${record(0)}\n`);
    await link(rotated, path.join(dir, CURRENT_FILE));
    const capture = writer({ dir });
    capture.append(record(1));
    await capture.close();
    expect(await linesOf(rotated)).toEqual([JSON.parse(record(0))]);
    expect(await linesOf(path.join(dir, CURRENT_FILE))).toEqual([JSON.parse(record(1))]);
  });

  it('makes its directory and files readable by their owner only (0700, 0600), rotated files included', async () => {
    const dir = path.join(await tempDir(), 'private');
    const capture = writer({ dir, maxFileBytes: 40, maxFiles: 10 });
    for (let n = 0; n < 2; n++) capture.append(record(n));
    await capture.close();
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    const files = await readdir(dir);
    expect(files).toHaveLength(2);
    for (const file of files) expect((await stat(path.join(dir, file))).mode & 0o777, file).toBe(0o600);
  });

  it('cuts a partial last line left by a crash back to the last whole line before appending', async () => {
    const dir = await tempDir();
    await writeFile(path.join(dir, CURRENT_FILE), '{"a":1}\n{"trunc');
    const log = quietLog();
    const capture = writer({ dir, log });
    capture.append('{"b":2}');
    await capture.close();
    expect(await readFile(path.join(dir, CURRENT_FILE), 'utf8')).toBe('{"a":1}\n{"b":2}\n');
    expect(log.warnings).toEqual([
      'capture file ended in a partial line (an interrupted write): cut back to its last whole line',
    ]);
    // A file holding no whole line at all is emptied.
    await writeFile(path.join(dir, CURRENT_FILE), '{"trunc');
    const again = await openForAppend(path.join(dir, CURRENT_FILE));
    expect([again.size, again.repaired]).toEqual([0, 7]);
    await again.close();
    expect(await readFile(path.join(dir, CURRENT_FILE), 'utf8')).toBe('');
  });

  it('when a failed write cannot be cut back either, the next open of the file repairs it', async () => {
    const dir = await tempDir();
    let failures = 1;
    // The real file, whose first write stops halfway and whose truncate fails too.
    const opener: FileOpener = async (file) => {
      const real = await openForAppend(file);
      return {
        ...real,
        size: real.size,
        async append(parts) {
          if (failures-- > 0) {
            // Straight to the file, whatever the writer's API: half a line, as a failing disk leaves it.
            const data = Buffer.isBuffer(parts) ? parts : Buffer.concat(parts);
            await appendFile(file, data.subarray(0, data.byteLength - 5));
            throw Object.assign(new Error('I/O error'), { code: 'EIO' });
          }
          await real.append(parts);
        },
        truncate: async () => {
          throw Object.assign(new Error('I/O error'), { code: 'EIO' });
        },
      };
    };
    const capture = writer({ dir, openFile: opener, retryMs: 10 });
    capture.append(record(0));
    await vi.waitFor(() => expect(capture.stats.dropped.write_failed).toBe(1), WAIT);
    capture.append(record(1));
    await vi.waitFor(() => expect(capture.stats.written).toBe(1), WAIT);
    expect(await linesOf(path.join(dir, CURRENT_FILE))).toEqual([JSON.parse(record(1))]);
  });

  it('gathers records that come within flushMs into one write', async () => {
    const { disk, opener } = fakeDisk();
    const capture = writer({ dir: await tempDir(), openFile: opener, flushMs: 200 });
    for (let n = 0; n < 20; n++) {
      capture.append(record(n));
      await new Promise((resolve) => setImmediate(resolve));
    }
    await vi.waitFor(() => expect(capture.stats.written).toBe(20), WAIT);
    expect(disk.writes).toBe(1);
  });

  it('drops and counts a record larger than a whole file', async () => {
    const dir = await tempDir();
    const capture = writer({ dir, maxFileBytes: 100 });
    expect(capture.append(record(1, 101))).toBe(false);
    expect(capture.append(record(2, 100))).toBe(true);
    await capture.close();
    expect(capture.stats.dropped.too_large).toBe(1);
    expect(await linesOf(path.join(dir, CURRENT_FILE))).toEqual([JSON.parse(record(2, 100))]);
  });

  it('on a slow disk, holds at most bufferBytes, drops and counts the rest, and batches what waited', async () => {
    const { disk, opener } = fakeDisk();
    const dropped: Record<string, number> = {};
    const log = quietLog();
    const capture = writer({
      dir: await tempDir(),
      bufferBytes: 400,
      openFile: opener,
      log,
      dropped: (reason, count) => {
        dropped[reason] = (dropped[reason] ?? 0) + count;
      },
    });
    disk.held = true;
    capture.append(record(0));
    await vi.waitFor(() => expect(disk.writes).toBe(1), WAIT);
    // The first write hangs; ten records fill the buffer, the next ninety are dropped.
    for (let n = 1; n <= 100; n++) capture.append(record(n));
    expect(capture.stats.waitingBytes).toBe(400);
    expect(capture.stats.dropped.buffer_full).toBe(90);
    expect(dropped).toEqual({ buffer_full: 90 });
    expect(log.warnings).toEqual(['capture buffer full: records are dropped until the disk catches up']);
    disk.held = false;
    disk.release();
    await vi.waitFor(() => expect(capture.stats.written).toBe(11), WAIT);
    // Everything that waited went in one write.
    expect(disk.writes).toBe(2);
    expect(capture.stats.waitingBytes).toBe(0);
    const lines = disk.bytes
      .toString('utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(lines.map((line) => line.n)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('when the disk is full, drops and counts the batch, cuts the file back to whole lines, logs once and retries', async () => {
    const { disk, opener } = fakeDisk();
    const log = quietLog();
    const capture = writer({ dir: await tempDir(), openFile: opener, log, retryMs: 20, retryMaxMs: 40 });
    capture.append(record(0));
    await vi.waitFor(() => expect(capture.stats.written).toBe(1), WAIT);
    disk.failing = 'ENOSPC';
    for (let n = 1; n <= 5; n++) {
      capture.append(record(n));
      await vi.waitFor(() => expect(capture.stats.dropped.write_failed).toBe(n), WAIT);
    }
    expect(disk.bytes.toString('utf8')).toBe(`${record(0)}\n`);
    expect(log.warnings).toEqual(['capture cannot write: records are dropped until it can']);
    disk.failing = undefined;
    capture.append(record(6));
    await vi.waitFor(() => expect(capture.stats.written).toBe(2), WAIT);
    expect(log.infos).toEqual(['capture writes again']);
    expect(disk.bytes.toString('utf8')).toBe(`${record(0)}\n${record(6)}\n`);
  });

  it('when the directory cannot be made, open() says so and records are dropped as open_failed', async () => {
    const dir = await tempDir();
    const first = writer({ dir });
    first.append('{}');
    await first.close();
    // A directory below a regular file cannot exist.
    const log = quietLog();
    const capture = writer({ dir: path.join(dir, CURRENT_FILE, 'below'), log, retryMs: 10 });
    expect(await capture.open()).toBe(false);
    expect(capture.append(record(1))).toBe(true);
    await vi.waitFor(() => expect(capture.stats.dropped.open_failed).toBe(1), WAIT);
    capture.append(record(2));
    await vi.waitFor(() => expect(capture.stats.dropped.open_failed).toBe(2), WAIT);
    expect(capture.stats.waitingBytes).toBe(0);
    expect(log.warnings).toEqual(['capture cannot write: records are dropped until it can']);
  });

  it('close() returns within its time when the disk hangs, counting what it could not write', async () => {
    const { disk, opener } = fakeDisk();
    const capture = writer({ dir: await tempDir(), openFile: opener });
    disk.held = true;
    capture.append(record(0));
    await vi.waitFor(() => expect(disk.writes).toBe(1), WAIT);
    capture.append(record(1));
    const started = Date.now();
    await capture.close(50);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(capture.stats.dropped.closed).toBe(1);
    disk.release();
  });

  it('opens real files for appending', async () => {
    const file = path.join(await tempDir(), 'f');
    const opened = await openForAppend(file);
    await opened.append([Buffer.from('a'), Buffer.alloc(0), Buffer.from('b\n')]);
    await opened.close();
    const again = await openForAppend(file);
    expect(again.size).toBe(3);
    await again.close();
    expect(await readFile(file, 'utf8')).toBe('ab\n');
  });

  it.for(['EROFS', 'EACCES', 'ENOSPC'])(
    'when opening the file fails with %s, the tap returns and every record is counted as dropped',
    async (code) => {
      const log = quietLog();
      const opener: FileOpener = async () => {
        throw Object.assign(new Error(code), { code });
      };
      const capture = writer({ dir: await tempDir(), openFile: opener, log, retryMs: 10 });
      expect(await capture.open()).toBe(false);
      const tap = captureTap(capture, 1);
      const input = { data: Float64Array.from([1, 2]), rows: 1, cols: 2 };
      const result = { data: Float64Array.from([3]), rows: 1, cols: 1 };
      for (let n = 0; n < 3; n++) {
        tap.predicted({ route: '/predict', requestId: `r${n}` }, MODEL_FOR_SEAM, input, result);
        await vi.waitFor(() => expect(capture.stats.dropped.open_failed).toBe(n + 1), WAIT);
      }
      expect(capture.stats.written).toBe(0);
      expect(log.warnings).toEqual(['capture cannot write: records are dropped until it can']);
    },
  );
});

const MODEL_FOR_SEAM = {
  name: 'm',
  version: 1,
  features: ['a', 'b'],
  outputs: ['power'],
} as unknown as ModelVersion;

const MODEL = {
  name: 'm "quoted"',
  version: 3,
  features: ['a', 'b'],
  outputs: ['power'],
} as unknown as ModelVersion;

describe('captureRecord', () => {
  it('is the JSON of the prediction, numbers as JSON.stringify writes them', () => {
    const values = [0.1 + 0.2, -0, 1e21, 5e-324, 123456789.125, -3];
    const input = { data: Float64Array.from(values), rows: 3, cols: 2 };
    const result = { data: Float32Array.from([0.1, 2.5, 1e-7]), rows: 3, cols: 1 };
    const time = new Date('2030-01-02T03:04:05.006Z');
    const text = captureRecord(time, { route: '/predict/:model', requestId: 'r-1' }, MODEL, input, result);
    expect(text).toBe(
      JSON.stringify({
        timestamp: '2030-01-02T03:04:05.006Z',
        requestId: 'r-1',
        route: '/predict/:model',
        model: 'm "quoted"',
        version: 3,
        features: ['a', 'b'],
        outputs: ['power'],
        inputs: [
          [values[0], values[1]],
          [values[2], values[3]],
          [values[4], values[5]],
        ],
        predictions: Array.from(result.data, (value) => [value]),
      }),
    );
  });

  it('writes a non-finite value as null, as JSON does', () => {
    expect(rowsJson({ data: Float64Array.from([Number.NaN, 1]), rows: 1, cols: 2 })).toBe('[[null,1]]');
  });
});

describe('captureTap', () => {
  const input = { data: Float64Array.from([1, 2]), rows: 1, cols: 2 };
  const result = { data: Float64Array.from([3]), rows: 1, cols: 1 };
  const context = { route: '/predict', requestId: 'r' };

  it('captures a prediction when the draw falls below the share', async () => {
    const capture = writer({ dir: await tempDir() });
    const draws = [0.05, 0.1, 0.5, 0.0999];
    const tap = captureTap(capture, 0.1, () => draws.shift() ?? 1);
    for (let i = 0; i < 4; i++) tap.predicted(context, MODEL, input, result);
    expect(capture.stats.waitingRecords + capture.stats.written).toBe(2);
  });

  it('captures everything at 1, without drawing', async () => {
    const capture = writer({ dir: await tempDir() });
    const random = vi.fn(() => 0.999);
    const tap = captureTap(capture, 1, random);
    tap.predicted(context, MODEL, input, result);
    expect(random).not.toHaveBeenCalled();
    expect(capture.stats.waitingRecords).toBe(1);
  });

  /** A prediction of rows rows of 8 features and one output. */
  function big(rows: number): [Matrix, Matrix] {
    return [
      { data: Float64Array.from({ length: rows * 8 }, (_, i) => (i * 7919) / 13), rows, cols: 8 },
      { data: Float32Array.from({ length: rows }, (_, i) => i / 3), rows, cols: 1 },
    ];
  }

  it('drops a record that could never fit at once, as too_large, without serialising it', async () => {
    // 100,000 rows of 8: at most 26 bytes a number, more than the 8 MiB buffer (its JSON is ~10 MB).
    const capture = writer({ dir: await tempDir(), maxFileBytes: 64 << 20, bufferBytes: 8 << 20 });
    const [bigInput, bigResult] = big(100_000);
    const started = performance.now();
    captureTap(capture, 1).predicted(context, MODEL, bigInput, bigResult);
    const took = performance.now() - started;
    expect(capture.stats.dropped).toMatchObject({ too_large: 1, buffer_full: 0 });
    expect(capture.stats.waitingBytes).toBe(0);
    // Serialising it takes hundreds of milliseconds; judging it, well under one.
    expect(took).toBeLessThan(50);
    // Larger than a file, smaller than the buffer: too_large too.
    const small = writer({ dir: await tempDir(), maxFileBytes: 1000, bufferBytes: 1 << 20 });
    const [input100, result100] = big(100);
    captureTap(small, 1).predicted(context, MODEL, input100, result100);
    expect(small.stats.dropped).toMatchObject({ too_large: 1, buffer_full: 0 });
  });

  it('drops as buffer_full only what does not fit now, counting a record at its upper bound until serialised', async () => {
    const { disk, opener } = fakeDisk();
    const capture = writer({ dir: await tempDir(), openFile: opener, bufferBytes: 100_000 });
    disk.held = true;
    capture.append(record(0));
    await vi.waitFor(() => expect(disk.writes).toBe(1), WAIT);
    const [input200, result200] = big(200);
    const tap = captureTap(capture, 1);
    tap.predicted(context, MODEL, input200, result200);
    // 200 rows of 9 numbers at 26 bytes each at most, and more: held at that bound while it waits.
    const bound = capture.stats.waitingBytes;
    expect(bound).toBeGreaterThan(200 * 9 * 26);
    tap.predicted(context, MODEL, input200, result200);
    expect(capture.stats.dropped).toMatchObject({ buffer_full: 0, too_large: 0 });
    expect(capture.stats.waitingBytes).toBe(2 * bound);
    tap.predicted(context, MODEL, input200, result200);
    expect(capture.stats.dropped).toMatchObject({ buffer_full: 1, too_large: 0 });
    disk.held = false;
    disk.release();
    await vi.waitFor(() => expect(capture.stats.written).toBe(3), WAIT);
    expect(capture.stats.waitingBytes).toBe(0);
  });

  it('serialises a large record in the write loop, in steps that let the event loop turn, lines whole and in order', async () => {
    const dir = await tempDir();
    const capture = writer({ dir, bufferBytes: 16 << 20, maxFileBytes: 64 << 20 });
    const tap = captureTap(capture, 1);
    // 450,000 numbers: about half a second of serialising in one go on a slow machine.
    const rows = 50_000;
    const [bigInput, bigResult] = big(rows);
    let longest = 0;
    let last = performance.now();
    let stop = false;
    const turn = () => {
      const now = performance.now();
      longest = Math.max(longest, now - last);
      last = now;
      if (!stop) setImmediate(turn);
    };
    setImmediate(turn);
    tap.predicted({ route: '/predict', requestId: 'big' }, MODEL, bigInput, bigResult);
    tap.predicted({ route: '/predict', requestId: 'small' }, MODEL, input, result);
    // Not serialised on the caller's path: what waits is counted at its upper bound.
    const waiting = capture.stats.waitingBytes;
    await vi.waitFor(() => expect(capture.stats.written).toBe(2), WAIT);
    stop = true;
    await capture.close();
    const file = path.join(dir, CURRENT_FILE);
    expect(waiting).toBeGreaterThan((await stat(file)).size);
    // Steps of 8,192 numbers take a few milliseconds; the bound is generous, for a loaded machine.
    expect(longest).toBeLessThan(150);
    const lines = (await linesOf(file)) as Array<{ requestId: string; inputs: number[][]; predictions: number[][] }>;
    expect(lines.map((line) => line.requestId)).toEqual(['big', 'small']);
    const [first] = lines;
    expect(first?.inputs).toEqual(
      Array.from({ length: rows }, (_, row) => Array.from(bigInput.data.subarray(row * 8, row * 8 + 8))),
    );
    expect(first?.predictions).toEqual(Array.from(bigResult.data, (value) => [value]));
  });

  it('keeps what it captured when the matrices are reused after it returns', async () => {
    const dir = await tempDir();
    const capture = writer({ dir });
    const data = Float64Array.from([1, 2]);
    captureTap(capture, 1).predicted(context, MODEL, { data, rows: 1, cols: 2 }, result);
    data.fill(0);
    await capture.close();
    const [line] = await linesOf(path.join(dir, CURRENT_FILE));
    expect((line as { inputs: unknown }).inputs).toEqual([[1, 2]]);
  });
});
