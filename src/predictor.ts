import type { FastifyBaseLogger } from 'fastify';
import type { PredictionBatcher } from './batching.js';
import type { PredictionRequest, ServedModel } from './codecs/json.js';
import {
  type DecodeLimits,
  decodePrediction,
  encodePrediction,
  estimateRows,
  type RequestMediaType,
} from './codecs/prediction.js';
import type { ResponseMediaType } from './config.js';
import type { InFlightLimit } from './in-flight.js';
import {
  deadlineExceeded,
  type ModelRunner,
  type Prediction,
  type PredictionObserver,
  predict,
  runInThread,
  withDeadline,
} from './inference.js';
import type { Matrix } from './matrix.js';
import type { ModelVersion } from './registry/loader.js';
import type { ModelRegistry } from './registry/registry.js';
import type { ShadowTraffic } from './shadow.js';
import { type PredictionPool, WorkerUnavailable } from './workers/pool.js';

export interface PredictorOptions {
  limits: DecodeLimits;
  inFlight: InFlightLimit;
  /** Worker threads for large requests; everything runs on the event loop without. */
  pool: PredictionPool | undefined;
  /** Small requests to one model that arrive together share a model call; each runs alone without. */
  batcher?: PredictionBatcher | undefined;
  /** Copies requests to a model's shadow version, when it has one. */
  shadows?: ShadowTraffic | undefined;
  /** Requests with more rows than this go to the pool. */
  workerRowsThreshold: number;
  /** And bodies with more bytes than this, whatever their rows. */
  workerBytesThreshold: number;
  requestTimeoutMs: number;
  log: FastifyBaseLogger;
}

/**
 * Where predictions are computed, for every protocol: small requests on the event loop (a worker
 * round trip costs more than they do), large ones in worker threads; each bounded by the request's
 * deadline and its model's in-flight limit.
 */
export class Predictor {
  readonly #options: PredictorOptions;
  /** Versions a worker could not load (logged once each; they run on the event loop). */
  readonly #inThreadOnly = new WeakSet<ModelVersion>();

  constructor(
    readonly registry: ModelRegistry,
    options: PredictorOptions,
  ) {
    this.#options = options;
  }

  get limits(): DecodeLimits {
    return this.#options.limits;
  }

  /** The performance.now() by which a request that has been in the server for elapsedMs must be answered. */
  deadline(elapsedMs: number): number {
    return performance.now() + this.#options.requestTimeoutMs - elapsedMs;
  }

  /** Reads a prediction body (its bytes; a large body moves to a worker thread and is gone here). */
  async decode(
    media: { type: RequestMediaType; header: boolean },
    raw: unknown,
    deadline: number,
  ): Promise<PredictionRequest> {
    const { pool, limits, workerBytesThreshold } = this.#options;
    // A request with no body at all has none (Fastify parses nothing): decode it as empty.
    const body = Buffer.isBuffer(raw) ? raw : Buffer.alloc(0);
    const large = body.length > workerBytesThreshold || this.#isLarge(estimateRows(media.type, body));
    if (pool?.usable !== true || !large) return decodePrediction(media, body.toString('utf8'), limits);
    const length = body.length;
    try {
      return await withDeadline(pool.decode(media, body, limits, wallClock(deadline)), deadline);
    } catch (error) {
      // The threads failed to start under this request: its body never left (a moved one is empty).
      if (!(error instanceof WorkerUnavailable) || body.length !== length) throw error;
      return decodePrediction(media, body.toString('utf8'), limits);
    }
  }

  /** The answer in the response media type: a large one encoded in a worker thread (result moves there). */
  async encode(
    model: ServedModel,
    result: Matrix,
    type: ResponseMediaType,
    deadline: number,
  ): Promise<string | object | Buffer> {
    const { pool } = this.#options;
    if (pool?.usable !== true || !this.#isLarge(result.rows)) return encodePrediction(model, result, type);
    const length = result.data.length;
    try {
      return await withDeadline(pool.encode(model, result, type, wallClock(deadline)), deadline);
    } catch (error) {
      if (!(error instanceof WorkerUnavailable) || result.data.length !== length) throw error;
      return encodePrediction(model, result, type);
    }
  }

  #isLarge(rows: number): boolean {
    return rows > this.#options.workerRowsThreshold;
  }

  predict(request: PredictionRequest, observer: PredictionObserver | undefined, deadline: number): Promise<Prediction> {
    const { pool, inFlight, batcher, shadows } = this.#options;
    const inThread = batcher?.run ?? runInThread;
    const run =
      pool?.usable !== true || !this.#isLarge(request.matrix.rows) || request.context !== undefined
        ? inThread
        : this.#inWorker(pool);
    // Copies run on the event loop, never in the worker threads' queue, which is the clients'.
    const mirror =
      shadows &&
      ((answered: ModelVersion, copied: PredictionRequest) => shadows.prepare(answered, copied, inThread, deadline));
    return predict(this.registry, request, { observer, deadline, inFlight, run, mirror });
  }

  #inWorker(pool: PredictionPool): ModelRunner {
    return async (model, input, context, deadline) => {
      if (this.#inThreadOnly.has(model)) return runInThread(model, input, context, deadline);
      try {
        return await pool.predict(model, input, wallClock(deadline ?? Number.POSITIVE_INFINITY));
      } catch (error) {
        if (!(error instanceof WorkerUnavailable)) throw error;
        // Requests that were already on their way to a worker fail the same way: warn once.
        // (Threads that cannot start at all are logged by the pool, and used no more.)
        if (pool.usable && !this.#inThreadOnly.has(model)) {
          this.#inThreadOnly.add(model);
          this.#options.log.warn(
            { model: model.name, version: model.version, reason: error.message },
            'a worker thread cannot load this version; its large requests run on the event loop',
          );
        }
        // The client may have had its 504 meanwhile: then there is no one to compute for.
        if (deadline !== undefined && performance.now() > deadline) throw deadlineExceeded();
        return runInThread(model, input, context, deadline);
      }
    };
  }
}

/** A performance.now() time as a Date.now() time, which other threads share. */
function wallClock(deadline: number): number {
  return Date.now() + (deadline - performance.now());
}
