import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort, LINEAR, makeRepository, PODS, SHIPPED_MODELS } from './helpers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const children: ChildProcess[] = [];

/** Starts src/server.ts as `npm start` would (through tsx instead of a build), collecting its output. */
function startServer(env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', MODEL_REPOSITORY: SHIPPED_MODELS, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const output = { stdout: '', stderr: '' };
  child.stdout?.on('data', (chunk) => (output.stdout += chunk));
  child.stderr?.on('data', (chunk) => (output.stderr += chunk));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  return { child, output, exited };
}

/** Waits for /ping to answer 200, as SageMaker does before sending traffic. */
async function untilReady(base: string): Promise<void> {
  await expect
    .poll(async () => (await fetch(`${base}/ping`).catch(() => undefined))?.status, { timeout: 20_000, interval: 100 })
    .toBe(200);
}

afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
});

describe('the server process', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)(
    'serves the shipped models on PORT, logs no per-request lines, and stops cleanly on %s',
    async (signal) => {
      const port = await freePort();
      const { child, output, exited } = startServer({ PORT: String(port), SLOW_REQUEST_MS: '1' });
      const base = `http://127.0.0.1:${port}`;
      await untilReady(`${base}`);

      for (let i = 0; i < 5; i++) {
        const response = await fetch(`${base}/invocations`, {
          method: 'POST',
          headers: { 'content-type': 'text/csv', 'x-amzn-sagemaker-target-model': LINEAR },
          body: PODS.map((row) => row.join(',')).join('\n'),
        });
        expect(response.status).toBe(200);
        expect(((await response.json()) as { predictions: number[] }).predictions).toHaveLength(PODS.length);
      }
      expect(output.stdout).toContain('model version loaded');
      expect(output.stdout).not.toMatch(/incoming request|request completed/);

      // 20,000 pods take well over the 1 ms SLOW_REQUEST_MS, so that request is logged as slow.
      const big = `${(PODS[0] as number[]).join(',')}\n`.repeat(20_000);
      await fetch(`${base}/invocations`, {
        method: 'POST',
        headers: { 'content-type': 'text/csv', 'x-amzn-sagemaker-target-model': LINEAR },
        body: big,
      });
      await expect.poll(() => output.stdout).toContain('slow request');

      child.kill(signal);
      const [code] = await exited;
      expect(code).toBe(0);
      expect(output.stdout).toContain('shutting down');
    },
  );

  it('finishes every request in flight when SIGTERM lands, refuses new connections, and exits 0', async () => {
    const [port, metricsPort] = [await freePort(), await freePort()];
    const { child, output, exited } = startServer({ PORT: String(port), METRICS_PORT: String(metricsPort) });
    await untilReady(`http://127.0.0.1:${port}`);
    const csv = `${PODS.map((row) => row.join(',')).join('\n')}\n`;
    const half = Math.floor(csv.length / 2);
    // Five requests caught mid-body: headers and half the CSV sent, the rest held back.
    const requests = Array.from({ length: 5 }, () => {
      const outgoing = httpRequest({
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/invocations',
        headers: {
          'content-type': 'text/csv',
          'content-length': String(csv.length),
          'x-amzn-sagemaker-target-model': LINEAR,
        },
      });
      const answered = new Promise<[number, string]>((resolve, reject) => {
        outgoing.on('response', (response) => {
          let text = '';
          response.on('data', (chunk) => (text += chunk));
          response.on('end', () => resolve([response.statusCode ?? 0, text]));
        });
        outgoing.on('error', reject);
      });
      outgoing.write(csv.slice(0, half));
      return { outgoing, answered };
    });
    await expect
      .poll(async () => {
        const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
        return Number(/^wattserve_http_requests_in_flight (\d+)/m.exec(text)?.[1] ?? 0);
      })
      .toBe(5);

    child.kill('SIGTERM');
    await expect.poll(() => output.stdout).toContain('shutting down');
    await expect
      .poll(() =>
        fetch(`http://127.0.0.1:${port}/ping`).then(
          (response) => response.status,
          (error: Error) => (error.cause as NodeJS.ErrnoException | undefined)?.code,
        ),
      )
      .toBe('ECONNREFUSED');
    for (const { outgoing } of requests) outgoing.end(csv.slice(half));
    for (const { answered } of requests) {
      const [status, text] = await answered;
      expect(status).toBe(200);
      expect((JSON.parse(text) as { predictions: number[] }).predictions).toHaveLength(PODS.length);
    }
    const [code] = await exited;
    expect(code).toBe(0);
    expect(output.stdout).toContain('"msg":"stopped"');
  });

  it('answers Kepler out of the box, over HTTP and on KEPLER_ESTIMATOR_SOCKET', async () => {
    const port = await freePort();
    const socketPath = path.join(await makeRepository({}), 'estimator.sock');
    startServer({ PORT: String(port), KEPLER_ESTIMATOR_SOCKET: socketPath });
    const base = `http://127.0.0.1:${port}`;
    await untilReady(`${base}`);
    const request = JSON.stringify({
      metrics: ['bpf_page_cache_hit', 'bpf_cpu_time_ms', 'cpu_cycles'],
      values: [
        [10, 50000, 1e9],
        [0, 0, 0],
      ],
      output_type: 'AbsPower',
      source: 'intel_rapl',
      system_features: null,
      system_values: null,
    });
    const overHttp = await fetch(`${base}/kepler/estimate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: request,
    });
    const reply = (await overHttp.json()) as { powers: Record<string, number[]> };
    expect(Object.keys(reply.powers)).toEqual(['package', 'core', 'uncore', 'dram']);
    expect(reply.powers.package?.[0]).toBeGreaterThan(reply.powers.package?.[1] as number);

    const socket = connect(socketPath);
    await once(socket, 'connect');
    socket.write(request);
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    socket.destroy();
    expect(JSON.parse(chunk.toString())).toEqual(reply);
  });

  it('takes SageMaker’s SAGEMAKER_BIND_TO_PORT when PORT is unset', async () => {
    const port = await freePort();
    startServer({ SAGEMAKER_BIND_TO_PORT: String(port) });
    await untilReady(`http://127.0.0.1:${port}`);
  });

  it.each([
    [{ PORT: 'eighty' }, 'PORT'],
    [{ MAX_ROWS: '-1' }, 'MAX_ROWS'],
    [{ MODEL_REPOSITORY: '/nonexistent/models' }, '/nonexistent/models'],
  ])('refuses to start with %j, saying why', async (env, mentioned) => {
    const { output, exited } = startServer(env);
    const [code] = await exited;
    expect(code).toBe(1);
    expect(output.stderr).toContain(mentioned);
    expect(output.stderr).not.toMatch(/\n\s+at /);
  });
});
