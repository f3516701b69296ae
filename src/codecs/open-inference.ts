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

/**
 * The KServe V2 / Open Inference Protocol (REST) as pure functions: an inference request's tensors
 * into a Matrix (and the feature names of its columns, when the client sent one tensor per feature),
 * and a prediction back into output tensors. No HTTP here.
 */

/** The tensor datatypes an inference request may use: all become float64 columns. */
export const INPUT_DATATYPES = ['FP32', 'FP64', 'INT32', 'INT64'] as const;
export type InputDatatype = (typeof INPUT_DATATYPES)[number];
export type OutputDatatype = 'FP32' | 'FP64';

/** The name metadata gives the single 2-D input tensor (any name is accepted for it). */
export const MATRIX_INPUT = 'input';

const REQUEST_FIELDS = new Set(['id', 'parameters', 'inputs', 'outputs']);
const INPUT_FIELDS = new Set(['name', 'shape', 'datatype', 'data', 'parameters']);
const OUTPUT_FIELDS = new Set(['name', 'parameters']);
const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;

/** What an inference request asks for, once read. */
export interface InferenceRequest {
  id: string | undefined;
  matrix: Matrix;
  /** One name per column when the client sent one tensor per feature; undefined for a 2-D tensor. */
  features: string[] | undefined;
  /** The outputs asked for, by name, in order; undefined for all of them. */
  outputs: string[] | undefined;
}

/** A tensor of the answer: data flat, row-major. */
export interface OutputTensor {
  name: string;
  datatype: OutputDatatype;
  shape: number[];
  data: number[];
}

export interface InferenceResponse {
  model_name: string;
  model_version: string;
  id?: string;
  outputs: OutputTensor[];
}

/** A tensor described in model metadata; -1 is the batch dimension. */
export interface TensorMetadata {
  name: string;
  datatype: OutputDatatype;
  shape: number[];
}

export interface ModelMetadata {
  name: string;
  versions: string[];
  platform: string;
  inputs: TensorMetadata[];
  outputs: TensorMetadata[];
  parameters: { version: string; features: string; outputs: string };
}

/** What metadata needs to know of a model version. */
export interface DescribedModel {
  readonly name: string;
  readonly version: number;
  readonly backend: BackendName;
  readonly features: readonly string[];
  readonly outputs: readonly string[];
}

const PLATFORMS: Record<BackendName, string> = {
  onnx: 'onnxruntime_onnx',
  tfjs: 'tensorflow_js',
  kepler: 'kepler',
};

/** The input datatype a model computes in: float32 for onnx and tfjs, float64 for Kepler's formulas. */
export function inputDatatypeOf(backend: BackendName): OutputDatatype {
  return backend === 'kepler' ? 'FP64' : 'FP32';
}

/**
 * Answers are always FP64: JSON numbers are doubles, a float32 result is exactly one, and a model
 * may answer float32 or float64 (or integers) whatever its backend, so one datatype keeps the
 * metadata and every answer in agreement.
 */
export const OUTPUT_DATATYPE: OutputDatatype = 'FP64';

/** Longest tensor or output name taken: names are echoed in error messages. */
const MAX_NAME_LENGTH = 256;
const INT64_LIMIT = 2 ** 63;

/**
 * Model metadata: one input tensor `input` of shape [-1, features], one output tensor per model
 * output of shape [-1]. The feature names (the names the one-tensor-per-feature layout takes) are
 * in `parameters.features`.
 */
export function modelMetadata(model: DescribedModel, versions: readonly number[]): ModelMetadata {
  return {
    name: model.name,
    versions: [...versions].sort((a, b) => a - b).map(String),
    platform: PLATFORMS[model.backend],
    inputs: [{ name: MATRIX_INPUT, datatype: inputDatatypeOf(model.backend), shape: [-1, model.features.length] }],
    outputs: model.outputs.map((name) => ({ name, datatype: OUTPUT_DATATYPE, shape: [-1] })),
    // Parameter values are strings, numbers or booleans in the protocol: names comma-separated.
    parameters: {
      version: String(model.version),
      features: model.features.join(','),
      outputs: model.outputs.join(','),
    },
  };
}

/**
 * Reads an inference request body. Its inputs are either a single 2-D tensor [rows, features]
 * (named anything, `input` in the metadata), or one tensor per feature, each of shape [rows] or
 * [rows, 1] and named after the feature (columns come out in the order given, with their names).
 */
export function parseInferenceRequest(body: unknown, limits: MatrixLimits): InferenceRequest {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new ApiError('invalid_body', 'the body must be a JSON object with "inputs"', 'body');
  }
  const fields = body as Record<string, unknown>;
  refuseUnknown(fields, REQUEST_FIELDS, '');
  const id = fields.id;
  if (id !== undefined && typeof id !== 'string') throw new ApiError('invalid_body', 'must be a string', 'id');
  checkParameters(fields.parameters, 'parameters');
  const outputs = parseOutputNames(fields.outputs, limits);
  const inputs = fields.inputs;
  if (inputs === undefined) throw new ApiError('invalid_body', 'is required', 'inputs');
  if (!Array.isArray(inputs) || inputs.length === 0) {
    throw new ApiError('invalid_body', 'must be a non-empty array of tensors', 'inputs');
  }
  const tensors = inputs.map((input, index) => readTensorHeader(input, `inputs[${index}]`));
  const [first] = tensors;
  if (first !== undefined && tensors.length === 1 && isMatrixTensor(first)) {
    return { id, outputs, features: undefined, matrix: matrixTensor(first, limits) };
  }
  return { id, outputs, ...featureTensors(tensors, limits) };
}

interface TensorHeader {
  field: string;
  name: string;
  shape: number[];
  datatype: InputDatatype;
  data: unknown;
}

function readTensorHeader(value: unknown, field: string): TensorHeader {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ApiError('invalid_body', 'must be a tensor object {name, shape, datatype, data}', field);
  }
  const tensor = value as Record<string, unknown>;
  refuseUnknown(tensor, INPUT_FIELDS, `${field}.`);
  const { shape, datatype, data } = tensor;
  const name = checkedName(tensor.name, `${field}.name`);
  if (!Array.isArray(shape) || shape.some((d) => typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0)) {
    throw new ApiError('invalid_body', 'must be an array of non-negative integers', `${field}.shape`);
  }
  if (typeof datatype !== 'string') throw new ApiError('invalid_body', 'is required', `${field}.datatype`);
  if (!(INPUT_DATATYPES as readonly string[]).includes(datatype)) {
    throw new ApiError(
      'invalid_body',
      `unsupported datatype ${JSON.stringify(datatype.slice(0, 40))}; use one of ${INPUT_DATATYPES.join(', ')}`,
      `${field}.datatype`,
    );
  }
  if (data === undefined) throw new ApiError('invalid_body', 'is required', `${field}.data`);
  checkParameters(tensor.parameters, `${field}.parameters`);
  return { field, name, shape: shape as number[], datatype: datatype as InputDatatype, data };
}

/** A lone tensor [rows, k] is the whole matrix when k > 1, or when it is named `input`. */
function isMatrixTensor(tensor: TensorHeader): boolean {
  return tensor.shape.length === 2 && (tensor.shape[1] !== 1 || tensor.name === MATRIX_INPUT);
}

function matrixTensor(tensor: TensorHeader, limits: MatrixLimits): Matrix {
  const [rows = 0, cols = 0] = tensor.shape;
  checkRowCount(rows, limits.maxRows, `${tensor.field}.shape`);
  checkColumnCount(cols, limits.maxColumns, `${tensor.field}.shape`);
  if (cols === 0) throw new ApiError('empty_matrix', 'the rows hold no values', `${tensor.field}.shape`);
  return { data: tensorValues(tensor), rows, cols };
}

function featureTensors(tensors: TensorHeader[], limits: MatrixLimits): { matrix: Matrix; features: string[] } {
  checkColumnCount(tensors.length, limits.maxColumns, 'inputs');
  let rows: number | undefined;
  for (const tensor of tensors) {
    const { shape, field } = tensor;
    if (!(shape.length === 1 || (shape.length === 2 && shape[1] === 1))) {
      throw new ApiError(
        'invalid_body',
        `has shape [${shape.join(', ')}]; send one 2-D tensor [rows, features], or one tensor per feature of shape [rows] or [rows, 1]`,
        `${field}.shape`,
      );
    }
    const count = shape[0] ?? 0;
    if (rows === undefined) {
      checkRowCount(count, limits.maxRows, `${field}.shape`);
      rows = count;
    } else if (count !== rows) {
      throw new ApiError('ragged_rows', `has ${count} rows where inputs[0] has ${rows}`, `${field}.shape`);
    }
  }
  // Every tensor read and checked first: nothing as large as the shapes claim is allocated for
  // data the body does not hold.
  const columns = tensors.map((tensor) => tensorValues(tensor));
  const cols = tensors.length;
  const height = rows ?? 0;
  const data = new Float64Array(height * cols);
  columns.forEach((column, col) => {
    for (let row = 0; row < height; row++) data[row * cols + col] = column[row] as number;
  });
  return { matrix: { data, rows: height, cols }, features: tensors.map((tensor) => tensor.name) };
}

/**
 * A tensor's values, row-major: its data either flat, holding exactly as many numbers as its
 * shape says, or nested exactly as its shape (an array of shape[0] arrays of shape[1] numbers…).
 * The structure is checked before anything is allocated, so what is allocated is what the body
 * holds; each value must be a number of the datatype within the float32 range.
 */
function tensorValues(tensor: TensorHeader): Float64Array {
  const { field, shape, data } = tensor;
  if (!Array.isArray(data)) {
    throw new ApiError('invalid_body', 'must be an array of numbers (flat or nested, row-major)', `${field}.data`);
  }
  const count = shape.reduce((product, size) => product * size, 1);
  const nested = data.length > 0 && Array.isArray(data[0]);
  if (!nested && data.length !== count) {
    throw new ApiError(
      'invalid_body',
      `holds ${data.length} values where its shape [${shape.join(', ')}] says ${count}`,
      `${field}.data`,
    );
  }
  if (nested) checkNesting(data, shape, 0, `${field}.data`);
  const out = new Float64Array(count);
  let index = 0;
  const put = (value: unknown) => {
    out[index] = checkedValue(value, tensor, index);
    index++;
  };
  const visit = (value: unknown[], depth: number) => {
    for (const item of value) {
      if (nested && depth < shape.length - 1) visit(item as unknown[], depth + 1);
      else put(item);
    }
  };
  visit(data, 0);
  return out;
}

/** Nested data must have the tensor's shape: shape[d] items at depth d, numbers only at the last. */
function checkNesting(value: unknown[], shape: readonly number[], depth: number, field: string): void {
  if (value.length !== shape[depth]) {
    throw new ApiError(
      'invalid_body',
      `has ${value.length} items at depth ${depth} where the shape [${shape.join(', ')}] says ${shape[depth]}`,
      field,
    );
  }
  if (depth === shape.length - 1) {
    const inner = value.findIndex((item) => Array.isArray(item));
    if (inner !== -1) throw new ApiError('invalid_body', 'is nested deeper than the shape', `${field}[${inner}]`);
    return;
  }
  value.forEach((item, index) => {
    if (!Array.isArray(item)) {
      throw new ApiError(
        'invalid_body',
        `must be an array (the shape has ${shape.length} dimensions)`,
        `${field}[${index}]`,
      );
    }
    checkNesting(item, shape, depth + 1, `${field}[${index}]`);
  });
}

function checkedValue(value: unknown, tensor: TensorHeader, index: number): number {
  const { field, datatype } = tensor;
  const at = `${field}.data[${index}]`;
  if (typeof value !== 'number')
    throw new ApiError('not_a_number', `must be a number, got ${describeValue(value)}`, at);
  if (!fitsFloat32(value)) throw new ApiError('non_finite_value', NON_FINITE_MESSAGE, at);
  if (datatype === 'INT32' || datatype === 'INT64') {
    if (!Number.isInteger(value)) throw new ApiError('not_a_number', `must be an integer (${datatype})`, at);
    if (datatype === 'INT32' && (value < INT32_MIN || value > INT32_MAX)) {
      throw new ApiError('non_finite_value', 'must be within the INT32 range', at);
    }
    if (datatype === 'INT64' && (value < -INT64_LIMIT || value >= INT64_LIMIT)) {
      throw new ApiError('non_finite_value', 'must be within the INT64 range', at);
    }
  }
  return value;
}

function parseOutputNames(value: unknown, limits: MatrixLimits): string[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) throw new ApiError('invalid_body', 'must be an array of {name}', 'outputs');
  // An empty list asks for no particular outputs: all of them, as KServe and Triton read it.
  if (value.length === 0) return undefined;
  if (value.length > limits.maxColumns) {
    throw new ApiError('invalid_body', `asks for more than ${limits.maxColumns} outputs (MAX_COLUMNS)`, 'outputs');
  }
  const names = value.map((output, index) => {
    const field = `outputs[${index}]`;
    if (output === null || typeof output !== 'object' || Array.isArray(output)) {
      throw new ApiError('invalid_body', 'must be an object {name}', field);
    }
    const fields = output as Record<string, unknown>;
    refuseUnknown(fields, OUTPUT_FIELDS, `${field}.`);
    checkParameters(fields.parameters, `${field}.parameters`);
    return checkedName(fields.name, `${field}.name`);
  });
  const seen = new Set<string>();
  for (const name of names) {
    if (seen.has(name)) throw new ApiError('invalid_body', `asks for "${name}" twice`, 'outputs');
    seen.add(name);
  }
  return names;
}

function checkedName(name: unknown, field: string): string {
  if (typeof name !== 'string' || name === '' || name.length > MAX_NAME_LENGTH) {
    throw new ApiError('invalid_body', `must be a string of 1 to ${MAX_NAME_LENGTH} characters`, field);
  }
  return name;
}

function checkParameters(value: unknown, field: string): void {
  if (value !== undefined && (value === null || typeof value !== 'object' || Array.isArray(value))) {
    throw new ApiError('invalid_body', 'must be an object', field);
  }
}

function refuseUnknown(fields: Record<string, unknown>, known: ReadonlySet<string>, prefix: string): void {
  for (const key of Object.keys(fields)) {
    if (!known.has(key)) {
      const shown = key.length > 40 ? `${key.slice(0, 40)}…` : key;
      throw new ApiError(
        'invalid_body',
        `unknown field; expected one of ${[...known].join(', ')}`,
        `${prefix}${shown}`,
      );
    }
  }
}

/** Which of the model's outputs to answer with (all when none are asked for); an unknown name is a 400. */
export function selectOutputs(wanted: readonly string[] | undefined, available: readonly string[]): number[] {
  if (wanted === undefined) return available.map((_, index) => index);
  return wanted.map((name, index) => {
    const column = available.indexOf(name);
    if (column === -1) {
      throw new ApiError(
        'invalid_body',
        `the model has no output "${name}"; it has ${available.map((n) => `"${n}"`).join(', ')}`,
        `outputs[${index}].name`,
      );
    }
    return column;
  });
}

/** The answer: one FP64 tensor of shape [rows] per selected output. */
export function inferenceResponse(
  model: { readonly name: string; readonly version: number; readonly outputs: readonly string[] },
  result: Matrix,
  columns: readonly number[],
  id: string | undefined,
): InferenceResponse {
  const datatype = OUTPUT_DATATYPE;
  const { data, rows, cols } = result;
  const outputs = columns.map((column) => {
    const values: number[] = new Array(rows);
    for (let r = 0; r < rows; r++) values[r] = data[r * cols + column] as number;
    return { name: model.outputs[column] ?? `y${column}`, datatype, shape: [rows], data: values };
  });
  return {
    model_name: model.name,
    model_version: String(model.version),
    ...(id !== undefined && { id }),
    outputs,
  };
}
