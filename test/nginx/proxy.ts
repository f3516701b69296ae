import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, closeSync, constants, openSync } from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach } from 'vitest';
import { freePort } from '../helpers.js';

/** The shipped nginx configuration: nginx.conf and its includes under wattserve/. */
export const SHIPPED_NGINX = fileURLToPath(new URL('../../nginx', import.meta.url));

/** The nginx binary: on PATH, else Debian's /usr/sbin (often off a normal user's PATH); undefined without one. */
export const NGINX = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin']
  .filter((folder) => folder !== '')
  .map((folder) => path.join(folder, 'nginx'))
  .find((file) => {
    try {
      accessSync(file, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });

const TEMP_PATHS = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'];
const STARTUP_MS = 10_000;

const cleanups: Array<() => Promise<void>> = [];

// Last in, first out: nginx stops before its folder goes.
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * A copy of the shipped configuration in a temporary folder (removed after the test), with the
 * given files under wattserve/ replaced. temp.conf always is: the temporary folders go inside the
 * copy, so nginx runs as whoever runs the tests.
 */
export async function configCopy(files: Record<string, string>): Promise<{ root: string; conf: string }> {
  const root = await mkdtemp(path.join(tmpdir(), 'wattserve-nginx-'));
  cleanups.push(() => rm(root, { recursive: true, force: true }));
  // Started as root, nginx runs its workers as an unprivileged user, who must reach the temp folders.
  await chmod(root, 0o755);
  const conf = path.join(root, 'conf');
  await cp(SHIPPED_NGINX, conf, { recursive: true });
  await mkdir(path.join(root, 'temp'));
  const temp = TEMP_PATHS.map((name) => `${name}_temp_path ${path.join(root, 'temp', name)};\n`).join('');
  for (const [file, content] of Object.entries({ 'temp.conf': temp, ...files })) {
    await writeFile(path.join(conf, 'wattserve', file), content);
  }
  return { root, conf };
}

/**
 * nginx's arguments for a copy: its own prefix (apart from the configuration folder, so includes
 * must resolve relative to nginx.conf as they do in the image), the error log on stderr, and the
 * pid file inside the copy with any other main-context `directives` (nginx heeds only one -g).
 */
function nginxArguments(root: string, conf: string, directives = ''): string[] {
  const global = `pid ${root}/nginx.pid; ${directives}`;
  return ['-p', `${root}/`, '-c', path.join(conf, 'nginx.conf'), '-e', 'stderr', '-g', global];
}

/** `nginx -t` over a copy of the shipped configuration: whether it passed, and what nginx said. */
export async function checkConfig(files: Record<string, string>): Promise<{ ok: boolean; output: string }> {
  const { root, conf } = await configCopy(files);
  // stdout not a pipe: Node's pipes are sockets, which nginx cannot open as /dev/stdout (the access log).
  const child = spawn(NGINX ?? 'nginx', ['-t', ...nginxArguments(root, conf)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let output = '';
  child.stderr.on('data', (chunk) => (output += chunk));
  const [code] = (await once(child, 'close')) as [number | null];
  return { ok: code === 0, output };
}

export interface NginxProxy {
  /** Where nginx listens, e.g. http://127.0.0.1:40123. */
  url: string;
  /** The access log line of the request with this X-Request-Id, once nginx has written it. */
  logLine(requestId: string): Promise<Record<string, unknown>>;
}

/**
 * nginx over a copy of the shipped configuration, forwarding to `upstream` (upstream.conf's
 * `server …;` lines) on a free loopback port, in the foreground as the current user. Stopped after
 * the test.
 */
export async function startProxy(upstream: string, files: Record<string, string> = {}): Promise<NginxProxy> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const { root, conf } = await configCopy({
      'upstream.conf': upstream,
      'listen.conf': `listen 127.0.0.1:${port};\n`,
      ...files,
    });
    // The access log goes to /dev/stdout, which nginx opens by name: a file works, Node's pipes
    // (sockets) do not.
    const accessLog = path.join(root, 'access.log');
    const stdout = openSync(accessLog, 'a');
    const child = spawn(NGINX ?? 'nginx', nginxArguments(root, conf, 'daemon off;'), {
      stdio: ['ignore', stdout, 'pipe'],
      // Its own process group, so a master that will not stop is killed with its workers.
      detached: true,
    });
    closeSync(stdout);
    const output = { stderr: '' };
    child.stderr?.on('data', (chunk) => (output.stderr += chunk));
    const exited = new Promise<void>((resolve) => {
      child.once('close', () => resolve());
      child.once('error', (error) => {
        output.stderr += String(error);
        resolve();
      });
    });
    cleanups.push(() => stop(child, exited));

    const url = `http://127.0.0.1:${port}`;
    const failure = await untilAnswering(url, child, exited);
    if (failure === undefined) {
      return { url, logLine: (requestId) => logLine(accessLog, requestId) };
    }
    // Another process may have taken the port between freePort() and nginx's bind().
    if (attempt < 3 && output.stderr.includes('Address already in use')) continue;
    throw new Error(`nginx did not start (${failure}):\n${output.stderr}`);
  }
}

/** Polls until nginx answers over HTTP: undefined then, else why it never will. */
async function untilAnswering(url: string, child: ChildProcess, exited: Promise<void>): Promise<string | undefined> {
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + STARTUP_MS;
  while (Date.now() < deadline) {
    if (gone) return `exited with ${child.exitCode ?? child.signalCode ?? 'an error'}`;
    // Any answer from nginx will do (502 included: some tests start it with the app down).
    const response = await fetch(`${url}/live`, { signal: AbortSignal.timeout(1_000) }).catch(() => undefined);
    if (response?.headers.get('server') === 'nginx') {
      await response.body?.cancel();
      return undefined;
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return `no answer within ${STARTUP_MS} ms`;
}

async function logLine(accessLog: string, requestId: string): Promise<Record<string, unknown>> {
  const deadline = Date.now() + STARTUP_MS;
  let lines = '';
  while (Date.now() < deadline) {
    lines = await readFile(accessLog, 'utf8');
    // Whole lines only: the last may be half written.
    const line = lines
      .split('\n')
      .slice(0, -1)
      .map((text) => JSON.parse(text) as Record<string, unknown>)
      .find((entry) => entry.request_id === requestId);
    if (line !== undefined) return line;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`no access log line for request id ${requestId} in:\n${lines}`);
}

/** SIGTERM (nginx's fast shutdown); the whole group is killed if the master is still there after 5 s. */
async function stop(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // Gone in the meantime.
    }
  }, 5_000);
  await exited;
  clearTimeout(timer);
}
