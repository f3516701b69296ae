import type { BackendName } from '../backends/backend.js';
import { ApiError } from '../errors.js';
import {
  checkColumnCount,
  checkRowCount,
  describeValue,
  fitsFloat32,
  type Matrix,
  type MatrixLimits,
  NON_FINITE_MESSAGE,
} from '../matrix.js';
import type { VersionStatus } from '../registry/registry.js';

/**
 * The TensorFlow Serving REST API (predict, model status, model metadata) as pure functions: a
 * predict body in the row ("instances") or columnar ("inputs") format into a Matrix (and the
 * feature names of its columns, when the client named them), and a prediction back into
 * `predictions` or `outputs`. No HTTP here.
 */

/** The one signature every model has. */
export const SIGNATURE = 'serving_default';
/** The name metadata gives the single 2-D input tensor (`[rows, features]`). */
export const MATRIX_INPUT = 'input';
/** The only verb served after a model, version or label in a POST URL. */
export const PREDICT_VERB = 'predict';

const REQUEST_FIELDS = new Set(['signature_name', 'instances', 'inputs']);
/** Longest key taken: names are echoed in error messages (truncated to SHOWN characters). */
export const MAX_NAME_LENGTH = 256;
const SHOWN = 40;

export type PredictFormat = 'row' | 'columnar';

/** What a predict request asks for, once read. */
export interface TfPredictRequest {
  format: PredictFormat;
  matrix: Matrix;
  /** One name per column when the client named the features; undefined for an unnamed or `input` tensor. */
  features: string[] | undefined;
}

/**
 * Reads a predict body: `{signature_name?, instances}` (row format) or `{signature_name?, inputs}`
 * (columnar). Each instance is a list of feature values, `{"input": [values]}`, or one key per
 * feature; `inputs` is a list of rows, `{"input": [rows]}`, or one list of values per feature.
 * Everything is checked (shape, every value) before the matrix is allocated, at the size the body
 * really holds.
 */
export function parsePredictRequest(body: unknown, limits: MatrixLimits): TfPredictRequest {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new ApiError('invalid_body', 'the body must be a JSON object with "instances" or "inputs"', 'body');
  }
  const fields = body as Record<string, unknown>;
  for (const key of Object.keys(fields)) {
    if (!REQUEST_FIELDS.has(key)) {
      throw new ApiError(
        'invalid_body',
        `unknown field; expected one of ${[...REQUEST_FIELDS].join(', ')}`,
        shown(key),
      );
    }
  }
  const signature = fields.signature_name;
  // An empty name is the default signature, as TF Serving reads it (and as metadata's model_spec says it).
  if (signature !== undefined && signature !== SIGNATURE && signature !== '') {
    throw new ApiError(
      'invalid_body',
      `${typeof signature === 'string' ? `no signature "${shown(signature)}"` : 'must be a string'}; the only signature is "${SIGNATURE}"`,
      'signature_name',
    );
  }
  const { instances, inputs } = fields;
  if (instances !== undefined && inputs !== undefined) {
    throw new ApiError('invalid_body', 'send either "instances" (row format) or "inputs" (columnar), not both', 'body');
  }
  if (instances !== undefined) return { format: 'row', ...readInstances(instances, limits) };
  if (inputs !== undefined) return { format: 'columnar', ...readInputs(inputs, limits) };
  throw new ApiError('invalid_body', 'missing "instances" (row format) or "inputs" (columnar)', 'body');
}

type Read = { matrix: Matrix; features: string[] | undefined };

function readInstances(instances: unknown, limits: MatrixLimits): Read {
  if (!Array.isArray(instances)) {
    throw new ApiError('invalid_body', 'must be an array of instances (one per pod)', 'instances');
  }
  checkRowCount(instances.length, limits.maxRows, 'instances');
  const first: unknown = instances[0];
  if (Array.isArray(first)) {
    return { matrix: rowsOf(instances, limits, (r, c) => cell('instances', r, c)), features: undefined };
  }
  if (!isObject(first)) {
    throw new ApiError(
      'invalid_body',
      'must be a list of feature values, {"input": [values]}, or an object with one key per feature',
      'instances[0]',
    );
  }
  const names = Object.keys(first);
  if (names.length === 1 && names[0] === MATRIX_INPUT) {
    // Every instance {"input": [values]}: the rows, one level down.
    const rows = instances.map((instance, r) => {
      const field = `instances[${r}]`;
      if (!isObject(instance)) throw new ApiError('invalid_body', 'must be an object like instances[0]', field);
      const keys = Object.keys(instance);
      if (keys.length !== 1 || keys[0] !== MATRIX_INPUT) {
        throw new ApiError('invalid_body', `must name the same inputs as instances[0] ("${MATRIX_INPUT}")`, field);
      }
      return instance[MATRIX_INPUT];
    });
    return {
      matrix: rowsOf(
        rows,
        limits,
        (r, c) => `${cell('instances', r)}.${MATRIX_INPUT}${c === undefined ? '' : `[${c}]`}`,
      ),
      features: undefined,
    };
  }
  if (names.length === 0) throw new ApiError('invalid_body', 'names no input', 'instances[0]');
  const columns = featureIndex(names, limits, 'instances[0]');
  const cols = names.length;
  // Checked first, allocated after: nothing is allocated for rows the body does not hold.
  instances.forEach((instance, r) => {
    const field = `instances[${r}]`;
    if (!isObject(instance)) throw new ApiError('invalid_body', 'must be an object like instances[0]', field);
    const keys = Object.keys(instance);
    for (const key of keys) {
      if (!columns.has(key)) {
        throw new ApiError(
          'invalid_body',
          'names an input instances[0] does not; every instance names the same',
          `${field}.${shown(key)}`,
        );
      }
    }
    if (keys.length !== cols) {
      throw new ApiError('invalid_body', `names ${keys.length} inputs where instances[0] names ${cols}`, field);
    }
    for (const key of keys) checkValue(instance[key], `${field}.${shown(key)}`);
  });
  const data = new Float64Array(instances.length * cols);
  instances.forEach((instance, r) => {
    const values = instance as Record<string, number>;
    names.forEach((name, c) => {
      data[r * cols + c] = values[name] as number;
    });
  });
  return { matrix: { data, rows: instances.length, cols }, features: names };
}

function readInputs(inputs: unknown, limits: MatrixLimits): Read {
  if (Array.isArray(inputs)) {
    checkRowCount(inputs.length, limits.maxRows, 'inputs');
    return { matrix: rowsOf(inputs, limits, (r, c) => cell('inputs', r, c)), features: undefined };
  }
  if (!isObject(inputs)) {
    throw new ApiError(
      'invalid_body',
      'must be a list of rows, {"input": [rows]}, or an object with one list of values per feature',
      'inputs',
    );
  }
  const names = Object.keys(inputs);
  if (names.length === 0) throw new ApiError('invalid_body', 'names no input', 'inputs');
  if (names.length === 1 && names[0] === MATRIX_INPUT) {
    const rows = inputs[MATRIX_INPUT];
    const field = `inputs.${MATRIX_INPUT}`;
    if (!Array.isArray(rows)) throw new ApiError('invalid_body', 'must be an array of rows', field);
    checkRowCount(rows.length, limits.maxRows, field);
    return { matrix: rowsOf(rows, limits, (r, c) => cell(field, r, c)), features: undefined };
  }
  featureIndex(names, limits, 'inputs');
  let rows = 0;
  names.forEach((name, c) => {
    const field = `inputs.${name}`;
    const column = inputs[name];
    if (!Array.isArray(column)) throw new ApiError('invalid_body', 'must be an array of values, one per row', field);
    if (c === 0) {
      checkRowCount(column.length, limits.maxRows, field);
      rows = column.length;
    } else if (column.length !== rows) {
      throw new ApiError(
        'ragged_rows',
        `has ${column.length} values where inputs.${shown(names[0] ?? '')} has ${rows}`,
        field,
      );
    }
    column.forEach((value, r) => {
      checkValue(value, `${field}[${r}]`);
    });
  });
  const cols = names.length;
  const data = new Float64Array(rows * cols);
  names.forEach((name, c) => {
    const column = inputs[name] as number[];
    for (let r = 0; r < rows; r++) data[r * cols + c] = column[r] as number;
  });
  return { matrix: { data, rows, cols }, features: names };
}

/**
 * A list of rows (each a list of numbers) into a Matrix: every row's length and every value
 * checked before the matrix is allocated. The caller has checked the row count.
 */
function rowsOf(
  rows: readonly unknown[],
  limits: MatrixLimits,
  fieldOf: (row: number, col?: number) => string,
): Matrix {
  const first: unknown = rows[0];
  if (!Array.isArray(first))
    throw new ApiError('invalid_body', 'must be an array of numbers (one row per pod)', fieldOf(0));
  const cols = first.length;
  checkColumnCount(cols, limits.maxColumns, fieldOf(0));
  if (cols === 0) throw new ApiError('empty_matrix', 'the rows hold no values', fieldOf(0));
  rows.forEach((row, r) => {
    if (!Array.isArray(row))
      throw new ApiError('invalid_body', 'must be an array of numbers (one row per pod)', fieldOf(r));
    if (row.length !== cols)
      throw new ApiError('ragged_rows', `has ${row.length} values where row 0 has ${cols}`, fieldOf(r));
    for (let c = 0; c < cols; c++) checkValue(row[c], fieldOf(r, c));
  });
  const data = new Float64Array(rows.length * cols);
  rows.forEach((row, r) => {
    const values = row as number[];
    for (let c = 0; c < cols; c++) data[r * cols + c] = values[c] as number;
  });
  return { data, rows: rows.length, cols };
}

/** Feature names given as keys: at most MAX_COLUMNS of them, each 1 to 256 characters; their columns by name. */
function featureIndex(names: readonly string[], limits: MatrixLimits, field: string): Map<string, number> {
  checkColumnCount(names.length, limits.maxColumns, field);
  const columns = new Map<string, number>();
  names.forEach((name, c) => {
    if (name === '' || name.length > MAX_NAME_LENGTH) {
      throw new ApiError(
        'invalid_body',
        `input names must be 1 to ${MAX_NAME_LENGTH} characters`,
        `${field}.${shown(name)}`,
      );
    }
    if (name === MATRIX_INPUT) {
      throw new ApiError(
        'invalid_body',
        `"${MATRIX_INPUT}" holds whole rows: send it alone, or one key per feature without it`,
        `${field}.${MATRIX_INPUT}`,
      );
    }
    columns.set(name, c);
  });
  return columns;
}

function checkValue(value: unknown, field: string): void {
  if (typeof value !== 'number')
    throw new ApiError('not_a_number', `must be a number, got ${describeValue(value)}`, field);
  if (!fitsFloat32(value)) throw new ApiError('non_finite_value', NON_FINITE_MESSAGE, field);
}

/**
 * Checks per-feature names against the model's features before it runs: unknown and missing names
 * are a 400 naming them (truncated), with Sets, whatever the number of names.
 */
export function checkFeatureNames(given: readonly string[], wanted: readonly string[], field: string): void {
  const known = new Set(wanted);
  const unknown = given.filter((name) => !known.has(name));
  if (unknown.length > 0) {
    throw new ApiError(
      'unknown_feature',
      `the model has no feature ${quoted(unknown.slice(0, 5))}${unknown.length > 5 ? ` and ${unknown.length - 5} more` : ''}; it takes ${quoted(wanted)}`,
      field,
    );
  }
  const present = new Set(given);
  const missing = wanted.filter((name) => !present.has(name));
  if (missing.length > 0) throw new ApiError('missing_feature', `missing ${quoted(missing)}`, field);
}

/** The row format's answer: one number per instance, or one object {output: value} per instance. */
export function predictResponse(
  outputs: readonly string[],
  result: Matrix,
): { predictions: number[] | Array<Record<string, number>> } {
  const { data, rows, cols } = result;
  if (cols === 1) return { predictions: Array.from(data) };
  const predictions: Array<Record<string, number>> = new Array(rows);
  for (let r = 0; r < rows; r++) {
    const row: Record<string, number> = {};
    for (let c = 0; c < cols; c++) row[outputName(outputs, c)] = data[r * cols + c] as number;
    predictions[r] = row;
  }
  return { predictions };
}

/** The columnar answer: the values of the one output, or one list of values per output. */
export function columnarResponse(
  outputs: readonly string[],
  result: Matrix,
): { outputs: number[] | Record<string, number[]> } {
  const { data, rows, cols } = result;
  if (cols === 1) return { outputs: Array.from(data) };
  const byName: Record<string, number[]> = {};
  for (let c = 0; c < cols; c++) {
    const values: number[] = new Array(rows);
    for (let r = 0; r < rows; r++) values[r] = data[r * cols + c] as number;
    byName[outputName(outputs, c)] = values;
  }
  return { outputs: byName };
}

function outputName(outputs: readonly string[], column: number): string {
  return outputs[column] ?? `y${column}`;
}

export type TfState = 'START' | 'LOADING' | 'AVAILABLE' | 'UNLOADING' | 'END';

export interface TfVersionStatus {
  version: string;
  state: TfState;
  status: { error_code: 'OK' | 'UNKNOWN'; error_message: string };
}

const STATES: Record<VersionStatus['state'], TfState> = {
  loading: 'LOADING',
  available: 'AVAILABLE',
  unloading: 'UNLOADING',
  unloaded: 'END',
  failed: 'END',
};

/** Model status as TF Serving gives it: newest version first; a failed version is END with its reason. */
export function modelStatus(versions: readonly Pick<VersionStatus, 'version' | 'state' | 'reason'>[]): {
  model_version_status: TfVersionStatus[];
} {
  return {
    model_version_status: [...versions]
      .sort((a, b) => b.version - a.version)
      .map((v) => ({
        version: String(v.version),
        state: STATES[v.state],
        status:
          v.state === 'failed'
            ? { error_code: 'UNKNOWN', error_message: (v.reason ?? 'the version failed to load').slice(0, 500) }
            : { error_code: 'OK', error_message: '' },
      })),
  };
}

/** What metadata needs to know of a model version. */
export interface DescribedModel {
  readonly name: string;
  readonly version: number;
  readonly backend: BackendName;
  readonly features: readonly string[];
  readonly outputs: readonly string[];
}

type Dtype = 'DT_FLOAT' | 'DT_DOUBLE';

interface TensorInfo {
  dtype: Dtype;
  tensor_shape: { dim: Array<{ size: string; name: string }>; unknown_rank: false };
  name: string;
}

function tensorInfo(name: string, dtype: Dtype, sizes: readonly number[]): TensorInfo {
  return {
    dtype,
    tensor_shape: { dim: sizes.map((size) => ({ size: String(size), name: '' })), unknown_rank: false },
    name,
  };
}

/**
 * GetModelMetadata's answer: the `serving_default` signature, with one input `input` of shape
 * [-1, features] (DT_FLOAT, or DT_DOUBLE for Kepler's formulas) and one DT_DOUBLE output of shape
 * [-1] per model output. TensorInfo has no place for column names: they are beside the signature,
 * in `metadata.feature_names.input` (the names the per-feature layouts take, in the column order).
 */
export function modelMetadata(model: DescribedModel) {
  const dtype: Dtype = model.backend === 'kepler' ? 'DT_DOUBLE' : 'DT_FLOAT';
  return {
    model_spec: { name: model.name, signature_name: '', version: String(model.version) },
    metadata: {
      signature_def: {
        signature_def: {
          [SIGNATURE]: {
            inputs: { [MATRIX_INPUT]: tensorInfo(MATRIX_INPUT, dtype, [-1, model.features.length]) },
            outputs: Object.fromEntries(model.outputs.map((name) => [name, tensorInfo(name, 'DT_DOUBLE', [-1])])),
            method_name: 'tensorflow/serving/predict',
          },
        },
      },
      feature_names: { [MATRIX_INPUT]: [...model.features] },
    },
  };
}

/**
 * The last segment of a POST URL, `<name>:predict`: the name, or a 404 for another verb (TF
 * Serving's :classify and :regress are not served) or none.
 */
export function splitVerb(segment: string, field: string): string {
  const colon = segment.lastIndexOf(':');
  const verb = colon === -1 ? undefined : segment.slice(colon + 1);
  if (verb !== PREDICT_VERB) {
    throw new ApiError(
      'not_found',
      verb === undefined
        ? `POST needs a verb: ${field}:${PREDICT_VERB}`
        : `"${shown(verb)}" is not served; the only verb is :${PREDICT_VERB}`,
      field,
    );
  }
  return segment.slice(0, colon);
}

/** A client-chosen name as echoed in a message: at most 40 characters. */
export function shown(name: string): string {
  return name.length > SHOWN ? `${name.slice(0, SHOWN)}…` : name;
}

function cell(field: string, row: number, col?: number): string {
  return col === undefined ? `${field}[${row}]` : `${field}[${row}][${col}]`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function quoted(names: readonly string[]): string {
  return names.map((name) => `"${shown(name)}"`).join(', ');
}
