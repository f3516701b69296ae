import type { Metric, MetricValue, Registry } from 'prom-client';

/**
 * A counter and a histogram for the metrics updated on every request. prom-client's own validate
 * and hash the label object on each update; measured on a served /predict (bench/throughput.ts),
 * the request metrics cost about a tenth of a small request's CPU that way. These keep each label
 * combination's numbers in a plain object found by one Map lookup, and build the exposition only
 * when Prometheus scrapes. They implement the parts of prom-client's Metric its Registry reads, so
 * they share one registry and one text with the rest.
 *
 * Label values come from the caller in the order of labelNames; they must come from a closed set
 * (route patterns, loaded model names), as with any Prometheus label.
 */
abstract class LeanMetric<S> {
  readonly aggregator = 'sum';
  readonly #series = new Map<string, { labels: Record<string, string>; data: S }>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Metric);
  }

  protected abstract fresh(): S;

  protected abstract values(labels: Record<string, string>, data: S): MetricValue<string>[];

  abstract readonly type: 'counter' | 'histogram';

  /** The numbers of one label combination (values in the order of labelNames), created at first use. */
  protected seriesOf(values: readonly (string | number)[]): S {
    const key = values.join('\u0000');
    let series = this.#series.get(key);
    if (series === undefined) {
      if (values.length !== this.labelNames.length) {
        throw new Error(`${this.name} takes ${this.labelNames.length} label values, got ${values.length}`);
      }
      const labels = Object.fromEntries(this.labelNames.map((name, i) => [name, String(values[i])]));
      series = { labels, data: this.fresh() };
      this.#series.set(key, series);
    }
    return series.data;
  }

  async get() {
    const values = [...this.#series.values()].flatMap(({ labels, data }) => this.values(labels, data));
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {
    this.#series.clear();
  }
}

export class LeanCounter extends LeanMetric<{ value: number }> {
  readonly type = 'counter';

  inc(values: readonly (string | number)[], amount = 1): void {
    this.seriesOf(values).value += amount;
  }

  protected fresh() {
    return { value: 0 };
  }

  protected values(labels: Record<string, string>, data: { value: number }) {
    return [{ labels, value: data.value }];
  }
}

/** One label combination of a histogram: counts[i] holds values in (bounds[i-1], bounds[i]], the last slot the rest. */
export interface HistogramSeries {
  readonly counts: Float64Array;
  sum: number;
  count: number;
}

export class LeanHistogram extends LeanMetric<HistogramSeries> {
  readonly type = 'histogram';

  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    readonly buckets: readonly number[],
    registry: Registry,
  ) {
    super(name, help, labelNames, registry);
  }

  observe(values: readonly (string | number)[], value: number): void {
    const series = this.seriesOf(values);
    const bucket = this.bucketOf(value);
    series.counts[bucket] = (series.counts[bucket] as number) + 1;
    series.sum += value;
    series.count += 1;
  }

  /** The series to observe many values into at once (one per pod, say) with bucketOf. */
  series(values: readonly (string | number)[]): HistogramSeries {
    return this.seriesOf(values);
  }

  /** The slot of counts a value falls in: the first bucket whose upper bound is ≥ it. */
  bucketOf(value: number): number {
    const { buckets } = this;
    let bucket = 0;
    while (bucket < buckets.length && value > (buckets[bucket] as number)) bucket++;
    return bucket;
  }

  protected fresh(): HistogramSeries {
    return { counts: new Float64Array(this.buckets.length + 1), sum: 0, count: 0 };
  }

  protected values(labels: Record<string, string>, { counts, sum, count }: HistogramSeries) {
    let cumulative = 0;
    const buckets = [...this.buckets, '+Inf' as const].map((le, index) => {
      cumulative += counts[index] as number;
      return { metricName: `${this.name}_bucket`, labels: { ...labels, le }, value: cumulative };
    });
    return [
      ...buckets,
      { metricName: `${this.name}_sum`, labels, value: sum },
      { metricName: `${this.name}_count`, labels, value: count },
    ];
  }
}
