import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pino from 'pino';
import request from 'supertest';
import { describe, expect, it, vi } from 'vitest';
import { ModelRegistry, type RegistryOptions } from '../../src/registry/registry.js';
import { scanRepository } from '../../src/registry/repository.js';
import {
  makeRepository,
  startApp,
  versionedEntries,
  versionedModel,
  versionedPredictions,
  writeVersion,
} from '../helpers.js';

const ROWS = [[2, 5]];

async function polledRegistry(
  entries: Parameters<typeof makeRepository>[0],
  seams: Pick<RegistryOptions, 'writeFile'> = {},
) {
  const repository = await makeRepository(entries);
  const registry = new ModelRegistry({
    defaultModel: undefined,
    repository,
    singleModelName: 'model',
    drainTimeoutMs: 1000,
    log: pino({ level: 'silent' }),
    ...seams,
  });
  await registry.loadAll(await scanRepository(repository, 'model'));
  return { registry, repository };
}

const filesOf = (files: Record<string, Uint8Array | string>) =>
  Object.entries(files).map(([file, content]) => ({ path: file, data: Buffer.from(content) }));

async function answer(registry: ModelRegistry, version?: number) {
  const handle = registry.acquire('m', version);
  try {
    const output = await handle.model.model.predict({ data: new Float64Array(ROWS.flat()), rows: 1, cols: 2 });
    return { version: handle.model.version, predictions: Array.from(output.data) };
  } finally {
    handle.release();
  }
}

describe('polling the repository', () => {
  it('loads a new version folder and serves it when it is the newest', async () => {
    const { registry, repository } = await polledRegistry(versionedEntries('m', [1]));
    await writeVersion(repository, 'm', 2);
    const [report] = await registry.poll();
    expect(report).toMatchObject({ model: 'm', before: 1, after: 2, loaded: [2] });
    expect(await answer(registry)).toEqual({ version: 2, predictions: versionedPredictions(2, ROWS) });
    await registry.close();
  });

  it('unloads versions whose folder is gone, and forgets a model whose folder is gone', async () => {
    const { registry, repository } = await polledRegistry(versionedEntries('m', [1, 2]));
    await rm(path.join(repository, 'm/2'), { recursive: true });
    expect(await registry.poll()).toEqual([expect.objectContaining({ before: 2, after: 1, removed: [2] })]);
    await rm(path.join(repository, 'm'), { recursive: true });
    await registry.poll();
    expect(registry.status().models).toEqual([]);
    expect(registry.get('m')).toBeUndefined();
    await registry.close();
  });

  it('does nothing when nothing changed', async () => {
    const { registry } = await polledRegistry(versionedEntries('m', [1, 2]));
    expect(await registry.poll()).toEqual([]);
    await registry.close();
  });

  it('retries a failed version only once its files change', async () => {
    const { registry, repository } = await polledRegistry({
      ...versionedEntries('m', [1]),
      'm/2/model.onnx': 'half-written',
    });
    expect(registry.failures).toHaveLength(1);
    expect(await registry.poll()).toEqual([]);
    await writeVersion(repository, 'm', 2);
    expect(await registry.poll()).toEqual([expect.objectContaining({ loaded: [2], after: 2 })]);
    expect(registry.failures).toEqual([]);
    await registry.close();
  });

  it('reloads a version whose files were rewritten in place', async () => {
    const { registry, repository } = await polledRegistry(versionedEntries('m', [1, 2]));
    await writeVersion(repository, 'm', 2, 7);
    expect(await registry.poll()).toEqual([expect.objectContaining({ loaded: [2], before: 2, after: 2 })]);
    expect(await answer(registry)).toEqual({ version: 2, predictions: versionedPredictions(7, ROWS) });
    await registry.close();
  });

  it('keeps a rollback when the newer version’s files are rewritten', async () => {
    const { registry, repository } = await polledRegistry(versionedEntries('m', [1, 2]));
    await registry.promote('m', 1);
    await writeVersion(repository, 'm', 2, 7);
    expect(await registry.poll()).toEqual([expect.objectContaining({ loaded: [2], before: 1, after: 1 })]);
    expect(await answer(registry, 2)).toEqual({ version: 2, predictions: versionedPredictions(7, ROWS) });
    expect((await answer(registry)).version).toBe(1);
    await registry.close();
  });

  it('does not unload a version uploaded while its scan was under way', async () => {
    const { registry } = await polledRegistry(versionedEntries('m', [1]));
    const uploading = registry.upload('m', 2, filesOf(versionedModel(2)), true);
    const polling = registry.poll();
    await uploading;
    expect(await polling).toEqual([]);
    expect((await answer(registry)).version).toBe(2);
    await registry.close();
  });

  it('skips a new folder removed between its scan and its turn, rather than failing it', async () => {
    let unblock = () => {};
    const blocked = new Promise<void>((resolve) => {
      unblock = resolve;
    });
    const { registry, repository } = await polledRegistry(versionedEntries('m', [1]), {
      // The upload holds the model's turn until the test lets its first file be written.
      writeFile: async (file, data) => {
        await blocked;
        await writeFile(file, data);
      },
    });
    await writeVersion(repository, 'm', 3);
    const uploading = registry.upload('m', 2, filesOf(versionedModel(2)), false);
    const polling = registry.poll();
    // Time for the poll's scan (which finds 3) to finish; it then waits for the upload's turn.
    await new Promise((resolve) => setTimeout(resolve, 300));
    await rm(path.join(repository, 'm/3'), { recursive: true });
    unblock();
    await uploading;
    expect(await polling).toEqual([]);
    expect(registry.status().models[0]?.versions.map((v) => [v.version, v.state])).toEqual([
      [1, 'available'],
      [2, 'available'],
    ]);
    await registry.close();
  });

  it('runs by itself every MODEL_POLL_INTERVAL_MS', async () => {
    const repository = await makeRepository(versionedEntries('m', [1]));
    const app = await startApp({ MODEL_REPOSITORY: repository, MODEL_POLL_INTERVAL_MS: '50' });
    await writeVersion(repository, 'm', 2);
    await vi.waitFor(
      async () => {
        const { body } = await request(app.server).post('/predict').send({ instances: ROWS }).expect(200);
        expect(body).toMatchObject({ version: 2, predictions: versionedPredictions(2, ROWS) });
      },
      { timeout: 5000, interval: 50 },
    );
  });
});
