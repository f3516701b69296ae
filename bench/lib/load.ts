/**
 * A closed-loop HTTP load generator on loopback for the throughput benchmark: `wrk` when it is on
 * PATH (Debian's wrk 4.1; one thread, a Lua script that POSTs the body and prints its summary as
 * JSON), else autocannon's programmatic API (in this process). Both keep `connections` keep-alive
 * connections busy for `seconds` and report requests per second, latency percentiles and errors.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { LOOPBACK_HOST } from '../../scripts/lib/loopback.js';

export interface LoadTarget {
  port: number;
  path: string;
  headers: Record<string, string>;
  body: Buffer;
}

export interface LoadResult {
  requests: number;
  seconds: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Answers with an HTTP error status (wrk: ≥ 400; autocannon: not 2xx). */
  httpErrors: number;
  /** Connect, read and write errors and timeouts. */
  socketErrors: number;
}

export interface LoadGenerator {
  /** 'wrk 4.1.0 (1 thread)' or 'autocannon 8.x (in process)'. */
  name: string;
  run(target: LoadTarget, connections: number, seconds: number): Promise<LoadResult>;
  /** Removes temporary files. */
  close(): Promise<void>;
}

const execFileAsync = promisify(execFile);

async function wrkVersion(): Promise<string | undefined> {
  try {
    // wrk -v prints its version and usage, and exits 1.
    const { stdout, stderr } = await execFileAsync('wrk', ['-v']).catch(
      (error: { stdout?: string; stderr?: string; code?: unknown }) => {
        if (error.code === 'ENOENT') throw error;
        return { stdout: error.stdout ?? '', stderr: error.stderr ?? '' };
      },
    );
    const match = /wrk (\S+)/.exec(`${stdout}${stderr}`);
    return match?.[1] ?? 'unknown version';
  } catch {
    return undefined;
  }
}

/** wrk if on PATH (BENCH_LOAD=autocannon forces autocannon), else autocannon. */
export async function loadGenerator(): Promise<LoadGenerator> {
  const version = process.env.BENCH_LOAD === 'autocannon' ? undefined : await wrkVersion();
  if (version !== undefined) return wrkGenerator(version);
  return autocannonGenerator(process.env.BENCH_LOAD === 'autocannon' ? 'BENCH_LOAD=autocannon' : 'wrk not on PATH');
}

// ---------------------------------------------------------------------------------------------
// wrk

const WRK_MARK = 'WRK_JSON ';

function luaString(value: string): string {
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`).replace(/\n/g, '\\n')}"`;
}

async function wrkGenerator(version: string): Promise<LoadGenerator> {
  const dir = await mkdtemp(path.join(tmpdir(), 'wattserve-bench-'));
  let scripts = 0;
  return {
    name: `wrk ${version} (1 thread, -t1)`,
    async run(target, connections, seconds) {
      const id = scripts++;
      const bodyFile = path.join(dir, `body-${id}`);
      const scriptFile = path.join(dir, `post-${id}.lua`);
      await writeFile(bodyFile, target.body);
      const headers = Object.entries(target.headers)
        .map(([name, value]) => `wrk.headers[${luaString(name)}] = ${luaString(value)}`)
        .join('\n');
      await writeFile(
        scriptFile,
        `local file = assert(io.open(${luaString(bodyFile)}, "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
${headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('\\n${WRK_MARK}{"requests":%d,"durationUs":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50":%.1f,"p99":%.1f,"max":%.1f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
`,
      );
      const args = [
        '-t1',
        `-c${connections}`,
        `-d${Math.max(1, Math.round(seconds))}s`,
        '--timeout',
        '5s',
        '-s',
        scriptFile,
        `http://${LOOPBACK_HOST}:${target.port}${target.path}`,
      ];
      const output = await new Promise<string>((resolve, reject) => {
        const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
        let text = '';
        child.stdout.on('data', (chunk: Buffer) => {
          text += chunk.toString('utf8');
        });
        child.stderr.on('data', (chunk: Buffer) => {
          text += chunk.toString('utf8');
        });
        child.on('error', reject);
        child.on('exit', (code) =>
          code === 0 ? resolve(text) : reject(new Error(`wrk exited with code ${code}: ${text.slice(-500)}`)),
        );
      });
      const line = output.split('\n').find((l) => l.startsWith(WRK_MARK));
      if (line === undefined) throw new Error(`wrk printed no summary: ${output.slice(-500)}`);
      const s = JSON.parse(line.slice(WRK_MARK.length)) as Record<string, number>;
      const num = (key: string) => s[key] ?? Number.NaN;
      const duration = num('durationUs') / 1e6;
      return {
        requests: num('requests'),
        seconds: duration,
        requestsPerSecond: num('requests') / duration,
        p50Ms: num('p50') / 1000,
        p99Ms: num('p99') / 1000,
        maxMs: num('max') / 1000,
        httpErrors: num('status'),
        socketErrors: num('connect') + num('read') + num('write') + num('timeout'),
      };
    },
    async close() {
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// autocannon (no type declarations ship with it: the part used is described here)

interface AutocannonResult {
  requests: { total: number; average: number };
  latency: { p50: number; p99: number; max: number };
  duration: number;
  non2xx: number;
  errors: number;
  timeouts: number;
}

type Autocannon = (options: {
  url: string;
  connections: number;
  duration: number;
  method: string;
  headers: Record<string, string>;
  body: Buffer;
}) => Promise<AutocannonResult>;

async function autocannonGenerator(why: string): Promise<LoadGenerator> {
  const specifier = 'autocannon';
  const module = (await import(specifier)) as { default: Autocannon };
  const autocannon = module.default;
  return {
    name: `autocannon (in this process; ${why}; latencies in whole ms)`,
    async run(target, connections, seconds) {
      const result = await autocannon({
        url: `http://${LOOPBACK_HOST}:${target.port}${target.path}`,
        connections,
        duration: seconds,
        method: 'POST',
        headers: target.headers,
        body: target.body,
      });
      return {
        requests: result.requests.total,
        seconds: result.duration,
        requestsPerSecond: result.requests.total / result.duration,
        p50Ms: result.latency.p50,
        p99Ms: result.latency.p99,
        maxMs: result.latency.max,
        httpErrors: result.non2xx,
        socketErrors: result.errors,
      };
    },
    async close() {},
  };
}
