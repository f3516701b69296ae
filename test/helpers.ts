import { once } from 'node:events';
import { cp, mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { afterEach } from 'vitest';
import { linearOnnxModel } from '../scripts/onnx-linear.js';
import { type AppOptions, buildApp } from '../src/app.js';
import { type Config, loadConfig } from '../src/config.js';
import { ApiError } from '../src/errors.js';

export const SHIPPED_MODELS = fileURLToPath(new URL('../models', import.meta.url));
/**
 * Real kepler-model-db models (Apache-2.0): the shared folder beside the repository, as CI lays
 * it out, or wherever WATTSERVE_KEPLER_FIXTURES points.
 */
export const KEPLER_FIXTURES =
  process.env.WATTSERVE_KEPLER_FIXTURES ??
  fileURLToPath(new URL('../../shared/fixtures/kepler-model-db', import.meta.url));
export const LINEAR = 'pod-power-linear';
export const MLP = 'pod-power-mlp';
export const KEPLER = 'kepler-ec2-rapl-bpfonly';

/**
 * A tiny ONNX model whose answers tell its version apart: y = version·a + b over features a, b
 * (metadata.json names them). Made with the same writer as the shipped linear model.
 */
export function versionedModel(version: number): Record<string, Uint8Array | string> {
  return {
    'model.onnx': linearOnnxModel({ weights: [[version], [1]], bias: [0] }),
    'metadata.json': JSON.stringify({ features: ['a', 'b'] }),
  };
}

/** What versionedModel(version) predicts for rows of [a, b]. */
export function versionedPredictions(version: number, rows: readonly (readonly number[])[]): number[] {
  return rows.map(([a = 0, b = 0]) => version * a + b);
}

/** Repository entries for versionedModel versions of one model: `{ 'm/1/model.onnx': …, … }`. */
export function versionedEntries(name: string, versions: readonly number[]): Record<string, Uint8Array | string> {
  return Object.fromEntries(
    versions.flatMap((version) =>
      Object.entries(versionedModel(version)).map(([file, content]) => [`${name}/${version}/${file}`, content]),
    ),
  );
}

/** Feature names of the shipped models, in their order. */
export { FEATURES } from '../scripts/synthetic-pods.js';

/** Plausible pods: a busy one, a light one, an idle one. */
export const PODS = [
  [3600, 1.1e10, 1.9e10, 2.1e8, 3.5e6, 4e5, 2.5e9, 900],
  [450, 1.2e9, 1.6e9, 9e6, 4.4e5, 3e4, 3e8, 40],
  [0, 0, 0, 0, 0, 0, 6e7, 0],
];

/** The shipped models, no logs, and no worker threads (tests of the worker pool turn them on). */
export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({ MODEL_REPOSITORY: SHIPPED_MODELS, LOG_LEVEL: 'silent', WORKER_THREADS: '0', ...env });
}

const apps: FastifyInstance[] = [];
const folders: string[] = [];

/** An app over the given repository (the shipped models by default), closed after the test. */
export async function startApp(env: Record<string, string> = {}, options: AppOptions = {}): Promise<FastifyInstance> {
  const app = await buildApp(testConfig(env), options);
  apps.push(app);
  await app.ready();
  return app;
}

export type RepositoryEntry = string | Uint8Array | { model: string } | { kepler: string };

/**
 * A model repository in a temporary folder, removed after the test. Each key is a path inside
 * it; a value is file content, `{ model }` to copy that shipped model's version 1 folder there,
 * or `{ kepler }` to copy a kepler-model-db fixture pair (`<path>.zip` and `<path>.json`) into it.
 */
export async function makeRepository(entries: Record<string, RepositoryEntry>): Promise<string> {
  const root = await mkdtemp(path.join(tmpdir(), 'wattserve-repo-'));
  folders.push(root);
  for (const [relative, content] of Object.entries(entries)) {
    const target = path.join(root, relative);
    if (typeof content === 'object' && 'model' in content) {
      await cp(path.join(SHIPPED_MODELS, content.model, '1'), target, { recursive: true });
    } else if (typeof content === 'object' && 'kepler' in content) {
      await mkdir(target, { recursive: true });
      for (const file of await readdir(path.join(KEPLER_FIXTURES, path.dirname(content.kepler)))) {
        if (file.startsWith(`${path.basename(content.kepler)}.`)) {
          await cp(path.join(KEPLER_FIXTURES, path.dirname(content.kepler), file), path.join(target, file));
        }
      }
    } else {
      await mkdir(path.dirname(target), { recursive: true });
      await writeFile(target, content);
    }
  }
  return root;
}

afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
  await Promise.all(folders.splice(0).map((folder) => rm(folder, { recursive: true, force: true })));
});

/** A loopback port nothing listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/**
 * Writes versionedModel(`model`) into `<name>/<folder>` of a repository, stamped a minute later than
 * anything before, so a rescan sees it changed even within one clock tick.
 */
export async function writeVersion(repository: string, name: string, folder: number, model = folder): Promise<void> {
  const dir = path.join(repository, name, String(folder));
  await mkdir(dir, { recursive: true });
  const later = new Date(Date.now() + 60_000);
  for (const [file, content] of Object.entries(versionedModel(model))) {
    await writeFile(path.join(dir, file), content);
    await utimes(path.join(dir, file), later, later);
  }
}

/** A log stream for startApp's `logStream`, and the JSON lines written to it. */
export function captureLogs(): { lines: Array<Record<string, unknown>>; logStream: Writable } {
  const lines: Array<Record<string, unknown>> = [];
  const logStream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of chunk.toString().trim().split('\n')) lines.push(JSON.parse(line));
      done();
    },
  });
  return { lines, logStream };
}

/** The catalogue error a call throws, as a client would see it; fails the test when it throws none. */
export function apiErrorOf(call: () => unknown): { code: string; field: string | undefined; status: number } {
  try {
    call();
  } catch (error) {
    if (error instanceof ApiError) return { code: error.code, field: error.field, status: error.statusCode };
    throw error;
  }
  throw new Error('expected an ApiError, but the call succeeded');
}
