/**
 * The real server as a child process for benchmarks (scripts/lib/loopback.ts starts and stops it),
 * over the shipped models, with what it logged counted for the report.
 */
import type { ChildProcess } from 'node:child_process';
import { type LoopbackAnswer, loopbackRequest, ServerChild } from '../../scripts/lib/loopback.js';

export interface ServerOptions {
  /** Environment for the server on top of HOST, PORT, MODEL_REPOSITORY=models and LOG_LEVEL=warn. */
  env: Record<string, string>;
  /** Extra node flags (--cpu-prof, say). */
  nodeFlags?: string[];
  /** Run dist/server.js, as `npm start` does (built beforehand), instead of src/server.ts through tsx. */
  built?: boolean;
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
  #output = '';
  readonly #warnings = new Map<string, number>();
  readonly #errors = new Map<string, number>();
  readonly #server: ServerChild;

  private constructor(server: ServerChild) {
    this.#server = server;
    let partial = '';
    const take = (chunk: Buffer) => {
      const text = partial + chunk.toString('utf8');
      const lines = text.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) this.#line(line);
    };
    server.child.stdout?.on('data', take);
    server.child.stderr?.on('data', take);
  }

  static async start(options: ServerOptions): Promise<ServerProcess> {
    const child = await ServerChild.spawn({
      env: { MODEL_REPOSITORY: 'models', LOG_LEVEL: 'warn', ...options.env },
      ...(options.nodeFlags !== undefined && { nodeFlags: options.nodeFlags }),
      ...(options.built !== undefined && { built: options.built }),
    });
    // Read its output from the start: what it logs while starting up explains a failed start.
    const server = new ServerProcess(child);
    try {
      await child.untilReady({ timeoutMs: options.readyTimeoutMs ?? 90_000, pingTimeoutMs: 2000 });
    } catch (error) {
      throw new Error(`${(error as Error).message}:\n${server.log.tail}`);
    }
    return server;
  }

  get child(): ChildProcess {
    return this.#server.child;
  }

  get port(): number {
    return this.#server.port;
  }

  get startedAt(): number {
    return this.#server.startedAt;
  }

  /** Why the server is gone, or undefined while it runs. */
  get exit(): string | undefined {
    return this.#server.exit;
  }

  get log(): ServerLog {
    const tail = this.#output.split('\n').slice(-20).join('\n');
    return { warnings: Object.fromEntries(this.#warnings), errors: Object.fromEntries(this.#errors), tail };
  }

  async request(method: string, urlPath: string, headers: Record<string, string> = {}): Promise<LoopbackAnswer> {
    return loopbackRequest({ port: this.port, method, path: urlPath, headers });
  }

  /** SIGTERM (so a --cpu-prof profile is written), SIGKILL after graceMs. */
  stop(graceMs?: number): Promise<void> {
    return this.#server.stop(graceMs);
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
