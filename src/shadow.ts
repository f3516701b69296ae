import type { FastifyBaseLogger } from 'fastify';
import type { PredictionRequest } from './codecs/json.js';
import { ApiError } from './errors.js';
import { InFlightLimit } from './in-flight.js';
import { type ModelRunner, predict } from './inference.js';
import type { Matrix } from './matrix.js';
import type { ModelVersion } from './registry/loader.js';
import type { ModelRegistry } from './registry/registry.js';

/**
 * What became of a copy: compared with the answer, refused by its version (`failed`), too late
 * (`timeout`), not run (`skipped`: a large request, load shedding, the shadow's in-flight places
 * all taken, or its label moved meanwhile), or run but sharing no output with the answer
 * (`incomparable`).
 */
export type ShadowOutcome = 'compared' | 'failed' | 'timeout' | 'skipped' | 'incomparable';

export interface ShadowEvents {
  /** `errors`: |shadow − answer| for each row and output both versions give, when compared. */
  shadowed(model: string, label: string, outcome: ShadowOutcome, errors?: Float64Array): void;
}

/** A copy of one request, prepared before the answer is computed. */
export interface Mirror {
  /** The answer is ready: the copy runs, once the client's answer is on its way. */
  compare(answer: Matrix): void;
  /** There is no answer to compare with (the request failed): the copy is dropped. */
  cancel(): void;
}

export interface ShadowOptions {
  /** Copies a model may have in flight (its shadow's own places: clients never lose theirs). */
  maxInFlightPerModel: number;
  /** Requests with more rows are not copied: their copy would hold the event loop as long as they do. */
  maxRows: number;
  /** True while the server sheds load: then nothing is copied. */
  underPressure: () => boolean;
  events: ShadowEvents | undefined;
  log: FastifyBaseLogger;
}

/**
 * Shadow traffic: a share of the requests a model's serving version answers is copied to the
 * version its shadow label points at, after the answer has been computed and off its path; the two
 * answers are compared in the metrics and the copy's is thrown away. A copy runs on the event
 * loop (never in the worker threads, whose queue is the clients'), and only when it is cheap to
 * skip: not for large requests, not under load shedding, not past the shadow's own in-flight places.
 */
export class ShadowTraffic {
  readonly #limit: InFlightLimit;

  constructor(
    private readonly registry: ModelRegistry,
    private readonly options: ShadowOptions,
  ) {
    this.#limit = new InFlightLimit(options.maxInFlightPerModel, 1);
  }

  /**
   * Called once the version that answers is known and before it runs: takes the copy's place and
   * copies the input (the request's matrix may move to a worker thread). Undefined when there is
   * nothing to copy: no shadow, not this request's share, or skipped (counted).
   */
  prepare(
    answered: ModelVersion,
    request: PredictionRequest,
    run: ModelRunner,
    deadline: number | undefined,
  ): Mirror | undefined {
    const shadow = this.registry.shadowOf(answered);
    if (shadow === undefined || Math.random() >= shadow.share) return undefined;
    const model = answered.name;
    const { maxRows, underPressure, events } = this.options;
    let leave: (() => void) | undefined;
    if (request.matrix.rows <= maxRows && !underPressure()) {
      try {
        leave = this.#limit.enter(model);
      } catch {
        // The shadow has as many copies in flight as it may: this one is skipped, below.
      }
    }
    if (leave === undefined) {
      events?.shadowed(model, shadow.label, 'skipped');
      return undefined;
    }
    const copy: PredictionRequest = {
      ...request,
      model,
      version: shadow.version,
      matrix: copyMatrix(request.matrix),
    };
    return {
      compare: (result) => {
        const answer = copyMatrix(result);
        // After the client's answer is on its way: its encoding and writing run first.
        setImmediate(() => {
          void this.#mirror(answered, shadow.label, copy, answer, run, deadline).finally(leave);
        });
      },
      cancel: leave,
    };
  }

  async #mirror(
    answered: ModelVersion,
    label: string,
    request: PredictionRequest,
    answer: Matrix,
    run: ModelRunner,
    deadline: number | undefined,
  ): Promise<void> {
    const model = answered.name;
    const { events, log } = this.options;
    if (deadline !== undefined && performance.now() >= deadline) {
      events?.shadowed(model, label, 'timeout');
      return;
    }
    try {
      const { model: shadow, result } = await predict(this.registry, request, { run, deadline });
      const errors = absoluteErrors(answered.outputs, answer, shadow.outputs, result);
      events?.shadowed(model, label, errors === undefined ? 'incomparable' : 'compared', errors);
    } catch (error) {
      const outcome = outcomeOf(error);
      events?.shadowed(model, label, outcome);
      log.debug(
        { model, version: request.version, label, outcome, reason: (error as Error).message },
        'a shadow prediction was not compared',
      );
    }
  }
}

function outcomeOf(error: unknown): ShadowOutcome {
  if (!(error instanceof ApiError)) return 'failed';
  // Busy, or the label moved or its version went away since the copy was made.
  if (error.code === 'model_busy' || error.code === 'unknown_version' || error.code === 'not_ready') return 'skipped';
  if (error.code === 'deadline_exceeded') return 'timeout';
  return 'failed';
}

/**
 * |shadow − answer| for every row and every output the two versions share (matched by name), or
 * undefined when they share none.
 */
export function absoluteErrors(
  answerOutputs: readonly string[],
  answer: Matrix,
  shadowOutputs: readonly string[],
  shadow: Matrix,
): Float64Array | undefined {
  const pairs = answerOutputs
    .map((name, column) => [column, shadowOutputs.indexOf(name)] as const)
    .filter(([, shadowColumn]) => shadowColumn !== -1);
  if (pairs.length === 0 || answer.rows !== shadow.rows) return undefined;
  const errors = new Float64Array(answer.rows * pairs.length);
  let i = 0;
  for (let row = 0; row < answer.rows; row++) {
    for (const [column, shadowColumn] of pairs) {
      const expected = answer.data[row * answer.cols + column] as number;
      const got = shadow.data[row * shadow.cols + shadowColumn] as number;
      errors[i++] = Math.abs(got - expected);
    }
  }
  return errors;
}

function copyMatrix(matrix: Matrix): Matrix {
  return { data: matrix.data.slice(), rows: matrix.rows, cols: matrix.cols };
}
