import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { LeanCounter, LeanHistogram } from './lean-metrics.js';
import type { Matrix } from './matrix.js';
import type { LoadFailureReason, ModelVersion } from './registry/loader.js';
import type { ModelStatus, RegistryEvents } from './registry/registry.js';
import type { ShadowEvents, ShadowOutcome } from './shadow.js';

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
/** How far a shadow version's watts are from the answer's: rounding noise up to a different model. */
const SHADOW_ERROR_WATTS = [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100];
/** Status class labels by the status code's first digit. */
const STATUS_CLASSES = ['0xx', '1xx', '2xx', '3xx', '4xx', '5xx'];

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
export class ServiceMetrics implements RegistryEvents, ShadowEvents {
  /** This app's own metrics; text() adds the process-wide ones. */
  readonly registry = new Registry();
  // Updated on every request: lean (src/lean-metrics.ts). The rest are prom-client's.
  readonly #requests: LeanCounter;
  readonly #requestSeconds: LeanHistogram;
  /** Read by its gauge when scraped: a prom-client Gauge hashes its (empty) labels on every change. */
  readonly #inFlight = { count: 0 };
  readonly #inferenceSeconds: LeanHistogram;
  readonly #podsPerRequest: LeanHistogram;
  readonly #pods: LeanCounter;
  readonly #watts: LeanHistogram;
  readonly #loadSeconds: Histogram<'backend'>;
  readonly #loadFailures: Counter<'reason'>;
  readonly #predictionFailures: Counter<'model' | 'version'>;
  readonly #swaps: Counter<'model'>;
  readonly #adminActions: Counter<'action' | 'outcome'>;
  readonly #authFailures: Counter<'reason'>;
  readonly #shadowErrors: LeanHistogram;
  readonly #shadowed: Counter<'model' | 'label' | 'outcome'>;

  constructor(models: () => readonly ModelStatus[]) {
    const registers = [this.registry];
    this.#requests = new LeanCounter(
      'wattserve_http_requests_total',
      'HTTP requests answered, by route pattern, model and version that answered, and status class',
      ['route', 'model', 'version', 'status'],
      this.registry,
    );
    this.#requestSeconds = new LeanHistogram(
      'wattserve_http_request_duration_seconds',
      'Time from request to answer, by route pattern and model',
      ['route', 'model'],
      REQUEST_SECONDS,
      this.registry,
    );
    const inFlight = this.#inFlight;
    new Gauge({
      name: 'wattserve_http_requests_in_flight',
      help: 'HTTP requests being served now',
      registers,
      collect() {
        this.set(inFlight.count);
      },
    });
    this.#inferenceSeconds = new LeanHistogram(
      'wattserve_inference_duration_seconds',
      'Time from handing a request to the model to its answer (with batching, the batch wait and the whole batched call), by model, version and backend',
      ['model', 'version', 'backend'],
      INFERENCE_SECONDS,
      this.registry,
    );
    this.#podsPerRequest = new LeanHistogram(
      'wattserve_request_pods',
      'Rows (pods) per prediction request, by model',
      ['model'],
      PODS,
      this.registry,
    );
    this.#pods = new LeanCounter(
      'wattserve_pods_predicted_total',
      'Rows (pods) predicted, by model',
      ['model'],
      this.registry,
    );
    this.#watts = new LeanHistogram(
      'wattserve_predicted_power_watts',
      'Predicted power per pod, by model and output (a Kepler model has one per component)',
      ['model', 'output'],
      WATTS,
      this.registry,
    );
    this.#shadowErrors = new LeanHistogram(
      'wattserve_shadow_absolute_error_watts',
      "Absolute difference between a shadow version's watts and the answer's, per pod and shared output, by model and shadow label",
      ['model', 'label'],
      SHADOW_ERROR_WATTS,
      this.registry,
    );
    this.#shadowed = new Counter({
      name: 'wattserve_shadow_predictions_total',
      help: 'Copies of requests sent to a shadow label, by model, label and outcome (compared, failed, timeout, skipped, incomparable)',
      labelNames: ['model', 'label', 'outcome'],
      registers,
    });
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
    const inFlight = this.#inFlight;
    inFlight.count++;
    return () => {
      inFlight.count--;
    };
  }

  requestAnswered({ route, model, version, statusCode, seconds }: RequestLabels): void {
    this.#requests.inc([route, model, version, STATUS_CLASSES[Math.floor(statusCode / 100)] ?? 'other']);
    this.#requestSeconds.observe([route, model], seconds);
  }

  /** A request whose client went away before the answer was written (a Kepler timeout, say). */
  requestAbandoned({ route, model, version }: Omit<RequestLabels, 'statusCode' | 'seconds'>): void {
    this.#requests.inc([route, model, version, 'aborted']);
  }

  /** A prediction that succeeded: how long the model took, how many pods, what watts. */
  predicted(model: ModelVersion, seconds: number, result: Matrix): void {
    const name = model.name;
    this.#inferenceSeconds.observe([name, model.version, model.backend], seconds);
    this.#podsPerRequest.observe([name], result.rows);
    this.#pods.inc([name], result.rows);
    observePods(this.#watts, name, model.outputs, result);
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

  shadowed(model: string, label: string, outcome: ShadowOutcome, errors?: Float64Array): void {
    this.#shadowed.inc({ model, label, outcome });
    if (errors === undefined) return;
    const labels = [model, label];
    for (const error of errors) this.#shadowErrors.observe(labels, error);
  }

  adminAction(action: string, outcome: string): void {
    this.#adminActions.inc({ action, outcome });
  }

  authFailed(reason: AuthFailure): void {
    this.#authFailures.inc({ reason });
  }
}

/**
 * One observation per pod and output into wattserve_predicted_power_watts: the bucket found in a
 * plain loop, the series looked up once per output (a 100-pod request observes 100 values).
 */
function observePods(watts: LeanHistogram, model: string, outputs: readonly string[], result: Matrix): void {
  const { data, rows, cols } = result;
  for (const [column, output] of outputs.entries()) {
    const series = watts.series([model, output]);
    const { counts } = series;
    let sum = 0;
    for (let row = 0; row < rows; row++) {
      // A negative prediction counts as 0 W: a histogram's _sum must never go down.
      const value = Math.max(0, data[row * cols + column] as number);
      const bucket = watts.bucketOf(value);
      counts[bucket] = (counts[bucket] as number) + 1;
      sum += value;
    }
    series.sum += sum;
    series.count += rows;
  }
}
