import { execFile } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig } from '../../src/config.js';
import { startApp } from '../helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const COMPOSE_FILE = path.join(ROOT, 'docker-compose.yml');

/** docker-compose (v1, or a standalone v2) on PATH; CI installs it, so there it must run. */
const DOCKER_COMPOSE = (process.env.PATH ?? '')
  .split(path.delimiter)
  .map((dir) => path.join(dir, 'docker-compose'))
  .find((file) => existsSync(file));
const withDockerCompose = it.skipIf(DOCKER_COMPOSE === undefined && process.env.CI === undefined);

interface Service {
  image?: string;
  build?: { context: string; dockerfile?: string };
  environment?: Record<string, string> | string[];
  volumes?: (string | { type: string; source: string; target: string })[];
  ports?: (string | number | { target: number; published?: number | string; host_ip?: string })[];
  expose?: (string | number)[];
  depends_on?: string[] | Record<string, { condition: string }>;
  healthcheck?: { test: string | string[] };
}

interface Compose {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

async function compose(): Promise<Compose> {
  return parse(await readFile(COMPOSE_FILE, 'utf8')) as Compose;
}

function service(file: Compose, name: string): Service {
  const found = file.services[name];
  if (found === undefined) throw new Error(`docker-compose.yml has no service ${name}`);
  return found;
}

function environment(of: Service): Record<string, string> {
  const env = of.environment ?? {};
  if (!Array.isArray(env)) return Object.fromEntries(Object.entries(env).map(([key, value]) => [key, String(value)]));
  return Object.fromEntries(env.map((entry) => [entry.split('=')[0], entry.split('=').slice(1).join('=')]));
}

/** Volume entries as source, target, and whether the source is a path (bind) or a named volume. */
function mounts(of: Service) {
  return (of.volumes ?? []).map((entry) => {
    if (typeof entry !== 'string') return { source: entry.source, target: entry.target, bind: entry.type === 'bind' };
    const [source = '', target = ''] = entry.split(':');
    return { source, target, bind: /^[./~]/.test(source) };
  });
}

/** Published ports as host address, host port and container port (short or long syntax). */
function published(of: Service) {
  return (of.ports ?? []).map((entry) => {
    if (typeof entry === 'object') {
      return { hostIp: entry.host_ip, host: entry.published?.toString(), container: String(entry.target) };
    }
    const parts = String(entry).split('/')[0]?.split(':') ?? [];
    const container = parts.at(-1) ?? '';
    const host = parts.length >= 2 ? parts.at(-2) : undefined;
    const hostIp = parts.length === 3 ? parts[0] : undefined;
    return { hostIp, host, container };
  });
}

/** The healthcheck's exec-form command, without the leading CMD. */
function healthcheck(of: Service): string[] {
  const test = of.healthcheck?.test;
  expect(Array.isArray(test), 'healthcheck.test in exec form').toBe(true);
  const [kind, ...command] = test as string[];
  expect(kind).toBe('CMD');
  return command;
}

function runNode(args: string[], env: NodeJS.ProcessEnv): Promise<number | null> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { env, timeout: 10_000 }, (error) => {
      resolve(error === null ? 0 : typeof error.code === 'number' ? error.code : null);
    });
  });
}

describe('docker-compose.yml', () => {
  withDockerCompose('is valid for docker-compose (`config -q`, no engine needed)', async () => {
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(
        DOCKER_COMPOSE ?? 'docker-compose',
        ['-f', 'docker-compose.yml', 'config', '-q'],
        { cwd: ROOT },
        (error, _out, err) =>
          resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : null, stderr: err }),
      );
    });
    expect(stderr).toBe('');
    expect(code).toBe(0);
  });

  withDockerCompose(
    'leaves the admin API off unless ADMIN_JWT_SECRET is set, as the server reads the environment',
    async () => {
      async function wattserveEnv(extra: NodeJS.ProcessEnv): Promise<Record<string, string>> {
        const { ADMIN_JWT_SECRET: _drop, ...rest } = process.env;
        const stdout = await new Promise<string>((resolve, reject) => {
          execFile(
            DOCKER_COMPOSE ?? 'docker-compose',
            ['-f', 'docker-compose.yml', 'config'],
            { cwd: ROOT, env: { ...rest, ...extra } },
            (error, out) => (error === null ? resolve(out) : reject(error)),
          );
        });
        return environment(service(parse(stdout) as Compose, 'wattserve'));
      }
      const off = loadConfig(await wattserveEnv({}));
      expect(off.admin).toBeUndefined();
      expect(off.port).toBe(8080);
      expect(off.metricsPort).toBe(9464);
      expect(off.modelPollIntervalMs).toBe(5000);
      const secret = 'x'.repeat(40);
      expect(loadConfig(await wattserveEnv({ ADMIN_JWT_SECRET: secret })).admin?.key).toBe(secret);
    },
  );

  it('runs wattserve behind nginx, with Prometheus and Grafana, on pinned images', async () => {
    const file = await compose();
    expect(Object.keys(file.services)).toEqual(expect.arrayContaining(['wattserve', 'nginx', 'prometheus', 'grafana']));
    expect(service(file, 'wattserve').build).toEqual({ context: '.', dockerfile: 'docker/Dockerfile' });
    for (const name of ['nginx', 'prometheus', 'grafana']) {
      const image = service(file, name).image ?? '';
      expect(image, name).toMatch(/^[\w./-]+:[\w.-]+$/);
      expect(image, name).not.toMatch(/:latest$/);
    }
  });

  it('publishes only nginx to the world; wattserve not at all, Prometheus and Grafana on loopback', async () => {
    const file = await compose();
    expect(service(file, 'wattserve').ports ?? []).toEqual([]);
    expect(published(service(file, 'nginx')).map((port) => port.container)).toEqual(['8080']);
    expect(published(service(file, 'prometheus'))).toEqual([{ hostIp: '127.0.0.1', host: '9090', container: '9090' }]);
    expect(published(service(file, 'grafana'))).toEqual([{ hostIp: '127.0.0.1', host: '3000', container: '3000' }]);
  });

  it('starts nginx once wattserve is healthy, and wattserve’s healthcheck asks /ping', async () => {
    const file = await compose();
    expect(service(file, 'nginx').depends_on).toMatchObject({ wattserve: { condition: 'service_healthy' } });
    const command = healthcheck(service(file, 'wattserve'));
    expect(command.join(' ')).toContain('/ping');

    const [program, ...args] = command;
    expect(program).toBe('node');
    const app = await startApp();
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = String((app.server.address() as AddressInfo).port);
    expect(await runNode(args, { PORT: port })).toBe(0);

    const notReady = createServer((_request, response) => response.writeHead(503).end());
    await new Promise<void>((resolve) => notReady.listen(0, '127.0.0.1', resolve));
    try {
      expect(await runNode(args, { PORT: String((notReady.address() as AddressInfo).port) })).toBe(1);
    } finally {
      await new Promise((resolve) => notReady.close(resolve));
    }
  });

  it('keeps models on a named volume where the image keeps its example models, so it starts with them', async () => {
    const file = await compose();
    const wattserve = service(file, 'wattserve');
    const repository = environment(wattserve).MODEL_REPOSITORY;
    const volume = mounts(wattserve).find((mount) => mount.target === repository);
    expect(volume).toMatchObject({ source: 'models', bind: false });
    expect(Object.keys(file.volumes ?? {})).toContain('models');

    // A new named volume is filled from what the image holds at its mount point: the shipped models.
    const dockerfile = await readFile(path.join(ROOT, 'docker/Dockerfile'), 'utf8');
    const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    const workdir = [...runtime.matchAll(/^WORKDIR\s+(\S+)/gm)].at(-1)?.[1] ?? '/';
    const copy = /^COPY\s+(?:--\S+\s+)*models\/?\s+(\S+)/m.exec(runtime);
    expect(copy).not.toBeNull();
    expect(path.posix.resolve(workdir, copy?.[1] ?? '')).toBe(repository);
  });

  it('sets METRICS_PORT to the port Prometheus scrapes, under the name it resolves', async () => {
    const file = await compose();
    const prometheus = parse(await readFile(path.join(ROOT, 'docker/prometheus/prometheus.yml'), 'utf8'));
    const job = prometheus.scrape_configs.find((config: { job_name: string }) => config.job_name === 'wattserve');
    const [discovery] = job.dns_sd_configs as { names: string[]; port: number }[];
    expect(discovery?.names).toEqual(['wattserve']);
    expect(file.services).toHaveProperty('wattserve');
    expect(environment(service(file, 'wattserve')).METRICS_PORT).toBe(String(discovery?.port));
  });

  it('mounts monitoring and proxy files that exist in the repository, where the images read them', async () => {
    const file = await compose();
    const bound = (name: string) =>
      Object.fromEntries(
        mounts(service(file, name))
          .filter((mount) => mount.bind)
          .map((mount) => [mount.target, path.resolve(ROOT, mount.source)]),
      );
    const isFile = (file: string) => existsSync(file) && statSync(file).isFile();
    const isDir = (dir: string) => existsSync(dir) && statSync(dir).isDirectory();

    // A missing bind source would be created by Docker as an empty folder, and nginx would fail.
    const nginx = bound('nginx');
    expect(isFile(nginx['/etc/nginx/nginx.conf'] ?? ''), 'nginx/nginx.conf').toBe(true);
    expect(isDir(nginx['/etc/nginx/wattserve'] ?? ''), 'nginx/wattserve/').toBe(true);

    const prometheus = bound('prometheus');
    expect(isFile(path.join(prometheus['/etc/prometheus'] ?? '', 'prometheus.yml'))).toBe(true);
    expect(isFile(path.join(prometheus['/etc/prometheus'] ?? '', 'alerts.yml'))).toBe(true);

    const grafana = bound('grafana');
    const datasources = grafana['/etc/grafana/provisioning/datasources'] ?? '';
    const providers = grafana['/etc/grafana/provisioning/dashboards'] ?? '';
    expect(isDir(datasources) && isDir(providers)).toBe(true);
    // The provider reads dashboards where the dashboards folder is mounted; the data source is the prometheus service.
    const provider = parse(await readFile(path.join(providers, 'wattserve.yml'), 'utf8'));
    const dashboards = provider.providers[0].options.path as string;
    expect(isFile(path.join(grafana[dashboards] ?? '', 'wattserve.json'))).toBe(true);
    const datasource = parse(await readFile(path.join(datasources, 'prometheus.yml'), 'utf8'));
    const url = new URL(datasource.datasources[0].url);
    expect(file.services).toHaveProperty(url.hostname);
    expect(published(service(file, url.hostname)).map((port) => port.container)).toContain(url.port);
  });
});
