/**
 * The real server as a child process (`node --import tsx src/server.ts`), on 127.0.0.1 and a free
 * port, for benchmarks. Every child started here is killed when the bench process exits, however
 * it exits (normal end, an error, Ctrl-C).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Answer, send } from './http.js';

/** Only ever loopback. */
export const HOST = '127.0.0.1';
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SERVER_ENTRY = path.join(ROOT, 'src', 'server.ts');

const children = new Set<ChildProcess>();

function killAll(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    killAll();
    process.exit(130);
  });
}

export async function freePort(): Promise<number> {
  const server = createServer().listen(0, HOST);
  await once(server, 'listening');
  const address = server.address();
  server.close();
  if (address === null || typeof address === 'string') throw new Error('no free port');
  return address.port;
}

export interface ServerOptions {
  /** Environment for the server on top of HOST, PORT, MODEL_REPOSITORY=models and LOG_LEVEL=warn. */
  env: Record<string, string>;
  /** Extra node flags (--cpu-prof, say). */
  nodeFlags?: string[];
  readyTimeoutMs?: number;
}

export interface ServerLog {
  /** Warnings and errors the server logged, by message. */
  warnings: Record<string, number>;
  errors: Record<string, number>;
  /** The last lines of its output, for when it fails. */
  tail: string;
}

export class ServerProcess {
  #exit: string | undefined;
  #output = '';
  readonly #warnings = new Map<string, number>();
  readonly #errors = new Map<string, number>();

  private constructor(
    readonly child: ChildProcess,
    readonly port: number,
    readonly startedAt: number,
  ) {
    child.on('exit', (code, signal) => {
      this.#exit = signal === null ? `exited with code ${code}` : `was killed by ${signal}`;
      children.delete(child);
    });
    let partial = '';
    const take = (chunk: Buffer) => {
      const text = partial + chunk.toString('utf8');
      const lines = text.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) this.#line(line);
    };
    child.stdout?.on('data', take);
    child.stderr?.on('data', take);
  }

  static async start(options: ServerOptions): Promise<ServerProcess> {
    const port = await freePort();
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '',
      ...(process.env.HOME !== undefined && { HOME: process.env.HOME }),
      ...(process.env.TMPDIR !== undefined && { TMPDIR: process.env.TMPDIR }),
      MODEL_REPOSITORY: 'models',
      LOG_LEVEL: 'warn',
      ...options.env,
      HOST,
      PORT: String(port),
    };
    const args = [...(options.nodeFlags ?? []), '--import', 'tsx', SERVER_ENTRY];
    const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    const server = new ServerProcess(child, port, performance.now());
    await server.#waitReady(options.readyTimeoutMs ?? 90_000);
    return server;
  }

  /** Why the server is gone, or undefined while it runs. */
  get exit(): string | undefined {
    return this.#exit;
  }

  get log(): ServerLog {
    const tail = this.#output.split('\n').slice(-20).join('\n');
    return { warnings: Object.fromEntries(this.#warnings), errors: Object.fromEntries(this.#errors), tail };
  }

  async request(method: string, urlPath: string, headers: Record<string, string> = {}): Promise<Answer> {
    return send({ port: this.port, method, path: urlPath, headers });
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

  async #waitReady(timeoutMs: number): Promise<void> {
    const by = performance.now() + timeoutMs;
    for (;;) {
      if (this.#exit !== undefined) throw new Error(`the server ${this.#exit} before it was ready:\n${this.log.tail}`);
      if (performance.now() > by) {
        this.child.kill('SIGKILL');
        throw new Error(`the server was not ready within ${timeoutMs / 1000} s:\n${this.log.tail}`);
      }
      const ping = await send({ port: this.port, method: 'GET', path: '/ping', timeoutMs: 2000 }).catch(
        () => undefined,
      );
      if (ping?.status === 200) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  #line(line: string): void {
    this.#output = `${this.#output}${line}\n`.slice(-16_384);
    if (line.trim() === '') return;
    try {
      const entry = JSON.parse(line) as { level?: unknown; msg?: unknown };
      const msg = typeof entry.msg === 'string' ? entry.msg : '(no msg)';
      const level = typeof entry.level === 'number' ? entry.level : 0;
      const counts = level >= 50 ? this.#errors : level >= 40 ? this.#warnings : undefined;
      counts?.set(msg, (counts.get(msg) ?? 0) + 1);
    } catch {
      // Not a log line (a stack trace, node's own warnings): kept in the tail only.
    }
  }
}
