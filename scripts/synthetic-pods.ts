/**
 * Synthetic per-pod resource counters and the power they draw, shaped like what Kepler measures
 * over a 3 s sampling interval. Deterministic for a given seed, so the example models can be
 * rebuilt bit for bit by anyone.
 */

export const FEATURES = [
  'bpf_cpu_time_ms',
  'cpu_cycles',
  'cpu_instructions',
  'cache_miss',
  'cgroupfs_cpu_usage_us',
  'cgroupfs_system_cpu_usage_us',
  'cgroupfs_memory_usage_bytes',
  'bpf_net_rx_irq',
] as const;

const INTERVAL_S = 3;

/** The seed and sizes the shipped example models were built with (scripts/make-example-models.ts). */
export const EXAMPLE_SEED = 20261123;
export const EXAMPLE_TRAIN_ROWS = 4000;
export const EXAMPLE_TEST_ROWS = 1000;

export interface PodSamples {
  /** One row per pod, one column per entry of FEATURES. */
  x: number[][];
  /** Watts drawn by each pod. */
  y: number[];
}

/** mulberry32: a small, well-known seeded generator (Math.random cannot be seeded). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function samplePods(count: number, seed: number): PodSamples {
  const random = seededRandom(seed);
  const uniform = (low: number, high: number) => low + (high - low) * random();
  const gaussian = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  const x: number[][] = [];
  const y: number[] = [];
  for (let i = 0; i < count; i++) {
    const kind = random();
    const busyCores = kind < 0.4 ? uniform(0, 0.1) : kind < 0.8 ? uniform(0.1, 1.5) : uniform(1.5, 4);
    const ghz = uniform(2.0, 3.6);
    const ipc = uniform(0.4, 2.5);
    const missesPerInstruction = uniform(0.0005, 0.02);
    const memoryGiB = Math.exp(uniform(Math.log(0.05), Math.log(8)));
    const systemShare = uniform(0.02, 0.3);

    const cpuTimeMs = busyCores * INTERVAL_S * 1000 * (1 + 0.02 * gaussian());
    const cycles = busyCores * INTERVAL_S * ghz * 1e9;
    const instructions = cycles * ipc;
    const cacheMisses = instructions * missesPerInstruction;
    const cgroupCpuUs = cpuTimeMs * 1000 * (1 + 0.03 * gaussian());
    const netRxIrq = Math.round(random() * busyCores * 800);
    x.push([
      Math.max(0, cpuTimeMs),
      cycles,
      instructions,
      cacheMisses,
      Math.max(0, cgroupCpuUs),
      Math.max(0, cgroupCpuUs * systemShare),
      memoryGiB * 2 ** 30,
      netRxIrq,
    ]);
    // Dynamic CPU power grows faster than linearly with frequency (voltage rises with it); cache
    // misses cost DRAM power; resident memory and interrupts add a little.
    const cpuWatts = busyCores * (1.1 + 1.6 * ((ghz - 2) / 1.6) ** 2);
    const dramWatts = 4.5e-9 * (cacheMisses / INTERVAL_S) + 0.08 * memoryGiB;
    const watts = 0.15 + cpuWatts + dramWatts + 0.0004 * netRxIrq + 0.05 * gaussian();
    y.push(Math.max(0, watts));
  }
  return { x, y };
}

/** Column means and standard deviations, for standardising inputs while fitting. */
export function columnStats(x: readonly number[][]): { mean: number[]; std: number[] } {
  const width = x[0]?.length ?? 0;
  const mean = Array.from({ length: width }, (_, c) => x.reduce((sum, row) => sum + (row[c] ?? 0), 0) / x.length);
  const std = mean.map((m, c) => Math.sqrt(x.reduce((sum, row) => sum + ((row[c] ?? 0) - m) ** 2, 0) / x.length));
  return { mean, std: std.map((deviation) => deviation || 1) };
}

/**
 * Samples as a training CSV: a header naming FEATURES and `power`, then one line per pod. Numbers
 * are written in full (JavaScript's shortest round-trip form), so reading them back gives the same values.
 */
export function podsCsv(samples: PodSamples): string {
  const lines = samples.x.map((row, i) => [...row, samples.y[i] ?? Number.NaN].map(String).join(','));
  return `${[...FEATURES, 'power'].join(',')}\n${lines.join('\n')}\n`;
}
