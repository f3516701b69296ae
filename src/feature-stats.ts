/**
 * Reference statistics of a model's training data, per feature (metadata.json `feature_stats`):
 * what input drift is measured against. Pure computation, columns in and statistics out;
 * `npm run stats` (scripts/feature-stats.ts) reads the CSV and writes the file.
 *
 * Definitions, fixed so that anyone can recompute them:
 * - `std` is the population standard deviation, √(Σ(x − mean)² / n) (numpy's default, ddof = 0).
 * - `deciles` are the nine quantiles at p = 0.1, 0.2, … 0.9 by linear interpolation between the
 *   closest ranks (Hyndman & Fan type 7, numpy's and R's default): over the sorted values
 *   x[0] ≤ … ≤ x[n−1], h = (n − 1)·p, Q(p) = x[⌊h⌋] + (h − ⌊h⌋)·(x[⌊h⌋ + 1] − x[⌊h⌋]).
 * - `cdf_at_deciles` are, for each of those nine edges e, the share of the values at or below it:
 *   #{x ≤ e} / n. The deciles alone do not say it when values repeat: with 45% of the values 0, the
 *   edges at 10% … 40% are 0 but P(X ≤ 0) is 0.45, not 0.4. Drift (src/drift.ts) weighs its bins by
 *   these shares.
 */
import type { FeatureStats } from './registry/metadata.js';

/** The decile levels, 10% to 90%. */
export const DECILE_LEVELS: readonly number[] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

/** The type-7 quantile at level p (0 ≤ p ≤ 1) of values sorted ascending; never outside its two neighbours. */
export function quantileOfSorted(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) throw new Error('no values');
  const h = (sorted.length - 1) * p;
  const below = Math.floor(h);
  const low = sorted[below] as number;
  const high = sorted[Math.min(below + 1, sorted.length - 1)] as number;
  // Clamped: rounding must not put an edge past its neighbours (the deciles stay ordered and in range).
  return Math.min(high, Math.max(low, low + (h - below) * (high - low)));
}

/** The statistics of one feature's values; they must be finite, and there must be at least one. */
export function statsOf(values: ArrayLike<number>): FeatureStats {
  const n = values.length;
  if (n === 0) throw new Error('no values');
  const sorted = Float64Array.from(values).sort();
  for (const value of sorted) {
    if (!Number.isFinite(value)) throw new Error(`${value} is not a finite number`);
  }
  const min = sorted[0] as number;
  const max = sorted[n - 1] as number;
  if (min === max) {
    return {
      min,
      max,
      mean: min,
      std: 0,
      deciles: DECILE_LEVELS.map(() => min),
      cdf_at_deciles: DECILE_LEVELS.map(() => 1),
    };
  }
  let sum = 0;
  for (const value of sorted) sum += value;
  // Two passes (mean first, then squared deviations from it): no cancellation on large counters.
  const mean = Math.min(max, Math.max(min, sum / n));
  let squares = 0;
  for (const value of sorted) squares += (value - mean) ** 2;
  const deciles = DECILE_LEVELS.map((p) => quantileOfSorted(sorted, p));
  return {
    min,
    max,
    mean,
    std: Math.sqrt(squares / n),
    deciles,
    cdf_at_deciles: deciles.map((edge) => countAtOrBelow(sorted, edge) / n),
  };
}

/** How many of the values (sorted ascending) are at or below `value`: a bisection. */
export function countAtOrBelow(sorted: ArrayLike<number>, value: number): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if ((sorted[middle] as number) <= value) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** Statistics per feature, in the order given, from one column of values per feature. */
export function featureStatsOf(
  features: readonly string[],
  columns: Readonly<Record<string, ArrayLike<number>>>,
): Record<string, FeatureStats> {
  const stats: Record<string, FeatureStats> = {};
  for (const feature of features) {
    const column = columns[feature];
    if (column === undefined) throw new Error(`no column for the feature ${feature}`);
    try {
      stats[feature] = statsOf(column);
    } catch (error) {
      throw new Error(`feature ${feature}: ${(error as Error).message}`);
    }
  }
  return stats;
}

/** Statistics per feature from rows whose columns are the features, in that order. */
export function featureStatsOfRows(
  features: readonly string[],
  rows: readonly (readonly number[])[],
): Record<string, FeatureStats> {
  const columns = Object.fromEntries(features.map((feature, c) => [feature, rows.map((row) => row[c] ?? Number.NaN)]));
  return featureStatsOf(features, columns);
}
