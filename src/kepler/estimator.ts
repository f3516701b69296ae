import { ApiError } from '../errors.js';
import type { PredictionObserver } from '../inference.js';
import { type Matrix, rowsToMatrix } from '../matrix.js';
import type { Predictor } from '../predictor.js';
import {
  keplerCandidates,
  parseSelectionRequest,
  requestObject,
  type SelectionRequest,
  selectModel,
  stringList,
} from './selection.js';

/**
 * Kepler's estimator protocol (kepler.md, section 1), the same over HTTP and the unix socket:
 * Kepler's request JSON in, Kepler's reply JSON out.
 */

export interface EstimateReply {
  powers: Record<string, number[]>;
  msg: string;
  core_ratio?: number;
}

/** The reply Kepler can parse on failure: an object for powers, never an array. */
export function estimateFailure(message: string): EstimateReply {
  return { powers: {}, msg: message };
}

/**
 * Kepler's requests are one node's pods (about 100 KB at most): they get at most 1 MiB, as on the
 * unix socket, so a large body cannot hold the event loop on routes that parse JSON in-thread.
 */
export function keplerBodyLimit(maxBodyBytes: number): number {
  return Math.min(maxBodyBytes, 1024 * 1024);
}

/** A catalogue error as Kepler's failure reply, its field named in the message. */
export function estimateFailureFor(error: ApiError): EstimateReply {
  return estimateFailure(error.field === undefined ? error.message : `${error.field}: ${error.message}`);
}

interface EstimateRequest extends SelectionRequest {
  values: unknown[];
  system: Map<string, string>;
}

/** Picks the Kepler model for the request and answers watts per component and pod. */
export async function estimate(
  predictor: Predictor,
  body: unknown,
  observer: PredictionObserver | undefined,
  deadline: number,
): Promise<EstimateReply> {
  const request = parseEstimateRequest(body);
  const chosen = selectModel(keplerCandidates(predictor.registry), request);
  if (request.values.length === 0) {
    return { powers: Object.fromEntries(chosen.outputs.map((name) => [name, []])), msg: '', core_ratio: 1 };
  }
  const matrix = rowsToMatrix(request.values, predictor.limits, 'values', (row, col) =>
    col === undefined ? `values[${row}]` : `values[${row}][${col}]`,
  );
  if (matrix.cols !== request.metrics.length) {
    throw new ApiError(
      'wrong_width',
      `rows have ${matrix.cols} values for ${request.metrics.length} metrics`,
      'values',
    );
  }
  const { model, result } = await predictor.predict(
    {
      model: chosen.name,
      version: chosen.version,
      features: request.metrics,
      extraFeatures: 'ignore',
      matrix,
      context: { system: request.system },
    },
    observer,
    deadline,
  );
  return { powers: powersByComponent(model.outputs, result), msg: '', core_ratio: 1 };
}

/**
 * One array of watts per component. Numbers keep 8 significant digits: Kepler reads the reply in
 * a single 4096-byte read, and shorter numbers let far more pods fit (watts need no more).
 */
function powersByComponent(outputs: readonly string[], result: Matrix): Record<string, number[]> {
  return Object.fromEntries(
    outputs.map((name, c) => {
      const column = new Array<number>(result.rows);
      for (let r = 0; r < result.rows; r++) column[r] = eightDigits(result.data[r * result.cols + c] as number);
      return [name, column];
    }),
  );
}

/**
 * The value rounded to 8 significant digits, as Number(value.toPrecision(8)) gives it, mostly
 * without going through a string (which cost half of a 100-pod Kepler request's CPU): an integer
 * divided by a power of ten is the double nearest the 8-digit decimal. Values from 1e7 up, where
 * the scale would be a fraction, and values within a millionth of a digit of a tie take the string
 * route; watts are never that large, and ties are rare.
 */
export function eightDigits(value: number): number {
  const magnitude = Math.abs(value);
  if (!(magnitude >= 1e-15 && magnitude < 1e7)) return Number(value.toPrecision(8));
  // The power of ten at or below the value: 10^-15 … 10^6, by comparison (log10 costs more).
  let exponent = 6;
  while ((POWERS_OF_TEN[exponent + 15] as number) > magnitude) exponent--;
  const scale = POWERS_OF_TEN[7 - exponent + 15] as number;
  const scaled = value * scale;
  // Near a tie the product's own rounding decides the digit (and Math.round takes halves up,
  // toPrecision away from zero): those few go the string way, which rounds the stored value.
  if (Math.abs(scaled - Math.floor(scaled) - 0.5) < 1e-6) return Number(value.toPrecision(8));
  return Math.round(scaled) / scale;
}

/** 10^-15 … 10^22, exact where a double can be (from 10^0 up), at index exponent + 15. */
const POWERS_OF_TEN = Array.from({ length: 38 }, (_, i) => Number(`1e${i - 15}`));

export function parseEstimateRequest(body: unknown): EstimateRequest {
  const fields = requestObject(body);
  if (!Array.isArray(fields.values)) throw new ApiError('invalid_body', 'must be an array of rows', 'values');
  const systemFeatures = stringList(fields.system_features, 'system_features', false);
  const systemValues = stringList(fields.system_values, 'system_values', false);
  if (systemFeatures.length !== systemValues.length) {
    throw new ApiError(
      'invalid_body',
      `has ${systemValues.length} values for ${systemFeatures.length} system_features`,
      'system_values',
    );
  }
  return {
    ...parseSelectionRequest(fields),
    values: fields.values,
    system: new Map(systemFeatures.map((feature, i) => [feature, systemValues[i] as string])),
  };
}
