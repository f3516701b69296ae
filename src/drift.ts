import type { Matrix } from './matrix.js';
import type { FeatureStats } from './registry/metadata.js';

/**
 * Input drift, measured against the training data's statistics (metadata.json `feature_stats`):
 * values outside the training range, and a population stability index (PSI) over the last N input
 * rows of each model version. Pure: the plugin (src/plugins/drift.ts) feeds it predictions and
 * reads it for /metrics and the admin API.
 *
 * Bins. The distinct decile edges u1 < … < uk below the training maximum cut the line into
 * right-closed bins (-∞, u1], (u1, u2], … (uk, +∞). Each bin's reference share is the training
 * data's: with `cdf_at_deciles` (F(e) = the share of the training values at or below the edge e),
 * (u(j−1), uj] holds F(uj) − F(u(j−1)), the first bin F(u1) and the last 1 − F(uk). Repeated edges
 * (ties: a feature that is 0 for 45% of the rows has e1 = … = e4 = 0) make one edge, whose bin holds
 * all the mass at that value (F(0) = 0.45), not just the tenths whose edges repeat. Edges at or above
 * the maximum are dropped: the mass at the maximum belongs to the top bin. A bin the training data
 * leaves empty (two edges interpolated inside one gap between training values) is merged into the
 * bin above it (its upper edge dropped), so no reference share is 0.
 *
 * Older statistics without `cdf_at_deciles` fall back to the deciles' levels: edge i counts as
 * F = i/10, a repeated edge taking the level of its last copy. That understates a point mass (F(0)
 * can be anything up to just below the next tenth), and the next bin, then nearly empty in real
 * data, can give PSI well above 0.25 on data like the training data: regenerate such statistics
 * (`npm run stats`). A constant feature has a single bin: PSI 0, and only the out-of-range counts
 * tell its drift. Values below the minimum fall in the first bin, those above the maximum in the
 * last (and are counted out of range too).
 *
 * PSI = Σ (window share − reference share) · ln(window share / reference share) over the bins, a
 * share of 0 counting as PSI_EPSILON (1e-4) so that an empty bin gives a large, finite term. Below
 * 0.1: no drift to speak of; 0.1–0.25: moderate; above 0.25: the inputs no longer look like the
 * training data.
 */

/** What an empty bin's share counts as in the PSI sum. */
export const PSI_EPSILON = 1e-4;

/** The usual reading of a PSI value: below this, the population is stable. */
export const PSI_STABLE = 0.1;
/** Above this, the population has shifted. */
export const PSI_SHIFTED = 0.25;

/** The bins of one feature: strictly increasing upper edges, and each bin's share of the training data. */
export interface ReferenceBins {
  /** Upper (inclusive) edges of every bin but the last, which is open above. */
  readonly edges: Float64Array;
  /** Training share of each bin (edges.length + 1 of them, summing to 1, none 0). */
  readonly shares: Float64Array;
}

/**
 * The bins for a feature's statistics, by the rules above. Without `cdf_at_deciles`, `deciles` are
 * taken as equally spaced quantiles (nine edges: tenths); any other count k spaces them at 1/(k+1).
 */
export function referenceBins(
  stats: Pick<FeatureStats, 'min' | 'max' | 'deciles'> & { readonly cdf_at_deciles?: readonly number[] | undefined },
): ReferenceBins {
  const { deciles, cdf_at_deciles: cdf } = stats;
  const step = 1 / (deciles.length + 1);
  // Each distinct edge below the maximum with its cumulative share, F(edge).
  const edges: number[] = [];
  const cumulative: number[] = [];
  deciles.forEach((edge, index) => {
    if (!(edge < stats.max)) return;
    const upTo = cdf === undefined ? (index + 1) * step : (cdf[index] as number);
    const last = edges.length - 1;
    // A repeated edge: without the shares, the bin ending there takes the levels up to its last copy.
    if (last >= 0 && edges[last] === edge) cumulative[last] = Math.max(cumulative[last] as number, upTo);
    else if (last < 0 || edge > (edges[last] as number)) {
      edges.push(edge);
      cumulative.push(upTo);
    }
  });
  // No empty bins: an edge whose F is no higher than the edge below's (an empty bin below it) is
  // dropped, its bin merging into the one above; then so are edges at the top with F = 1.
  const kept: number[] = [];
  const keptCumulative: number[] = [];
  edges.forEach((edge, i) => {
    const upTo = Math.min(1, cumulative[i] as number);
    if (upTo > (keptCumulative[keptCumulative.length - 1] ?? 0)) {
      kept.push(edge);
      keptCumulative.push(upTo);
    }
  });
  while (keptCumulative.length > 0 && (keptCumulative[keptCumulative.length - 1] as number) >= 1) {
    kept.pop();
    keptCumulative.pop();
  }
  const shares = new Float64Array(kept.length + 1);
  let below = 0;
  keptCumulative.forEach((upTo, bin) => {
    shares[bin] = upTo - below;
    below = upTo;
  });
  shares[kept.length] = 1 - below;
  return { edges: Float64Array.from(kept), shares };
}

/** The bin a value falls in: how many edges lie strictly below it (bins are closed on the right). */
export function binOf(edges: Float64Array, value: number): number {
  let bin = 0;
  while (bin < edges.length && (edges[bin] as number) < value) bin++;
  return bin;
}

/** The PSI of bin counts (over `total` values) against reference shares; 0 when nothing was seen. */
export function psi(counts: ArrayLike<number>, total: number, shares: ArrayLike<number>): number {
  if (total === 0) return 0;
  let sum = 0;
  for (let bin = 0; bin < shares.length; bin++) {
    const actual = Math.max((counts[bin] as number) / total, PSI_EPSILON);
    const expected = Math.max(shares[bin] as number, PSI_EPSILON);
    sum += (actual - expected) * Math.log(actual / expected);
  }
  return sum;
}

/** One feature's drift figures, as the admin API gives them. */
export interface FeatureDrift {
  /** Over the rows in the window; null while the window is empty. */
  psi: number | null;
  /** Values outside the training range since the version loaded: below the minimum, above the maximum. */
  outOfRange: { below: number; above: number };
  /** Each bin: its upper edge (null for the last, open one), training share and share in the window. */
  bins: Array<{ upTo: number | null; reference: number; window: number | null }>;
}

/** Raw predicted values (rows × outputs) as the model gave them, before any answer was made. */
export interface PredictionCounts {
  values: number;
  negative: number;
  nonFinite: number;
  /** negative / values and nonFinite / values; null before any value. */
  negativeShare: number | null;
  nonFiniteShare: number | null;
}

export interface VersionDriftSummary {
  /** Rows in the window now (at most its size). */
  windowRows: number;
  /** Input rows seen since the version loaded. */
  rowsSeen: number;
  /** The features with statistics, in the model's order; empty for a version without them. */
  features: Record<string, FeatureDrift>;
  predictions: PredictionCounts;
}

/** A feature with statistics: its input column and bins. */
interface Tracked {
  readonly name: string;
  readonly column: number;
  readonly min: number;
  readonly max: number;
  readonly bins: ReferenceBins;
  /** The edges, then +∞ up to 2^k − 1 of them, for a bisection in k steps of top, top / 2, … 1. */
  readonly padded: Float64Array;
  readonly top: number;
}

/** The edges padded with +∞ to 2^k − 1 values (no value is above +∞), and 2^(k−1) (0 for no edges). */
function padded(edges: Float64Array): { padded: Float64Array; top: number } {
  let size = 1;
  while (size - 1 < edges.length) size *= 2;
  const padded = new Float64Array(size - 1).fill(Number.POSITIVE_INFINITY);
  padded.set(edges);
  return { padded, top: size / 2 >= 1 && edges.length > 0 ? size / 2 : 0 };
}

/**
 * The drift state of one model version: out-of-range counts per feature, a ring buffer of the bin
 * of every tracked feature over the last `windowRows` rows (one byte per value, allocated at the
 * first row), per-bin counts kept up to date as rows enter and leave (O(1) per value), and counts
 * of negative and non-finite predicted values.
 */
export class VersionDrift {
  readonly #tracked: readonly Tracked[];
  readonly #windowRows: number;
  /** Bin counts per tracked feature, `stride` apart. */
  readonly #counts: Int32Array;
  readonly #stride: number;
  /** Per tracked feature: values below the minimum, above the maximum (float64: exact to 2^53). */
  readonly #below: Float64Array;
  readonly #above: Float64Array;
  /** Feature-major: tracked feature × row slot → bin. */
  #ring: Uint8Array | undefined;
  #next = 0;
  #filled = 0;
  #rowsSeen = 0;
  #values = 0;
  #negative = 0;
  #nonFinite = 0;

  constructor(
    features: readonly string[],
    stats: Readonly<Record<string, FeatureStats>> | undefined,
    windowRows: number,
  ) {
    const tracked: Tracked[] = [];
    features.forEach((name, column) => {
      const feature = stats !== undefined && Object.hasOwn(stats, name) ? stats[name] : undefined;
      if (feature === undefined) return;
      const bins = referenceBins(feature);
      tracked.push({ name, column, min: feature.min, max: feature.max, bins, ...padded(bins.edges) });
    });
    this.#tracked = tracked;
    this.#windowRows = windowRows;
    this.#stride = Math.max(1, ...tracked.map((feature) => feature.bins.shares.length));
    // A byte per bin index.
    if (this.#stride > 256) throw new Error('at most 255 decile edges per feature');
    this.#counts = new Int32Array(tracked.length * this.#stride);
    this.#below = new Float64Array(tracked.length);
    this.#above = new Float64Array(tracked.length);
  }

  /** Whether any feature has statistics (else there is no feature drift to tell). */
  get hasReference(): boolean {
    return this.#tracked.length > 0;
  }

  /** The names of the features with statistics, in the model's order. */
  get features(): readonly string[] {
    return this.#tracked.map((feature) => feature.name);
  }

  /** Adds a request's input rows (columns in the model's feature order). Keeps no reference to them. */
  observeInput(input: Matrix): void {
    const { data, rows, cols } = input;
    this.#rowsSeen += rows;
    const tracked = this.#tracked;
    const width = tracked.length;
    if (width === 0) return;
    const size = this.#windowRows;
    if (this.#ring === undefined) this.#ring = new Uint8Array(size * width);
    // Feature by feature, so each one's edges, counts and ring stay at hand; rows that would leave
    // the window within this same request only count out of range.
    const ring = this.#ring;
    const counts = this.#counts;
    const stride = this.#stride;
    const windowFrom = Math.max(0, rows - size);
    const first = this.#next;
    const filledBefore = this.#filled;
    for (let j = 0; j < width; j++) {
      const { column, min, max, padded, top } = tracked[j] as Tracked;
      const base = j * stride;
      const ringBase = j * size;
      let under = 0;
      let over = 0;
      let slot = first;
      let filled = filledBefore;
      for (let row = 0; row < rows; row++) {
        const value = data[row * cols + column] as number;
        under += +(value < min);
        over += +(value > max);
        if (row < windowFrom) continue;
        // binOf by a branchless bisection over the padded edges: inputs are too random for a branch
        // predictor, and a mispredicted search costs several times this.
        let bin = 0;
        for (let step = top; step > 0; step >>= 1) bin += +((padded[bin + step - 1] as number) < value) * step;
        const at = ringBase + slot;
        if (filled === size) {
          const leaving = base + (ring[at] as number);
          counts[leaving] = (counts[leaving] as number) - 1;
        } else filled++;
        ring[at] = bin;
        counts[base + bin] = (counts[base + bin] as number) + 1;
        slot = slot + 1 === size ? 0 : slot + 1;
      }
      this.#below[j] = (this.#below[j] as number) + under;
      this.#above[j] = (this.#above[j] as number) + over;
    }
    const entered = rows - windowFrom;
    this.#next = (first + entered) % size;
    this.#filled = Math.min(size, filledBefore + entered);
  }

  /** Counts a request's predicted values: all of them, the negative ones and the non-finite ones. */
  observeOutput(result: Matrix): void {
    const { data } = result;
    const length = result.rows * result.cols;
    let negative = 0;
    let nonFinite = 0;
    for (let i = 0; i < length; i++) {
      const value = data[i] as number;
      if (value < 0) {
        if (value === Number.NEGATIVE_INFINITY) nonFinite++;
        else negative++;
      } else if (!(value <= Number.MAX_VALUE)) nonFinite++;
    }
    this.#values += length;
    this.#negative += negative;
    this.#nonFinite += nonFinite;
  }

  /** Rows in the window now. */
  get windowRows(): number {
    return this.#filled;
  }

  /** The PSI of each tracked feature over the window, in the order of `features`; empty while the window is. */
  psi(): number[] {
    if (this.#filled === 0) return [];
    return this.#tracked.map((feature, j) => {
      const start = j * this.#stride;
      const counts = this.#counts.subarray(start, start + feature.bins.shares.length);
      return psi(counts, this.#filled, feature.bins.shares);
    });
  }

  /** Out-of-range counts of each tracked feature, in the order of `features`. */
  outOfRange(): Array<{ below: number; above: number }> {
    return this.#tracked.map((_, j) => ({ below: this.#below[j] as number, above: this.#above[j] as number }));
  }

  predictionCounts(): PredictionCounts {
    const values = this.#values;
    const share = (count: number) => (values === 0 ? null : count / values);
    return {
      values,
      negative: this.#negative,
      nonFinite: this.#nonFinite,
      negativeShare: share(this.#negative),
      nonFiniteShare: share(this.#nonFinite),
    };
  }

  summary(): VersionDriftSummary {
    const filled = this.#filled;
    const psis = this.psi();
    const outOfRange = this.outOfRange();
    const features: Record<string, FeatureDrift> = {};
    this.#tracked.forEach((feature, j) => {
      const { edges, shares } = feature.bins;
      features[feature.name] = {
        psi: psis[j] ?? null,
        outOfRange: outOfRange[j] as { below: number; above: number },
        bins: [...shares].map((reference, bin) => ({
          upTo: bin < edges.length ? (edges[bin] as number) : null,
          reference,
          window: filled === 0 ? null : (this.#counts[j * this.#stride + bin] as number) / filled,
        })),
      };
    });
    return { windowRows: filled, rowsSeen: this.#rowsSeen, features, predictions: this.predictionCounts() };
  }
}

/** What a model version is to the monitor: its identity, features and statistics. */
export interface DriftSubject {
  readonly features: readonly string[];
  readonly featureStats: Readonly<Record<string, FeatureStats>> | undefined;
}

/**
 * The drift state of every model version, kept beside the version (a WeakMap): an unloaded
 * version's state goes with it.
 */
export class DriftMonitor {
  readonly #versions = new WeakMap<DriftSubject, VersionDrift>();

  constructor(readonly windowRows: number) {}

  /** The version's state, made at its first prediction. */
  of(version: DriftSubject): VersionDrift {
    let drift = this.#versions.get(version);
    if (drift === undefined) {
      drift = new VersionDrift(version.features, version.featureStats, this.windowRows);
      this.#versions.set(version, drift);
    }
    return drift;
  }

  /** The version's state if it has predicted anything yet. */
  peek(version: DriftSubject): VersionDrift | undefined {
    return this.#versions.get(version);
  }

  /** A prediction the model made (answered, or refused for a non-finite value): its input and its answer. */
  predicted(version: DriftSubject, input: Matrix, result: Matrix): void {
    const drift = this.of(version);
    drift.observeInput(input);
    drift.observeOutput(result);
  }

  /**
   * The admin API's report on one model: every loaded version (oldest first) with the reference it
   * is measured against (the statistics of its features that have some; null without any) and its
   * figures. A version that has predicted nothing yet reports zeros.
   */
  report(model: string, loaded: LoadedVersions | undefined): DriftReport {
    const versions = [...(loaded?.versions.values() ?? [])].sort((a, b) => a.version - b.version);
    return {
      model,
      windowSize: this.windowRows,
      thresholds: { stable: PSI_STABLE, shifted: PSI_SHIFTED },
      versions: versions.map((version) => {
        const drift = this.peek(version) ?? new VersionDrift(version.features, version.featureStats, this.windowRows);
        const stats = version.featureStats;
        const reference =
          stats === undefined || !drift.hasReference
            ? null
            : Object.fromEntries(drift.features.map((name) => [name, stats[name] as FeatureStats]));
        return { version: version.version, serving: version === loaded?.serving, reference, ...drift.summary() };
      }),
    };
  }
}

/** A model version as the report names it. */
export interface VersionedSubject extends DriftSubject {
  readonly version: number;
}

/** The versions of a model that are loaded, and the one serving (a registry snapshot). */
export interface LoadedVersions {
  readonly serving: VersionedSubject;
  readonly versions: ReadonlyMap<number, VersionedSubject>;
}

/** GET /admin/models/:name/drift. */
export interface DriftReport {
  model: string;
  /** DRIFT_WINDOW_ROWS: the most rows a version's window holds. */
  windowSize: number;
  /** How PSI is usually read: below `stable`, no drift; above `shifted`, the inputs have drifted. */
  thresholds: { stable: number; shifted: number };
  versions: Array<
    {
      version: number;
      /** Whether requests naming no version get this one. */
      serving: boolean;
      /** The training statistics of the features measured, or null when the version has none. */
      reference: Record<string, FeatureStats> | null;
    } & VersionDriftSummary
  >;
}
