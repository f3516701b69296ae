/**
 * Data capture (issue 10): a sampled share of predictions written as JSON Lines, for retraining and
 * for looking at what the models were asked. The request's path only serialises a sampled record
 * and appends it to a bounded in-memory buffer; one write loop empties the buffer into the current
 * file, a batch per write, and rotates files by size. A slow or failing disk never holds a request
 * and never grows memory: past the buffer's bound records are dropped, and counted.
 */
import { type FileHandle, mkdir, open, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Matrix } from './matrix.js';
import type { PredictionContext, PredictionTap } from './plugins/prediction-observer.js';
import type { ModelVersion } from './registry/loader.js';

/** The file being written; rotated files are `capture-<UTC time>-<sequence>.jsonl`, sorting by age. */
export const CURRENT_FILE = 'capture.jsonl';
const ROTATED_FILE = /^capture-\d{8}T\d{9}Z-\d{4}\.jsonl$/;

/**
 * Why a record was not written: a closed set, the `reason` label of wattserve_capture_dropped_total.
 *   buffer_full   the records waiting for the disk already hold CAPTURE_BUFFER_BYTES (a slow disk)
 *   too_large     one record is larger than a whole file (CAPTURE_MAX_BYTES)
 *   open_failed   the directory or file could not be created or opened (read-only, missing rights)
 *   write_failed  the write failed (disk full, I/O error); the file is cut back to its last whole line
 *   rotate_failed the full file could not be renamed, so nothing more fits in it
 *   closed        still waiting when shutdown's time for a last flush ran out, or captured after it
 */
export const DROP_REASONS = [
  'buffer_full',
  'too_large',
  'open_failed',
  'write_failed',
  'rotate_failed',
  'closed',
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

/** The file a writer appends to; a seam for tests (a slow disk, a disk that fills up). */
export interface CaptureFile {
  /** Bytes in the file when it was opened. */
  readonly size: number;
  /** Appends all of data, or throws. */
  append(data: Buffer): Promise<void>;
  truncate(size: number): Promise<void>;
  close(): Promise<void>;
}

/** Opens (creating it if needed) a file for appending. */
export type FileOpener = (file: string) => Promise<CaptureFile>;

export const openForAppend: FileOpener = async (file) => {
  const handle: FileHandle = await open(file, 'a');
  try {
    const { size } = await handle.stat();
    return {
      size,
      async append(data) {
        // O_APPEND: every write goes to the end; a short write is continued, never repeated.
        for (let offset = 0; offset < data.byteLength; ) {
          const { bytesWritten } = await handle.write(data, offset, data.byteLength - offset);
          offset += bytesWritten;
        }
      },
      truncate: (length) => handle.truncate(length),
      close: () => handle.close(),
    };
  } catch (error) {
    await handle.close().catch(() => {});
    throw error;
  }
};

export interface CaptureLog {
  warn(details: object, message: string): void;
  info(details: object, message: string): void;
}

export interface CaptureWriterOptions {
  dir: string;
  /** A file is rotated before a line would take it past this many bytes. */
  maxFileBytes: number;
  /** Files kept, the one being written included; older rotated files are deleted. */
  maxFiles: number;
  /** Bytes of records waiting for the disk at most; past this, records are dropped (buffer_full). */
  bufferBytes: number;
  log: CaptureLog;
  /** Told of every record dropped, and of every batch written. */
  dropped?: (reason: DropReason, records: number) => void;
  written?: (records: number, bytes: number) => void;
  /**
   * Records wait up to flushMs (100 ms), to be written in few large writes rather than one per
   * prediction; at once when flushBytes (a quarter of bufferBytes, at most 1 MiB) wait.
   */
  flushMs?: number;
  flushBytes?: number;
  /** After a failed open, write or rotation, the next attempt waits this long, doubling up to retryMaxMs. */
  retryMs?: number;
  retryMaxMs?: number;
  openFile?: FileOpener;
  /** The time rotated files are named after (tests pass a fixed clock). */
  now?: () => Date;
}

/** What a writer did so far. */
export interface CaptureStats {
  written: number;
  dropped: Record<DropReason, number>;
  /** Records and bytes waiting for the disk. */
  waitingRecords: number;
  waitingBytes: number;
}

type Stage = 'open_failed' | 'write_failed' | 'rotate_failed';

/**
 * Appends whole lines to `<dir>/capture.jsonl`, buffered and written by one asynchronous loop.
 * Never throws at the caller and never waits: append() returns at once, whatever the disk does.
 */
export class CaptureWriter {
  readonly #options: Required<Omit<CaptureWriterOptions, 'dropped' | 'written'>> &
    Pick<CaptureWriterOptions, 'dropped' | 'written'>;
  readonly #stats: CaptureStats;
  /** Lines waiting, each with its newline, and their sizes in bytes. */
  #lines: string[] = [];
  #sizes: number[] = [];
  #file: CaptureFile | undefined;
  /** Bytes in the current file, whole lines only. */
  #fileBytes = 0;
  #drain: Promise<void> | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #flushTimer: NodeJS.Timeout | undefined;
  #retryDelay: number;
  /** Failures already logged since the last success, by kind: logged once, not per record. */
  readonly #logged = new Set<string>();
  /** A full buffer is logged once until the buffer has been emptied. */
  #bufferFullLogged = false;
  #lastStamp = '';
  #sequence = 0;
  #closing = false;
  #closed = false;

  constructor(options: CaptureWriterOptions) {
    this.#options = {
      flushMs: 100,
      flushBytes: Math.min(1 << 20, Math.floor(options.bufferBytes / 4)),
      retryMs: 1000,
      retryMaxMs: 30_000,
      openFile: openForAppend,
      now: () => new Date(),
      ...options,
    };
    this.#retryDelay = this.#options.retryMs;
    this.#stats = {
      written: 0,
      dropped: Object.fromEntries(DROP_REASONS.map((reason) => [reason, 0])) as Record<DropReason, number>,
      waitingRecords: 0,
      waitingBytes: 0,
    };
  }

  get stats(): CaptureStats {
    return { ...this.#stats, dropped: { ...this.#stats.dropped }, waitingRecords: this.#lines.length };
  }

  /**
   * Creates the directory and opens the file now, so that start-up logs a directory that cannot be
   * written; never throws (records are dropped and counted later, and the writer keeps retrying).
   */
  async open(): Promise<boolean> {
    try {
      await this.#ensureFile();
      return true;
    } catch (error) {
      this.#failed('open_failed', error, 0);
      return false;
    }
  }

  /** Queues one record (a JSON text without newline). False when it was dropped. */
  append(record: string): boolean {
    const line = `${record}\n`;
    // Byte length: equal to the string's length for ASCII, which records nearly always are.
    const bytes = Buffer.byteLength(line);
    if (this.#closed) return this.#drop('closed', 1);
    if (bytes > this.#options.maxFileBytes) return this.#drop('too_large', 1);
    if (this.#stats.waitingBytes + bytes > this.#options.bufferBytes) {
      if (!this.#bufferFullLogged) {
        this.#bufferFullLogged = true;
        this.#options.log.warn(
          { dir: this.#options.dir, bufferBytes: this.#options.bufferBytes },
          'capture buffer full: records are dropped until the disk catches up',
        );
      }
      return this.#drop('buffer_full', 1);
    }
    this.#lines.push(line);
    this.#sizes.push(bytes);
    this.#stats.waitingBytes += bytes;
    this.#kick();
    return true;
  }

  /**
   * Writes what is waiting and closes the file, within timeoutMs; what is still waiting then is
   * dropped (closed). Later records are dropped too.
   */
  async close(timeoutMs = 5000): Promise<void> {
    if (this.#closed) return;
    this.#closing = true;
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    if (this.#retryTimer !== undefined) {
      // A disk that failed gets one more try now rather than after its backoff.
      clearTimeout(this.#retryTimer);
      this.#retryTimer = undefined;
    }
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    const flushed = (async () => {
      this.#kick();
      while (this.#drain !== undefined) await this.#drain;
      await this.#closeFile();
    })().catch(() => {});
    await Promise.race([flushed, timedOut]);
    clearTimeout(timer);
    this.#closed = true;
    this.#drop('closed', this.#lines.length);
    this.#clear();
    // A write that outlived the time is left to finish; the loop then closes the file.
  }

  /**
   * Starts the write loop, unless it runs or waits for a retry: at once when enough waits (or on
   * close), after flushMs otherwise.
   */
  #kick(): void {
    if (this.#drain !== undefined || this.#retryTimer !== undefined || this.#lines.length === 0) return;
    if (!this.#closing && this.#stats.waitingBytes < this.#options.flushBytes) {
      if (this.#flushTimer === undefined) {
        this.#flushTimer = setTimeout(() => {
          this.#flushTimer = undefined;
          // Due now, however little waits.
          if (this.#drain === undefined && this.#retryTimer === undefined && this.#lines.length > 0) this.#start();
        }, this.#options.flushMs);
        this.#flushTimer.unref();
      }
      return;
    }
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    this.#start();
  }

  #start(): void {
    this.#drain = this.#run().finally(() => {
      this.#drain = undefined;
      // Records that arrived while the last write finished.
      if (!this.#closed && this.#lines.length > 0) this.#kick();
    });
  }

  async #run(): Promise<void> {
    // Let the request that queued the first record finish before any work for the disk starts.
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.#lines.length > 0 && !this.#closed) {
      let stage: Stage = 'open_failed';
      let count = 0;
      try {
        await this.#ensureFile();
        const first = this.#sizes[0] as number;
        if (this.#fileBytes > 0 && this.#fileBytes + first > this.#options.maxFileBytes) {
          stage = 'rotate_failed';
          await this.#rotate();
          stage = 'open_failed';
          await this.#ensureFile();
        }
        // As many waiting lines as fit in the file, in one write.
        let bytes = 0;
        while (
          count < this.#lines.length &&
          this.#fileBytes + bytes + (this.#sizes[count] as number) <= this.#options.maxFileBytes
        ) {
          bytes += this.#sizes[count] as number;
          count++;
        }
        const text = this.#take(count);
        stage = 'write_failed';
        await this.#write(text, bytes);
        this.#stats.written += count;
        this.#options.written?.(count, bytes);
        this.#recovered();
        // Too little waits for a write of its own yet: it goes with the next flush.
        if (!this.#closing && this.#stats.waitingBytes < this.#options.flushBytes) break;
      } catch (error) {
        // The batch being written is lost; so is everything waiting when the file cannot be opened or
        // rotated (it would fail the same way): dropped and counted, then a pause before the next try.
        const lost = count + (stage === 'write_failed' ? 0 : this.#lines.length);
        if (stage !== 'write_failed') this.#clear();
        this.#failed(stage, error, lost);
        await this.#closeFile();
        if (!this.#closing) {
          this.#retryTimer = setTimeout(() => {
            this.#retryTimer = undefined;
            this.#kick();
          }, this.#retryDelay);
          this.#retryTimer.unref();
          this.#retryDelay = Math.min(this.#retryDelay * 2, this.#options.retryMaxMs);
          return;
        }
        if (stage !== 'write_failed') return;
      }
    }
    if (this.#lines.length === 0) this.#bufferFullLogged = false;
    if (this.#closed) await this.#closeFile();
  }

  /** Removes the first count waiting lines and returns them as one text. */
  #take(count: number): string {
    const text = this.#lines.slice(0, count).join('');
    this.#lines.splice(0, count);
    for (const bytes of this.#sizes.splice(0, count)) this.#stats.waitingBytes -= bytes;
    return text;
  }

  #clear(): void {
    this.#lines = [];
    this.#sizes = [];
    this.#stats.waitingBytes = 0;
  }

  async #write(text: string, bytes: number): Promise<void> {
    const file = this.#file as CaptureFile;
    try {
      await file.append(Buffer.from(text, 'utf8'));
      this.#fileBytes += bytes;
    } catch (error) {
      // Part of the batch may be on disk: cut the file back to its last whole line, so readers never
      // meet half a record (best effort: a disk that fails this too is reopened and stat'ed).
      await file.truncate(this.#fileBytes).catch(() => {});
      throw error;
    }
  }

  async #ensureFile(): Promise<void> {
    if (this.#file !== undefined) return;
    await mkdir(this.#options.dir, { recursive: true });
    const file = await this.#options.openFile(path.join(this.#options.dir, CURRENT_FILE));
    this.#file = file;
    this.#fileBytes = file.size;
  }

  async #closeFile(): Promise<void> {
    const file = this.#file;
    this.#file = undefined;
    await file?.close().catch(() => {});
  }

  /** capture.jsonl becomes capture-<time>-<sequence>.jsonl; the oldest files past maxFiles go. */
  async #rotate(): Promise<void> {
    await this.#closeFile();
    const stamp = this.#options.now().toISOString().replace(/[-:.]/g, '');
    this.#sequence = stamp === this.#lastStamp ? this.#sequence + 1 : 0;
    this.#lastStamp = stamp;
    const rotated = `capture-${stamp}-${String(this.#sequence).padStart(4, '0')}.jsonl`;
    await rename(path.join(this.#options.dir, CURRENT_FILE), path.join(this.#options.dir, rotated));
    try {
      const old = (await readdir(this.#options.dir)).filter((name) => ROTATED_FILE.test(name)).sort();
      const excess = old.slice(0, Math.max(0, old.length - (this.#options.maxFiles - 1)));
      await Promise.all(excess.map((name) => rm(path.join(this.#options.dir, name), { force: true })));
    } catch (error) {
      // The rotation itself worked: capture goes on, the disk holds more than it should.
      this.#logOnce('prune', error, 'old capture files could not be deleted');
    }
  }

  #drop(reason: DropReason, records: number): false {
    if (records === 0) return false;
    this.#stats.dropped[reason] += records;
    this.#options.dropped?.(reason, records);
    return false;
  }

  #failed(stage: Stage, error: unknown, records: number): void {
    const code = (error as { code?: unknown }).code;
    this.#logOnce(
      `${stage} ${typeof code === 'string' ? code : 'error'}`,
      error,
      'capture cannot write: records are dropped until it can',
    );
    this.#drop(stage, records);
  }

  #recovered(): void {
    this.#retryDelay = this.#options.retryMs;
    if (this.#logged.size > 0) {
      this.#options.log.info({ dir: this.#options.dir }, 'capture writes again');
      this.#logged.clear();
    }
  }

  #logOnce(kind: string, error: unknown, message: string): void {
    if (this.#logged.has(kind)) return;
    this.#logged.add(kind);
    this.#options.log.warn({ ...(error !== undefined && { err: error }), dir: this.#options.dir, kind }, message);
  }
}

// ---------------------------------------------------------------------------------------------
// The record

/** A model version's features and outputs as JSON, made once per version rather than per record. */
const headers = new WeakMap<ModelVersion, string>();

function modelPart(model: ModelVersion): string {
  let part = headers.get(model);
  if (part === undefined) {
    part =
      `"model":${JSON.stringify(model.name)},"version":${model.version},` +
      `"features":${JSON.stringify(model.features)},"outputs":${JSON.stringify(model.outputs)}`;
    headers.set(model, part);
  }
  return part;
}

/**
 * Rows as JSON arrays, numbers formatted as JSON.stringify does (String(n) is the same for the finite
 * numbers a prediction holds; a non-finite one is written null, as JSON.stringify would).
 */
export function rowsJson(matrix: Matrix): string {
  const { data, rows, cols } = matrix;
  let text = '[';
  for (let row = 0; row < rows; row++) {
    text += row === 0 ? '[' : ',[';
    for (let col = 0; col < cols; col++) {
      const value = data[row * cols + col] as number;
      if (col > 0) text += ',';
      text += Number.isFinite(value) ? String(value) : 'null';
    }
    text += ']';
  }
  return `${text}]`;
}

/**
 * One captured prediction as a JSON text:
 * `{"timestamp","requestId","route","model","version","features","outputs","inputs","predictions"}`,
 * `inputs` one array per row in `features` order, `predictions` one array per row in `outputs` order.
 */
export function captureRecord(
  time: Date,
  context: PredictionContext,
  model: ModelVersion,
  input: Matrix,
  result: Matrix,
): string {
  return (
    `{"timestamp":"${time.toISOString()}","requestId":${JSON.stringify(context.requestId)},` +
    `"route":${JSON.stringify(context.route)},${modelPart(model)},` +
    `"inputs":${rowsJson(input)},"predictions":${rowsJson(result)}}`
  );
}

/**
 * The tap that captures a `sample` share of predictions: one Math.random() for a prediction not
 * sampled; a sampled one is serialised at once (the matrices may move to a worker thread next).
 */
export function captureTap(writer: CaptureWriter, sample: number, random: () => number = Math.random): PredictionTap {
  return {
    predicted(context, model, input, result) {
      if (sample < 1 && random() >= sample) return;
      writer.append(captureRecord(new Date(), context, model, input, result));
    },
  };
}
