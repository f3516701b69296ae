/**
 * Throughput next to a bare Fastify route (issue 8). The claim: the real server serves within a
 * few percent of a bare Fastify POST route that parses the same body and computes a JS dot product
 * — `/predict` with pod-power-linear ≥ 0.90 of the baseline's req/s with 8 pods, ≥ 0.85 with 100;
 * p99 ≤ 3 ms at 50 connections; RSS after warm-up < 200 MB with the shipped models.
 *
 * In one run it starts two children on 127.0.0.1:
 *   - the real server, as `npm start` runs it (dist/server.js, built first; BENCH_SERVER=source
 *     runs src/server.ts through tsx instead), LOG_LEVEL=warn, the shipped models, every other
 *     setting at its default;
 *   - the baseline (bench/lib/baseline-server.ts): a bare Fastify 5 app, one POST route, default
 *     JSON parser (CSV split on '\n' and ','), a JS dot product per row, `{"predictions": […]}`.
 * Then, per case, it sends one request to each and checks the answer (200, one finite prediction
 * per row), warms both up, and drives them with a loopback load generator (wrk -t1 if on PATH,
 * else autocannon) at BENCH_CONNECTIONS connections for BENCH_SECONDS per round, in alternating
 * rounds (baseline, server, baseline, server, …) so drift and noise hit both alike. Reported: the
 * median over rounds of req/s, p50 and p99, and the median of each round pair's req/s ratio.
 * The server's RSS is read from /proc after the warm-up and after the run. At 50 connections a
 * closed loop queues: mean latency is 50 ÷ req/s (Little's law), whatever the server adds; so the
 * linear-8 case is also run at BENCH_LIGHT_CONNECTIONS (1) for the latency of a request alone.
 *
 * Then three scenarios (ids for BENCH_CASES too):
 *   ping-under-csv        /ping p99 from a thread of its own, one ping every 5 ms, while a 6 MB CSV
 *                         is posted to /invocations BENCH_LARGE_REQUESTS times (claim: < 50 ms);
 *   predict-during-swaps  a server of its own with pod-power-linear also as version 2 and the admin
 *                         API on: the linear-8 case for BENCH_SCENARIO_SECONDS, then as long again
 *                         while versions 2 and 1 are promoted in turn once a second (claim: no
 *                         error, p99 < 2× the calm p99);
 *   capture               two servers of their own, capture off and on (CAPTURE_SAMPLE=BENCH_CAPTURE_SAMPLE,
 *                         1 by default: every request captured, the worst case) into a temporary
 *                         folder: the linear-8 case in alternating rounds (off, on, …), then at
 *                         BENCH_LIGHT_CONNECTIONS, alternating too; reported: on ÷ off req/s, p50 and p99, and the
 *                         records written and dropped (claim: capture adds no measurable latency,
 *                         req/s ≥ 0.95× and light-load p50 ≤ 1.10× of capture off).
 *
 * Cases (each baseline gets the same body bytes, so it parses the same rows × columns):
 *   linear-8     POST /predict {"model":"pod-power-linear","instances": 8 × 8}
 *   linear-100   the same, 100 pods
 *   mlp-100      POST /predict/pod-power-mlp {"instances": 100 × 8}
 *   csv-100      POST /invocations, text/csv 100 × 8, X-Amzn-SageMaker-Target-Model: pod-power-linear,
 *                Accept: application/json (the baseline answers JSON too)
 *   kepler-100   POST /kepler/estimate, 100 pods × the Kepler model's 2 metrics
 *
 * Knobs (environment): BENCH_SECONDS (5), BENCH_ROUNDS (3), BENCH_WARMUP_SECONDS (1),
 * BENCH_CONNECTIONS (50), BENCH_CASES (comma-separated case and scenario ids; all by default),
 * BENCH_LOAD (autocannon: use it even when wrk is there), BENCH_SERVER (source: run src/ through
 * tsx), BENCH_SCENARIO_SECONDS (10), BENCH_LARGE_REQUESTS (10), BENCH_CSV_BYTES (6000000),
 * BENCH_LIGHT_CONNECTIONS (1), BENCH_SERVER_ENV (space-separated NAME=value settings for the
 * server, to measure what one costs: "METRICS_ENABLED=false", "BATCH_MAX_ROWS=0"), BENCH_CPU_PROF
 * (true: the server runs with --cpu-prof, its profile under bench/results/throughput-<stamp>-cpu/),
 * BENCH_CAPTURE_SAMPLE (1: the capture scenario's CAPTURE_SAMPLE).
 *
 * The 2-core machine runs the server, the baseline and the load generator at once; that is why the
 * ratios, not the absolute req/s, are the result, and why wrk runs one thread.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { loopbackRequest } from '../scripts/lib/loopback.js';
import { FEATURES, samplePods, seededRandom } from '../scripts/synthetic-pods.js';
import { LARGE_MODELS, largeRequests, podsCsv, postLarge, startPinger } from './lib/large-csv.js';
import { type LoadGenerator, type LoadResult, loadGenerator } from './lib/load.js';
import { type BenchContext, type Benchmark, runIfMain, setting } from './lib/runner.js';
import { ServerProcess } from './lib/server.js';
import { correctedForOmission, fmt, round, type Summary, summarize } from './lib/stats.js';
import { startSwapping, swapRepository } from './lib/swaps.js';

const NAME = 'throughput';
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BASELINE_ENTRY = fileURLToPath(new URL('./lib/baseline-server.ts', import.meta.url));
const BASELINE_PATH = '/score';
const LINEAR = 'pod-power-linear';
const MLP = 'pod-power-mlp';
const KEPLER_METRICS = ['bpf_cpu_time_ms', 'bpf_page_cache_hit'] as const;
const P99_TARGET_MS = 3;
const RSS_TARGET_MB = 200;
const PING_TARGET_MS = 50;
/** During swaps, p99 may be at most this many times the calm p99. */
const SWAP_P99_FACTOR = 2;
const PING_INTERVAL_MS = 5;
/** What runs after the cases (ids for BENCH_CASES too). */
const SCENARIOS = ['ping-under-csv', 'predict-during-swaps', 'capture'];
/** Capture on next to off: req/s at least this share, light-load p50 at most this many times. */
const CAPTURE_RATIO_TARGET = 0.95;
const CAPTURE_LIGHT_P50_FACTOR = 1.1;
/** Ratio targets of the issue, by case id. */
const RATIO_TARGETS: Record<string, number> = { 'linear-8': 0.9, 'linear-100': 0.85 };

interface Settings {
  seconds: number;
  rounds: number;
  warmupSeconds: number;
  connections: number;
  cases: string[] | undefined;
  cpuProfile: boolean;
  /** CAPTURE_SAMPLE of the capture scenario's server with capture on. */
  captureSample: number;
  /** Run dist/server.js (built first), as `npm start` does; src/server.ts through tsx otherwise. */
  built: boolean;
  scenarioSeconds: number;
  largeRequests: number;
  csvBytes: number;
  /** Connections for the light-load latency row (the linear-8 case, no queueing to speak of). */
  lightConnections: number;
  /** Extra environment for the server, to measure what a setting costs (METRICS_ENABLED=false, say). */
  serverEnv: Record<string, string>;
}

/** BENCH_SERVER_ENV: space-separated NAME=value pairs. */
function serverEnv(raw: string | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of (raw ?? '').split(/\s+/).filter(Boolean)) {
    const match = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(pair);
    if (match === null) throw new Error(`BENCH_SERVER_ENV holds "${pair}", not NAME=value`);
    env[match[1] as string] = match[2] as string;
  }
  return env;
}

function settings(): Settings {
  const cases = process.env.BENCH_CASES?.split(',')
    .map((c) => c.trim())
    .filter((c) => c !== '');
  return {
    seconds: Math.round(setting('BENCH_SECONDS', 5, 1)),
    rounds: Math.round(setting('BENCH_ROUNDS', 3, 1)),
    warmupSeconds: Math.round(setting('BENCH_WARMUP_SECONDS', 1, 1)),
    connections: Math.round(setting('BENCH_CONNECTIONS', 50, 1)),
    cases: cases === undefined || cases.length === 0 ? undefined : cases,
    cpuProfile: process.env.BENCH_CPU_PROF === 'true',
    captureSample: setting('BENCH_CAPTURE_SAMPLE', 1, 0),
    built: process.env.BENCH_SERVER !== 'source',
    scenarioSeconds: Math.round(setting('BENCH_SCENARIO_SECONDS', 10, 2)),
    largeRequests: Math.round(setting('BENCH_LARGE_REQUESTS', 10, 1)),
    csvBytes: Math.round(setting('BENCH_CSV_BYTES', 6_000_000, 1000)),
    lightConnections: Math.round(setting('BENCH_LIGHT_CONNECTIONS', 1, 1)),
    serverEnv: serverEnv(process.env.BENCH_SERVER_ENV),
  };
}

const execFileAsync = promisify(execFile);

/** Builds dist/ (tsc -p tsconfig.build.json), so the server measured is the one `npm start` runs. */
async function build(): Promise<void> {
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  await execFileAsync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: ROOT });
}

// ---------------------------------------------------------------------------------------------
// Cases: bodies from synthetic pods (scripts/synthetic-pods.ts), counters as whole numbers as
// Kepler reports them (CPU time with one decimal)

function podRows(count: number, seed: number): number[][] {
  return samplePods(count, seed).x.map((row) =>
    row.map((value, i) => (i === 0 ? Math.round(value * 10) / 10 : Math.round(value))),
  );
}

interface Case {
  id: string;
  label: string;
  rows: number;
  columns: number;
  path: string;
  headers: Record<string, string>;
  body: Buffer;
  /** What is wrong with the server's answer, or undefined. */
  checkServer(body: unknown): string | undefined;
}

function finiteList(value: unknown, rows: number, what: string): string | undefined {
  if (!Array.isArray(value)) return `${what} is not an array`;
  if (value.length !== rows) return `${what} has ${value.length} values for ${rows} rows`;
  const bad = value.findIndex((v) => typeof v !== 'number' || !Number.isFinite(v));
  return bad === -1 ? undefined : `${what}[${bad}] is ${JSON.stringify(value[bad])}`;
}

function predictAnswer(model: string, rows: number) {
  return (body: unknown): string | undefined => {
    const answer = body as { model?: unknown; predictions?: unknown };
    if (answer.model !== model) return `model is ${JSON.stringify(answer.model)}, not ${model}`;
    return finiteList(answer.predictions, rows, 'predictions');
  };
}

function cases(): Case[] {
  const json = { 'content-type': 'application/json' };
  const pods8 = podRows(8, 8);
  const pods100 = podRows(100, 100);
  const random = seededRandom(4242);
  const keplerValues = pods100.map((row) => [row[0] ?? 0, Math.round(random() * 5000)]);
  const csv = pods100.map((row) => row.join(',')).join('\n');
  const all: Case[] = [
    {
      id: 'linear-8',
      label: `/predict ${LINEAR}, 8 pods`,
      rows: 8,
      columns: FEATURES.length,
      path: '/predict',
      headers: json,
      body: Buffer.from(JSON.stringify({ model: LINEAR, instances: pods8 })),
      checkServer: predictAnswer(LINEAR, 8),
    },
    {
      id: 'linear-100',
      label: `/predict ${LINEAR}, 100 pods`,
      rows: 100,
      columns: FEATURES.length,
      path: '/predict',
      headers: json,
      body: Buffer.from(JSON.stringify({ model: LINEAR, instances: pods100 })),
      checkServer: predictAnswer(LINEAR, 100),
    },
    {
      id: 'mlp-100',
      label: `/predict/${MLP}, 100 pods`,
      rows: 100,
      columns: FEATURES.length,
      path: `/predict/${MLP}`,
      headers: json,
      body: Buffer.from(JSON.stringify({ instances: pods100 })),
      checkServer: predictAnswer(MLP, 100),
    },
    {
      id: 'csv-100',
      label: `/invocations CSV ${LINEAR}, 100 pods`,
      rows: 100,
      columns: FEATURES.length,
      path: '/invocations',
      headers: {
        'content-type': 'text/csv',
        accept: 'application/json',
        'x-amzn-sagemaker-target-model': LINEAR,
      },
      body: Buffer.from(`${csv}\n`),
      checkServer: predictAnswer(LINEAR, 100),
    },
    {
      id: 'kepler-100',
      label: '/kepler/estimate kepler-ec2-rapl-bpfonly, 100 pods',
      rows: 100,
      columns: KEPLER_METRICS.length,
      path: '/kepler/estimate',
      headers: json,
      body: Buffer.from(
        JSON.stringify({
          metrics: KEPLER_METRICS,
          values: keplerValues,
          output_type: 'AbsPower',
          source: 'rapl-sysfs',
          system_features: null,
          system_values: null,
        }),
      ),
      checkServer(body) {
        const answer = body as { powers?: Record<string, unknown>; msg?: unknown };
        if (answer.msg !== '') return `msg is ${JSON.stringify(answer.msg)}`;
        const components = Object.entries(answer.powers ?? {});
        if (components.length === 0) return 'no powers';
        for (const [component, watts] of components) {
          const problem = finiteList(watts, 100, `powers.${component}`);
          if (problem !== undefined) return problem;
        }
        return undefined;
      },
    },
  ];
  return all;
}

function checkBaseline(body: unknown, rows: number): string | undefined {
  return finiteList((body as { predictions?: unknown }).predictions, rows, 'predictions');
}

// ---------------------------------------------------------------------------------------------
// The baseline: a child process, like the server

class BaselineProcess {
  private constructor(
    readonly child: ChildProcess,
    readonly port: number,
  ) {}

  static async start(): Promise<BaselineProcess> {
    const child = spawn(process.execPath, ['--import', 'tsx', BASELINE_ENTRY], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', ...(process.env.HOME !== undefined && { HOME: process.env.HOME }) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const kill = () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    };
    process.on('exit', kill);
    let output = '';
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the baseline did not start within 30 s: ${output}`)), 30_000);
      const take = (chunk: Buffer) => {
        output += chunk.toString('utf8');
        const match = /listening (\d+)/.exec(output);
        if (match !== null) {
          clearTimeout(timer);
          resolve(Number(match[1]));
        }
      };
      child.stdout?.on('data', take);
      child.stderr?.on('data', (chunk: Buffer) => {
        output += chunk.toString('utf8');
      });
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`the baseline exited with code ${code} before listening: ${output}`));
      });
    });
    return new BaselineProcess(child, port);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// Memory

interface Memory {
  rssMb: number | undefined;
  peakRssMb: number | undefined;
  source: string;
}

async function memory(pid: number | undefined, port: number | undefined): Promise<Memory> {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => {
      const value = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1];
      return value === undefined ? undefined : round(Number(value) / 1024, 1);
    };
    return { rssMb: kb('VmRSS'), peakRssMb: kb('VmHWM'), source: '/proc VmRSS' };
  } catch {
    if (port === undefined) return { rssMb: undefined, peakRssMb: undefined, source: 'unavailable' };
    const answer = await loopbackRequest({ port, method: 'GET', path: '/metrics' }).catch(() => undefined);
    const value = /^wattserve_process_resident_memory_bytes ([0-9.eE+-]+)$/m.exec(
      answer?.body.toString('utf8') ?? '',
    )?.[1];
    return {
      rssMb: value === undefined ? undefined : round(Number(value) / 2 ** 20, 1),
      peakRssMb: undefined,
      source: '/metrics',
    };
  }
}

// ---------------------------------------------------------------------------------------------
// Measuring

async function checkAnswer(port: number, target: string, item: Case, server: boolean): Promise<void> {
  const agent = new http.Agent({ keepAlive: false });
  const answer = await loopbackRequest({
    port,
    method: 'POST',
    path: server ? item.path : BASELINE_PATH,
    headers: item.headers,
    body: item.body,
    agent,
  });
  agent.destroy();
  const text = answer.body.toString('utf8');
  let problem: string | undefined;
  if (answer.status !== 200) problem = `status ${answer.status}`;
  else {
    try {
      const body = JSON.parse(text) as unknown;
      problem = server ? item.checkServer(body) : checkBaseline(body, item.rows);
    } catch {
      problem = 'not JSON';
    }
  }
  if (problem !== undefined)
    throw new Error(`${item.id}: ${target}'s answer is wrong (${problem}): ${text.slice(0, 300)}`);
}

function median(values: readonly number[]): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] ?? Number.NaN)
    : ((sorted[middle - 1] ?? Number.NaN) + (sorted[middle] ?? Number.NaN)) / 2;
}

interface Side {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  httpErrors: number;
  socketErrors: number;
}

function mediansOf(results: readonly LoadResult[]): Side {
  return {
    requestsPerSecond: round(median(results.map((r) => r.requestsPerSecond)), 0),
    p50Ms: round(median(results.map((r) => r.p50Ms)), 3),
    p99Ms: round(median(results.map((r) => r.p99Ms)), 3),
    httpErrors: results.reduce((sum, r) => sum + r.httpErrors, 0),
    socketErrors: results.reduce((sum, r) => sum + r.socketErrors, 0),
  };
}

interface CaseResult {
  id: string;
  label: string;
  rows: number;
  columns: number;
  bodyBytes: number;
  server: Side;
  baseline: Side;
  /** Median of the per-round ratios server req/s ÷ baseline req/s (each pair measured back to back). */
  ratio: number;
  ratioOfMedians: number;
  ratioTarget: number | undefined;
  ratioMet: boolean | undefined;
  p99Met: boolean;
  rounds: { baseline: LoadResult; server: LoadResult; ratio: number }[];
}

// ---------------------------------------------------------------------------------------------
// Scenarios: /ping while a large CSV is scored; /predict while versions are promoted

interface PingScenario {
  /** Pings with nothing else going on, then while the large requests run. */
  calm: Summary;
  underCsv: Summary;
  /** underCsv as a pinger that did not wait for each answer would have seen it (coordinated omission). */
  underCsvCorrected: Summary;
  pingErrors: number;
  csvBytes: number;
  csvRows: number;
  largeRequests: number;
  largeFailures: string[];
  largeMs: Summary;
  met: boolean;
}

/**
 * /ping from a thread of its own, one every PING_INTERVAL_MS, first for a few seconds alone, then
 * while the 6 MB CSV is posted to /invocations back to back (alternately to each shipped model).
 * The first large request per model warms up first (it starts the worker thread).
 */
async function pingUnderCsv(port: number, server: ServerProcess, config: Settings): Promise<PingScenario> {
  const { body, rows } = podsCsv(config.csvBytes);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (const model of LARGE_MODELS) {
      const { problem } = await postLarge(server, agent, body, rows, model);
      if (problem !== undefined) throw new Error(`the large CSV was not scored: ${problem}`);
    }
    const stopCalm = await startPinger(port, PING_INTERVAL_MS);
    await new Promise((resolve) => setTimeout(resolve, (config.scenarioSeconds * 1000) / 2));
    const calm = await stopCalm();
    const stop = await startPinger(port, PING_INTERVAL_MS);
    const large = await largeRequests(server, agent, body, rows, config.largeRequests);
    const pings = await stop();
    const underCsv = summarize(pings.latencies);
    // Answers other than 200, socket errors (status 'error') included.
    const pingErrors = Object.entries(pings.statuses)
      .filter(([status]) => status !== '200')
      .reduce((sum, [, count]) => sum + count, 0);
    return {
      calm: summarize(calm.latencies),
      underCsv,
      underCsvCorrected: summarize(correctedForOmission(pings.latencies, PING_INTERVAL_MS)),
      pingErrors,
      csvBytes: body.byteLength,
      csvRows: rows,
      largeRequests: large.count,
      largeFailures: large.failures,
      largeMs: summarize(large.ms),
      met: underCsv.p99 < PING_TARGET_MS && pingErrors === 0 && large.failures.length === 0,
    };
  } finally {
    agent.destroy();
  }
}

interface SwapScenario {
  calm: LoadResult;
  swapping: LoadResult;
  swaps: number;
  swapFailures: string[];
  met: boolean;
}

/**
 * A server of its own (the shipped models, pod-power-linear also as version 2, the admin API on),
 * driven like the linear-8 case for BENCH_SCENARIO_SECONDS without swaps, then as long again while
 * versions 2 and 1 are promoted in turn once a second.
 */
async function predictDuringSwaps(load: LoadGenerator, item: Case, config: Settings): Promise<SwapScenario> {
  const setup = await swapRepository(LINEAR);
  let server: ServerProcess | undefined;
  try {
    server = await ServerProcess.start({ env: { ...config.serverEnv, ...setup.env }, built: config.built });
    const target = { port: server.port, path: item.path, headers: item.headers, body: item.body };
    await checkAnswer(server.port, 'the swapping server', item, true);
    await load.run(target, config.connections, config.warmupSeconds);
    const calm = await load.run(target, config.connections, config.scenarioSeconds);
    const stop = startSwapping(server.port, setup.token, LINEAR, 1000);
    const swapping = await load.run(target, config.connections, config.scenarioSeconds);
    const swaps = await stop();
    const errors = swapping.httpErrors + swapping.socketErrors;
    return {
      calm,
      swapping,
      swaps: swaps.done,
      swapFailures: swaps.failures,
      met:
        swaps.done > 0 && errors === 0 && swaps.failures.length === 0 && swapping.p99Ms < SWAP_P99_FACTOR * calm.p99Ms,
    };
  } finally {
    await server?.stop();
    await setup.remove();
  }
}

interface CaptureScenario {
  off: Side;
  on: Side;
  /** Medians of each round pair's on ÷ off. */
  ratios: { requestsPerSecond: number; p50: number; p99: number };
  /** Medians of the light-load rounds, also alternating. */
  light: { off: Side; on: Side };
  rounds: { off: LoadResult; on: LoadResult }[];
  lightRounds: { off: LoadResult; on: LoadResult }[];
  /** The capturing server's wattserve_capture_records_total and _dropped_total (all reasons). */
  written: number;
  dropped: number;
  met: boolean;
}

/**
 * Two servers of their own, alike but for capture (off; CAPTURE_SAMPLE=1 into a temporary folder),
 * driven with the linear-8 case in alternating rounds, then at light load.
 */
async function captureScenario(load: LoadGenerator, item: Case, config: Settings): Promise<CaptureScenario> {
  const dir = await mkdtemp(path.join(tmpdir(), 'wattserve-bench-capture-'));
  const servers: ServerProcess[] = [];
  try {
    const start = async (env: Record<string, string>) => {
      const server = await ServerProcess.start({ env: { ...config.serverEnv, ...env }, built: config.built });
      servers.push(server);
      await checkAnswer(server.port, 'the capture scenario’s server', item, true);
      return { port: server.port, path: item.path, headers: item.headers, body: item.body };
    };
    const off = await start({});
    const on = await start({ CAPTURE_DIR: dir, CAPTURE_SAMPLE: String(config.captureSample) });
    await load.run(off, config.connections, config.warmupSeconds);
    await load.run(on, config.connections, config.warmupSeconds);
    const alternating = async (connections: number) => {
      const rounds: CaptureScenario['rounds'] = [];
      for (let r = 0; r < config.rounds; r++) {
        rounds.push({
          off: await load.run(off, connections, config.seconds),
          on: await load.run(on, connections, config.seconds),
        });
      }
      return rounds;
    };
    const rounds = await alternating(config.connections);
    const lightRounds = await alternating(config.lightConnections);
    const light = {
      off: mediansOf(lightRounds.map((r) => r.off)),
      on: mediansOf(lightRounds.map((r) => r.on)),
    };
    const metrics = (await (servers[1] as ServerProcess).request('GET', '/metrics')).body.toString('utf8');
    const total = (name: string) =>
      [...metrics.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))].reduce(
        (sum, m) => sum + Number(m[1]),
        0,
      );
    const ratio = (pick: (r: LoadResult) => number) => round(median(rounds.map((r) => pick(r.on) / pick(r.off))), 3);
    const ratios = {
      requestsPerSecond: ratio((r) => r.requestsPerSecond),
      p50: ratio((r) => r.p50Ms),
      p99: ratio((r) => r.p99Ms),
    };
    const written = total('wattserve_capture_records_total');
    return {
      off: mediansOf(rounds.map((r) => r.off)),
      on: mediansOf(rounds.map((r) => r.on)),
      ratios,
      light,
      rounds,
      lightRounds,
      written,
      dropped: total('wattserve_capture_dropped_total'),
      met:
        written > 0 &&
        ratios.requestsPerSecond >= CAPTURE_RATIO_TARGET &&
        light.on.p50Ms <= CAPTURE_LIGHT_P50_FACTOR * light.off.p50Ms,
    };
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
    await rm(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// The benchmark

async function run(context: BenchContext): Promise<Record<string, unknown>> {
  const { out } = context;
  const config = settings();
  const wanted = (id: string) => config.cases === undefined || config.cases.includes(id);
  const selected = cases().filter((c) => wanted(c.id));
  const scenarios = SCENARIOS.filter(wanted);
  if (selected.length === 0 && scenarios.length === 0) {
    throw new Error(`BENCH_CASES matches no case (${[...cases().map((c) => c.id), ...SCENARIOS]})`);
  }
  const load = await loadGenerator();
  out(
    `load: ${load.name}, ${config.connections} connections, keep-alive; ${config.rounds} rounds of ${config.seconds} s ` +
      `per side and case, alternating baseline/server, after ${config.warmupSeconds} s warm-up each`,
  );
  out(
    `baseline: bare Fastify 5 (bench/lib/baseline-server.ts), POST ${BASELINE_PATH}, default JSON parser ` +
      "(CSV: split on '\\n' and ',', Number per cell), JS dot product per row, same body bytes as the server's case",
  );
  out(
    `server: ${config.built ? 'dist/server.js (built now)' : 'src/server.ts (tsx)'}, LOG_LEVEL=warn, shipped models, ` +
      `${Object.keys(config.serverEnv).length === 0 ? 'other settings at their defaults' : `BENCH_SERVER_ENV ${JSON.stringify(config.serverEnv)}`}; ` +
      'server, baseline and load generator share this machine',
  );
  if (config.built) await build();

  const profileDir = path.join(context.resultsDir, `${NAME}-${context.stamp}-cpu`);
  const nodeFlags = config.cpuProfile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
  const [started, baselineStarted] = await Promise.allSettled([
    ServerProcess.start({ env: config.serverEnv, nodeFlags, built: config.built }),
    BaselineProcess.start(),
  ]);
  if (started.status === 'rejected' || baselineStarted.status === 'rejected') {
    // The one that started would otherwise outlive this benchmark and load the next.
    if (started.status === 'fulfilled') await started.value.stop();
    if (baselineStarted.status === 'fulfilled') await baselineStarted.value.stop();
    throw started.status === 'rejected' ? started.reason : (baselineStarted as PromiseRejectedResult).reason;
  }
  const server = started.value;
  const baseline = baselineStarted.value;
  const results: CaseResult[] = [];
  let rssAfterWarmup: Memory | undefined;
  let rssAfterRun: Memory | undefined;
  let baselineRss: Memory | undefined;
  let rssAfterPing: Memory | undefined;
  let light: { baseline: LoadResult; server: LoadResult } | undefined;
  let ping: PingScenario | undefined;
  let swaps: SwapScenario | undefined;
  let capture: CaptureScenario | undefined;
  try {
    for (const item of selected) {
      await checkAnswer(server.port, 'the server', item, true);
      await checkAnswer(baseline.port, 'the baseline', item, false);
    }
    const target = (item: Case, isServer: boolean) => ({
      port: isServer ? server.port : baseline.port,
      path: isServer ? item.path : BASELINE_PATH,
      headers: item.headers,
      body: item.body,
    });
    for (const item of selected) {
      await load.run(target(item, false), config.connections, config.warmupSeconds);
      await load.run(target(item, true), config.connections, config.warmupSeconds);
    }
    rssAfterWarmup = await memory(server.child.pid, server.port);
    out(
      `server RSS after warm-up: ${fmt(rssAfterWarmup.rssMb)} MB (${rssAfterWarmup.source}; target < ${RSS_TARGET_MB} MB)`,
    );
    out();

    for (const item of selected) {
      const rounds: CaseResult['rounds'] = [];
      for (let r = 0; r < config.rounds; r++) {
        const b = await load.run(target(item, false), config.connections, config.seconds);
        const s = await load.run(target(item, true), config.connections, config.seconds);
        rounds.push({ baseline: b, server: s, ratio: round(s.requestsPerSecond / b.requestsPerSecond, 3) });
        if (server.exit !== undefined) throw new Error(`the server ${server.exit}:\n${server.log.tail}`);
      }
      await checkAnswer(server.port, 'the server', item, true);
      const serverSide = mediansOf(rounds.map((r) => r.server));
      const baselineSide = mediansOf(rounds.map((r) => r.baseline));
      const ratioTarget = RATIO_TARGETS[item.id];
      const ratio = round(median(rounds.map((r) => r.ratio)), 3);
      results.push({
        id: item.id,
        label: item.label,
        rows: item.rows,
        columns: item.columns,
        bodyBytes: item.body.byteLength,
        server: serverSide,
        baseline: baselineSide,
        ratio,
        ratioOfMedians: round(serverSide.requestsPerSecond / baselineSide.requestsPerSecond, 3),
        ratioTarget,
        ratioMet: ratioTarget === undefined ? undefined : ratio >= ratioTarget,
        p99Met: serverSide.p99Ms <= P99_TARGET_MS,
        rounds,
      });
      out(
        `  ${item.id}: rounds server/baseline req/s ${rounds
          .map((r) => `${fmt(r.server.requestsPerSecond, 0)}/${fmt(r.baseline.requestsPerSecond, 0)}`)
          .join(', ')}`,
      );
    }
    const linear8 = selected.find((c) => c.id === 'linear-8');
    if (linear8 !== undefined) {
      light = {
        baseline: await load.run(target(linear8, false), config.lightConnections, config.seconds),
        server: await load.run(target(linear8, true), config.lightConnections, config.seconds),
      };
    }
    rssAfterRun = await memory(server.child.pid, server.port);
    baselineRss = await memory(baseline.child.pid, undefined);
    await baseline.stop();
    if (scenarios.includes('ping-under-csv')) {
      out(`/ping while a ${fmt(config.csvBytes / 1e6)} MB CSV is scored…`);
      ping = await pingUnderCsv(server.port, server, config);
      rssAfterPing = await memory(server.child.pid, server.port);
    }
    await server.stop();
    if (scenarios.includes('predict-during-swaps')) {
      out('/predict while versions are promoted once a second (a server of its own)…');
      const linear8 = cases().find((c) => c.id === 'linear-8') as Case;
      swaps = await predictDuringSwaps(load, linear8, config);
    }
    if (scenarios.includes('capture')) {
      out(`/predict with capture off and CAPTURE_SAMPLE=${config.captureSample} (two servers of their own)…`);
      capture = await captureScenario(load, cases().find((c) => c.id === 'linear-8') as Case, config);
    }
  } finally {
    await load.close();
    await Promise.all([server.stop(), baseline.stop()]);
  }

  out();
  const header = [
    'case'.padEnd(50),
    'rows×cols'.padStart(9),
    'srv req/s'.padStart(10),
    'base req/s'.padStart(10),
    'ratio'.padStart(6),
    'target'.padStart(12),
    'srv p50'.padStart(8),
    'srv p99'.padStart(8),
    'p99≤3ms'.padStart(8),
    'base p50'.padStart(9),
    'base p99'.padStart(9),
    'errors srv'.padStart(11),
    'errors base'.padStart(12),
  ];
  out(header.join(' '));
  for (const r of results) {
    const target = r.ratioTarget === undefined ? '—' : `≥${r.ratioTarget.toFixed(2)} ${r.ratioMet ? 'met' : 'MISSED'}`;
    const errors = (side: Side) => `${side.httpErrors}/${side.socketErrors}`;
    out(
      [
        r.label.padEnd(50),
        `${r.rows}×${r.columns}`.padStart(9),
        fmt(r.server.requestsPerSecond, 0).padStart(10),
        fmt(r.baseline.requestsPerSecond, 0).padStart(10),
        fmt(r.ratio, 2).padStart(6),
        target.padStart(12),
        fmt(r.server.p50Ms, 2).padStart(8),
        fmt(r.server.p99Ms, 2).padStart(8),
        (r.p99Met ? 'met' : 'MISSED').padStart(8),
        fmt(r.baseline.p50Ms, 2).padStart(9),
        fmt(r.baseline.p99Ms, 2).padStart(9),
        errors(r.server).padStart(11),
        errors(r.baseline).padStart(12),
      ].join(' '),
    );
  }
  out(
    `  medians of ${config.rounds} rounds; ratio: median of each round pair's server ÷ baseline req/s; latency in ms ` +
      `at ${config.connections} connections (closed loop, from ${load.name.split(' ')[0]}); errors: HTTP errors/socket errors ` +
      '(connect, read, write, timeout), summed over rounds',
  );
  const rssMet = rssAfterWarmup?.rssMb !== undefined && rssAfterWarmup.rssMb < RSS_TARGET_MB;
  out(
    `server RSS: after warm-up ${fmt(rssAfterWarmup?.rssMb)} MB (${rssMet ? 'met' : 'MISSED'}: < ${RSS_TARGET_MB} MB), ` +
      `after the run ${fmt(rssAfterRun?.rssMb)} MB, peak ${fmt(rssAfterRun?.peakRssMb)} MB; ` +
      `baseline after the run ${fmt(baselineRss?.rssMb)} MB`,
  );
  if (light !== undefined) {
    out(
      `light load (linear-8 at ${config.lightConnections} connection${config.lightConnections === 1 ? '' : 's'}, no ` +
        `queueing): server p50 ${fmt(light.server.p50Ms, 2)}, p99 ${fmt(light.server.p99Ms, 2)} ms ` +
        `(${light.server.p99Ms <= P99_TARGET_MS ? 'met' : 'MISSED'}: ≤ ${P99_TARGET_MS} ms), ` +
        `${fmt(light.server.requestsPerSecond, 0)} req/s; baseline p50 ${fmt(light.baseline.p50Ms, 2)}, ` +
        `p99 ${fmt(light.baseline.p99Ms, 2)} ms, ${fmt(light.baseline.requestsPerSecond, 0)} req/s`,
    );
  }
  if (ping !== undefined) {
    out(
      `/ping every ${PING_INTERVAL_MS} ms while a ${fmt(ping.csvBytes / 1e6)} MB CSV (${ping.csvRows} rows) is scored ` +
        `${ping.largeRequests} times (${LARGE_MODELS.join(' / ')}): p50 ${fmt(ping.underCsv.p50, 2)}, ` +
        `p99 ${fmt(ping.underCsv.p99, 2)}, max ${fmt(ping.underCsv.max, 2)} ms over ${ping.underCsv.count} pings ` +
        `(${ping.met ? 'met' : 'MISSED'}: p99 < ${PING_TARGET_MS} ms, no errors); p99 corrected for coordinated ` +
        `omission ${fmt(ping.underCsvCorrected.p99, 2)} ms; calm p99 ${fmt(ping.calm.p99, 2)} ms; ` +
        `large requests p50 ${fmt(ping.largeMs.p50, 0)} ms, ${ping.largeFailures.length} failed; ` +
        `ping errors ${ping.pingErrors}; server RSS after ${fmt(rssAfterPing?.rssMb)} MB`,
    );
  }
  if (swaps !== undefined) {
    out(
      `/predict ${LINEAR} 8 pods while versions 1 and 2 are promoted in turn once a second (${swaps.swaps} swaps, ` +
        `${swaps.swapFailures.length} failed): ${fmt(swaps.swapping.requestsPerSecond, 0)} req/s, p99 ` +
        `${fmt(swaps.swapping.p99Ms, 2)} ms, errors ${swaps.swapping.httpErrors}/${swaps.swapping.socketErrors}; calm: ` +
        `${fmt(swaps.calm.requestsPerSecond, 0)} req/s, p99 ${fmt(swaps.calm.p99Ms, 2)} ms ` +
        `(${swaps.met ? 'met' : 'MISSED'}: 0 errors, p99 < ${SWAP_P99_FACTOR}× calm)`,
    );
  }
  if (capture !== undefined) {
    const side = (s: Side) => `${fmt(s.requestsPerSecond, 0)} req/s, p50 ${fmt(s.p50Ms, 2)}, p99 ${fmt(s.p99Ms, 2)} ms`;
    const lightSide = (s: Side) => `p50 ${fmt(s.p50Ms, 3)}, p99 ${fmt(s.p99Ms, 3)} ms`;
    out(
      `/predict ${LINEAR} 8 pods, capture on (CAPTURE_SAMPLE=${config.captureSample}) ÷ off: req/s ${fmt(capture.ratios.requestsPerSecond, 3)}, ` +
        `p50 ${fmt(capture.ratios.p50, 3)}, p99 ${fmt(capture.ratios.p99, 3)} (medians of round pairs); ` +
        `on: ${side(capture.on)}; off: ${side(capture.off)}; at ${config.lightConnections} connection(s): ` +
        `on ${lightSide(capture.light.on)}, off ${lightSide(capture.light.off)}; ${capture.written} records written, ` +
        `${capture.dropped} dropped (${capture.met ? 'met' : 'MISSED'}: req/s ≥ ${CAPTURE_RATIO_TARGET}×, ` +
        `light p50 ≤ ${CAPTURE_LIGHT_P50_FACTOR}× of capture off)`,
    );
  }
  const { warnings, errors } = server.log;
  const listed = (counts: Record<string, number>) =>
    Object.entries(counts)
      .map(([msg, n]) => `${msg} ×${n}`)
      .join(', ') || 'none';
  out(`server log: warnings: ${listed(warnings)}; errors: ${listed(errors)}`);
  if (config.cpuProfile) out(`CPU profile: ${path.relative(process.cwd(), profileDir)}/`);

  return {
    settings: { ...config, loadGenerator: load.name },
    targets: {
      ratio: RATIO_TARGETS,
      p99Ms: P99_TARGET_MS,
      rssMb: RSS_TARGET_MB,
      pingP99Ms: PING_TARGET_MS,
      swapP99Factor: SWAP_P99_FACTOR,
      captureRatio: CAPTURE_RATIO_TARGET,
      captureLightP50Factor: CAPTURE_LIGHT_P50_FACTOR,
    },
    cases: results,
    lightLoad: light,
    pingUnderCsv: ping,
    predictDuringSwaps: swaps,
    capture,
    memory: {
      afterWarmup: rssAfterWarmup,
      afterRun: rssAfterRun,
      afterPingUnderCsv: rssAfterPing,
      baselineAfterRun: baselineRss,
      rssMet,
    },
    serverLog: { warnings, errors },
  };
}

const benchmark: Benchmark = {
  name: NAME,
  description:
    'req/s, p50 and p99 of the real server next to a bare Fastify route, same bodies, same run ' +
    '(claims: /predict linear ≥ 0.90 of the baseline with 8 pods, ≥ 0.85 with 100; p99 ≤ 3 ms; RSS < 200 MB)',
  run,
};

export default benchmark;

runIfMain(import.meta.url, benchmark);
