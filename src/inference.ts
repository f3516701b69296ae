import type { PredictContext } from './backends/backend.js';
import type { PredictionRequest } from './codecs/json.js';
import { ApiError } from './errors.js';
import type { InFlightLimit } from './in-flight.js';
import type { Matrix } from './matrix.js';
import type { ModelVersion } from './registry/loader.js';
import type { ModelRegistry } from './registry/registry.js';
import type { Mirror } from './shadow.js';

/**
 * Told which model a request got, and of every prediction that succeeds: how long the model took,
 * what it was given (its columns, in the model's feature order) and what it said.
 */
export interface PredictionObserver {
  chosen(model: ModelVersion): void;
  predicted(model: ModelVersion, seconds: number, result: Matrix, input: Matrix): void;
  /** The model answered with a non-finite value somewhere: the request is refused with a 422. */
  nonFinite?(model: ModelVersion, result: Matrix, input: Matrix): void;
}

export interface Prediction {
  model: ModelVersion;
  /** One row per input row, one column per entry of model.outputs. */
  result: Matrix;
}

/**
 * Computes a model's answer to an input: on the event loop, or in a worker thread. The deadline
 * (performance.now() time) is a hint: the answer is given up on there anyway.
 */
export type ModelRunner = (
  model: ModelVersion,
  input: Matrix,
  context: PredictContext | undefined,
  deadline: number | undefined,
) => Promise<Matrix>;

export const runInThread: ModelRunner = (model, input, context) => model.model.predict(input, context);

export interface PredictOptions {
  observer?: PredictionObserver;
  /** performance.now() by which the model must have answered, or 504 deadline_exceeded. */
  deadline?: number;
  inFlight?: InFlightLimit;
  run?: ModelRunner;
  /**
   * Told of the version chosen, before it runs (the request's matrix may move to a worker then);
   * what it returns is given the answer once there is one, or cancelled (shadow traffic).
   */
  mirror?: (answered: ModelVersion, request: PredictionRequest) => Mirror | undefined;
}

/**
 * Runs one prediction request against the registry, whatever protocol it came from: picks the
 * model, puts the columns in the model's order, checks the width and predicts.
 *
 * Past the deadline the client is answered at once, but the model version and its in-flight place
 * stay held until the model really finishes: a version is never disposed under a computation, and
 * a model that hangs fills its places and answers 429 instead of piling up work.
 */
export async function predict(
  registry: ModelRegistry,
  request: PredictionRequest,
  options: PredictOptions = {},
): Promise<Prediction> {
  const { observer, run = runInThread } = options;
  const handle = registry.acquire(request.model, request.version, request.routingKey);
  let running: Promise<unknown> | undefined;
  let mirror: Mirror | undefined;
  let answered = false;
  try {
    const { model } = handle;
    observer?.chosen(model);
    const input =
      request.features === undefined
        ? request.matrix
        : reorderColumns(request.matrix, request.features, model.features, request.extraFeatures ?? 'refuse');
    if (input.cols !== model.features.length) {
      throw new ApiError(
        'wrong_width',
        `rows have ${input.cols} values; model "${model.name}" version ${model.version} takes ${model.features.length} (${model.features.join(', ')})`,
        'instances',
      );
    }
    const leave = options.inFlight?.enter(model.name);
    mirror = mirrorOf(options, model, request);
    const started = performance.now();
    // Async, so that a backend throwing at once still gives its in-flight place back.
    const work = (async () => run(model, input, request.context, options.deadline))();
    running = work.then(
      () => leave?.(),
      () => leave?.(),
    );
    let result: Matrix;
    try {
      result = await withDeadline(work, options.deadline);
    } catch (error) {
      if (error instanceof ApiError) throw error;
      registry.predictionFailed(model, error);
      throw new PredictionError(model, error);
    }
    const seconds = (performance.now() - started) / 1000;
    const firstNonFinite = result.data.findIndex((value) => !Number.isFinite(value));
    if (firstNonFinite !== -1) {
      observer?.nonFinite?.(model, result, input);
      throw nonFinitePrediction(Math.floor(firstNonFinite / result.cols));
    }
    observer?.predicted(model, seconds, result, input);
    answered = true;
    mirrorStep(() => mirror?.compare(result));
    return { model, result };
  } finally {
    if (!answered) mirrorStep(() => mirror?.cancel());
    if (running === undefined) handle.release();
    else void running.finally(() => handle.release());
  }
}

/** The request's mirror, if any: nothing a mirror does may fail the request it copies. */
function mirrorOf(options: PredictOptions, model: ModelVersion, request: PredictionRequest): Mirror | undefined {
  let mirror: Mirror | undefined;
  mirrorStep(() => {
    mirror = options.mirror?.(model, request);
  });
  return mirror;
}

/** Runs a step of the request's mirror; its failures are the mirror's to count, never the request's. */
function mirrorStep(step: () => void): void {
  try {
    step();
  } catch {
    // The request it copies goes on.
  }
}

export function deadlineExceeded(): ApiError {
  return new ApiError(
    'deadline_exceeded',
    'the prediction did not finish within REQUEST_TIMEOUT_MS of the request arriving',
  );
}

/** The work's result, or 504 once the deadline (performance.now() time) passes; the work goes on unawaited. */
export async function withDeadline<T>(work: Promise<T>, deadline: number | undefined): Promise<T> {
  if (deadline === undefined) return work;
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(deadlineExceeded()), Math.max(0, deadline - performance.now()));
  });
  try {
    return await Promise.race([work, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** Watts must be numbers: inputs far outside what the model was fitted on can overflow float32. */
function nonFinitePrediction(row: number): ApiError {
  return new ApiError(
    'non_finite_prediction',
    `the model gave a non-finite value for row ${row}; its inputs are probably far outside the training range`,
  );
}

/** A backend failed on input that passed validation: a server-side fault, logged with its cause. */
export class PredictionError extends ApiError {
  constructor(
    model: ModelVersion,
    override readonly cause: unknown,
  ) {
    super('prediction_failed', `model "${model.name}" version ${model.version} failed to predict`);
  }
}

/**
 * Moves the columns of a matrix, named by `given`, into the order of `wanted`. Every wanted name
 * must be given exactly once; other names are refused, or with 'ignore' their columns dropped.
 */
export function reorderColumns(
  matrix: Matrix,
  given: readonly string[],
  wanted: readonly string[],
  extra: 'refuse' | 'ignore' = 'refuse',
): Matrix {
  if (given.length !== matrix.cols) {
    throw new ApiError('wrong_width', `names ${given.length} features but rows have ${matrix.cols} values`, 'features');
  }
  const position = new Map<string, number>();
  for (const [index, name] of given.entries()) {
    if (position.has(name)) throw new ApiError('duplicate_feature', `"${name}" is named twice`, 'features');
    position.set(name, index);
  }
  const unknown = given.filter((name) => !wanted.includes(name));
  if (unknown.length > 0 && extra === 'refuse') {
    throw new ApiError(
      'unknown_feature',
      `the model has no feature ${quoted(unknown)}; it takes ${quoted(wanted)}`,
      'features',
    );
  }
  const missing = wanted.filter((name) => !position.has(name));
  if (missing.length > 0) throw new ApiError('missing_feature', `missing ${quoted(missing)}`, 'features');

  const order = wanted.map((name) => position.get(name) as number);
  const { data, rows, cols } = matrix;
  if (order.length === cols && order.every((from, to) => from === to)) return matrix;
  const width = order.length;
  const out = new Float64Array(rows * width);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < width; c++) out[r * width + c] = data[r * cols + (order[c] as number)] as number;
  }
  return { data: out, rows, cols: width };
}

function quoted(names: readonly string[]): string {
  return names.map((name) => `"${name}"`).join(', ');
}
