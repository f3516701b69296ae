import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { DASHBOARD_FILE, dashboardJson } from '../../scripts/make-dashboard.js';
import { LINEAR, PODS, startApp } from '../helpers.js';
import { declaredNames } from '../metrics-scrape.js';

const PROMTOOL = '/usr/bin/promtool';
const PROMETHEUS = fileURLToPath(new URL('../../docker/prometheus/', import.meta.url));
const withPromtool = it.skipIf(!existsSync(PROMTOOL) && process.env.CI === undefined);

/** Every metric name a PromQL expression mentions (wattserve's all start with its prefix). */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\bwattserve_\w+/g)].map(([name]) => name);
}

describe('the Grafana dashboard', () => {
  it('is what `npm run dashboard` writes (edit the script, not the JSON)', async () => {
    expect(await readFile(DASHBOARD_FILE, 'utf8')).toBe(dashboardJson());
  });

  it('queries only metrics wattserve exports', async () => {
    const app = await startApp();
    await request(app.server).post(`/predict/${LINEAR}`).send({ instances: PODS }).expect(200);
    const exported = declaredNames((await app.inject({ method: 'GET', url: '/metrics' })).body);
    const dashboard = JSON.parse(await readFile(DASHBOARD_FILE, 'utf8'));
    const panels = dashboard.panels as Array<{ targets?: Array<{ expr: string }> }>;
    const queried = panels.flatMap((panel) => panel.targets ?? []).flatMap((target) => metricNames(target.expr));
    const variables = (dashboard.templating.list as Array<{ definition?: string }>).flatMap((v) =>
      metricNames(v.definition ?? ''),
    );
    expect(queried.length).toBeGreaterThan(15);
    expect([...new Set([...queried, ...variables])].filter((name) => !exported.has(name))).toEqual([]);
  });

  it('shows what an operator watches: traffic, errors, latency, power, model states, runtime', async () => {
    const dashboard = JSON.parse(await readFile(DASHBOARD_FILE, 'utf8'));
    const exprs = (dashboard.panels as Array<{ targets?: Array<{ expr: string }> }>)
      .flatMap((panel) => panel.targets ?? [])
      .map((target) => target.expr)
      .join('\n');
    for (const needed of [
      'wattserve_http_requests_total',
      'status="5xx"',
      'histogram_quantile(0.99, sum by (le) (rate(wattserve_http_request_duration_seconds_bucket',
      'wattserve_inference_duration_seconds_bucket',
      'wattserve_request_pods_bucket',
      'wattserve_predicted_power_watts',
      'wattserve_model_versions',
      'wattserve_model_swaps_total',
      'wattserve_nodejs_eventloop_lag_p99_seconds',
      'wattserve_process_resident_memory_bytes',
    ]) {
      expect(exprs).toContain(needed);
    }
    const variables = (dashboard.templating.list as Array<{ name: string; type: string }>).map((v) => [v.name, v.type]);
    expect(variables).toEqual(
      expect.arrayContaining([
        ['datasource', 'datasource'],
        ['model', 'query'],
      ]),
    );
  });
});

describe('the Prometheus configuration', () => {
  withPromtool('passes `promtool check config`, alert rules included', async () => {
    const { stdout } = await promisify(execFile)(PROMTOOL, ['check', 'config', `${PROMETHEUS}prometheus.yml`]);
    expect(stdout).toMatch(/SUCCESS: 1 rule files found/);
  });

  it('alerts only on metrics wattserve exports', async () => {
    const app = await startApp();
    const exported = declaredNames((await app.inject({ method: 'GET', url: '/metrics' })).body);
    const alerts = await readFile(`${PROMETHEUS}alerts.yml`, 'utf8');
    expect(metricNames(alerts).filter((name) => !exported.has(name))).toEqual([]);
  });
});
