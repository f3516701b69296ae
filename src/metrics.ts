import { Counter, collectDefaultMetrics, Gauge, Histogram, type Metric, Registry } from 'prom-client';
import type { PredictionObserver } from './inference.js';
import type { Matrix } from './matrix.js';
import type { LoadFailureReason, ModelVersion } from './registry/loader.js';
import type { ModelStatus, RegistryEvents } from './registry/registry.js';

/** Request latency from a tenth of a millisecond (a bare route) to the slowest sensible answer. */
const REQUEST_SECONDS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
/** Inference alone: a linear model over 10 pods takes microseconds, an MLP over 100k pods a second. */
const INFERENCE_SECONDS = [
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5,
];
const LOAD_SECONDS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Pods per request: one node's pods (tens) up to a whole cluster batch. */
const PODS = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000, 100000];
/** Per-pod watts: an idle container's fraction of a watt up to a whole busy socket. */
const WATTS = [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500];

let processRegistry: Registry | undefined;

/**
 * Process and Node.js runtime metrics (CPU, memory, heap, GC, event-loop lag), collected once per
 * process: they describe the process, not an app, and prom-client's collectors never stop (one
 * per app would keep every app built in tests alive).
 */
function processMetrics(): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry, prefix: 'wattserve_' });
    // prom-client's gauges named `_total` break Prometheus' naming rules (promtool flags them); the
    // same counts are in nodejs_active_{handles,requests,resources} by type.
    for (const kind of ['handles', 'requests', 'resources']) {
      processRegistry.removeSingleMetric(`wattserve_nodejs_active_${kind}_total`);
    }
  }
  return processRegistry;
}

/** Why a request was refused at the admin door: a closed set, so a label. */
export type AuthFailure = 'missing' | 'invalid' | 'expired' | 'forbidden';

/** Route, model and version of one HTTP request, once it is answered. */
export interface RequestLabels {
  /** The route's pattern (`/predict/:model`), never the raw URL; `unmatched` for a 404 on no route. */
  route: string;
  /** The model and version that answered, or '' when none did (refused before a model was chosen). */
  model: string;
  version: string;
  statusCode: number;
  seconds: number;
}

/**
 * Every metric wattserve exports, in one prom-client registry per app (tests build many apps; a
 * global registry would mix them). Label values only ever come from route patterns and the names
 * of models that were loaded, never from what a client sent: 1,000 requests for made-up models
 * add no series.
 */
export class ServiceMetrics implements RegistryEvents {
  /** This app's own metrics; text() adds the process-wide ones. */
  readonly registry = new Registry();
  readonly #requests: Counter<'route' | 'model' | 'version' | 'status'>;
  readonly #requestSeconds: Histogram<'route' | 'model'>;
  readonly #inFlight: Gauge;
  readonly #inferenceSeconds: Histogram<'model' | 'version' | 'backend'>;
  readonly #podsPerRequest: Histogram<'model'>;
  readonly #pods: Counter<'model'>;
  readonly #watts: PodPowerHistogram;
  readonly #loadSeconds: Histogram<'backend'>;
  readonly #loadFailures: Counter<'reason'>;
  readonly #predictionFailures: Counter<'model' | 'version'>;
  readonly #swaps: Counter<'model'>;
  readonly #adminActions: Counter<'action' | 'outcome'>;
  readonly #authFailures: Counter<'reason'>;

  constructor(models: () => readonly ModelStatus[]) {
    const registers = [this.registry];
    this.#requests = new Counter({
      name: 'wattserve_http_requests_total',
      help: 'HTTP requests answered, by route pattern, model and version that answered, and status class',
      labelNames: ['route', 'model', 'version', 'status'],
      registers,
    });
    this.#requestSeconds = new Histogram({
      name: 'wattserve_http_request_duration_seconds',
      help: 'Time from request to answer, by route pattern and model',
      labelNames: ['route', 'model'],
      buckets: REQUEST_SECONDS,
      registers,
    });
    this.#inFlight = new Gauge({
      name: 'wattserve_http_requests_in_flight',
      help: 'HTTP requests being served now',
      registers,
    });
    this.#inferenceSeconds = new Histogram({
      name: 'wattserve_inference_duration_seconds',
      help: 'Time the model itself took to predict one request, by model, version and backend',
      labelNames: ['model', 'version', 'backend'],
      buckets: INFERENCE_SECONDS,
      registers,
    });
    this.#podsPerRequest = new Histogram({
      name: 'wattserve_request_pods',
      help: 'Rows (pods) per prediction request, by model',
      labelNames: ['model'],
      buckets: PODS,
      registers,
    });
    this.#pods = new Counter({
      name: 'wattserve_pods_predicted_total',
      help: 'Rows (pods) predicted, by model',
      labelNames: ['model'],
      registers,
    });
    this.#watts = new PodPowerHistogram();
    this.registry.registerMetric(this.#watts as unknown as Metric);
    this.#loadSeconds = new Histogram({
      name: 'wattserve_model_load_duration_seconds',
      help: 'Time to load and check a model version, by backend',
      labelNames: ['backend'],
      buckets: LOAD_SECONDS,
      registers,
    });
    this.#loadFailures = new Counter({
      name: 'wattserve_model_load_failures_total',
      help: 'Model version loads that failed, or did not finish within MODEL_LOAD_TIMEOUT_MS (reason timeout), by reason',
      labelNames: ['reason'],
      registers,
    });
    this.#predictionFailures = new Counter({
      name: 'wattserve_prediction_failures_total',
      help: 'Predictions that failed in the model backend (answered 500 prediction_failed), by model and version',
      labelNames: ['model', 'version'],
      registers,
    });
    this.#swaps = new Counter({
      name: 'wattserve_model_swaps_total',
      help: 'Times the version serving a model was replaced (promote, rollback, reload, forced unload)',
      labelNames: ['model'],
      registers,
    });
    this.#adminActions = new Counter({
      name: 'wattserve_admin_actions_total',
      help: 'Admin API actions, by action and outcome (done, or the error code)',
      labelNames: ['action', 'outcome'],
      registers,
    });
    this.#authFailures = new Counter({
      name: 'wattserve_admin_auth_failures_total',
      help: 'Admin API requests refused at the token check, by reason',
      labelNames: ['reason'],
      registers,
    });
    new Gauge({
      name: 'wattserve_model_versions',
      help: 'Model versions by state (1 for the state each version is in)',
      labelNames: ['model', 'version', 'state'],
      registers,
      collect() {
        this.reset();
        for (const model of models()) {
          for (const { version, state } of model.versions) this.set({ model: model.name, version, state }, 1);
        }
      },
    });
    new Gauge({
      name: 'wattserve_model_reload_failed',
      help: 'Available versions whose files on disk no longer load (changed, deleted, truncated): 1 while the copy loaded before serves',
      labelNames: ['model', 'version'],
      registers,
      collect() {
        this.reset();
        for (const model of models()) {
          for (const { version, state, lastLoadFailure } of model.versions) {
            if (state === 'available' && lastLoadFailure !== undefined) this.set({ model: model.name, version }, 1);
          }
        }
      },
    });
    new Gauge({
      name: 'wattserve_model_serving_version',
      help: 'The version each model serves to requests that name none',
      labelNames: ['model'],
      registers,
      collect() {
        this.reset();
        for (const model of models()) if (model.serving !== undefined) this.set({ model: model.name }, model.serving);
      },
    });
  }

  /** The exposition Prometheus scrapes: the process's runtime metrics, then this app's. */
  async text(): Promise<string> {
    return (await processMetrics().metrics()) + (await this.registry.metrics());
  }

  readonly contentType = Registry.PROMETHEUS_CONTENT_TYPE;

  requestStarted(): () => void {
    this.#inFlight.inc();
    return () => this.#inFlight.dec();
  }

  requestAnswered({ route, model, version, statusCode, seconds }: RequestLabels): void {
    this.#requests.inc({ route, model, version, status: `${Math.floor(statusCode / 100)}xx` });
    this.#requestSeconds.observe({ route, model }, seconds);
  }

  /** A request whose client went away before the answer was written (a Kepler timeout, say). */
  requestAbandoned({ route, model, version }: Omit<RequestLabels, 'statusCode' | 'seconds'>): void {
    this.#requests.inc({ route, model, version, status: 'aborted' });
  }

  /** Records predictions; `chosen` also learns which model a request got, for its labels. */
  observer(chosen: (model: ModelVersion) => void = () => {}): PredictionObserver {
    return { chosen, predicted: (model, seconds, result) => this.#predicted(model, seconds, result) };
  }

  #predicted(model: ModelVersion, seconds: number, result: Matrix): void {
    const name = model.name;
    this.#inferenceSeconds.observe({ model: name, version: model.version, backend: model.backend }, seconds);
    this.#podsPerRequest.observe({ model: name }, result.rows);
    this.#pods.inc({ model: name }, result.rows);
    this.#watts.observe(name, model.outputs, result);
  }

  versionLoaded(model: ModelVersion, seconds: number): void {
    this.#loadSeconds.observe({ backend: model.backend }, seconds);
  }

  versionFailed(reason: LoadFailureReason): void {
    this.#loadFailures.inc({ reason });
  }

  servingReplaced(model: string): void {
    this.#swaps.inc({ model });
  }

  predictionFailed(model: ModelVersion): void {
    this.#predictionFailures.inc({ model: model.name, version: model.version });
  }

  adminAction(action: string, outcome: string): void {
    this.#adminActions.inc({ action, outcome });
  }

  authFailed(reason: AuthFailure): void {
    this.#authFailures.inc({ reason });
  }
}

/** Bucket counts, sum and count of one model output's per-pod watts. */
interface PowerSeries {
  model: string;
  output: string;
  /** counts[i]: values in (WATTS[i-1], WATTS[i]]; the last slot is over the highest bucket. */
  counts: Float64Array;
  sum: number;
  count: number;
}

/**
 * wattserve_predicted_power_watts, a histogram with one observation per pod. prom-client's own
 * Histogram costs ~300 ns an observation (30 µs for a 100-pod request, a sixth of the request);
 * this one finds the bucket in a plain loop over a typed array, and builds the exposition only
 * when Prometheus scrapes. It implements the parts of prom-client's Metric the registry reads.
 */
class PodPowerHistogram {
  readonly name = 'wattserve_predicted_power_watts';
  readonly help = 'Predicted power per pod, by model and output (a Kepler model has one per component)';
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #series = new Map<string, PowerSeries>();

  observe(model: string, outputs: readonly string[], result: Matrix): void {
    const { data, rows, cols } = result;
    for (const [column, output] of outputs.entries()) {
      const series = this.#seriesFor(model, output);
      const { counts } = series;
      let sum = 0;
      for (let row = 0; row < rows; row++) {
        // A negative prediction counts as 0 W: a histogram's _sum must never go down.
        const watts = Math.max(0, data[row * cols + column] as number);
        let bucket = 0;
        while (bucket < WATTS.length && watts > (WATTS[bucket] as number)) bucket++;
        counts[bucket] = (counts[bucket] as number) + 1;
        sum += watts;
      }
      series.sum += sum;
      series.count += rows;
    }
  }

  #seriesFor(model: string, output: string): PowerSeries {
    const key = `${model}\u0000${output}`;
    let series = this.#series.get(key);
    if (series === undefined) {
      series = { model, output, counts: new Float64Array(WATTS.length + 1), sum: 0, count: 0 };
      this.#series.set(key, series);
    }
    return series;
  }

  async get() {
    const values = [...this.#series.values()].flatMap(({ model, output, counts, sum, count }) => {
      let cumulative = 0;
      const buckets = [...WATTS, '+Inf' as const].map((le, index) => {
        cumulative += counts[index] as number;
        return { metricName: `${this.name}_bucket`, labels: { model, output, le }, value: cumulative };
      });
      return [
        ...buckets,
        { metricName: `${this.name}_sum`, labels: { model, output }, value: sum },
        { metricName: `${this.name}_count`, labels: { model, output }, value: count },
      ];
    });
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {
    this.#series.clear();
  }
}
