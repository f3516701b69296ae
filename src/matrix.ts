import { ApiError } from './errors.js';

/**
 * A row-major matrix: one row per pod, one column per feature or output. Requests decode into
 * float64 (JSON's numbers, and what Kepler's formulas need); backends answer in their own type.
 */
export interface Matrix {
  readonly data: Float64Array | Float32Array;
  readonly rows: number;
  readonly cols: number;
}

const FLOAT32_MAX = 3.4028234663852886e38;

/** Whether a number survives the float32 conversion models compute in (NaN and ±Infinity do not). */
export function fitsFloat32(value: number): boolean {
  return value <= FLOAT32_MAX && value >= -FLOAT32_MAX;
}

export const NON_FINITE_MESSAGE = 'must be a finite number within the float32 range (±3.4e38)';

/** The values as float32, which onnx and tfjs models compute in; copied only when they are not already. */
export function asFloat32(data: Matrix['data']): Float32Array {
  return data instanceof Float32Array ? data : Float32Array.from(data);
}

/** Names the place of a value in the request, for error messages: a row, or a cell when col is given. */
export type FieldNamer = (row: number, col?: number) => string;

export const instancesField: FieldNamer = (row, col) =>
  col === undefined ? `instances[${row}]` : `instances[${row}][${col}]`;

/** How large a matrix one request may hold (MAX_ROWS, MAX_COLUMNS). */
export interface MatrixLimits {
  readonly maxRows: number;
  readonly maxColumns: number;
}

/** Checks that the matrix has rows and at most maxRows of them. */
export function checkRowCount(rows: number, maxRows: number, field: string): void {
  if (rows === 0) throw new ApiError('empty_matrix', 'the request holds no rows', field);
  if (rows > maxRows) {
    throw new ApiError('too_many_rows', `the request holds more than ${maxRows} rows (MAX_ROWS)`, field);
  }
}

export function checkColumnCount(cols: number, maxColumns: number, field: string): void {
  if (cols > maxColumns) {
    throw new ApiError('too_many_columns', `rows hold more than ${maxColumns} values (MAX_COLUMNS)`, field);
  }
}

/**
 * Turns decoded rows (arrays of numbers, as JSON gives them) into a Matrix, rejecting anything
 * that is not a rectangular array of finite numbers.
 */
export function rowsToMatrix(rows: unknown, limits: MatrixLimits, field: string, fieldOf: FieldNamer): Matrix {
  if (!Array.isArray(rows)) {
    throw new ApiError('invalid_body', 'must be an array of rows, each an array of numbers', field);
  }
  checkRowCount(rows.length, limits.maxRows, field);
  const first: unknown = rows[0];
  const cols = Array.isArray(first) ? first.length : 0;
  checkColumnCount(cols, limits.maxColumns, fieldOf(0));
  const data = new Float64Array(rows.length * cols);
  for (let r = 0; r < rows.length; r++) {
    const row: unknown = rows[r];
    if (!Array.isArray(row)) {
      throw new ApiError('invalid_body', 'must be an array of numbers (one row per pod)', fieldOf(r));
    }
    if (row.length !== cols) {
      throw new ApiError('ragged_rows', `has ${row.length} values where row 0 has ${cols}`, fieldOf(r));
    }
    for (let c = 0; c < cols; c++) {
      const value: unknown = row[c];
      if (typeof value !== 'number') {
        throw new ApiError('not_a_number', `must be a number, got ${describeValue(value)}`, fieldOf(r, c));
      }
      if (!fitsFloat32(value)) throw new ApiError('non_finite_value', NON_FINITE_MESSAGE, fieldOf(r, c));
      data[r * cols + c] = value;
    }
  }
  if (cols === 0) throw new ApiError('empty_matrix', 'the rows hold no values', fieldOf(0));
  return { data, rows: rows.length, cols };
}

/** The matrix's rows as plain arrays: one number per row for one column, else one array per row. */
export function matrixToRows(matrix: Matrix): number[] | number[][] {
  const { data, rows, cols } = matrix;
  if (cols === 1) return Array.from(data);
  const out: number[][] = new Array(rows);
  for (let r = 0; r < rows; r++) out[r] = Array.from(data.subarray(r * cols, (r + 1) * cols));
  return out;
}

/** Formats each row as one line of text; the result ends with a newline. */
export function formatRows(matrix: Matrix, formatRow: (row: Matrix['data']) => string): string {
  const { data, rows, cols } = matrix;
  const lines: string[] = new Array(rows);
  for (let r = 0; r < rows; r++) lines[r] = formatRow(data.subarray(r * cols, (r + 1) * cols));
  return `${lines.join('\n')}\n`;
}

/** A value that is not a number, named for an error message (a string cut to 40 characters). */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string')
    return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  return typeof value === 'object' ? 'an object' : typeof value;
}
