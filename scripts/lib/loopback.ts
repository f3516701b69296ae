/**
 * Talking to the real server on loopback, for the scripts and benchmarks that drive it from
 * outside (scripts/soak.ts, bench/): one HTTP request read to the end, and the server as a child
 * process (`node --import tsx src/server.ts`) on 127.0.0.1 and a free port, with a clean
 * environment, ready once /ping answers 200. Every server child started here is killed when the
 * process exits, however it exits (normal end, an error, Ctrl-C).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Only ever loopback: these tools must never reach another machine. */
export const LOOPBACK_HOST = '127.0.0.1';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SERVER_ENTRY = path.join(ROOT, 'src', 'server.ts');
const BUILT_SERVER_ENTRY = path.join(ROOT, 'dist', 'server.js');

// ---------------------------------------------------------------------------------------------
// One request

export interface LoopbackRequest {
  port: number;
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /**
   * A keep-alive agent to reuse connections. Without one the request gets a connection of its own,
   * closed after the answer: Node's global agent would pool sockets across unrelated callers.
   */
  agent?: http.Agent;
  /** No answer within this long fails the request (60 s by default). */
  timeoutMs?: number;
}

export interface LoopbackAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** Raw bytes; callers that want text decode it. */
  body: Buffer;
  /** From the request's start to the answer's last byte. */
  ms: number;
}

/** One HTTP request to 127.0.0.1, its answer read to the end. */
export function loopbackRequest(request: LoopbackRequest): Promise<LoopbackAnswer> {
  const { port, method, body, agent, timeoutMs = 60_000 } = request;
  const headers: Record<string, string> = { ...request.headers };
  if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const outgoing = http.request(
      { host: LOOPBACK_HOST, port, method, path: request.path, headers, agent: agent ?? false, timeout: timeoutMs },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', reject);
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            body: Buffer.concat(chunks),
            ms: performance.now() - started,
          }),
        );
      },
    );
    outgoing.on('timeout', () => outgoing.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    outgoing.on('error', reject);
    outgoing.end(body);
  });
}

// ---------------------------------------------------------------------------------------------
// The server as a child process

async function freePort(): Promise<number> {
  const server = createServer().listen(0, LOOPBACK_HOST);
  await once(server, 'listening');
  const address = server.address();
  server.close();
  if (address === null || typeof address === 'string') throw new Error('no free port');
  return address.port;
}

/** Server children still running: killed when this process exits, so none outlives it. */
const liveChildren = new Set<ChildProcess>();
let killOnExitInstalled = false;

function killLiveChildren(): void {
  for (const child of liveChildren) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

/** Installed with the first child, so that merely importing this module leaves Ctrl-C alone. */
function killOnExit(): void {
  if (killOnExitInstalled) return;
  killOnExitInstalled = true;
  process.on('exit', killLiveChildren);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      killLiveChildren();
      process.exit(130);
    });
  }
}

export interface ServerChildOptions {
  /**
   * The server's environment on top of PATH, HOME and TMPDIR (nothing else of this process's
   * leaks in, so the caller's shell cannot change what is measured). HOST and PORT are set here.
   */
  env: Record<string, string>;
  /** Extra node flags (--cpu-prof, say). */
  nodeFlags?: string[];
  /** Run dist/server.js (what `npm start` runs; build it first) instead of src/server.ts through tsx. */
  built?: boolean;
  /** A file descriptor (a log file) for the server's stdout and stderr; piped when left out. */
  output?: number;
}

export interface ReadyOptions {
  /** 90 s by default: a cold start loads every model first. */
  timeoutMs?: number;
  /** How long one /ping may take (5 s by default). */
  pingTimeoutMs?: number;
  /** Agent for the /pings, to warm a connection the caller goes on using. */
  agent?: http.Agent;
}

/** One server child: its port, why it exited (if it did), waiting for it and stopping it. */
export class ServerChild {
  #exit: string | undefined;

  private constructor(
    readonly child: ChildProcess,
    readonly port: number,
    /** performance.now() when it was started, to time the start-up. */
    readonly startedAt: number,
  ) {
    child.on('exit', (code, signal) => {
      this.#exit = signal === null ? `exited with code ${code}` : `was killed by ${signal}`;
      liveChildren.delete(child);
    });
  }

  /** Starts the server; wait for it with untilReady. */
  static async spawn(options: ServerChildOptions): Promise<ServerChild> {
    const port = await freePort();
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '',
      ...(process.env.HOME !== undefined && { HOME: process.env.HOME }),
      ...(process.env.TMPDIR !== undefined && { TMPDIR: process.env.TMPDIR }),
      ...options.env,
      HOST: LOOPBACK_HOST,
      PORT: String(port),
    };
    const entry = options.built === true ? [BUILT_SERVER_ENTRY] : ['--import', 'tsx', SERVER_ENTRY];
    const args = [...(options.nodeFlags ?? []), ...entry];
    const stdio = options.output ?? 'pipe';
    killOnExit();
    const startedAt = performance.now();
    const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', stdio, stdio] });
    liveChildren.add(child);
    return new ServerChild(child, port, startedAt);
  }

  /** Why the server is gone, or undefined while it runs. */
  get exit(): string | undefined {
    return this.#exit;
  }

  /** Resolves once /ping answers 200; throws if the server exits first or is not ready in time (then killed). */
  async untilReady(options: ReadyOptions = {}): Promise<void> {
    const { timeoutMs = 90_000, pingTimeoutMs = 5000, agent } = options;
    const by = performance.now() + timeoutMs;
    for (;;) {
      if (this.#exit !== undefined) throw new Error(`the server ${this.#exit} before it was ready`);
      if (performance.now() > by) {
        this.kill();
        throw new Error(`the server was not ready within ${timeoutMs / 1000} s`);
      }
      const ping = await loopbackRequest({
        port: this.port,
        method: 'GET',
        path: '/ping',
        agent,
        timeoutMs: pingTimeoutMs,
      }).catch(() => undefined);
      if (ping?.status === 200) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** SIGKILL now, if it still runs. */
  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }

  /** SIGTERM (the server closes and exits, so a --cpu-prof profile is written), SIGKILL after graceMs. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.#exit !== undefined) return;
    const exited = once(this.child, 'exit');
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }
}
