/**
 * Writes a model's reference statistics (metadata.json `feature_stats`) from its training data:
 *   npm run stats -- <model-version-dir> <training.csv>
 * The CSV has a header line naming its columns; the model's features (metadata.json `features`)
 * must all be there, other columns (the target, ids) are ignored. Every feature cell must be a
 * finite decimal number (as the CSV codec takes them: 12, -0.5, .5, 1e6; not 0x10, Infinity, NaN).
 * The rest of metadata.json is kept as it is. Definitions: src/feature-stats.ts.
 * Exit codes: 0 written, 1 bad input (named in the message), 2 usage.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { CsvError, parse } from 'csv-parse/sync';
import { DECIMAL } from '../src/codecs/csv.js';
import { featureStatsOf } from '../src/feature-stats.js';
import { METADATA_FILE } from '../src/registry/metadata.js';

export const USAGE = 'usage: npm run stats -- <model-version-dir> <training.csv>';

/** A problem with the inputs, told to the operator as it is (exit code 1). */
export class StatsInputError extends Error {
  override name = 'StatsInputError';
}

/**
 * One column of numbers per feature from a CSV's text. A feature missing from the header, a
 * column named twice, or a cell that is not a finite decimal number (DECIMAL) is an error naming it
 * (rows are counted from 1 after the header; lines are the file's).
 */
export function readTrainingColumns(text: string, features: readonly string[]): Record<string, Float64Array> {
  let records: Array<{ record: string[]; info: { lines: number } }>;
  try {
    records = parse(text, { info: true, skip_empty_lines: true, trim: true, bom: true }) as unknown as typeof records;
  } catch (error) {
    if (error instanceof CsvError) throw new StatsInputError(`the CSV cannot be read: ${error.message}`);
    throw error;
  }
  const [header, ...rows] = records;
  if (header === undefined) throw new StatsInputError('the CSV is empty: it needs a header line and rows');
  if (rows.length === 0) throw new StatsInputError('the CSV has a header but no rows');
  const indexes = features.map((feature) => {
    const found = header.record.flatMap((column, i) => (column === feature ? [i] : []));
    if (found.length === 0) {
      throw new StatsInputError(`the CSV has no column ${feature} (its header: ${header.record.join(', ')})`);
    }
    if (found.length > 1) throw new StatsInputError(`the CSV names the column ${feature} ${found.length} times`);
    return found[0] as number;
  });
  const columns = features.map(() => new Float64Array(rows.length));
  rows.forEach(({ record, info }, r) => {
    indexes.forEach((index, f) => {
      const cell = record[index] ?? '';
      const value = DECIMAL.test(cell) ? Number(cell) : Number.NaN;
      if (!Number.isFinite(value)) {
        throw new StatsInputError(
          `row ${r + 1} (line ${info.lines}), column ${features[f]}: ${JSON.stringify(cell)} is not a finite decimal number`,
        );
      }
      (columns[f] as Float64Array)[r] = value;
    });
  });
  return Object.fromEntries(features.map((feature, f) => [feature, columns[f] as Float64Array]));
}

/** The features metadata.json lists, from its parsed content. */
function featuresOf(metadata: Record<string, unknown>, file: string): string[] {
  const { features } = metadata;
  if (!Array.isArray(features) || features.length === 0 || !features.every((f) => typeof f === 'string' && f !== '')) {
    throw new StatsInputError(
      `${file} does not list the model's features ("features": [...]); the statistics are per feature, so name them there first`,
    );
  }
  return features;
}

/**
 * Computes `feature_stats` from the CSV and writes them into the version folder's metadata.json
 * (replaced whole, through a temporary file, so a server polling the folder never reads half a
 * file). Returns what it wrote, for the summary.
 */
export async function writeFeatureStats(modelDir: string, csvFile: string) {
  const file = path.join(modelDir, METADATA_FILE);
  let metadata: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(await readFile(file, 'utf8'));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not a JSON object');
    metadata = parsed as Record<string, unknown>;
  } catch (error) {
    const reason =
      (error as NodeJS.ErrnoException).code === 'ENOENT'
        ? 'there is none; write one listing the model\'s "features" first'
        : (error as Error).message;
    throw new StatsInputError(`cannot read ${file}: ${reason}`);
  }
  const features = featuresOf(metadata, file);
  let text: string;
  try {
    text = await readFile(csvFile, 'utf8');
  } catch (error) {
    throw new StatsInputError(`cannot read ${csvFile}: ${(error as Error).message}`);
  }
  const columns = readTrainingColumns(text, features);
  const stats = featureStatsOf(features, columns);
  const temporary = path.join(modelDir, `.${METADATA_FILE}.${process.pid}.tmp`);
  await writeFile(temporary, `${JSON.stringify({ ...metadata, feature_stats: stats }, null, 2)}\n`);
  await rename(temporary, file);
  return { file, rows: columns[features[0] as string]?.length ?? 0, stats };
}

/** Where main writes: process.stdout and process.stderr, or a test's collectors. */
export interface Output {
  write(text: string): unknown;
}

/** Runs the command line; returns the exit code. */
export async function main(
  args: readonly string[],
  out: Output = process.stdout,
  err: Output = process.stderr,
): Promise<number> {
  if (args.length !== 2 || args.some((arg) => arg.startsWith('-'))) {
    err.write(`${USAGE}\n`);
    return 2;
  }
  const [modelDir = '', csvFile = ''] = args;
  try {
    const { file, rows, stats } = await writeFeatureStats(modelDir, csvFile);
    const format = (value: number) =>
      Math.abs(value) >= 1e6 ? value.toExponential(3) : Number(value.toPrecision(4)).toString();
    for (const [feature, s] of Object.entries(stats)) {
      out.write(
        `  ${feature}: min ${format(s.min)}, median ${format(s.deciles[4] ?? Number.NaN)}, max ${format(s.max)}, ` +
          `mean ${format(s.mean)}, std ${format(s.std)}\n`,
      );
    }
    out.write(`wrote feature_stats of ${Object.keys(stats).length} features (${rows} rows) to ${file}\n`);
    return 0;
  } catch (error) {
    if (!(error instanceof StatsInputError)) throw error;
    err.write(`${error.message}\n`);
    return 1;
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  process.exitCode = await main(process.argv.slice(2));
}
