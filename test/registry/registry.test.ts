import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { ModelRegistry } from '../../src/registry/registry.js';
import { scanRepository } from '../../src/registry/repository.js';
import { apiErrorOf, LINEAR, MLP, makeRepository, versionedEntries, versionedPredictions } from '../helpers.js';

const silent = pino({ level: 'silent' });

function registryAt(repository: string, defaultModel?: string) {
  return new ModelRegistry({ defaultModel, repository, singleModelName: 'model', drainTimeoutMs: 1000, log: silent });
}

async function registryOver(entries: Parameters<typeof makeRepository>[0], defaultModel?: string) {
  const repository = await makeRepository(entries);
  const registry = registryAt(repository, defaultModel);
  await registry.loadAll(await scanRepository(repository, 'model'));
  return registry;
}

describe('the model registry', () => {
  it('serves the highest version and keeps the others reachable by number', async () => {
    const registry = await registryOver({ 'm/1': { model: LINEAR }, 'm/2': { model: MLP } });
    const latest = registry.acquire('m', undefined);
    const pinned = registry.acquire('m', 1);
    expect([latest.model.version, latest.model.backend]).toEqual([2, 'tfjs']);
    expect([pinned.model.version, pinned.model.backend]).toEqual([1, 'onnx']);
    latest.release();
    pinned.release();
    await registry.close();
  });

  it('skips a broken version, says why, and keeps serving the good one', async () => {
    const registry = await registryOver({ 'm/1': { model: LINEAR }, 'm/2/model.onnx': 'garbage' });
    const handle = registry.acquire('m', undefined);
    expect(handle.model.version).toBe(1);
    handle.release();
    expect(registry.failures).toEqual([
      expect.objectContaining({ name: 'm', version: 2, location: 'm/2', reason: expect.any(String) }),
    ]);
    expect(registry.ready).toBe(true);
    await registry.close();
  });

  it('is not ready while loading, nor when no model could be loaded', async () => {
    const repository = await makeRepository({ 'm/1': { model: LINEAR } });
    const registry = registryAt(repository);
    const loading = registry.loadAll(await scanRepository(repository, 'model'));
    expect(registry.ready).toBe(false);
    expect(apiErrorOf(() => registry.acquire(undefined, undefined))).toMatchObject({ code: 'not_ready', status: 503 });
    await loading;
    expect(registry.ready).toBe(true);
    await registry.close();

    const broken = await registryOver({ 'm/1/model.onnx': 'garbage' });
    expect(broken.ready).toBe(false);
  });

  it('picks the only model when a request names none', async () => {
    const registry = await registryOver({ [`${LINEAR}/1`]: { model: LINEAR } });
    const handle = registry.acquire(undefined, undefined);
    expect(handle.model.name).toBe(LINEAR);
    handle.release();
    await registry.close();
  });

  it('asks for a name when several models serve, unless a default is configured', async () => {
    const entries = { [`${LINEAR}/1`]: { model: LINEAR }, [`${MLP}/1`]: { model: MLP } };
    const ambiguous = await registryOver(entries);
    const error = apiErrorOf(() => ambiguous.acquire(undefined, undefined));
    expect(error).toMatchObject({ code: 'model_required', field: 'model', status: 400 });
    await ambiguous.close();

    const withDefault = await registryOver(entries, MLP);
    expect(withDefault.acquire(undefined, undefined).model.name).toBe(MLP);
    await withDefault.close();
  });

  it('answers unknown models and versions with a 404 that lists what exists', async () => {
    const registry = await registryOver({ 'm/1': { model: LINEAR } });
    expect(apiErrorOf(() => registry.acquire('nope', undefined))).toMatchObject({ code: 'unknown_model', status: 404 });
    expect(() => registry.acquire('nope', undefined)).toThrow('loaded: m');
    expect(apiErrorOf(() => registry.acquire('m', 7))).toMatchObject({ code: 'unknown_version', status: 404 });
    expect(() => registry.acquire('m', 7)).toThrow('loaded: 1');
    await registry.close();
  });

  it('counts requests holding a version until they release it, once each', async () => {
    const registry = await registryOver({ 'm/1': { model: LINEAR } });
    const first = registry.acquire('m', undefined);
    const second = registry.acquire('m', 1);
    expect(registry.inFlight(first.model)).toBe(2);
    first.release();
    first.release();
    expect(registry.inFlight(first.model)).toBe(1);
    second.release();
    expect(registry.inFlight(first.model)).toBe(0);
    await registry.close();
  });
});

describe('the lifecycle of a version', () => {
  const ROWS = [[1, 2]];

  async function versioned(versions: number[], drainTimeoutMs = 5000) {
    const repository = await makeRepository(versionedEntries('m', versions));
    const registry = new ModelRegistry({
      defaultModel: undefined,
      repository,
      singleModelName: 'model',
      drainTimeoutMs,
      log: silent,
    });
    await registry.loadAll(await scanRepository(repository, 'model'));
    return { registry, repository };
  }

  const stateOf = (registry: ModelRegistry, version: number) =>
    registry.status().models[0]?.versions.find((v) => v.version === version)?.state;

  it('keeps an unloaded version for the requests holding it, and frees it when the last one ends', async () => {
    const { registry } = await versioned([1, 2]);
    const held = registry.acquire('m', 1);
    const unloading = registry.unload('m', 1, false);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(stateOf(registry, 1)).toBe('unloading');
    expect(apiErrorOf(() => registry.acquire('m', 1))).toMatchObject({ code: 'unknown_version' });
    // The holder still computes with it.
    expect(
      Array.from((await held.model.model.predict({ data: new Float64Array([1, 2]), rows: 1, cols: 2 })).data),
    ).toEqual(versionedPredictions(1, ROWS));
    held.release();
    await unloading;
    expect(stateOf(registry, 1)).toBe('unloaded');
    await registry.close();
  });

  it('frees a retired version after the drain timeout even if a request never lets go', async () => {
    const { registry } = await versioned([1, 2], 50);
    registry.acquire('m', 1);
    await registry.unload('m', 1, false);
    expect(stateOf(registry, 1)).toBe('unloaded');
    await registry.close();
  });

  it('runs changes to one model one at a time, in the order asked', async () => {
    const { registry } = await versioned([1, 2]);
    const held = registry.acquire('m', 1);
    const unloading = registry.unload('m', 1, false);
    // Asked while the unload still drains: it must see the unload's result, not overtake it.
    const promoting = registry.promote('m', 1);
    held.release();
    await unloading;
    await expect(promoting).rejects.toMatchObject({ code: 'conflict' });
    expect(registry.acquire('m', undefined).model.version).toBe(2);
    await registry.close();
  });

  it('keeps the old version serving when a promote names a version that failed to load', async () => {
    const repository = await makeRepository({ ...versionedEntries('m', [1]), 'm/2/model.onnx': 'junk' });
    const registry = registryAt(repository);
    await registry.loadAll(await scanRepository(repository, 'model'));
    await expect(registry.promote('m', 2)).rejects.toMatchObject({ code: 'conflict' });
    expect(registry.acquire('m', undefined).model.version).toBe(1);
    await registry.close();
  });
});

describe('readiness', () => {
  it('waits for every model found at start-up: one with no available version makes it not ready', async () => {
    const registry = await registryOver({ ...versionedEntries('good', [1]), 'bad/1/model.onnx': 'junk' });
    expect(registry.ready).toBe(false);
    expect(registry.notReadyReason).toMatch(/bad/);
    expect(registry.acquire('good', undefined).model.name).toBe('good');
    await registry.close();
  });

  it('answers requests for a model with no available version with 503, not 404', async () => {
    const registry = await registryOver({ ...versionedEntries('good', [1]), 'bad/1/model.onnx': 'junk' }, 'bad');
    expect(apiErrorOf(() => registry.acquire('bad', undefined))).toMatchObject({ code: 'not_ready', status: 503 });
    expect(apiErrorOf(() => registry.acquire(undefined, undefined))).toMatchObject({ code: 'not_ready' });
    await registry.close();
  });

  it('is not taken away by a broken model that appears later', async () => {
    const repository = await makeRepository(versionedEntries('good', [1]));
    const registry = registryAt(repository);
    await registry.loadAll(await scanRepository(repository, 'model'));
    await mkdir(path.join(repository, 'late/1'), { recursive: true });
    await writeFile(path.join(repository, 'late/1/model.onnx'), 'junk');
    await registry.poll();
    expect(registry.failures).toEqual([expect.objectContaining({ name: 'late', version: 1 })]);
    expect(registry.ready).toBe(true);
    await registry.close();
  });
});

describe('shutdown', () => {
  it('turns readiness off for good while requests still get their model', async () => {
    const registry = await registryOver(versionedEntries('m', [1]));
    registry.shutDown();
    expect(registry.ready).toBe(false);
    expect(registry.notReadyReason).toBe('shutting down');
    expect(registry.acquire('m', undefined).model.version).toBe(1);
    await registry.close();
  });
});

describe('the default model', () => {
  it('answers 503 when it is configured but not serving, as /ping does', async () => {
    const registry = await registryOver(versionedEntries('other', [1]), 'missing');
    expect(apiErrorOf(() => registry.acquire(undefined, undefined))).toMatchObject({ code: 'not_ready', status: 503 });
    await registry.close();
  });
});
