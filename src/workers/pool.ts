import { Piscina } from 'piscina';
import type { PredictionRequest, ServedModel } from '../codecs/json.js';
import type { DecodeLimits, RequestMediaType } from '../codecs/prediction.js';
import type { ResponseMediaType } from '../config.js';
import { ApiError } from '../errors.js';
import { deadlineExceeded } from '../inference.js';
import type { Matrix } from '../matrix.js';
import type { ModelVersion } from '../registry/loader.js';
import { ownBuffer, type WorkerReply, type WorkerTask } from './tasks.js';

// From the TypeScript sources (tests, tsx) the worker needs tsx registered first; built, it is plain JS.
const WORKER = import.meta.url.endsWith('.ts')
  ? new URL('./tsx-worker.mjs', import.meta.url)
  : new URL('./prediction-worker.js', import.meta.url);

/** Large requests that may wait for a thread, per thread; more are answered 503 overloaded. */
const QUEUED_PER_THREAD = 16;

/**
 * The model could not be loaded in a worker as the event loop has it, or the threads cannot start:
 * compute on the event loop instead.
 */
export class WorkerUnavailable extends Error {
  override name = 'WorkerUnavailable';
}

/**
 * Worker threads for large requests: they decode the body, run the model and encode the answer, so
 * the event loop stays free for /ping and small requests. Arrays move between threads, never
 * copied; what is sent is no longer usable by the sender. Threads start with the first large
 * request, not with the server: a thread holds its own runtimes and models (about 45 MB), which a
 * Kepler sidecar that never sees a large request should not pay for. Once started they are never
 * stopped under a task (that would throw away the models they loaded): a task that starts past its
 * deadline does nothing instead.
 */
export class PredictionPool {
  readonly #pool: Piscina<WorkerTask, WorkerReply>;
  /** Why the threads cannot run (their module failed to start): then everything runs on the event loop. */
  #failure: Error | undefined;
  /** Tasks given to piscina and not settled: a thread that fails to start leaves its queue unsettled. */
  readonly #pending = new Set<(error: Error) => void>();

  constructor(
    readonly threads: number,
    readonly retryAfterSeconds: number,
    /**
     * Told of the pool's errors: `startFailed` when no thread has ever started (then once, and the
     * pool is unusable from then on); else a started thread failed and piscina replaces it.
     */
    onError: (error: Error, startFailed: boolean) => void = () => {},
    worker: URL = WORKER,
  ) {
    this.#pool = new Piscina({
      filename: worker.href,
      minThreads: 0,
      maxThreads: threads,
      maxQueue: threads * QUEUED_PER_THREAD,
      idleTimeout: Number.POSITIVE_INFINITY,
    });
    // Started with the first large request, a thread that cannot start fails then, not at boot:
    // its error must not be an uncaught exception, and what waits for it must not wait forever.
    let started = false;
    this.#pool.on('workerCreate', () => {
      started = true;
    });
    this.#pool.on('error', (error: Error) => {
      if (started) {
        onError(error, false);
        return;
      }
      if (this.#failure !== undefined) return;
      this.#failure = new WorkerUnavailable(`the worker threads cannot start: ${error.message}`);
      for (const reject of this.#pending) reject(this.#failure);
      this.#pending.clear();
      // piscina keeps the tasks queued for a thread that never came, with their bodies: drop them.
      this.#pool.destroy().catch(() => {});
      onError(error, true);
    });
  }

  /** False once the threads have failed to start. */
  get usable(): boolean {
    return this.#failure === undefined;
  }

  /** Deadlines are Date.now() times here: performance.now() differs between threads. */
  async decode(
    media: { type: RequestMediaType; header: boolean },
    bytes: Uint8Array,
    limits: DecodeLimits,
    deadline: number,
  ): Promise<PredictionRequest> {
    const body = ownBuffer(bytes);
    const reply = await this.#run({ kind: 'decode', media, body, limits, deadline }, [body]);
    if (reply.kind !== 'decoded') throw new Error(`unexpected worker reply ${reply.kind}`);
    return reply.request;
  }

  async predict(model: ModelVersion, input: Matrix, deadline: number): Promise<Matrix> {
    const { dir, files, signature } = model.source;
    // A copy: should the worker not manage the model, the event loop still needs the input.
    const data = input.data.slice();
    const source = { backend: model.backend, dir, files, signature };
    const reply = await this.#run({ kind: 'predict', model: source, input: { ...input, data }, deadline }, [data]);
    if (reply.kind === 'unavailable') throw new WorkerUnavailable(reply.reason);
    if (reply.kind !== 'predicted') throw new Error(`unexpected worker reply ${reply.kind}`);
    return reply.result;
  }

  async encode(model: ServedModel, result: Matrix, type: ResponseMediaType, deadline: number): Promise<Buffer> {
    const { name, version, outputs } = model;
    const data = ownBuffer(result.data);
    const task: WorkerTask = {
      kind: 'encode',
      model: { name, version, outputs },
      result: { ...result, data },
      type,
      deadline,
    };
    const reply = await this.#run(task, [data]);
    if (reply.kind !== 'encoded') throw new Error(`unexpected worker reply ${reply.kind}`);
    return Buffer.from(reply.payload.buffer, reply.payload.byteOffset, reply.payload.byteLength);
  }

  async #run(task: WorkerTask, arrays: ArrayBufferView[]): Promise<WorkerReply> {
    if (this.#failure !== undefined) throw this.#failure;
    const transferList = arrays.map((array) => array.buffer as ArrayBuffer);
    let reply: WorkerReply;
    let reject: ((error: Error) => void) | undefined;
    const failed = new Promise<never>((_resolve, rejectWith) => {
      reject = rejectWith;
    });
    const stop = reject as (error: Error) => void;
    this.#pending.add(stop);
    try {
      reply = await Promise.race([this.#pool.run(task, { transferList }), failed]);
    } catch (error) {
      if (error instanceof WorkerUnavailable) throw error;
      if ((error as Error).message !== 'Task queue is at limit') throw error;
      throw new ApiError(
        'overloaded',
        `the worker threads already have ${this.threads * QUEUED_PER_THREAD} large requests waiting`,
        undefined,
        this.retryAfterSeconds,
      );
    } finally {
      this.#pending.delete(stop);
    }
    if (reply.kind === 'expired') throw deadlineExceeded();
    if (reply.kind === 'refused') {
      const { code, message, field, retryAfterSeconds } = reply.error;
      throw new ApiError(code, message, field, retryAfterSeconds);
    }
    return reply;
  }

  async close(): Promise<void> {
    await this.#pool.destroy();
  }
}
