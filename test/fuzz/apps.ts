/**
 * The in-process apps the fuzz properties talk to, and the good requests that prove an app still
 * serves after a property's runs. One app per suite (built in beforeAll), so runs are cheap.
 */
import { mkdir, mkdtemp, readdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, expect } from 'vitest';
import { buildApp } from '../../src/app.js';
import { FEATURES, KEPLER, LINEAR, MLP, PODS, testConfig } from '../helpers.js';
import { expectPredictionBody, type Sent, send } from './support.js';

/** Limits low enough that the fuzz reaches them cheaply. */
export const FUZZ_LIMITS = { MAX_ROWS: '50', MAX_BODY_BYTES: String(1024 * 1024) };

/** An app over the given repository (the shipped models by default); close it in afterAll. */
export async function fuzzApp(env: Record<string, string> = {}): Promise<FastifyInstance> {
  const app = await buildApp(testConfig({ ...FUZZ_LIMITS, ...env }));
  await app.ready();
  return app;
}

const goodRequests: Record<string, Sent> = {
  [LINEAR]: {
    method: 'POST',
    url: `/predict/${LINEAR}`,
    headers: { 'content-type': 'application/json' },
    payload: JSON.stringify({ features: FEATURES, instances: PODS }),
  },
  [MLP]: {
    method: 'POST',
    url: '/invocations',
    headers: { 'content-type': 'text/csv', accept: 'application/json', 'x-amzn-sagemaker-target-model': MLP },
    payload: PODS.map((pod) => pod.join(',')).join('\n'),
  },
  [KEPLER]: {
    method: 'POST',
    url: `/predict/${KEPLER}`,
    headers: { 'content-type': 'application/json' },
    payload: JSON.stringify({
      instances: [
        [50_000, 12],
        [0, 0],
      ],
    }),
  },
};

/** The answers of the shipped models to good requests, taken before fuzzing. */
export type Baseline = Record<string, unknown>;

export async function shippedBaseline(app: FastifyInstance): Promise<Baseline> {
  const baseline: Baseline = {};
  for (const [model, sent] of Object.entries(goodRequests)) {
    const answer = await send(app, sent);
    expect(answer.statusCode, `${model}: ${answer.body}`).toBe(200);
    baseline[model] = expectPredictionBody(sent, answer, undefined);
  }
  return baseline;
}

/** A good request gets the same answer as before the fuzzing (one model, or all of them). */
export async function expectStillServing(app: FastifyInstance, baseline: Baseline, models = [LINEAR]): Promise<void> {
  for (const model of models) {
    const sent = goodRequests[model] as Sent;
    const answer = await send(app, sent);
    expect(answer.statusCode, `${model} no longer serves: ${answer.body}`).toBe(200);
    expect(expectPredictionBody(sent, answer, undefined), `${model} answers differently`).toEqual(baseline[model]);
  }
}

/** After a property: /ping, /models and every shipped model answer as before. */
export async function expectAllStillServing(app: FastifyInstance, baseline: Baseline): Promise<void> {
  expect((await app.inject({ method: 'GET', url: '/ping' })).statusCode).toBe(200);
  const models = JSON.parse((await app.inject({ method: 'GET', url: '/models' })).body) as {
    models: Array<{ name: string }>;
  };
  expect(models.models.map((model) => model.name).sort()).toEqual([KEPLER, LINEAR, MLP].sort());
  await expectStillServing(app, baseline, [LINEAR, MLP, KEPLER]);
}

/**
 * A throwaway repository inside a folder of its own (`parent/repo`), so that a listing of `parent`
 * shows anything written beside the repository. Not removed by test/helpers' afterEach (it lives
 * for the whole file): the caller removes `parent` in afterAll.
 */
export async function throwawayRepository(
  entries: Record<string, Uint8Array | string>,
): Promise<{ parent: string; repository: string }> {
  const parent = await mkdtemp(path.join(tmpdir(), 'wattserve-fuzz-'));
  const repository = path.join(parent, 'repo');
  for (const [relative, content] of Object.entries(entries)) {
    const target = path.join(repository, relative);
    await mkdir(path.dirname(target), { recursive: true });
    await writeFile(target, content);
  }
  return { parent, repository };
}

/** Every path below `root` (folders with a trailing slash, files with their size), sorted. */
export async function listing(root: string): Promise<string[]> {
  const found: string[] = [];
  async function walk(dir: string): Promise<void> {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      const relative = path.relative(root, full);
      if (entry.isDirectory()) {
        found.push(`${relative}/`);
        await walk(full);
      } else {
        found.push(
          `${relative} ${entry.isFile() ? (await stat(full)).size : entry.isSymbolicLink() ? 'link' : 'other'}`,
        );
      }
    }
  }
  await walk(root);
  return found.sort();
}

/**
 * Gives the describe block an app over the shipped models, built before its tests and checked
 * after them: every model still answers as it did before the fuzzing.
 */
export function withShippedApp(use: (app: FastifyInstance, baseline: Baseline) => void): void {
  let app: FastifyInstance | undefined;
  let baseline: Baseline = {};
  beforeAll(async () => {
    app = await fuzzApp();
    baseline = await shippedBaseline(app);
    use(app, baseline);
  });
  afterAll(async () => {
    if (app === undefined) return;
    await expectAllStillServing(app, baseline);
    await app.close();
  });
}
