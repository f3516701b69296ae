/**
 * The Grafana dashboard, as code: `npm run dashboard` writes docker/grafana/dashboards/wattserve.json
 * (a test checks the committed file is what this script writes, and that every metric it queries
 * is one wattserve exports). Data source and model are template variables; so are the replicas.
 */
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

export const DASHBOARD_FILE = fileURLToPath(new URL('../docker/grafana/dashboards/wattserve.json', import.meta.url));

/** Series every panel narrows to: the chosen replicas and models (requests refused before a model was chosen have model=""). */
const REPLICAS = 'instance=~"$instance"';
const MODELS = `${REPLICAS}, model=~"$model"`;
const RATE = '[$__rate_interval]';

type Unit = 'reqps' | 'percentunit' | 's' | 'short' | 'watt' | 'bytes' | 'none';

interface Query {
  expr: string;
  legend: string;
  instant?: boolean;
}

interface PanelSpec {
  title: string;
  description: string;
  kind?: 'timeseries' | 'stat' | 'table' | 'heatmap';
  unit: Unit;
  queries: Query[];
  width?: number;
  stacked?: boolean;
  /** Values where the colour turns orange, then red (drawn as lines on a time series). */
  thresholds?: [number, number];
}

const quantiles = (metric: string, by: string, filter: string): Query[] =>
  [0.5, 0.95, 0.99].map((q) => ({
    expr: `histogram_quantile(${q}, sum by (le${by ? `, ${by}` : ''}) (rate(${metric}_bucket{${filter}}${RATE})))`,
    legend: `p${q * 100}${by ? ` {{${by}}}` : ''}`,
  }));

const rows: Array<{ title: string; panels: PanelSpec[] }> = [
  {
    title: 'Traffic',
    panels: [
      {
        title: 'Requests per second',
        description: 'Answered requests by route (Kepler, SageMaker, native) and status class.',
        unit: 'reqps',
        stacked: true,
        queries: [
          {
            expr: `sum by (route, status) (rate(wattserve_http_requests_total{${MODELS}}${RATE}))`,
            legend: '{{route}} {{status}}',
          },
        ],
      },
      {
        title: 'Error ratio',
        description:
          'Share of requests answered 4xx (bad input) and 5xx (server faults), and abandoned by the client. 5xx should stay at 0. Requests refused before a model was chosen count only under Model = All.',
        unit: 'percentunit',
        queries: ['4xx', '5xx', 'aborted'].map((status) => ({
          expr: `(sum(rate(wattserve_http_requests_total{${MODELS}, status="${status}"}${RATE})) or vector(0)) / sum(rate(wattserve_http_requests_total{${MODELS}}${RATE}))`,
          legend: status,
        })),
      },
      {
        title: 'Request latency',
        description: 'From request to answer, as the client sees it behind nginx.',
        unit: 's',
        queries: quantiles('wattserve_http_request_duration_seconds', '', MODELS),
      },
      {
        title: 'In flight',
        description: 'Requests being served right now, per replica.',
        unit: 'short',
        queries: [
          { expr: `sum by (instance) (wattserve_http_requests_in_flight{${REPLICAS}})`, legend: '{{instance}}' },
        ],
      },
    ],
  },
  {
    title: 'Power estimated',
    panels: [
      {
        title: 'Average predicted power per pod',
        description: 'Mean watts the model gives a pod, by model and output (Kepler models: one per component).',
        unit: 'watt',
        queries: [
          {
            expr: `sum by (model, output) (rate(wattserve_predicted_power_watts_sum{${MODELS}}${RATE})) / sum by (model, output) (rate(wattserve_predicted_power_watts_count{${MODELS}}${RATE}))`,
            legend: '{{model}} {{output}}',
          },
        ],
      },
      {
        title: 'Predicted power per pod: distribution',
        description:
          'How pods spread over watts, for the selected models and outputs together (pick one model to see its own). A sudden shift after a swap is worth a look.',
        kind: 'heatmap',
        unit: 'watt',
        queries: [
          {
            expr: `sum by (le) (increase(wattserve_predicted_power_watts_bucket{${MODELS}}[$__interval]))`,
            legend: '{{le}}',
          },
        ],
      },
      {
        title: 'Pods predicted per second',
        description: 'Rows (pods) turned into watts, by model.',
        unit: 'short',
        stacked: true,
        queries: [
          { expr: `sum by (model) (rate(wattserve_pods_predicted_total{${MODELS}}${RATE}))`, legend: '{{model}}' },
        ],
      },
      {
        title: 'Pods per request',
        description: 'Median and 95th percentile of pods in one request: Kepler sends one node’s pods at a time.',
        unit: 'short',
        queries: quantiles('wattserve_request_pods', '', MODELS).filter((q) => !q.legend.startsWith('p99')),
      },
    ],
  },
  {
    title: 'Models',
    panels: [
      {
        title: 'Inference time by backend (p95)',
        description: 'Time the model itself takes per request, without HTTP and parsing.',
        unit: 's',
        queries: quantiles('wattserve_inference_duration_seconds', 'backend', MODELS).filter((q) =>
          q.legend.startsWith('p95'),
        ),
      },
      {
        title: 'Serving version',
        description: 'The version each model answers with when a request names none.',
        kind: 'stat',
        unit: 'none',
        queries: [
          { expr: `max by (model) (wattserve_model_serving_version{${MODELS}})`, legend: '{{model}}', instant: true },
        ],
      },
      {
        title: 'Model versions by state',
        description: 'Every version each replica knows: available, loading, unloading, unloaded or failed.',
        kind: 'table',
        unit: 'none',
        queries: [
          {
            expr: `max by (instance, model, version, state) (wattserve_model_versions{${MODELS}}) == 1`,
            legend: '',
            instant: true,
          },
        ],
      },
      {
        title: 'Swaps, load failures and admin actions',
        description:
          'Serving versions replaced, versions that failed to load (by reason), admin actions and refused tokens.',
        unit: 'short',
        queries: [
          {
            expr: `sum by (model) (increase(wattserve_model_swaps_total{${MODELS}}${RATE}))`,
            legend: 'swap {{model}}',
          },
          {
            expr: `sum by (reason) (increase(wattserve_model_load_failures_total{${REPLICAS}}${RATE}))`,
            legend: 'load failed: {{reason}}',
          },
          {
            expr: `sum by (action, outcome) (increase(wattserve_admin_actions_total{${REPLICAS}}${RATE}))`,
            legend: 'admin {{action}}: {{outcome}}',
          },
          {
            expr: `sum by (reason) (increase(wattserve_admin_auth_failures_total{${REPLICAS}}${RATE}))`,
            legend: 'token refused: {{reason}}',
          },
        ],
      },
      {
        title: 'Model load time (p95)',
        description: 'Loading and checking a version, by backend.',
        unit: 's',
        queries: quantiles('wattserve_model_load_duration_seconds', 'backend', REPLICAS).filter((q) =>
          q.legend.startsWith('p95'),
        ),
      },
    ],
  },
  {
    title: 'Canary and shadow',
    panels: [
      {
        title: 'Requests by answering version',
        description:
          "Requests each model version answered: with a traffic split, the canary's share next to the serving version's.",
        unit: 'reqps',
        stacked: true,
        queries: [
          {
            expr: `sum by (model, version) (rate(wattserve_http_requests_total{${MODELS}, version!=""}${RATE}))`,
            legend: '{{model}} v{{version}}',
          },
        ],
      },
      {
        title: 'Shadow vs answer: absolute error',
        description:
          "How far the shadow label's watts are from the answer's, per pod and output (median, p95, p99). Near 0: the shadow version agrees.",
        unit: 'watt',
        queries: quantiles('wattserve_shadow_absolute_error_watts', 'model, label', MODELS).map((query) => ({
          ...query,
          legend: query.legend.replace('{{model, label}}', '{{model}} {{label}}'),
        })),
      },
      {
        title: 'Shadow copies by outcome',
        description:
          'Copies sent to shadow labels: compared, failed (refused by the shadow version), timeout, skipped (shadow busy), incomparable (no shared output).',
        unit: 'short',
        stacked: true,
        queries: [
          {
            expr: `sum by (model, label, outcome) (rate(wattserve_shadow_predictions_total{${MODELS}}${RATE}))`,
            legend: '{{model}} {{label}}: {{outcome}}',
          },
        ],
      },
    ],
  },
  {
    title: 'Drift',
    panels: [
      {
        title: 'Feature drift (PSI)',
        description:
          'Population stability index of each input feature over the last DRIFT_WINDOW_ROWS rows, against the training deciles in metadata.json (worst version and replica). Below 0.1: stable; 0.1–0.25: moderate; above 0.25: the inputs no longer look like the training data. Models without feature_stats have none.',
        unit: 'none',
        thresholds: [0.1, 0.25],
        queries: [
          {
            expr: `max by (model, feature) (wattserve_feature_drift_psi{${MODELS}})`,
            legend: '{{model}} {{feature}}',
          },
        ],
      },
      {
        title: 'Values outside the training range',
        description:
          'Input values per second below the training minimum or above the maximum, by model, feature and side.',
        unit: 'short',
        queries: [
          {
            expr: `sum by (model, feature, side) (rate(wattserve_feature_out_of_range_total{${MODELS}}${RATE}))`,
            legend: '{{model}} {{feature}} {{side}}',
          },
        ],
      },
      {
        title: 'Negative and non-finite predictions',
        description:
          'Share of predicted values that were negative (answered as they are) or non-finite (refused 422), before any clamping. Kepler models clamp negatives at 0 themselves: only their non-finite values show.',
        unit: 'percentunit',
        queries: ['negative', 'non_finite'].map((kind) => ({
          expr: `sum by (model) (rate(wattserve_raw_predictions_total{${MODELS}, kind="${kind}"}${RATE})) / sum by (model) (rate(wattserve_raw_predictions_total{${MODELS}}${RATE}))`,
          legend: `${kind} {{model}}`,
        })),
      },
      {
        title: 'Drift window',
        description:
          'Rows the PSI is computed over now, by model version (up to DRIFT_WINDOW_ROWS): a PSI over a few rows is noise.',
        unit: 'short',
        queries: [
          {
            expr: `min by (model, version) (wattserve_feature_drift_window_rows{${MODELS}})`,
            legend: '{{model}} v{{version}}',
          },
        ],
      },
    ],
  },
  {
    title: 'Runtime',
    panels: [
      {
        title: 'Event-loop lag (p99)',
        description: 'Inference runs on the event loop: lag here is latency for every request.',
        unit: 's',
        queries: [
          {
            expr: `max by (instance) (wattserve_nodejs_eventloop_lag_p99_seconds{${REPLICAS}})`,
            legend: '{{instance}}',
          },
        ],
      },
      {
        title: 'Memory',
        description: 'Resident memory and JavaScript heap in use, per replica.',
        unit: 'bytes',
        queries: [
          {
            expr: `sum by (instance) (wattserve_process_resident_memory_bytes{${REPLICAS}})`,
            legend: 'rss {{instance}}',
          },
          {
            expr: `sum by (instance) (wattserve_nodejs_heap_size_used_bytes{${REPLICAS}})`,
            legend: 'heap {{instance}}',
          },
        ],
      },
      {
        title: 'CPU and garbage collection',
        description: 'CPU seconds per second, and the share of time spent collecting garbage.',
        unit: 'percentunit',
        queries: [
          {
            expr: `sum by (instance) (rate(wattserve_process_cpu_seconds_total{${REPLICAS}}${RATE}))`,
            legend: 'cpu {{instance}}',
          },
          {
            expr: `sum by (instance) (rate(wattserve_nodejs_gc_duration_seconds_sum{${REPLICAS}}${RATE}))`,
            legend: 'gc {{instance}}',
          },
        ],
      },
    ],
  },
];

// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, not a JavaScript template.
const DATASOURCE = { type: 'prometheus', uid: '${datasource}' };

function panel(spec: PanelSpec, id: number, x: number, y: number, width: number) {
  const kind = spec.kind ?? 'timeseries';
  return {
    id,
    type: kind,
    title: spec.title,
    description: spec.description,
    datasource: DATASOURCE,
    gridPos: { x, y, w: width, h: 8 },
    targets: spec.queries.map((query, index) => ({
      refId: String.fromCharCode(65 + index),
      datasource: DATASOURCE,
      expr: query.expr,
      legendFormat: query.legend,
      ...(query.instant ? { instant: true, range: false, format: kind === 'table' ? 'table' : 'time_series' } : {}),
      ...(kind === 'heatmap' ? { format: 'heatmap' } : {}),
    })),
    fieldConfig: {
      defaults: {
        unit: spec.unit,
        ...(kind === 'timeseries' && {
          custom: {
            fillOpacity: spec.stacked ? 30 : 10,
            stacking: { mode: spec.stacked ? 'normal' : 'none' },
            ...(spec.thresholds && { thresholdsStyle: { mode: 'line' } }),
          },
        }),
        ...(spec.thresholds && {
          thresholds: {
            mode: 'absolute',
            steps: [
              { color: 'green', value: null },
              { color: 'orange', value: spec.thresholds[0] },
              { color: 'red', value: spec.thresholds[1] },
            ],
          },
        }),
      },
      overrides: [],
    },
    options:
      kind === 'table'
        ? { showHeader: true, sortBy: [{ displayName: 'model' }] }
        : kind === 'heatmap'
          ? { calculate: false, yAxis: { unit: spec.unit } }
          : kind === 'stat'
            ? { reduceOptions: { calcs: ['lastNotNull'] }, colorMode: 'value', graphMode: 'none' }
            : { legend: { displayMode: 'list', placement: 'bottom' }, tooltip: { mode: 'multi' } },
    ...(kind === 'table' && {
      transformations: [{ id: 'organize', options: { excludeByName: { Time: true, Value: true } } }],
    }),
  };
}

export function dashboard() {
  const panels: unknown[] = [];
  let id = 1;
  let y = 0;
  for (const row of rows) {
    panels.push({
      id: id++,
      type: 'row',
      title: row.title,
      collapsed: false,
      gridPos: { x: 0, y, w: 24, h: 1 },
      panels: [],
    });
    y += 1;
    const width = 24 / Math.min(row.panels.length, 4);
    row.panels.forEach((spec, index) => {
      const column = index % 4;
      if (index > 0 && column === 0) y += 8;
      panels.push(panel(spec, id++, column * width, y, spec.width ?? width));
    });
    y += 8;
  }
  const variable = (name: string, label: string, query: string) => ({
    name,
    label,
    type: 'query',
    datasource: DATASOURCE,
    query: { query, refId: name },
    definition: query,
    refresh: 2,
    multi: true,
    includeAll: true,
    allValue: '.*',
    current: { selected: true, text: ['All'], value: ['$__all'] },
    sort: 1,
  });
  return {
    uid: 'wattserve',
    title: 'wattserve: pod power model serving',
    description: 'Traffic, latency, errors, predicted power, model versions and runtime of wattserve.',
    tags: ['wattserve', 'kepler', 'power'],
    timezone: 'browser',
    editable: true,
    graphTooltip: 1,
    refresh: '30s',
    schemaVersion: 39,
    version: 1,
    time: { from: 'now-1h', to: 'now' },
    templating: {
      list: [
        {
          name: 'datasource',
          label: 'Data source',
          type: 'datasource',
          query: 'prometheus',
          current: { text: 'Prometheus', value: 'prometheus' },
        },
        variable('instance', 'Replica', 'label_values(wattserve_http_requests_in_flight, instance)'),
        variable('model', 'Model', 'label_values(wattserve_model_versions, model)'),
      ],
    },
    annotations: { list: [] },
    panels,
  };
}

export function dashboardJson(): string {
  return `${JSON.stringify(dashboard(), null, 2)}\n`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await writeFile(DASHBOARD_FILE, dashboardJson());
  console.log(`wrote ${DASHBOARD_FILE}`);
}
