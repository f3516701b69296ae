/**
 * `npm run bench`: every benchmark in bench/ (each top-level .ts file but this one; helpers live
 * in bench/lib/), one after the other. `npm run bench -- <word>…` runs only those whose names
 * contain one of the words. Each prints its report and writes bench/results/<name>-<timestamp>.json.
 * Exit code 0 when every benchmark ran (whatever it measured), 1 when one could not run.
 */
import { readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { type Benchmark, runBenchmark } from './lib/runner.js';

const BENCH_DIR = fileURLToPath(new URL('.', import.meta.url));

async function main(): Promise<number> {
  const filters = process.argv.slice(2);
  const files = (await readdir(BENCH_DIR))
    .filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts') && file !== 'index.ts')
    .sort();
  const benchmarks: Benchmark[] = [];
  for (const file of files) {
    const module = (await import(new URL(file, import.meta.url).href)) as { default?: Benchmark };
    const bench = module.default;
    if (bench === undefined || typeof bench.run !== 'function') {
      throw new Error(`bench/${file} has no default export of a Benchmark (name, description, run)`);
    }
    if (filters.length === 0 || filters.some((word) => bench.name.includes(word))) benchmarks.push(bench);
  }
  if (benchmarks.length === 0) {
    process.stderr.write(`bench: nothing matches ${filters.join(' ')}\n`);
    return 1;
  }
  let failed = 0;
  for (const bench of benchmarks) {
    try {
      await runBenchmark(bench);
    } catch (error) {
      failed++;
      process.stderr.write(`bench ${bench.name} could not run: ${(error as Error).stack ?? String(error)}\n`);
    }
    process.stdout.write('\n');
  }
  return failed === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`bench: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  },
);
