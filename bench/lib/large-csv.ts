/**
 * What the /ping-while-scoring measurements share (bench/ping-during-large-request.ts and the
 * throughput benchmark's ping row): a large CSV body of synthetic pods, a pinger in a thread of its
 * own, and a loop posting the large body to /invocations, alternately to each shipped model.
 */
import type http from 'node:http';
import { Worker } from 'node:worker_threads';
import { loopbackRequest } from '../../scripts/lib/loopback.js';
import { samplePods } from '../../scripts/synthetic-pods.js';
import type { ServerProcess } from './server.js';

/** The models the large requests go to, in turn. */
export const LARGE_MODELS = ['pod-power-linear', 'pod-power-mlp'] as const;

// ---------------------------------------------------------------------------------------------
// The body: synthetic pods (scripts/synthetic-pods.ts), counters as whole numbers as Kepler reports them

export function podsCsv(targetBytes: number): { body: Buffer; rows: number } {
  const lines: string[] = [];
  let bytes = 0;
  for (let seed = 1; bytes < targetBytes; seed++) {
    for (const row of samplePods(10_000, seed).x) {
      const line = `${row.map((value, i) => (i === 0 ? value.toFixed(1) : String(Math.round(value)))).join(',')}\n`;
      if (bytes + line.length > targetBytes) {
        bytes = targetBytes;
        break;
      }
      lines.push(line);
      bytes += line.length;
    }
  }
  return { body: Buffer.from(lines.join('')), rows: lines.length };
}

// ---------------------------------------------------------------------------------------------
// The pinger: a thread of its own, so that sending and reading the large bodies here never delays
// a ping or its timing. Plain JavaScript (a worker does not inherit tsx's loader).

const PINGER = `
const http = require('node:http');
const { parentPort, workerData } = require('node:worker_threads');
const { port, intervalMs } = workerData;
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
let running = true;
const latencies = [];
const statuses = {};
let errors = 0;
parentPort.on('message', (message) => { if (message === 'stop') running = false; });
const ping = () => new Promise((resolve) => {
  const started = performance.now();
  const request = http.get({ host: '127.0.0.1', port, path: '/ping', agent, timeout: 30000 }, (response) => {
    response.resume();
    response.on('end', () => resolve({ ms: performance.now() - started, status: response.statusCode }));
    response.on('error', () => resolve({ ms: performance.now() - started, status: 'error' }));
  });
  request.on('timeout', () => request.destroy(new Error('timeout')));
  request.on('error', () => resolve({ ms: performance.now() - started, status: 'error' }));
});
(async () => {
  parentPort.postMessage({ kind: 'started' });
  while (running) {
    const started = performance.now();
    const { ms, status } = await ping();
    latencies.push(ms);
    statuses[status] = (statuses[status] ?? 0) + 1;
    if (status === 'error') errors++;
    const wait = intervalMs - (performance.now() - started);
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }
  agent.destroy();
  parentPort.postMessage({ kind: 'done', latencies, statuses, errors });
})();
`;

export interface Pings {
  latencies: number[];
  statuses: Record<string, number>;
  errors: number;
}

/** Starts pinging; the function returned stops and gives every ping's latency. */
export async function startPinger(port: number, intervalMs: number): Promise<() => Promise<Pings>> {
  const worker = new Worker(PINGER, { eval: true, workerData: { port, intervalMs } });
  const done = new Promise<Pings>((resolve, reject) => {
    worker.on('message', (message: { kind: string } & Pings) => {
      if (message.kind === 'done') resolve(message);
    });
    worker.on('error', reject);
    worker.on('exit', (code) => reject(new Error(`the pinger exited with code ${code}`)));
  });
  await new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve());
    worker.once('error', reject);
  });
  return async () => {
    worker.postMessage('stop');
    const pings = await done;
    await worker.terminate();
    return pings;
  };
}

// ---------------------------------------------------------------------------------------------
// Large requests

export interface Large {
  count: number;
  failures: string[];
  ms: number[];
  byModel: Record<string, number[]>;
  seconds: number;
}

export async function postLarge(
  server: ServerProcess,
  agent: http.Agent,
  body: Buffer,
  rows: number,
  model: string,
): Promise<{ ms: number; problem: string | undefined }> {
  const answer = await loopbackRequest({
    port: server.port,
    method: 'POST',
    path: '/invocations',
    headers: { 'content-type': 'text/csv', accept: 'text/csv', 'x-amzn-sagemaker-target-model': model },
    body,
    agent,
  });
  let problem: string | undefined;
  if (answer.status !== 200) {
    problem = `${model}: ${answer.status} ${answer.body.toString('utf8').slice(0, 200)}`;
  } else {
    let lines = 0;
    for (let at = answer.body.indexOf(0x0a); at !== -1; at = answer.body.indexOf(0x0a, at + 1)) lines++;
    if (lines !== rows) problem = `${model}: ${lines} answer lines for ${rows} rows`;
  }
  return { ms: answer.ms, problem };
}

export async function largeRequests(
  server: ServerProcess,
  agent: http.Agent,
  body: Buffer,
  rows: number,
  count: number,
): Promise<Large> {
  const large: Large = { count: 0, failures: [], ms: [], byModel: {}, seconds: 0 };
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    const model = LARGE_MODELS[i % LARGE_MODELS.length] as string;
    const { ms, problem } = await postLarge(server, agent, body, rows, model).catch((error: Error) => ({
      ms: Number.NaN,
      problem: `${model}: ${error.message}`,
    }));
    large.count++;
    if (problem !== undefined) {
      large.failures.push(problem);
      continue;
    }
    large.ms.push(ms);
    const byModel = large.byModel[model] ?? [];
    byModel.push(ms);
    large.byModel[model] = byModel;
  }
  large.seconds = (performance.now() - started) / 1000;
  return large;
}
