/** Latency summaries, in milliseconds. */

export interface Summary {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

/** The p-th percentile (nearest rank) of values sorted ascending; NaN when there are none. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1] ?? Number.NaN;
}

export function summarize(values: readonly number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    count: sorted.length,
    p50: round(percentile(sorted, 50)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted[sorted.length - 1] ?? Number.NaN),
  };
}

/**
 * The samples a prober sending every intervalMs would have seen had it not waited for each answer
 * (HdrHistogram's correction for coordinated omission): a ping that took 800 ms stands for the
 * pings that would have been sent meanwhile too, at 795, 790, … ms. A sequential pinger otherwise
 * records one slow sample per stall, however long the stall.
 */
export function correctedForOmission(values: readonly number[], intervalMs: number): number[] {
  const out: number[] = [];
  for (const value of values) {
    out.push(value);
    for (let missed = value - intervalMs; missed >= intervalMs; missed -= intervalMs) out.push(missed);
  }
  return out;
}

export function round(value: number, digits = 2): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

/** A number for a table column: fixed decimals, '-' when not a number. */
export function fmt(value: number | undefined, digits = 1): string {
  return value === undefined || !Number.isFinite(value) ? '-' : value.toFixed(digits);
}
