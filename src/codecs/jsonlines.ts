import { ApiError } from '../errors.js';
import { checkRowCount, formatRows, type Matrix, type MatrixLimits, rowsToMatrix } from '../matrix.js';
import { parseJsonText } from './json.js';

/** Parses JSON Lines (one JSON array of numbers per line; blank lines skipped) into a Matrix. */
export function parseJsonLines(text: string, limits: MatrixLimits & { maxJsonDepth: number }): Matrix {
  const { maxRows } = limits;
  const rows: unknown[] = [];
  const lineOfRow: number[] = [];
  const lines = text.replace(/^\uFEFF/, '').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] ?? '').trim();
    if (line === '') continue;
    if (rows.length === maxRows) checkRowCount(maxRows + 1, maxRows, 'body');
    try {
      rows.push(parseJsonText(line, limits.maxJsonDepth, `line ${i + 1}`));
    } catch (error) {
      if (error instanceof ApiError && error.code === 'json_too_deep') throw error;
      throw new ApiError('invalid_jsonlines', 'is not valid JSON', `line ${i + 1}`);
    }
    lineOfRow.push(i + 1);
  }
  checkRowCount(rows.length, maxRows, 'body');
  return rowsToMatrix(rows, limits, 'body', (row, col) =>
    col === undefined ? `line ${lineOfRow[row]}` : `line ${lineOfRow[row]}, column ${col + 1}`,
  );
}

/** One JSON array per line, one element per output. */
export function formatJsonLines(matrix: Matrix): string {
  return formatRows(matrix, (row) => `[${row.join(',')}]`);
}
