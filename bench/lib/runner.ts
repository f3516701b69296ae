/**
 * What every benchmark in bench/ is: a module whose default export is a Benchmark. The runner
 * prints the machine and its load before and after, and writes the result as JSON to
 * bench/results/<name>-<timestamp>.json and bench/results/<name>-latest.json (git-ignored), the
 * latter for comparing a run with the one before it.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { busy, loadAverage, machine } from './machine.js';

export const RESULTS_DIR = fileURLToPath(new URL('../results', import.meta.url));

export interface BenchContext {
  /** Prints a line of the benchmark's report. */
  out(line?: string): void;
  /** Where files the benchmark keeps beside its JSON go (CPU profiles, say); created on demand. */
  resultsDir: string;
  /** This run's timestamp, as in the result file's name. */
  stamp: string;
}

export interface Benchmark {
  name: string;
  /** One line: what is measured, and the claim it checks. */
  description: string;
  run(context: BenchContext): Promise<Record<string, unknown>>;
}

export interface BenchOutcome {
  name: string;
  file: string;
  result: Record<string, unknown>;
}

const out = (line = '') => process.stdout.write(`${line}\n`);

export async function runBenchmark(bench: Benchmark): Promise<BenchOutcome> {
  const stamp = new Date()
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replaceAll(':', '-');
  const host = machine();
  const loadStart = loadAverage();
  out(`== bench ${bench.name}: ${bench.description}`);
  out(`machine: ${host.cores} cores (${host.cpuModel}), node ${host.node}, ${host.platform}`);
  out(`load average at start: ${loadStart.join(' ')}${busyNote(loadStart, host.cores)}`);
  out();
  const startedAt = new Date().toISOString();
  const began = performance.now();
  const result = await bench.run({ out, resultsDir: RESULTS_DIR, stamp });
  const loadEnd = loadAverage();
  out();
  out(
    `load average at end: ${loadEnd.join(' ')} (includes this benchmark's own threads)${busyNote(loadEnd, host.cores)}`,
  );
  out(`took ${((performance.now() - began) / 1000).toFixed(0)} s`);
  const file = path.join(RESULTS_DIR, `${bench.name}-${stamp}.json`);
  const busyMachine = busy(loadStart) || busy(loadEnd);
  const record = {
    name: bench.name,
    description: bench.description,
    startedAt,
    finishedAt: new Date().toISOString(),
    machine: { ...host, loadAverageStart: loadStart, loadAverageEnd: loadEnd, busy: busyMachine },
    ...result,
  };
  await mkdir(RESULTS_DIR, { recursive: true });
  const text = `${JSON.stringify(record, null, 2)}\n`;
  await writeFile(file, text);
  await writeFile(path.join(RESULTS_DIR, `${bench.name}-latest.json`), text);
  out(`result: ${path.relative(process.cwd(), file)} (also ${bench.name}-latest.json)`);
  return { name: bench.name, file, result: record };
}

function busyNote(load: readonly number[], cores: number): string {
  return busy(load)
    ? ` — BUSY: 1-minute load ${load[0]} > ${cores} cores; other work competes for the CPU, so latencies are inflated and numbers are not trustworthy`
    : '';
}

/** Whether this module is the one node was started with (a benchmark run on its own). */
export function isMain(moduleUrl: string): boolean {
  const entry = process.argv[1];
  return entry !== undefined && path.resolve(entry) === fileURLToPath(moduleUrl);
}

/** A benchmark's numeric setting from the environment: the fallback when unset or empty. */
export function setting(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min) throw new Error(`${name} must be a number ≥ ${min} (got "${raw}")`);
  return value;
}

/** Runs the benchmark when its module is the one node was started with, and exits with 0 or 1. */
export function runIfMain(moduleUrl: string, bench: Benchmark): void {
  if (!isMain(moduleUrl)) return;
  runBenchmark(bench).then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(`bench ${bench.name}: ${(error as Error).stack ?? String(error)}\n`);
      process.exit(1);
    },
  );
}
