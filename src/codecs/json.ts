import { parse as secureJsonParse } from 'secure-json-parse';
import type { PredictContext } from '../backends/backend.js';
import { ApiError } from '../errors.js';
import { instancesField, type Matrix, type MatrixLimits, matrixToRows, rowsToMatrix } from '../matrix.js';

/** What a prediction request asks for, whatever protocol carried it. */
export interface PredictionRequest {
  model: string | undefined;
  version: number | undefined;
  /** Column names of the matrix, when the client named them; mapped to the model's order. */
  features: readonly string[] | undefined;
  matrix: Matrix;
  /** Let `features` name columns the model does not use (Kepler sends every metric it has). */
  extraFeatures?: 'refuse' | 'ignore';
  context?: PredictContext;
  /** The client's request id: with a traffic split, the same id reaches the same version. */
  routingKey?: string;
}

const NATIVE_FIELDS = new Set(['model', 'version', 'features', 'instances']);

// Brackets, and whole strings (which may hold brackets): all a nesting depth count has to look at.
// (Unrolled: `"(?:[^"\\]|\\.)*"` takes 20 times as long on a long string.)
const STRUCTURE = /"[^"\\]*(?:\\.[^"\\]*)*"|[[{]|[\]}]/g;

/**
 * Parses JSON text as Fastify would (a `__proto__` key or a `constructor.prototype` is refused),
 * after checking its nesting depth: V8 takes about a second to parse a body of a million nested
 * arrays, so depth is refused before parsing, not after.
 */
export function parseJsonText(text: string, maxDepth: number, field = 'body'): unknown {
  if (text.length === 0) throw new ApiError('invalid_json', 'the JSON body is empty', field);
  if (nestingExceeds(text, maxDepth)) {
    throw new ApiError(
      'json_too_deep',
      `arrays and objects are nested more than ${maxDepth} deep (MAX_JSON_DEPTH)`,
      field,
    );
  }
  try {
    return secureJsonParse(text, { protoAction: 'error', constructorAction: 'error' });
  } catch {
    throw new ApiError('invalid_json', 'the body is not valid JSON (or has a forbidden key such as __proto__)', field);
  }
}

/** Whether arrays and objects nest deeper than max; on malformed JSON the answer does not matter. */
export function nestingExceeds(text: string, max: number): boolean {
  let depth = 0;
  STRUCTURE.lastIndex = 0;
  for (let match = STRUCTURE.exec(text); match !== null; match = STRUCTURE.exec(text)) {
    const token = match[0];
    if (token === '[' || token === '{') {
      if (++depth > max) return true;
    } else if (token === ']' || token === '}') depth--;
  }
  return false;
}

/**
 * Reads the native JSON body `{model?, version?, features?, instances}`; a bare array of rows is
 * taken as `instances`. Unknown fields are refused, so that a misspelt `features` cannot silently
 * leave columns in the wrong order.
 */
export function parseNativeBody(body: unknown, limits: MatrixLimits): PredictionRequest {
  if (Array.isArray(body)) {
    return { model: undefined, version: undefined, features: undefined, matrix: toMatrix(body, limits) };
  }
  if (body === null || typeof body !== 'object') {
    throw new ApiError('invalid_body', 'the body must be a JSON object with "instances", or an array of rows', 'body');
  }
  const fields = body as Record<string, unknown>;
  for (const key of Object.keys(fields)) {
    if (!NATIVE_FIELDS.has(key)) {
      throw new ApiError('invalid_body', `unknown field; expected one of ${[...NATIVE_FIELDS].join(', ')}`, key);
    }
  }
  if (fields.instances === undefined) throw new ApiError('invalid_body', 'is required', 'instances');
  return {
    model: parseModelName(fields.model, 'model'),
    version: parseVersion(fields.version, 'version'),
    features: parseFeatureNames(fields.features, 'features'),
    matrix: toMatrix(fields.instances, limits),
  };
}

function toMatrix(rows: unknown, limits: MatrixLimits): Matrix {
  return rowsToMatrix(rows, limits, 'instances', instancesField);
}

/** The model named outside the body (URL or header), which the body may repeat but not contradict. */
export function modelFromBothPlaces(outside: string, inBody: string | undefined, where: string): string {
  if (inBody !== undefined && inBody !== outside) {
    throw new ApiError('invalid_body', `names model "${inBody}" but ${where} names "${outside}"`, 'model');
  }
  return outside;
}

export function parseModelName(value: unknown, field: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value === '') throw new ApiError('invalid_body', 'must be a model name', field);
  return value;
}

/** A version is a positive integer, given as a number or a string of digits. */
export function parseVersion(value: unknown, field: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  const version = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) {
    throw new ApiError('invalid_body', 'must be a positive integer', field);
  }
  return version;
}

export function parseFeatureNames(value: unknown, field: string): string[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || value.some((name) => typeof name !== 'string')) {
    throw new ApiError('invalid_body', 'must be an array of feature names', field);
  }
  return value as string[];
}

/** What an answer says of the model that gave it. */
export interface ServedModel {
  readonly name: string;
  readonly version: number;
  readonly outputs: readonly string[];
}

/** The JSON answer to a prediction: one number per row, or one array per row with named outputs. */
export function predictionBody(model: ServedModel, result: Matrix): PredictionBody {
  const predictions = matrixToRows(result);
  return result.cols === 1
    ? { model: model.name, version: model.version, predictions }
    : { model: model.name, version: model.version, predictions, outputs: model.outputs };
}

export interface PredictionBody {
  model: string;
  version: number;
  predictions: number[] | number[][];
  outputs?: readonly string[];
}
