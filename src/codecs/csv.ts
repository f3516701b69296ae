import { CsvError, parse } from 'csv-parse/sync';
import { ApiError } from '../errors.js';
import {
  checkColumnCount,
  checkRowCount,
  fitsFloat32,
  formatRows,
  type Matrix,
  type MatrixLimits,
  NON_FINITE_MESSAGE,
} from '../matrix.js';

/**
 * A decimal number: optional sign, digits with an optional fraction (or a fraction alone), optional
 * exponent; Number() alone would also take 0x10, 0b11, 0o7 and Infinity. Spaces around a value are
 * allowed (Number() ignores them), so fields need no trimming first. Training CSVs are read by the
 * same rule (scripts/feature-stats.ts), so that they and requests read numbers alike.
 */
export const DECIMAL = /^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*$/;
const NON_FINITE = /^\s*[+-]?(?:nan|inf|infinity)\s*$/i;

export interface CsvOptions extends MatrixLimits {
  /** The first line names the columns (`text/csv; header=present`). */
  header: boolean;
  maxCsvLineBytes: number;
}

export interface CsvInput {
  matrix: Matrix;
  /** Column names from the header line, when the request said `header=present`. */
  columns: string[] | undefined;
}

/**
 * Parses a CSV body into a Matrix: one line per pod, one numeric column per feature. Empty lines
 * are skipped; quoted fields, CRLF and a byte-order mark are accepted.
 */
export function parseCsv(text: string, options: CsvOptions): CsvInput {
  const values: number[] = [];
  let columns: string[] | undefined;
  let cols = -1;
  let rows = 0;
  forEachRecord(text, options.maxCsvLineBytes, (record, line) => {
    checkColumnCount(record.length, options.maxColumns, `line ${line}`);
    if (options.header && columns === undefined) {
      columns = record.map((name) => name.trim());
      return;
    }
    if (cols === -1) cols = record.length;
    else if (record.length !== cols) {
      throw new ApiError('ragged_rows', `has ${record.length} values where the first row has ${cols}`, `line ${line}`);
    }
    if (++rows > options.maxRows) checkRowCount(rows, options.maxRows, 'body');
    for (let c = 0; c < record.length; c++) values.push(parseCell(record[c] ?? '', line, c));
  });
  checkRowCount(rows, options.maxRows, 'body');
  return { matrix: { data: Float64Array.from(values), rows, cols }, columns };
}

type RecordVisitor = (record: string[], line: number) => void;

/**
 * Calls visit with the fields of each non-empty record and its line number. Bodies with
 * no quote character, which is what machines send, are split directly: csv-parse takes three
 * times as long (450 against 150 ms for 70,000 rows here), all of it blocking the event loop.
 */
function forEachRecord(text: string, maxLineBytes: number, visit: RecordVisitor): void {
  if (text.includes('"')) {
    forEachQuotedRecord(text, maxLineBytes, visit);
    return;
  }
  forEachLine(text, text.charCodeAt(0) === 0xfeff ? 1 : 0, (start, end, line) => {
    // Characters, not bytes: a machine's CSV is ASCII, where the two are the same.
    if (end - start > maxLineBytes) throw lineTooLong(maxLineBytes, line);
    const content = text.slice(start, end);
    if (content.trim() !== '') visit(content.split(','), line);
  });
}

/** Calls visit with where each line (ended by LF or CRLF) starts and ends, without its line break. */
function forEachLine(text: string, from: number, visit: (start: number, end: number, line: number) => void): void {
  let start = from;
  for (let line = 1; start < text.length; line++) {
    const newline = text.indexOf('\n', start);
    const end = newline === -1 ? text.length : newline;
    visit(start, text.charCodeAt(end - 1) === 13 ? end - 1 : end, line);
    start = end + 1;
  }
}

function forEachQuotedRecord(text: string, maxLineBytes: number, visit: RecordVisitor): void {
  // csv-parse's own limit counts field characters only (not commas, quotes or trimmed spaces):
  // lines are measured first, as the fast path measures them.
  forEachLine(text, 0, (start, end, line) => {
    if (end - start > maxLineBytes) throw lineTooLong(maxLineBytes, line);
  });
  try {
    parse(text, {
      bom: true,
      // The fast path's line breaks: LF or CRLF, never a lone CR (csv-parse would guess from the first).
      record_delimiter: ['\r\n', '\n'],
      max_record_size: maxLineBytes,
      skip_empty_lines: true,
      trim: true,
      relax_column_count: true,
      on_record: (record: string[], context) => {
        visit(record, context.lines);
        return null;
      },
    });
  } catch (error) {
    if (error instanceof CsvError) {
      const lines = typeof error.lines === 'number' ? error.lines : undefined;
      if (error.code === 'CSV_MAX_RECORD_SIZE') throw lineTooLong(maxLineBytes, lines);
      const line = lines === undefined ? 'body' : `line ${lines}`;
      throw new ApiError('invalid_csv', `malformed CSV: ${error.message}`, line);
    }
    throw error;
  }
}

function lineTooLong(maxLineBytes: number, line: number | undefined): ApiError {
  return new ApiError(
    'csv_line_too_long',
    `a line is longer than ${maxLineBytes} characters (MAX_CSV_LINE_BYTES)`,
    line === undefined ? 'body' : `line ${line}`,
  );
}

function parseCell(text: string, line: number, col: number): number {
  if (DECIMAL.test(text)) {
    const value = Number(text);
    if (fitsFloat32(value)) return value;
  } else if (!NON_FINITE.test(text)) {
    const field = text.trim();
    const shown =
      field === '' ? 'an empty field' : JSON.stringify(field.length > 40 ? `${field.slice(0, 40)}…` : field);
    throw new ApiError('not_a_number', `must be a number, got ${shown}`, cellField(line, col));
  }
  throw new ApiError('non_finite_value', NON_FINITE_MESSAGE, cellField(line, col));
}

function cellField(line: number, col: number): string {
  return `line ${line}, column ${col + 1}`;
}

/** One line per row, one column per output, as SageMaker's CSV responses are. */
export function formatCsv(matrix: Matrix): string {
  return formatRows(matrix, (row) => row.join(','));
}
