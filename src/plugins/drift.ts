import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Config } from '../config.js';
import { DriftMonitor, type VersionDrift } from '../drift.js';
import type { ModelVersion } from '../registry/loader.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Input drift and raw prediction counts per loaded model version (src/drift.ts). */
    drift: DriftMonitor;
  }
}

/**
 * Drift signals: a prediction tap feeds every prediction's input and raw answer to the monitor (a
 * few microseconds for a 100-row request), which the admin API reads (GET
 * /admin/models/:name/drift) and, with metrics on, /metrics exports. Every series is made when
 * Prometheus scrapes, from the versions loaded at that moment and the features they declare: an
 * unloaded version's series are gone from the next scrape, and no label value ever comes from a
 * request.
 */
export default fp<{ config: Pick<Config, 'driftWindowRows'> }>(
  async function driftMonitor(app: FastifyInstance, { config }) {
    const monitor = new DriftMonitor(config.driftWindowRows);
    app.decorate('drift', monitor);
    app.predictionTaps.push({
      predicted(_context, model, input, result) {
        monitor.predicted(model, input, result);
      },
      // The model computed an answer for these rows, though the request was refused (422).
      nonFinite(_context, model, input, result) {
        monitor.predicted(model, input, result);
      },
    });
    if (app.metrics !== undefined) {
      driftMetrics(app.metrics.registry, monitor, () => loadedVersions(app));
    }
  },
  { name: 'drift', dependencies: ['prediction-taps', 'metrics'] },
);

/** Every version loaded now (app.models is decorated by the registry plugin, which may come later). */
function* loadedVersions(app: FastifyInstance): Generator<ModelVersion> {
  for (const snapshot of app.models?.list() ?? []) yield* snapshot.versions.values();
}

/** The drift metrics, in the app's registry. */
export function driftMetrics(registry: Registry, monitor: DriftMonitor, versions: () => Iterable<ModelVersion>): void {
  const registers = [registry];
  /** Each loaded version with its state (none before its first prediction). */
  const each = (
    visit: (version: ModelVersion, labels: { model: string; version: string }, drift?: VersionDrift) => void,
  ) => {
    for (const version of versions()) {
      visit(version, { model: version.name, version: String(version.version) }, monitor.peek(version));
    }
  };
  /** The state of a version with statistics (made, empty, for one that has not predicted yet). */
  const measured = (version: ModelVersion, drift: VersionDrift | undefined) =>
    drift ?? (version.featureStats === undefined ? undefined : monitor.of(version));
  new Counter({
    name: 'wattserve_feature_out_of_range_total',
    help: 'Input values outside the training range (metadata.json feature_stats min and max) since the version loaded, by model, version, feature and side (below, above)',
    labelNames: ['model', 'version', 'feature', 'side'],
    registers,
    collect() {
      this.reset();
      each((version, labels, drift) => {
        const state = measured(version, drift);
        if (state === undefined) return;
        const counts = state.outOfRange();
        state.features.forEach((feature, j) => {
          const { below, above } = counts[j] as { below: number; above: number };
          this.inc({ ...labels, feature, side: 'below' }, below);
          this.inc({ ...labels, feature, side: 'above' }, above);
        });
      });
    },
  });
  new Gauge({
    name: 'wattserve_feature_drift_psi',
    help: 'Population stability index of each input feature over the last DRIFT_WINDOW_ROWS rows against its training deciles (below 0.1 stable, above 0.25 drifted), by model, version and feature',
    labelNames: ['model', 'version', 'feature'],
    registers,
    collect() {
      this.reset();
      each((_version, labels, drift) => {
        if (drift === undefined) return;
        const psis = drift.psi();
        drift.features.forEach((feature, j) => {
          const value = psis[j];
          if (value !== undefined) this.set({ ...labels, feature }, value);
        });
      });
    },
  });
  new Gauge({
    name: 'wattserve_feature_drift_window_rows',
    help: 'Input rows the drift PSI is computed over now (up to DRIFT_WINDOW_ROWS), by model and version',
    labelNames: ['model', 'version'],
    registers,
    collect() {
      this.reset();
      each((version, labels, drift) => {
        const state = measured(version, drift);
        if (state?.hasReference) this.set(labels, state.windowRows);
      });
    },
  });
  new Counter({
    name: 'wattserve_raw_predictions_total',
    help: 'Predicted values (rows × outputs) as the model gave them, before any answer, by model, version and kind (non_negative, negative, non_finite); Kepler models clamp negatives at 0 themselves',
    labelNames: ['model', 'version', 'kind'],
    registers,
    collect() {
      this.reset();
      each((_version, labels, drift) => {
        const counts = drift?.predictionCounts() ?? { values: 0, negative: 0, nonFinite: 0 };
        this.inc({ ...labels, kind: 'non_negative' }, counts.values - counts.negative - counts.nonFinite);
        this.inc({ ...labels, kind: 'negative' }, counts.negative);
        this.inc({ ...labels, kind: 'non_finite' }, counts.nonFinite);
      });
    },
  });
}
