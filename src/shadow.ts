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
 * (`timeout`), not run because the shadow already had as many in flight as a model may
 * (`skipped`), or run but sharing no output with the answer (`incomparable`).
 */
export type ShadowOutcome = 'compared' | 'failed' | 'timeout' | 'skipped' | 'incomparable';

export interface ShadowEvents {
  /** `errors`: |shadow − answer| for each row and output both versions give, when compared. */
  shadowed(model: string, label: string, outcome: ShadowOutcome, errors?: Float64Array): void;
}

/**
 * Shadow traffic: a copy of each request a model answers goes to the version its shadow label
 * points at, after the answer has been computed and off its path; the two answers are compared in
 * the metrics and the copy's is thrown away. Copies have in-flight places of their own, as many as
 * a model's requests have, so a slow shadow is skipped rather than taking places from clients.
 */
export class ShadowTraffic {
  readonly #limit: InFlightLimit;

  constructor(
    private readonly registry: ModelRegistry,
    maxInFlightPerModel: number,
    private readonly events: ShadowEvents | undefined,
    private readonly log: FastifyBaseLogger,
  ) {
    this.#limit = new InFlightLimit(maxInFlightPerModel, 1);
  }

  /**
   * Called once the version that answers is known and before it runs: copies what the shadow
   * needs (the request's matrix may move to a worker thread) and returns what to call with the
   * answer, or undefined when the model has no shadow.
   */
  prepare(
    answered: ModelVersion,
    request: PredictionRequest,
    run: ModelRunner,
    deadline: number | undefined,
  ): ((result: Matrix) => void) | undefined {
    const shadow = this.registry.shadowOf(answered);
    if (shadow === undefined) return undefined;
    const copy: PredictionRequest = {
      ...request,
      model: answered.name,
      version: shadow.version,
      matrix: copyMatrix(request.matrix),
    };
    return (result) => {
      const answer = copyMatrix(result);
      // After the client's answer is on its way: its encoding and writing run first.
      setImmediate(() => void this.#mirror(answered, shadow.label, copy, answer, run, deadline));
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
    try {
      const { model: shadow, result } = await predict(this.registry, request, { inFlight: this.#limit, run, deadline });
      const errors = absoluteErrors(answered.outputs, answer, shadow.outputs, result);
      this.events?.shadowed(model, label, errors === undefined ? 'incomparable' : 'compared', errors);
    } catch (error) {
      const outcome = outcomeOf(error);
      this.events?.shadowed(model, label, outcome);
      this.log.debug(
        { model, version: request.version, label, outcome, reason: (error as Error).message },
        'a shadow prediction was not compared',
      );
    }
  }
}

function outcomeOf(error: unknown): ShadowOutcome {
  if (!(error instanceof ApiError)) return 'failed';
  if (error.code === 'model_busy') return 'skipped';
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
  return { data: Float64Array.from(matrix.data), rows: matrix.rows, cols: matrix.cols };
}
