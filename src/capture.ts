/**
 * Data capture (issue 10): a sampled share of predictions written as JSON Lines, for retraining and
 * for looking at what the models were asked. The request's path only judges, from an upper bound of
 * its size, whether a sampled record can be kept, and if so copies its matrices into a bounded
 * in-memory buffer; one write loop serialises what waits (a large record in steps of a few
 * milliseconds, letting requests run between them), writes it into the current file, a batch per
 * write, and rotates files by size. A slow or failing disk never holds a request and never grows
 * memory: past the buffer's bound records are dropped, and counted.
 *
 * One writer per directory: rotated files are named with the writer's process id and never
 * overwrite one another, but every writer prunes the directory down to its own CAPTURE_MAX_FILES
 * and appends to the one capture.jsonl, so two processes sharing CAPTURE_DIR would delete each
 * other's files. Files and the directory are made readable by their owner only (they hold request
 * data).
 */
import { type FileHandle, link, mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Matrix } from './matrix.js';
import type { PredictionContext, PredictionTap } from './plugins/prediction-observer.js';
import type { ModelVersion } from './registry/loader.js';

/**
 * The file being written; rotated files are `capture-<UTC time>-<process id>-<sequence>.jsonl`,
 * sorting by age (the time first, to the millisecond).
 */
export const CURRENT_FILE = 'capture.jsonl';
/** Rotated files, those named before the process id was added to the name included. */
export const ROTATED_FILE = /^capture-\d{8}T\d{9}Z-(?:\d+-)?\d{4,}\.jsonl$/;
/** Modes of what capture creates: its data is the requests', for the service's user alone. */
export const FILE_MODE = 0o600;
export const DIR_MODE = 0o700;

/**
 * Why a record was not written: a closed set, the `reason` label of wattserve_capture_dropped_total.
 *   buffer_full   the records waiting for the disk already hold so much of CAPTURE_BUFFER_BYTES that
 *                 this one does not fit now (a slow disk)
 *   too_large     one record could never be kept: larger than a whole file (CAPTURE_MAX_BYTES) or
 *                 than the whole buffer (CAPTURE_BUFFER_BYTES); a prediction is judged from an upper
 *                 bound of its size (26 bytes a number) before anything is serialised
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
  /** Bytes in the file when it was opened (whole lines: see openForAppend). */
  readonly size: number;
  /** Bytes of a partial last line cut off when it was opened, if any. */
  readonly repaired?: number;
  /** Appends all of data, the buffers one after another, or throws. */
  append(data: readonly Buffer[]): Promise<void>;
  truncate(size: number): Promise<void>;
  close(): Promise<void>;
}

/** Opens (creating it if needed) a file for appending. */
export type FileOpener = (file: string) => Promise<CaptureFile>;

/**
 * Opens the current file for appending, created with FILE_MODE. A file a crash or a failed write
 * left ending in a partial line is cut back to its last whole line first, so that the next record
 * is not glued to it. A file still linked under a rotated name (a crash between the two steps of a
 * rotation) was rotated already: it is unlinked and a new one made.
 */
export const openForAppend: FileOpener = async (file) => {
  let handle: FileHandle = await open(file, 'a+', FILE_MODE);
  try {
    let info = await handle.stat();
    if (info.nlink > 1) {
      await handle.close();
      await unlink(file);
      handle = await open(file, 'a+', FILE_MODE);
      info = await handle.stat();
    }
    const size = await wholeLines(handle, info.size);
    const repaired = info.size - size;
    if (repaired > 0) await handle.truncate(size);
    const opened = handle;
    return {
      size,
      ...(repaired > 0 && { repaired }),
      async append(data) {
        // O_APPEND: every write goes to the end; a short write is continued, never repeated.
        const rest = data.filter((buffer) => buffer.byteLength > 0);
        while (rest.length > 0) {
          let { bytesWritten } = await opened.writev(rest.slice(0, 512));
          while (bytesWritten > 0) {
            const first = rest[0] as Buffer;
            if (first.byteLength <= bytesWritten) {
              bytesWritten -= first.byteLength;
              rest.shift();
            } else {
              rest[0] = first.subarray(bytesWritten);
              bytesWritten = 0;
            }
          }
        }
      },
      truncate: (length) => opened.truncate(length),
      close: () => opened.close(),
    };
  } catch (error) {
    await handle.close().catch(() => {});
    throw error;
  }
};

/** The length of the file's whole lines: just after its last newline, or 0 without one. */
async function wholeLines(handle: FileHandle, size: number): Promise<number> {
  const block = Buffer.alloc(64 * 1024);
  for (let end = size; end > 0; ) {
    const start = Math.max(0, end - block.byteLength);
    const { bytesRead } = await handle.read(block, 0, end - start, start);
    const newline = block.subarray(0, bytesRead).lastIndexOf(0x0a);
    if (newline >= 0) return start + newline + 1;
    end = start;
  }
  return 0;
}

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
  /** The process id rotated files are named after (process.pid; tests pass their own). */
  pid?: number;
}

/** What a writer did so far. */
export interface CaptureStats {
  written: number;
  dropped: Record<DropReason, number>;
  /** Records and bytes waiting for the disk (a record not serialised yet counts its upper bound). */
  waitingRecords: number;
  waitingBytes: number;
}

/**
 * A line's text, made piece by piece by the write loop: each piece is a step of a few milliseconds
 * at most. Made at once from what the request's path copied; read after it returned.
 */
export type LinePieces = () => Iterable<string>;

/** A record waiting for the disk. */
interface Waiting {
  /** An upper bound of its bytes until it is serialised, then its bytes. */
  bytes: number;
  /** Its line (newline included) as UTF-8, in parts, once serialised. */
  data: Buffer[] | undefined;
  pieces: LinePieces | undefined;
}

type Stage = 'open_failed' | 'write_failed' | 'rotate_failed';

/** Text the write loop makes between two turns of the event loop: a few ms of serialising at most. */
const STEP_CHARS = 128 * 1024;
/** Small parts are gathered into buffers of about this size, for writes of few buffers. */
const GROUP_BYTES = 64 * 1024;

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Appends whole lines to `<dir>/capture.jsonl`, buffered and written by one asynchronous loop.
 * Never throws at the caller and never waits: append() returns at once, whatever the disk does.
 */
export class CaptureWriter {
  readonly #options: Required<Omit<CaptureWriterOptions, 'dropped' | 'written'>> &
    Pick<CaptureWriterOptions, 'dropped' | 'written'>;
  readonly #stats: CaptureStats;
  /** Records waiting, in order. */
  #waiting: Waiting[] = [];
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
  /** Characters serialised since the write loop last let the event loop turn. */
  #madeSinceTurn = 0;
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
      pid: process.pid,
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
    return { ...this.#stats, dropped: { ...this.#stats.dropped }, waitingRecords: this.#waiting.length };
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
    return this.#queue(bytes, () => ({ bytes, data: undefined, pieces: () => [line] }));
  }

  /**
   * Queues one record to be serialised by the write loop: maxBytes, an upper bound of its line's
   * bytes (newline included), decides at once whether it can be kept; only then is `make` called,
   * to copy what the line is made of (on the caller's path: a copy, not a serialisation). False
   * when it was dropped.
   */
  appendLater(maxBytes: number, make: () => LinePieces): boolean {
    return this.#queue(maxBytes, () => ({ bytes: maxBytes, data: undefined, pieces: make() }));
  }

  #queue(bytes: number, make: () => Waiting): boolean {
    if (this.#closed) return this.#drop('closed', 1);
    // Never fits, whatever the disk does: dropped before any work is spent on it.
    if (bytes > this.#options.maxFileBytes || bytes > this.#options.bufferBytes) return this.#drop('too_large', 1);
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
    this.#waiting.push(make());
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
    this.#drop('closed', this.#waiting.length);
    this.#clear();
    // A write that outlived the time is left to finish; the loop then closes the file.
  }

  /**
   * Starts the write loop, unless it runs or waits for a retry: at once when enough waits (or on
   * close), after flushMs otherwise.
   */
  #kick(): void {
    if (this.#drain !== undefined || this.#retryTimer !== undefined || this.#waiting.length === 0) return;
    if (!this.#closing && this.#stats.waitingBytes < this.#options.flushBytes) {
      if (this.#flushTimer === undefined) {
        this.#flushTimer = setTimeout(() => {
          this.#flushTimer = undefined;
          // Due now, however little waits.
          if (this.#drain === undefined && this.#retryTimer === undefined && this.#waiting.length > 0) this.#start();
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
      if (!this.#closed && this.#waiting.length > 0) this.#kick();
    });
  }

  async #run(): Promise<void> {
    // Let the request that queued the first record finish before any work for the disk starts.
    await nextTurn();
    this.#madeSinceTurn = 0;
    records: while (this.#waiting.length > 0 && !this.#closed) {
      let stage: Stage = 'open_failed';
      let count = 0;
      try {
        await this.#ensureFile();
        const first = this.#waiting[0] as Waiting;
        // Serialised before its size is compared: close() may have dropped everything meanwhile.
        if (!(await this.#serialise(first))) break;
        if (this.#fileBytes > 0 && this.#fileBytes + first.bytes > this.#options.maxFileBytes) {
          stage = 'rotate_failed';
          await this.#rotate();
          stage = 'open_failed';
          await this.#ensureFile();
        }
        // As many waiting lines as fit in the file, in one write.
        let bytes = 0;
        while (count < this.#waiting.length) {
          const next = this.#waiting[count] as Waiting;
          if (!(await this.#serialise(next))) break records;
          if (this.#fileBytes + bytes + next.bytes > this.#options.maxFileBytes) break;
          bytes += next.bytes;
          count++;
        }
        const data = this.#take(count, bytes);
        stage = 'write_failed';
        await this.#write(data, bytes);
        this.#stats.written += count;
        this.#options.written?.(count, bytes);
        this.#recovered();
        // Too little waits for a write of its own yet: it goes with the next flush.
        if (!this.#closing && this.#stats.waitingBytes < this.#options.flushBytes) break;
      } catch (error) {
        // The batch being written is lost; so is everything waiting when the file cannot be opened or
        // rotated (it would fail the same way): dropped and counted, then a pause before the next try.
        const lost = count + (stage === 'write_failed' ? 0 : this.#waiting.length);
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
    if (this.#waiting.length === 0) this.#bufferFullLogged = false;
    if (this.#closed) await this.#closeFile();
  }

  /**
   * Makes a waiting record's line, a piece at a time, letting the event loop turn every STEP_CHARS;
   * its upper bound in the buffer's count becomes its size. False when the writer closed meanwhile
   * (the record was dropped with the rest).
   */
  async #serialise(record: Waiting): Promise<boolean> {
    if (record.data !== undefined) return true;
    const data: Buffer[] = [];
    let bytes = 0;
    let text: string[] = [];
    let chars = 0;
    const encode = () => {
      if (text.length === 0) return;
      const buffer = Buffer.from(text.length === 1 ? (text[0] as string) : text.join(''), 'utf8');
      data.push(buffer);
      bytes += buffer.byteLength;
      text = [];
      chars = 0;
    };
    for (const piece of (record.pieces as LinePieces)()) {
      text.push(piece);
      chars += piece.length;
      this.#madeSinceTurn += piece.length;
      if (chars >= GROUP_BYTES) encode();
      if (this.#madeSinceTurn >= STEP_CHARS) {
        encode();
        await nextTurn();
        this.#madeSinceTurn = 0;
        if (this.#closed) return false;
      }
    }
    encode();
    // Never more than the bound it was let in with: what waits stays within bufferBytes.
    this.#stats.waitingBytes -= record.bytes - bytes;
    record.bytes = bytes;
    record.data = data;
    record.pieces = undefined;
    return true;
  }

  /**
   * Removes the first count waiting lines (bytes in all) and returns them as buffers to write one
   * after another: small ones gathered (a batch of many short records), large ones as they are
   * (no copy of megabytes at once).
   */
  #take(count: number, bytes: number): Buffer[] {
    const taken = this.#waiting.splice(0, count);
    this.#stats.waitingBytes -= bytes;
    const out: Buffer[] = [];
    let small: Buffer[] = [];
    let smallBytes = 0;
    const gather = () => {
      if (small.length > 0) out.push(small.length === 1 ? (small[0] as Buffer) : Buffer.concat(small, smallBytes));
      small = [];
      smallBytes = 0;
    };
    for (const record of taken) {
      for (const buffer of record.data as Buffer[]) {
        if (buffer.byteLength >= GROUP_BYTES) {
          gather();
          out.push(buffer);
          continue;
        }
        small.push(buffer);
        smallBytes += buffer.byteLength;
        if (smallBytes >= GROUP_BYTES) gather();
      }
    }
    gather();
    return out;
  }

  #clear(): void {
    this.#waiting = [];
    this.#stats.waitingBytes = 0;
  }

  async #write(data: Buffer[], bytes: number): Promise<void> {
    const file = this.#file as CaptureFile;
    try {
      await file.append(data);
      this.#fileBytes += bytes;
    } catch (error) {
      // Part of the batch may be on disk: cut the file back to its last whole line, so readers never
      // meet half a record. When that fails too, the file is closed (by the caller) all the same,
      // and the next open cuts off the partial line (openForAppend).
      await file.truncate(this.#fileBytes).catch(() => {});
      throw error;
    }
  }

  async #ensureFile(): Promise<void> {
    if (this.#file !== undefined) return;
    await mkdir(this.#options.dir, { recursive: true, mode: DIR_MODE });
    const file = await this.#options.openFile(path.join(this.#options.dir, CURRENT_FILE));
    this.#file = file;
    this.#fileBytes = file.size;
    if (file.repaired !== undefined && file.repaired > 0) {
      this.#options.log.warn(
        { dir: this.#options.dir, bytes: file.repaired },
        'capture file ended in a partial line (an interrupted write): cut back to its last whole line',
      );
    }
  }

  async #closeFile(): Promise<void> {
    const file = this.#file;
    this.#file = undefined;
    await file?.close().catch(() => {});
  }

  /**
   * capture.jsonl becomes capture-<time>-<pid>-<sequence>.jsonl, never replacing a file of that
   * name (another sequence number is taken); the oldest files past maxFiles go.
   */
  async #rotate(): Promise<void> {
    await this.#closeFile();
    const { dir } = this.#options;
    const stamp = this.#options.now().toISOString().replace(/[-:.]/g, '');
    this.#sequence = stamp === this.#lastStamp ? this.#sequence + 1 : 0;
    this.#lastStamp = stamp;
    const current = path.join(dir, CURRENT_FILE);
    for (let tries = 0; ; tries++, this.#sequence++) {
      const rotated = path.join(
        dir,
        `capture-${stamp}-${this.#options.pid}-${String(this.#sequence).padStart(4, '0')}.jsonl`,
      );
      try {
        await renameNoReplace(current, rotated);
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || tries >= 1000) throw error;
      }
    }
    try {
      const old = (await readdir(dir)).filter((name) => ROTATED_FILE.test(name)).sort();
      const excess = old.slice(0, Math.max(0, old.length - (this.#options.maxFiles - 1)));
      await Promise.all(excess.map((name) => rm(path.join(dir, name), { force: true })));
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

/**
 * Renames from to to, failing with EEXIST rather than replacing a file named to: a hard link, then
 * the old name unlinked (a crash between the two leaves both names; openForAppend then lets go of
 * the current one). Where the file system has no hard links, a rename after checking that the name
 * is free (one writer per directory makes that enough).
 */
async function renameNoReplace(from: string, to: string): Promise<void> {
  try {
    await link(from, to);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw error;
    const taken = await stat(to).then(
      () => true,
      (missing: NodeJS.ErrnoException) => {
        if (missing.code === 'ENOENT') return false;
        throw missing;
      },
    );
    if (taken) throw Object.assign(new Error(`${to} exists`), { code: 'EEXIST' });
    await rename(from, to);
    return;
  }
  await unlink(from);
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
 * The most characters a number takes in JSON (`-0.0000012345678901234567`), and a separator: an
 * upper bound of a record's size, known without serialising it.
 */
const MAX_NUMBER_BYTES = 26;
/** Numbers serialised in one piece: 1,000 rows of 8, a millisecond or two of work. */
const PIECE_VALUES = 8192;

/** An upper bound of the bytes of rowsJson(matrix). */
export function rowsMaxBytes(matrix: Matrix): number {
  return 2 + matrix.rows * (3 + matrix.cols * MAX_NUMBER_BYTES);
}

/**
 * Rows as JSON arrays, in pieces of about PIECE_VALUES numbers; numbers as JSON.stringify writes
 * them (a non-finite one null).
 */
function* rowsPieces(matrix: Matrix): Generator<string> {
  const { data, rows, cols } = matrix;
  if (rows === 0) {
    yield '[]';
    return;
  }
  const step = Math.max(1, Math.floor(PIECE_VALUES / Math.max(1, cols)));
  for (let from = 0; from < rows; from += step) {
    const to = Math.min(rows, from + step);
    const chunk: number[][] = new Array(to - from);
    for (let row = from; row < to; row++) {
      const values: number[] = new Array(cols);
      for (let col = 0; col < cols; col++) values[col] = data[row * cols + col] as number;
      chunk[row - from] = values;
    }
    // JSON.stringify of plain arrays is several times faster than formatting each number.
    const json = JSON.stringify(chunk);
    yield `${from === 0 ? '[' : ','}${json.slice(1, -1)}${to === rows ? ']' : ''}`;
  }
}

export function rowsJson(matrix: Matrix): string {
  return [...rowsPieces(matrix)].join('');
}

/** A record's text up to its matrices: made on the request's path, it is short. */
function recordHead(time: Date, context: PredictionContext, model: ModelVersion): string {
  return (
    `{"timestamp":"${time.toISOString()}","requestId":${JSON.stringify(context.requestId)},` +
    `"route":${JSON.stringify(context.route)},${modelPart(model)}`
  );
}

const INPUTS = ',"inputs":';
const PREDICTIONS = ',"predictions":';

/** A record's text in pieces, ending with `end`. */
function* recordPieces(head: string, input: Matrix, result: Matrix, end: string): Generator<string> {
  yield `${head}${INPUTS}`;
  yield* rowsPieces(input);
  yield PREDICTIONS;
  yield* rowsPieces(result);
  yield `}${end}`;
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
  return [...recordPieces(recordHead(time, context, model), input, result, '')].join('');
}

/** A matrix's own copy of its values: the caller's may be reused or moved once the tap returns. */
function copy(matrix: Matrix): Matrix {
  return { data: matrix.data.slice(0, matrix.rows * matrix.cols), rows: matrix.rows, cols: matrix.cols };
}

/**
 * The tap that captures a `sample` share of predictions: one Math.random() for a prediction not
 * sampled. A sampled one is judged from an upper bound of its size (dropped at once when it cannot
 * be kept), then its matrices are copied, to be serialised by the writer's loop.
 */
export function captureTap(writer: CaptureWriter, sample: number, random: () => number = Math.random): PredictionTap {
  return {
    predicted(context, model, input, result) {
      if (sample < 1 && random() >= sample) return;
      const head = recordHead(new Date(), context, model);
      const maxBytes =
        Buffer.byteLength(head) +
        INPUTS.length +
        rowsMaxBytes(input) +
        PREDICTIONS.length +
        rowsMaxBytes(result) +
        '}\n'.length;
      writer.appendLater(maxBytes, () => {
        const inputs = copy(input);
        const results = copy(result);
        return () => recordPieces(head, inputs, results, '\n');
      });
    },
  };
}
