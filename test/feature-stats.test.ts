import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { main, readTrainingColumns, USAGE } from '../scripts/feature-stats.js';
import { EXAMPLE_SEED, EXAMPLE_TRAIN_ROWS, podsCsv, samplePods } from '../scripts/synthetic-pods.js';
import { countAtOrBelow, featureStatsOf, featureStatsOfRows, quantileOfSorted, statsOf } from '../src/feature-stats.js';
import { loadVersion } from '../src/registry/loader.js';
import { scanRepository } from '../src/registry/repository.js';
import { FEATURES, LINEAR, MLP, makeRepository, SHIPPED_MODELS } from './helpers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

describe('feature statistics (population std, type-7 deciles)', () => {
  it('match hand-computed values', () => {
    // Deciles: h = 4p over 1…5, so the edge at p is 1 + 4p.
    const stats = statsOf([5, 3, 1, 4, 2]);
    expect(stats).toMatchObject({ min: 1, max: 5, mean: 3, std: Math.sqrt(2) });
    expect(stats.deciles).toHaveLength(9);
    [1.4, 1.8, 2.2, 2.6, 3, 3.4, 3.8, 4.2, 4.6].forEach((edge, i) => {
      expect(stats.deciles[i]).toBeCloseTo(edge, 12);
    });
    // The share at or below each edge: 1.4 → {1}, 2.2 → {1, 2}, 3 → {1, 2, 3}, … 4.6 → {1, 2, 3, 4}.
    expect(stats.cdf_at_deciles).toEqual([0.2, 0.2, 0.4, 0.4, 0.6, 0.6, 0.6, 0.8, 0.8]);
  });

  it('handle ties: deciles repeat, and interpolate only where the sorted values change', () => {
    // Sorted 1 1 1 1 10: mean 2.8; squared deviations 4 × 3.24 + 51.84 = 64.8, / 5 = 12.96; std 3.6.
    const stats = statsOf([1, 10, 1, 1, 1]);
    expect(stats.min).toBe(1);
    expect(stats.max).toBe(10);
    expect(stats.mean).toBeCloseTo(2.8, 12);
    expect(stats.std).toBeCloseTo(3.6, 12);
    expect(stats.deciles.slice(0, 7)).toEqual([1, 1, 1, 1, 1, 1, 1]);
    expect(stats.deciles[7]).toBeCloseTo(1 + 0.2 * 9, 12);
    expect(stats.deciles[8]).toBeCloseTo(1 + 0.6 * 9, 12);
    // 80% of the values are at or below 1, the edge of only 10% … 70%.
    expect(stats.cdf_at_deciles).toEqual([0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]);
  });

  it('record the real share at or below each decile edge when a value repeats', () => {
    // 45 zeros, then 1…55: the edges at 10% … 40% are 0, and P(X ≤ 0) is 0.45.
    const values = [...Array(45).fill(0), ...Array.from({ length: 55 }, (_, i) => i + 1)];
    const stats = statsOf(values);
    expect(stats.deciles.slice(0, 4)).toEqual([0, 0, 0, 0]);
    expect(stats.cdf_at_deciles?.slice(0, 4)).toEqual([0.45, 0.45, 0.45, 0.45]);
    for (const [i, edge] of stats.deciles.entries()) {
      expect(stats.cdf_at_deciles?.[i]).toBe(values.filter((v) => v <= edge).length / values.length);
    }
  });

  it('give a constant column std 0 and every edge equal to it, with no rounding noise', () => {
    const constant = (value: number) => ({
      min: value,
      max: value,
      mean: value,
      std: 0,
      deciles: Array(9).fill(value),
      cdf_at_deciles: Array(9).fill(1),
    });
    expect(statsOf([0.1, 0.1, 0.1])).toEqual(constant(0.1));
    expect(statsOf([7])).toEqual(constant(7));
  });

  it('interpolate between two values, and keep edges ordered and in range on awkward numbers', () => {
    expect(statsOf([0, 10]).deciles.map((edge) => Math.round(edge * 1e9) / 1e9)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const awkward = Array.from({ length: 37 }, (_, i) => (i % 5) * 1e10 + i * 0.1 + 1 / 3);
    const { min, max, deciles } = statsOf(awkward);
    for (const [i, edge] of deciles.entries()) {
      expect(edge).toBeGreaterThanOrEqual(i === 0 ? min : (deciles[i - 1] as number));
      expect(edge).toBeLessThanOrEqual(max);
    }
    expect(quantileOfSorted([1, 2, 3], 0)).toBe(1);
    expect(quantileOfSorted([1, 2, 3], 1)).toBe(3);
  });

  it('give shares at the deciles that are non-decreasing, in (0, 1], and exact counts', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -4, max: 4 }), { minLength: 1, maxLength: 40 }), (values) => {
        const { deciles, cdf_at_deciles: cdf = [] } = statsOf(values);
        expect(cdf).toHaveLength(9);
        cdf.forEach((share, i) => {
          expect(share).toBe(values.filter((v) => v <= (deciles[i] as number)).length / values.length);
          expect(share).toBeGreaterThan(0);
          expect(share).toBeGreaterThanOrEqual(i === 0 ? 0 : (cdf[i - 1] as number));
        });
      }),
    );
    expect(countAtOrBelow([1, 2, 2, 3], 2)).toBe(3);
    expect(countAtOrBelow([1, 2, 2, 3], 0.5)).toBe(0);
    expect(countAtOrBelow([1, 2, 2, 3], 3)).toBe(4);
  });

  it('refuse no values and non-finite values, naming the feature', () => {
    expect(() => statsOf([])).toThrow('no values');
    expect(() => featureStatsOf(['a'], { a: [1, Number.NaN] })).toThrow('feature a: NaN is not a finite number');
    expect(() => featureStatsOf(['a', 'b'], { a: [1] })).toThrow('no column for the feature b');
  });

  it('are computed per feature, in order, from rows', () => {
    const stats = featureStatsOfRows(
      ['a', 'b'],
      [
        [1, 10],
        [3, 10],
      ],
    );
    expect(Object.keys(stats)).toEqual(['a', 'b']);
    expect(stats.a).toMatchObject({ min: 1, max: 3, mean: 2, std: 1 });
    expect(stats.b).toMatchObject({ min: 10, max: 10, std: 0 });
  });
});

describe('reading a training CSV', () => {
  it('takes the feature columns by header name, in the features order, ignoring the others', () => {
    const csv = 'power,"b",id,a\n1.5,20,x,1\n2.5, 30 ,y,2e3\n\n';
    const columns = readTrainingColumns(csv, ['a', 'b']);
    expect(Object.keys(columns)).toEqual(['a', 'b']);
    expect(Array.from(columns.a ?? [])).toEqual([1, 2000]);
    expect(Array.from(columns.b ?? [])).toEqual([20, 30]);
  });

  it('names a missing column', () => {
    expect(() => readTrainingColumns('a,power\n1,2\n', ['a', 'b'])).toThrow(
      'the CSV has no column b (its header: a, power)',
    );
  });

  it.each([
    ['text', 'abc'],
    ['an empty cell', ''],
    ['Infinity', 'Infinity'],
    ['NaN', 'NaN'],
    ['a hexadecimal number', '0x10'],
    ['a binary number', '0b11'],
    ['an octal number', '0o7'],
    ['a number with a unit', '12W'],
    ['a number too large for a double', '1e999'],
    ['digit separators', '1_000'],
    ['a lone sign', '-'],
    ['a lone point', '.'],
  ])('names the row and column of %s', (_, cell) => {
    expect(() => readTrainingColumns(`a,b,power\n1,2,3\n4,${cell},6\n`, ['a', 'b'])).toThrow(
      `row 2 (line 3), column b: ${JSON.stringify(cell)} is not a finite decimal number`,
    );
  });

  it('takes decimal numbers as the CSV request codec does: sign, fraction, exponent', () => {
    const cells = ['-1', '+2', '3.', '.5', '-0.25', '1e3', '2.5E-2', '-.5e+1', '007'];
    const csv = `a\n${cells.join('\n')}\n`;
    expect(Array.from(readTrainingColumns(csv, ['a']).a ?? [])).toEqual([-1, 2, 3, 0.5, -0.25, 1000, 0.025, -5, 7]);
  });

  it('refuses an empty file, a header alone, a ragged row and a feature named twice', () => {
    expect(() => readTrainingColumns('', ['a'])).toThrow('the CSV is empty');
    expect(() => readTrainingColumns('a,b\n', ['a'])).toThrow('no rows');
    expect(() => readTrainingColumns('a,b\n1,2\n3\n', ['a'])).toThrow('the CSV cannot be read');
    expect(() => readTrainingColumns('a,a\n1,2\n', ['a'])).toThrow('names the column a 2 times');
  });
});

describe('npm run stats', () => {
  /** A version folder of the shipped linear model whose metadata.json has no feature_stats yet. */
  async function modelWithoutStats(): Promise<string> {
    const repository = await makeRepository({ 'm/1': { model: LINEAR } });
    const dir = path.join(repository, 'm', '1');
    const { feature_stats: _, ...metadata } = JSON.parse(await readFile(path.join(dir, 'metadata.json'), 'utf8'));
    await writeFile(path.join(dir, 'metadata.json'), `${JSON.stringify(metadata, null, 2)}\n`);
    return dir;
  }

  it('writes feature_stats into metadata.json, keeping the rest, and the version loads with them', async () => {
    const dir = await modelWithoutStats();
    const before = JSON.parse(await readFile(path.join(dir, 'metadata.json'), 'utf8'));
    const pods = samplePods(300, 7);
    const csv = path.join(dir, '..', 'train.csv');
    await writeFile(csv, podsCsv(pods));
    const printed: string[] = [];
    expect(await main([dir, csv], { write: (text: string) => printed.push(text) })).toBe(0);
    expect(printed.join('')).toContain('  bpf_net_rx_irq: min ');

    const text = await readFile(path.join(dir, 'metadata.json'), 'utf8');
    const after = JSON.parse(text);
    expect(text).toBe(`${JSON.stringify(after, null, 2)}\n`);
    expect(after).toEqual({ ...before, feature_stats: featureStatsOfRows(FEATURES, pods.x) });

    const { versions } = await scanRepository(path.dirname(path.dirname(dir)), 'unused');
    const source = versions.find((v) => v.name === 'm');
    if (source === undefined) throw new Error('no model m');
    const version = await loadVersion(source);
    await version.model.dispose();
    expect(version.featureStats).toEqual(featureStatsOfRows(FEATURES, pods.x));
  });

  it('from the command line: usage is exit code 2; a bad input is 1, named, and leaves metadata.json alone', async () => {
    const run = (args: string[]) =>
      promisify(execFile)(process.execPath, ['--import', 'tsx', 'scripts/feature-stats.ts', ...args], {
        cwd: ROOT,
      }).then(
        ({ stdout }) => ({ code: 0, stdout, stderr: '' }),
        (error: { code: number; stdout: string; stderr: string }) => error,
      );
    const usage = await run(['only-one-argument']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain(USAGE);

    const dir = await modelWithoutStats();
    const metadata = await readFile(path.join(dir, 'metadata.json'), 'utf8');
    const csv = path.join(dir, '..', 'train.csv');
    await writeFile(csv, 'bpf_cpu_time_ms,power\n1,2\n');
    const missing = await run([dir, csv]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('the CSV has no column cpu_cycles');
    expect(await readFile(path.join(dir, 'metadata.json'), 'utf8')).toBe(metadata);

    await writeFile(csv, podsCsv(samplePods(20, 3)));
    const ok = await run([dir, csv]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('wrote feature_stats of 8 features (20 rows)');
  });

  it('says a model needs its features listed in metadata.json', async () => {
    const repository = await makeRepository({ 'm/1': { model: MLP }, 'm/1/metadata.json': '{"description":"x"}' });
    const csv = path.join(repository, 'train.csv');
    await writeFile(csv, 'a\n1\n');
    const errors: string[] = [];
    const err = { write: (text: string) => errors.push(text) };
    expect(await main([path.join(repository, 'm', '1'), csv], err, err)).toBe(1);
    expect(await main([path.join(repository, 'nowhere'), csv], err, err)).toBe(1);
    expect(errors.join('')).toContain('does not list the model\'s features ("features": [...])');
    expect(errors.join('')).toContain('metadata.json: there is none');
  });
});

describe('the shipped example models', () => {
  it.each([LINEAR, MLP])('%s carries the statistics of the rows it was fitted on, for every feature', async (name) => {
    const metadata = JSON.parse(await readFile(path.join(SHIPPED_MODELS, name, '1', 'metadata.json'), 'utf8'));
    expect(Object.keys(metadata.feature_stats)).toEqual([...FEATURES]);
    const train = samplePods(EXAMPLE_TRAIN_ROWS, EXAMPLE_SEED);
    expect(metadata.feature_stats).toEqual(featureStatsOfRows(FEATURES, train.x));
  });
});
