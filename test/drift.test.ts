import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { seededRandom as random } from '../scripts/synthetic-pods.js';
import {
  binOf,
  DriftMonitor,
  PSI_EPSILON,
  psi,
  referenceBins,
  VersionDrift,
  type VersionedSubject,
} from '../src/drift.js';
import { statsOf } from '../src/feature-stats.js';
import type { Matrix } from '../src/matrix.js';
import type { FeatureStats } from '../src/registry/metadata.js';

const DECILES_1_TO_9: FeatureStats = { min: 0, max: 10, mean: 5, std: 2.9, deciles: [1, 2, 3, 4, 5, 6, 7, 8, 9] };

function matrix(rows: readonly (readonly number[])[]): Matrix {
  const cols = rows[0]?.length ?? 0;
  return { data: Float64Array.from(rows.flat()), rows: rows.length, cols };
}

const shares = (bins: { shares: Float64Array }) => [...bins.shares].map((share) => Number(share.toFixed(12)));

/** `count` values of a distribution, drawn with a seed. */
const sample = (count: number, seed: number, draw: (next: () => number) => number) => {
  const next = random(seed);
  return Array.from({ length: count }, () => draw(next));
};

/** The PSI of `values` (a window that holds them all) against statistics. */
function psiOf(stats: FeatureStats, values: readonly number[]): number {
  const drift = new VersionDrift(['x'], { x: stats }, values.length);
  drift.observeInput({ data: Float64Array.from(values), rows: values.length, cols: 1 });
  return drift.psi()[0] as number;
}

/** Statistics as metadata.json written before `cdf_at_deciles` carried them. */
const withoutShares = ({ cdf_at_deciles: _, ...stats }: FeatureStats): FeatureStats => stats;

describe('referenceBins with the shares at the deciles (cdf_at_deciles)', () => {
  it('gives the bin ending at a repeated edge the real mass there, and the next bin the rest of its share', () => {
    // 45% of the training rows are 0: the edges at 10% … 40% are 0, and P(X ≤ 0) is 0.45, not 0.4.
    const bins = referenceBins({
      min: 0,
      max: 10,
      deciles: [0, 0, 0, 0, 1, 2, 3, 4, 5],
      cdf_at_deciles: [0.45, 0.45, 0.45, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9],
    });
    expect([...bins.edges]).toEqual([0, 1, 2, 3, 4, 5]);
    expect(shares(bins)).toEqual([0.45, 0.05, 0.1, 0.1, 0.1, 0.1, 0.1]);
  });

  it('merges a bin the training data leaves empty into the bin above it', () => {
    // 0 and 10 only: every decile is interpolated in the gap; half the data is at or below each.
    const stats = statsOf([0, 10]);
    expect(stats.cdf_at_deciles).toEqual(Array(9).fill(0.5));
    const bins = referenceBins(stats);
    expect([...bins.edges.map((edge) => Math.round(edge * 1e9) / 1e9)]).toEqual([1]);
    expect(shares(bins)).toEqual([0.5, 0.5]);
    // 1 1 1 1 10: (1, 2.8] holds nothing and joins (2.8, 6.4]; 6.4, which shares 2.8's F, is dropped.
    const tied = referenceBins(statsOf([1, 10, 1, 1, 1]));
    expect([...tied.edges]).toEqual([1]);
    expect(shares(tied)).toEqual([0.8, 0.2]);
  });

  it('drops edges at the maximum, and trailing edges whose share is already 1', () => {
    const atMax = referenceBins({
      min: 0,
      max: 8,
      deciles: [1, 2, 3, 4, 5, 6, 7, 8, 8],
      cdf_at_deciles: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.65, 1, 1],
    });
    expect([...atMax.edges]).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(shares(atMax)).toEqual([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.05, 0.35]);
    const full = referenceBins({
      min: 0,
      max: 9,
      deciles: [1, 2, 3, 4, 5, 6, 7, 8, 8.5],
      cdf_at_deciles: [...Array(8).fill(0.5), 1],
    });
    expect([...full.edges]).toEqual([1]);
    expect(shares(full)).toEqual([0.5, 0.5]);
    const constant = referenceBins(statsOf([5, 5, 5]));
    expect([...constant.edges]).toEqual([]);
    expect(shares(constant)).toEqual([1]);
  });

  it('gives every bin exactly its share of the training data, none of them 0', () => {
    const value = fc.oneof(fc.integer({ min: -3, max: 3 }), fc.double({ min: -3, max: 3, noNaN: true }));
    fc.assert(
      fc.property(fc.array(value, { minLength: 1, maxLength: 60 }), (values) => {
        const bins = referenceBins(statsOf(values));
        const counts = new Array(bins.shares.length).fill(0);
        for (const v of values) counts[binOf(bins.edges, v)]++;
        bins.shares.forEach((share, bin) => {
          expect(share).toBeGreaterThan(0);
          expect(share).toBeCloseTo(counts[bin] / values.length, 12);
        });
      }),
    );
  });
});

describe('PSI of data drawn like the training data', () => {
  const TRAIN = 20_000;
  const WINDOW = 10_000;
  /** A zero-heavy counter (IRQs of idle pods): 0 with probability p, else uniform on [1, 2). */
  const pointMass = (p: number) => (next: () => number) => (next() < p ? 0 : 1 + next());

  it.each([0.395, 0.48, 0.495, 0.498])('stays below 0.1 with a point mass at 0 of %s', (p) => {
    const stats = statsOf(sample(TRAIN, 6, pointMass(p)));
    expect(psiOf(stats, sample(WINDOW, 1006, pointMass(p)))).toBeLessThan(0.1);
    expect(psiOf(stats, sample(WINDOW, 7, pointMass(p)))).toBeLessThan(0.1);
  });

  it('without cdf_at_deciles (older metadata) falls back to tenths, which overstates it on a point mass', () => {
    // The reviewer's finding, kept as the documented limit of the fallback: the same data as above.
    const stats = statsOf(sample(TRAIN, 6, pointMass(0.498)));
    expect(psiOf(withoutShares(stats), sample(WINDOW, 1006, pointMass(0.498)))).toBeGreaterThan(0.25);
    expect(psiOf(stats, sample(WINDOW, 1006, pointMass(0.498)))).toBeLessThan(0.1);
  });

  it('still goes above 0.25 once the data shifts', () => {
    for (const p of [0.395, 0.48, 0.495, 0.498]) {
      const stats = statsOf(sample(TRAIN, 6, pointMass(p)));
      // The busy pods' counts go up by half the range.
      const busier = (next: () => number) => (next() < p ? 0 : 1.5 + next());
      expect(psiOf(stats, sample(WINDOW, 1006, busier))).toBeGreaterThan(0.25);
      // Far fewer idle pods.
      expect(psiOf(stats, sample(WINDOW, 1006, pointMass(p / 4)))).toBeGreaterThan(0.25);
    }
  });

  it.each([
    [
      'core counts, uniform over {1, 2, 4, 8, 16}',
      (next: () => number) => [1, 2, 4, 8, 16][Math.floor(next() * 5)] as number,
    ],
    [
      'core counts, mostly small',
      (next: () => number) => [1, 2, 4, 8, 16][Math.min(4, Math.floor(-Math.log(1 - next()) * 1.5))] as number,
    ],
    ['geometric integers (p = 0.3)', (next: () => number) => Math.floor(Math.log(1 - next()) / Math.log(0.7))],
    ['geometric integers (p = 0.8)', (next: () => number) => Math.floor(Math.log(1 - next()) / Math.log(0.2))],
  ])('stays below 0.1 for a discrete feature: %s', (_, draw) => {
    const stats = statsOf(sample(TRAIN, 11, draw));
    expect(psiOf(stats, sample(WINDOW, 12, draw))).toBeLessThan(0.1);
  });
});

describe('referenceBins without cdf_at_deciles (older metadata: decile levels)', () => {
  it('makes ten bins of a tenth each from nine distinct deciles', () => {
    const bins = referenceBins(DECILES_1_TO_9);
    expect([...bins.edges]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(shares(bins)).toEqual(Array(10).fill(0.1));
  });

  it('merges repeated edges, the bin ending there taking the summed share', () => {
    // 40% of the training rows are 0: P(X ≤ 0) = 0.4.
    const bins = referenceBins({ min: 0, max: 10, deciles: [0, 0, 0, 0, 1, 2, 3, 4, 5] });
    expect([...bins.edges]).toEqual([0, 1, 2, 3, 4, 5]);
    expect(shares(bins)).toEqual([0.4, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]);
    const middle = referenceBins({ min: 0, max: 10, deciles: [1, 2, 2, 2, 3, 4, 4, 5, 6] });
    expect([...middle.edges]).toEqual([1, 2, 3, 4, 5, 6]);
    expect(shares(middle)).toEqual([0.1, 0.3, 0.1, 0.2, 0.1, 0.1, 0.1]);
  });

  it('drops edges at the maximum: the mass there belongs to the top bin', () => {
    const bins = referenceBins({ min: 0, max: 8, deciles: [1, 2, 3, 4, 5, 6, 7, 8, 8] });
    expect([...bins.edges]).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(shares(bins)).toEqual([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.3]);
  });

  it('gives a constant feature one bin holding everything', () => {
    const bins = referenceBins({ min: 5, max: 5, deciles: Array(9).fill(5) });
    expect([...bins.edges]).toEqual([]);
    expect(shares(bins)).toEqual([1]);
  });

  it('always gives shares that are positive and sum to 1', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -5, max: 5 }), { minLength: 9, maxLength: 9 }), (raw) => {
        const deciles = [...raw].sort((a, b) => a - b);
        const bins = referenceBins({ min: Math.min(...deciles), max: Math.max(...deciles, 0), deciles });
        expect(bins.shares.length).toBe(bins.edges.length + 1);
        for (const share of bins.shares) expect(share).toBeGreaterThan(0);
        expect([...bins.shares].reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
      }),
    );
  });
});

describe('binOf', () => {
  it('closes bins on the right: an edge value falls in the bin it ends', () => {
    const edges = Float64Array.from([1, 2, 5]);
    expect([-1, 1, 1.5, 2, 2.000001, 5, 6].map((value) => binOf(edges, value))).toEqual([0, 0, 1, 1, 2, 2, 3]);
  });
});

describe('psi', () => {
  it('is 0 for a window shaped like the reference', () => {
    expect(psi([10, 20, 70], 100, [0.1, 0.2, 0.7])).toBeCloseTo(0, 12);
  });

  it('sums (actual − expected) · ln(actual / expected) over the bins', () => {
    const expected = 0.4 * Math.log(0.9 / 0.5) + -0.4 * Math.log(0.1 / 0.5);
    expect(psi([90, 10], 100, [0.5, 0.5])).toBeCloseTo(expected, 12);
    expect(psi([90, 10], 100, [0.5, 0.5])).toBeCloseTo(0.8789, 4);
  });

  it('counts an empty bin as a share of PSI_EPSILON', () => {
    const expected = 0.5 * Math.log(2) + (PSI_EPSILON - 0.5) * Math.log(PSI_EPSILON / 0.5);
    expect(psi([100, 0], 100, [0.5, 0.5])).toBeCloseTo(expected, 12);
    expect(Number.isFinite(psi([0, 0, 7], 7, [0.4, 0.3, 0.3]))).toBe(true);
  });

  it('is 0 over an empty window', () => {
    expect(psi([0, 0], 0, [0.5, 0.5])).toBe(0);
  });
});

describe('VersionDrift', () => {
  const stats = {
    x: DECILES_1_TO_9,
    y: { min: -1, max: 1, mean: 0, std: 0.5, deciles: [-0.8, -0.6, -0.4, -0.2, 0, 0.2, 0.4, 0.6, 0.8] },
  };

  it('tracks only the declared features that have statistics, in the model’s order', () => {
    const drift = new VersionDrift(['y', 'unknown', 'x'], stats, 10);
    expect(drift.features).toEqual(['y', 'x']);
    expect(drift.hasReference).toBe(true);
    expect(new VersionDrift(['a'], undefined, 10).hasReference).toBe(false);
    expect(new VersionDrift(['toString'], {}, 10).hasReference).toBe(false);
  });

  it('counts values outside the training range exactly, on each side', () => {
    const drift = new VersionDrift(['x', 'y'], stats, 3);
    drift.observeInput(
      matrix([
        [-1, 0],
        [0, -1],
        [10, 1],
        [11, 1.5],
        [12, -2],
      ]),
    );
    drift.observeInput(matrix([[-0.5, 3]]));
    expect(drift.outOfRange()).toEqual([
      { below: 2, above: 2 },
      { below: 1, above: 2 },
    ]);
    expect(drift.summary().rowsSeen).toBe(6);
    // The minimum and maximum themselves are in range.
    expect(drift.summary().features.x?.outOfRange).toEqual({ below: 2, above: 2 });
  });

  it('keeps the last N rows in its window, evicting the oldest', () => {
    const drift = new VersionDrift(['x'], { x: DECILES_1_TO_9 }, 4);
    expect(drift.psi()).toEqual([]);
    expect(drift.summary().features.x?.psi).toBeNull();
    drift.observeInput(matrix([[0.5], [0.5], [0.5]]));
    expect(drift.windowRows).toBe(3);
    expect(drift.summary().features.x?.bins[0]?.window).toBe(1);
    drift.observeInput(matrix([[9.5], [9.5], [9.5]]));
    expect(drift.windowRows).toBe(4);
    const bins = drift.summary().features.x?.bins ?? [];
    expect(bins[0]?.window).toBe(0.25);
    expect(bins[9]).toEqual({ upTo: null, reference: expect.closeTo(0.1, 12), window: 0.75 });
    // A request longer than the window: only its last rows stay.
    drift.observeInput(matrix([[9.5], [9.5], [1.5], [1.5], [2.5], [2.5]]));
    const after = drift.summary().features.x?.bins ?? [];
    expect([after[1]?.window, after[2]?.window, after[9]?.window]).toEqual([0.5, 0.5, 0]);
  });

  it('matches a recount of the last N rows whatever the requests, and counts out-of-range exactly', () => {
    const value = fc.double({ min: -3, max: 13, noNaN: true });
    const request = fc.array(fc.tuple(value, value), { minLength: 1, maxLength: 12 });
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 9 }),
        fc.array(request, { minLength: 1, maxLength: 8 }),
        (size, requests) => {
          const reference = { x: DECILES_1_TO_9, y: { ...DECILES_1_TO_9, min: 2, max: 7 } };
          const drift = new VersionDrift(['x', 'y'], reference, size);
          for (const rows of requests) drift.observeInput(matrix(rows));
          const all = requests.flat();
          const last = all.slice(-size);
          const summary = drift.summary();
          expect(summary.windowRows).toBe(last.length);
          for (const [column, name] of ['x', 'y'].entries()) {
            const { min, max } = reference[name as 'x' | 'y'];
            const values = all.map((row) => row[column] as number);
            expect(summary.features[name]?.outOfRange).toEqual({
              below: values.filter((v) => v < min).length,
              above: values.filter((v) => v > max).length,
            });
            const bins = referenceBins(reference[name as 'x' | 'y']);
            const counts = new Array(bins.shares.length).fill(0);
            for (const row of last) counts[binOf(bins.edges, row[column] as number)]++;
            expect(summary.features[name]?.bins.map((bin) => bin.window)).toEqual(counts.map((c) => c / last.length));
            expect(summary.features[name]?.psi).toBeCloseTo(psi(counts, last.length, bins.shares), 12);
          }
        },
      ),
    );
  });

  it('counts negative and non-finite predicted values, with their shares', () => {
    const drift = new VersionDrift(['x'], undefined, 4);
    expect(drift.predictionCounts()).toEqual({
      values: 0,
      negative: 0,
      nonFinite: 0,
      negativeShare: null,
      nonFiniteShare: null,
    });
    drift.observeOutput(
      matrix([
        [1, -2],
        [0, -0],
        [Number.NaN, Number.POSITIVE_INFINITY],
        [Number.NEGATIVE_INFINITY, -1e-9],
      ]),
    );
    drift.observeOutput({ data: Float32Array.from([-1, 2]), rows: 2, cols: 1 });
    expect(drift.predictionCounts()).toEqual({
      values: 10,
      negative: 3,
      nonFinite: 3,
      negativeShare: 0.3,
      nonFiniteShare: 0.3,
    });
  });
});

describe('DriftMonitor', () => {
  const withStats: VersionedSubject = { version: 1, features: ['x', 'z'], featureStats: { x: DECILES_1_TO_9 } };
  const without: VersionedSubject = { version: 2, features: ['x', 'z'], featureStats: undefined };

  it('keeps one state per version, made at its first prediction', () => {
    const monitor = new DriftMonitor(5);
    expect(monitor.peek(withStats)).toBeUndefined();
    monitor.predicted(withStats, matrix([[20, 0]]), matrix([[-1]]));
    expect(monitor.peek(withStats)).toBe(monitor.of(withStats));
    expect(monitor.peek(withStats)?.outOfRange()).toEqual([{ below: 0, above: 1 }]);
  });

  it('reports every loaded version with its reference, figures and window size', () => {
    const monitor = new DriftMonitor(5);
    monitor.predicted(withStats, matrix([[5.5, 1]]), matrix([[-1], [2]]));
    const report = monitor.report('m', {
      serving: without,
      versions: new Map([
        [2, without],
        [1, withStats],
      ]),
    });
    expect(report).toEqual({
      model: 'm',
      windowSize: 5,
      thresholds: { stable: 0.1, shifted: 0.25 },
      versions: [
        {
          version: 1,
          serving: false,
          reference: { x: DECILES_1_TO_9 },
          windowRows: 1,
          rowsSeen: 1,
          features: {
            x: {
              psi: expect.any(Number),
              outOfRange: { below: 0, above: 0 },
              bins: expect.arrayContaining([{ upTo: 6, reference: expect.closeTo(0.1, 12), window: 1 }]),
            },
          },
          predictions: { values: 2, negative: 1, nonFinite: 0, negativeShare: 0.5, nonFiniteShare: 0 },
        },
        {
          version: 2,
          serving: true,
          reference: null,
          windowRows: 0,
          rowsSeen: 0,
          features: {},
          predictions: { values: 0, negative: 0, nonFinite: 0, negativeShare: null, nonFiniteShare: null },
        },
      ],
    });
    expect(monitor.report('gone', undefined).versions).toEqual([]);
  });
});
