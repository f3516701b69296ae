import { CsvError, parse } from 'csv-parse/sync';
import { ApiError } from '../errors.js';
import { checkRowCount, formatRows, type Matrix } from '../matrix.js';

const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const NON_FINITE = /^[+-]?(?:nan|inf|infinity)$/i;

export interface CsvInput {
  matrix: Matrix;
  /** Column names from the header line, when the request said `header=present`. */
  columns: string[] | undefined;
}

/**
 * Parses a CSV body into a Matrix: one line per pod, one numeric column per feature. Empty lines
 * are skipped; quoted fields, CRLF and a byte-order mark are accepted.
 */
export function parseCsv(text: string, options: { header: boolean; maxRows: number }): CsvInput {
  const values: number[] = [];
  let columns: string[] | undefined;
  let cols = -1;
  let rows = 0;
  try {
    parse(text, {
      bom: true,
      skip_empty_lines: true,
      trim: true,
      relax_column_count: true,
      on_record: (record: string[], context) => {
        const line = context.lines;
        if (options.header && columns === undefined) {
          columns = record;
          return null;
        }
        if (cols === -1) cols = record.length;
        else if (record.length !== cols) {
          throw new ApiError(
            'ragged_rows',
            `has ${record.length} values where the first row has ${cols}`,
            `line ${line}`,
          );
        }
        if (++rows > options.maxRows) checkRowCount(rows, options.maxRows, 'body');
        for (let c = 0; c < record.length; c++) values.push(parseCell(record[c] ?? '', line, c));
        return null;
      },
    });
  } catch (error) {
    if (error instanceof CsvError) {
      const line = typeof error.lines === 'number' ? `line ${error.lines}` : 'body';
      throw new ApiError('invalid_csv', `malformed CSV: ${error.message}`, line);
    }
    throw error;
  }
  checkRowCount(rows, options.maxRows, 'body');
  return { matrix: { data: Float32Array.from(values), rows, cols }, columns };
}

function parseCell(text: string, line: number, col: number): number {
  const field = `line ${line}, column ${col + 1}`;
  if (DECIMAL.test(text)) {
    const value = Number(text);
    if (Number.isFinite(value)) return value;
  } else if (!NON_FINITE.test(text)) {
    const shown = text === '' ? 'an empty field' : JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text);
    throw new ApiError('not_a_number', `must be a number, got ${shown}`, field);
  }
  throw new ApiError('non_finite_value', 'must be a finite number', field);
}

/** One line per row, one column per output, as SageMaker's CSV responses are. */
export function formatCsv(matrix: Matrix): string {
  return formatRows(matrix, (row) => row.join(','));
}
