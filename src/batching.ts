import { type ModelRunner, runInThread } from './inference.js';
import type { Matrix } from './matrix.js';
import type { ModelVersion } from './registry/loader.js';

export interface BatchingOptions {
  /** A batch is run as soon as it holds this many rows; requests this large run alone. */
  maxRows: number;
  /**
   * How long the first request of a batch waits for others, in microseconds. 0: only requests that
   * arrive in the same turn of the event loop (read from sockets together) share a run.
   */
  maxDelayUs: number;
}

interface Waiting {
  input: Matrix;
  resolve(result: Matrix): void;
  reject(error: unknown): void;
}

interface Batch {
  readonly model: ModelVersion;
  readonly waiting: Waiting[];
  rows: number;
  /** What flushes it when it does not fill up: cleared when it does, so it does not hold the batch. */
  timer?: NodeJS.Immediate | NodeJS.Timeout;
}

/** Batched calls that failed in a row, each request then succeeding alone, before a version is run alone for good. */
const FAILURES_BEFORE_UNBATCHED = 3;

/**
 * Dynamic batching: concurrent requests to one model version are stacked into one matrix and
 * predicted in one call, then the answer is cut back into each request's rows. A model call costs
 * the same fixed overhead (onnxruntime's session run, a tfjs graph execution) whatever its rows, so
 * under load that overhead is paid once per batch instead of once per request.
 *
 * This assumes a model predicts each row independently, as the regressors served here do (the
 * shipped models answer bit for bit the same batched or alone); a model whose rows affect each
 * other must be served with batching off (BATCH_MAX_ROWS=0). Should a batched call fail, each of
 * its requests is run alone, so one request's failure is its own; if they all succeed alone, three
 * batched calls in a row, the version is not batched again (a model with a fixed batch size fails
 * every batch), and the caller is told once.
 */
export class PredictionBatcher {
  readonly #options: BatchingOptions;
  readonly #pending = new Map<ModelVersion, Batch>();
  readonly #unbatchable = new WeakSet<ModelVersion>();
  readonly #failedInARow = new WeakMap<ModelVersion, number>();
  readonly #onBatchFailure: (model: ModelVersion, error: unknown) => void;

  constructor(options: BatchingOptions, onBatchFailure: (model: ModelVersion, error: unknown) => void = () => {}) {
    this.#options = options;
    this.#onBatchFailure = onBatchFailure;
  }

  /** A ModelRunner on the event loop that batches what it can; requests with a context run alone. */
  readonly run: ModelRunner = (model, input, context, deadline) => {
    if (context !== undefined || input.rows >= this.#options.maxRows || this.#unbatchable.has(model)) {
      return runInThread(model, input, context, deadline);
    }
    return new Promise<Matrix>((resolve, reject) => {
      let batch = this.#pending.get(model);
      if (batch !== undefined && batch.rows + input.rows > this.#options.maxRows) {
        this.#flush(batch);
        batch = undefined;
      }
      if (batch === undefined) batch = this.#open(model);
      batch.waiting.push({ input, resolve, reject });
      batch.rows += input.rows;
      if (batch.rows >= this.#options.maxRows) this.#flush(batch);
    });
  };

  #open(model: ModelVersion): Batch {
    const batch: Batch = { model, waiting: [], rows: 0 };
    this.#pending.set(model, batch);
    const flush = () => this.#flush(batch);
    const { maxDelayUs } = this.#options;
    batch.timer = maxDelayUs === 0 ? setImmediate(flush) : setTimeout(flush, maxDelayUs / 1000);
    return batch;
  }

  #flush(batch: Batch): void {
    if (this.#pending.get(batch.model) !== batch) return;
    this.#pending.delete(batch.model);
    if (this.#options.maxDelayUs === 0) clearImmediate(batch.timer as NodeJS.Immediate);
    else clearTimeout(batch.timer as NodeJS.Timeout);
    void this.#runBatch(batch);
  }

  async #runBatch({ model, waiting }: Batch): Promise<void> {
    const [only] = waiting;
    if (waiting.length === 1 && only !== undefined) {
      await settle(only, model);
      return;
    }
    let results: Matrix[];
    try {
      const stacked = stackRows(waiting.map((w) => w.input));
      results = splitRows(
        await model.model.predict(stacked),
        waiting.map((w) => w.input.rows),
      );
      this.#failedInARow.delete(model);
    } catch (error) {
      const alone = await Promise.all(waiting.map((w) => settle(w, model)));
      // Every request succeeding alone, again and again, puts the fault on batching itself (a
      // fixed batch size, say), not on one request's rows or a passing failure.
      if (!alone.every(Boolean)) return;
      const failures = (this.#failedInARow.get(model) ?? 0) + 1;
      this.#failedInARow.set(model, failures);
      if (failures >= FAILURES_BEFORE_UNBATCHED && !this.#unbatchable.has(model)) {
        this.#unbatchable.add(model);
        this.#onBatchFailure(model, error);
      }
      return;
    }
    waiting.forEach((w, i) => {
      w.resolve(results[i] as Matrix);
    });
  }
}

/** Runs one request alone and settles it; whether it succeeded. */
async function settle(waiting: Waiting, model: ModelVersion): Promise<boolean> {
  try {
    waiting.resolve(await model.model.predict(waiting.input));
    return true;
  } catch (error) {
    waiting.reject(error);
    return false;
  }
}

/** The matrices, all as wide, one under the other. */
export function stackRows(matrices: readonly Matrix[]): Matrix {
  const cols = matrices[0]?.cols ?? 0;
  let rows = 0;
  for (const matrix of matrices) {
    if (matrix.cols !== cols) throw new Error(`cannot stack a ${matrix.cols}-column matrix under ${cols} columns`);
    rows += matrix.rows;
  }
  const data = matrices.every((m) => m.data instanceof Float32Array)
    ? new Float32Array(rows * cols)
    : new Float64Array(rows * cols);
  let at = 0;
  for (const matrix of matrices) {
    data.set(matrix.data.subarray(0, matrix.rows * cols), at);
    at += matrix.rows * cols;
  }
  return { data, rows, cols };
}

/** Cuts a matrix into consecutive blocks of the given row counts (each with its own copy of the data). */
export function splitRows(matrix: Matrix, rowCounts: readonly number[]): Matrix[] {
  const total = rowCounts.reduce((sum, rows) => sum + rows, 0);
  if (matrix.rows !== total) throw new Error(`the model returned ${matrix.rows} rows for ${total}`);
  const { cols } = matrix;
  let at = 0;
  return rowCounts.map((rows) => {
    const data = matrix.data.slice(at * cols, (at + rows) * cols);
    at += rows;
    return { data, rows, cols };
  });
}
