import { writeFile as fsWriteFile, mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import pino from 'pino';
import { describe, expect, it, vi } from 'vitest';
import type { Backend, LoadedModel } from '../../src/backends/backend.js';
import { backendFor } from '../../src/backends/index.js';
import type { Matrix } from '../../src/matrix.js';
import { ServiceMetrics } from '../../src/metrics.js';
import { ModelRegistry, type RegistryOptions } from '../../src/registry/registry.js';
import { scanRepository } from '../../src/registry/repository.js';
import {
  apiErrorOf,
  captureLogs,
  makeRepository,
  versionedEntries,
  versionedModel,
  versionedPredictions,
} from '../helpers.js';
import { parseMetrics, sampleValue } from '../metrics-scrape.js';

/**
 * Fault injection at the registry, through its two test seams: `backendFor` hands a version's
 * files to a fake backend (one whose load hangs, one whose predictions throw), `writeFile` writes
 * uploaded files (a disk that fills up). The listing is registry.status() (GET /admin/models
 * answers it as is), the metrics a ServiceMetrics fed by the registry as the app's is.
 */

const ROWS = [[2, 5]];
/** A file that makes the `backendFor` seam pick the test's fake backend for its version. */
const FAKE = 'fake.model';

async function faultyRegistry(
  entries: Parameters<typeof makeRepository>[0],
  seams: { fake?: Backend } & Pick<
    RegistryOptions,
    'writeFile' | 'loadTimeoutMs' | 'multiModel' | 'maxLoadedModels'
  > = {},
) {
  const repository = await makeRepository(entries);
  const { lines, logStream } = captureLogs();
  const metrics = new ServiceMetrics(() => registry.status().models);
  const registry: ModelRegistry = new ModelRegistry({
    defaultModel: undefined,
    repository,
    singleModelName: 'model',
    drainTimeoutMs: 1000,
    loadTimeoutMs: seams.loadTimeoutMs,
    log: pino({ level: 'info' }, logStream),
    events: metrics,
    backendFor: (files) => (seams.fake !== undefined && files.includes(FAKE) ? seams.fake : backendFor(files)),
    writeFile: seams.writeFile,
    multiModel: seams.multiModel,
    maxLoadedModels: seams.maxLoadedModels,
  });
  await registry.loadAll(await scanRepository(repository, 'model'));
  const samples = async () => parseMetrics(await metrics.registry.metrics());
  const logged = (message: string | RegExp) => lines.filter((line) => String(line.msg).match(message) !== null);
  const versionStatus = (version: number) =>
    registry
      .status()
      .models.find((m) => m.name === 'm')
      ?.versions.find((v) => v.version === version);
  return { registry, repository, samples, logged, versionStatus };
}

/** What version answers a request naming none, and what it predicts. */
async function answer(registry: ModelRegistry, version?: number) {
  const handle = registry.acquire('m', version);
  try {
    const output = await handle.model.model.predict({ data: new Float64Array(ROWS.flat()), rows: 1, cols: 2 });
    return { version: handle.model.version, predictions: Array.from(output.data) };
  } finally {
    handle.release();
  }
}

/** A fake two-feature model: y = a + b, unless `predict` says otherwise. */
function fakeModel(overrides: Partial<LoadedModel> = {}): LoadedModel {
  return {
    runtime: 'fake',
    inputWidth: 2,
    predict: async (input: Matrix) => ({
      data: Float64Array.from(
        { length: input.rows },
        (_, r) => (input.data[2 * r] ?? 0) + (input.data[2 * r + 1] ?? 0),
      ),
      rows: input.rows,
      cols: 1,
    }),
    dispose: async () => {},
    ...overrides,
  };
}

/** A backend whose load never ends until finish() is called, then brings a model with a dispose spy. */
function hangingBackend() {
  const dispose = vi.fn(async () => {});
  const finishers: Array<() => void> = [];
  const backend: Backend = {
    name: 'onnx',
    claims: (files) => files.includes(FAKE),
    load: () => new Promise((resolve) => finishers.push(() => resolve(fakeModel({ dispose })))),
  };
  const finish = () => {
    for (const resolve of finishers.splice(0)) resolve();
  };
  return { backend, dispose, finish };
}

describe('a SageMaker multi-model load that hangs', () => {
  it('answers 503 (try again), and keeps its MAX_LOADED_MODELS slot until the backend really ends', async () => {
    const hanging = hangingBackend();
    const entries = Object.fromEntries(Object.entries(versionedModel(1)).map(([file, data]) => [`b/${file}`, data]));
    const { registry, repository } = await faultyRegistry(
      { [`a/${FAKE}`]: '', ...entries },
      { fake: hanging.backend, loadTimeoutMs: 100, multiModel: true, maxLoadedModels: 1 },
    );
    const loadB = () => registry.loadFolder('b', path.join(repository, 'b'), 'b');
    const timedOut = await registry.loadFolder('a', path.join(repository, 'a'), 'a').catch((error) => error);
    expect(timedOut).toMatchObject({ code: 'not_ready', statusCode: 503, retryAfterSeconds: 5 });
    // The hung load may still be reading its model into memory: no other model takes its slot.
    expect(await loadB().catch((error) => error)).toMatchObject({ code: 'insufficient_storage' });
    hanging.finish();
    await vi.waitFor(async () => expect(await loadB()).toMatchObject({ model: 'b', after: 1 }));
    expect(hanging.dispose).toHaveBeenCalledTimes(1);
  });
});

describe('a model load that hangs', () => {
  it('fails after MODEL_LOAD_TIMEOUT_MS with reason timeout while the good version serves, and what it brings later is freed, never served', async () => {
    const hanging = hangingBackend();
    const { registry, samples, logged, versionStatus } = await faultyRegistry(
      { ...versionedEntries('m', [1]), [`m/2/${FAKE}`]: '' },
      { fake: hanging.backend, loadTimeoutMs: 2000 },
    );
    // Start-up loading went on past the hung version: the service is ready and version 1 serves.
    expect(registry.ready).toBe(true);
    expect(await answer(registry)).toEqual({ version: 1, predictions: versionedPredictions(1, ROWS) });
    expect(versionStatus(2)).toMatchObject({
      state: 'failed',
      reason: expect.stringContaining('MODEL_LOAD_TIMEOUT_MS'),
      lastLoadFailure: { reason: 'timeout', message: expect.stringContaining('2000 ms'), at: expect.any(String) },
    });
    expect(sampleValue(await samples(), 'wattserve_model_load_failures_total', { reason: 'timeout' })).toBe(1);
    expect(logged('model version failed to load')).toEqual([
      expect.objectContaining({ level: 50, model: 'm', version: 2, failure: 'timeout' }),
    ]);

    hanging.finish();
    await vi.waitFor(() => expect(hanging.dispose).toHaveBeenCalledOnce());
    await vi.waitFor(() => expect(logged(/timed out finished after all/)).toHaveLength(1));
    expect(apiErrorOf(() => registry.acquire('m', 2))).toMatchObject({ code: 'unknown_version' });
    expect(versionStatus(2)?.state).toBe('failed');
    expect((await answer(registry)).version).toBe(1);
    // The model's changes were not held up by the hung load.
    await expect(registry.reload('m')).resolves.toMatchObject({ before: 1, after: 1 });
    await registry.close();
  });

  it('does not load a version again while its last load hangs, and tries again by itself once it ended', async () => {
    // A slow volume: the first load hangs, later ones are quick.
    let release = () => {};
    const backend: Backend = {
      name: 'onnx',
      claims: (files) => files.includes(FAKE),
      load: () => {
        backend.load = async () => fakeModel();
        return new Promise((resolve) => {
          release = () => resolve(fakeModel());
        });
      },
    };
    const { registry, versionStatus } = await faultyRegistry(
      { ...versionedEntries('m', [1]), [`m/2/${FAKE}`]: '' },
      { fake: backend, loadTimeoutMs: 1000 },
    );
    expect(versionStatus(2)?.lastLoadFailure?.reason).toBe('timeout');

    // Its files did not change, but a hang says nothing of them: the poll tries again, and is
    // refused at once while the first load still holds a file-system thread.
    expect(await registry.poll()).toEqual([
      expect.objectContaining({
        failed: [{ version: 2, reason: expect.stringContaining('previous load still hangs') }],
      }),
    ]);
    expect((await answer(registry)).version).toBe(1);

    release();
    await vi.waitFor(async () => expect(await registry.poll()).toEqual([expect.objectContaining({ loaded: [2] })]));
    expect(await answer(registry)).toEqual({ version: 2, predictions: [7] });
    await registry.close();
  });

  it('starts no load while two others hang, so file access for everything else goes on', async () => {
    const hanging = hangingBackend();
    const { registry, versionStatus } = await faultyRegistry(
      { ...versionedEntries('m', [1]), [`m/2/${FAKE}`]: '', [`m/3/${FAKE}`]: '', [`m/4/${FAKE}`]: '' },
      { fake: hanging.backend, loadTimeoutMs: 500 },
    );
    expect([2, 3, 4].map((version) => versionStatus(version)?.reason)).toEqual([
      expect.stringContaining('still loading after 500 ms'),
      expect.stringContaining('still loading after 500 ms'),
      expect.stringContaining('2 model loads still hang'),
    ]);
    expect((await answer(registry)).version).toBe(1);
    hanging.finish();
    await vi.waitFor(() => expect(hanging.dispose).toHaveBeenCalledTimes(2));
    await registry.close();
  });

  it('keeps the copy loaded before serving when a version rewritten in place hangs on its reload', async () => {
    const hanging = hangingBackend();
    const { registry, repository, samples, logged, versionStatus } = await faultyRegistry(
      versionedEntries('m', [1, 2]),
      {
        fake: hanging.backend,
        loadTimeoutMs: 2000,
      },
    );
    await fsWriteFile(path.join(repository, `m/2/${FAKE}`), '');
    expect(await registry.poll()).toEqual([
      expect.objectContaining({
        before: 2,
        after: 2,
        loaded: [],
        failed: [{ version: 2, reason: expect.stringContaining('MODEL_LOAD_TIMEOUT_MS') }],
      }),
    ]);
    expect(await answer(registry)).toEqual({ version: 2, predictions: versionedPredictions(2, ROWS) });
    expect(versionStatus(2)).toMatchObject({ state: 'available', lastLoadFailure: { reason: 'timeout' } });
    expect(versionStatus(2)).not.toHaveProperty('reason');
    let metrics = await samples();
    expect(sampleValue(metrics, 'wattserve_model_reload_failed', { model: 'm', version: '2' })).toBe(1);
    expect(sampleValue(metrics, 'wattserve_model_versions', { model: 'm', version: '2', state: 'available' })).toBe(1);
    expect(logged(/failed to load again; the copy loaded before keeps serving/)).toEqual([
      expect.objectContaining({ version: 2, failure: 'timeout', stillServing: true }),
    ]);

    hanging.finish();
    await vi.waitFor(() => expect(hanging.dispose).toHaveBeenCalledOnce());
    expect(await answer(registry)).toEqual({ version: 2, predictions: versionedPredictions(2, ROWS) });

    // Files that load again clear the fault.
    await rm(path.join(repository, `m/2/${FAKE}`));
    expect(await registry.poll()).toEqual([expect.objectContaining({ loaded: [2], failed: [] })]);
    expect(versionStatus(2)).not.toHaveProperty('lastLoadFailure');
    metrics = await samples();
    expect(sampleValue(metrics, 'wattserve_model_reload_failed', { model: 'm', version: '2' })).toBe(0);
    await registry.close();
  });
});

describe('a backend that throws on predict', () => {
  it('is counted per version in the listing and the metrics, without paths, and the version keeps serving', async () => {
    // Like a native runtime that takes one row at a time: the one-row warm-up passes, two rows throw.
    const fake: Backend = {
      name: 'onnx',
      claims: (files) => files.includes(FAKE),
      load: async () => {
        const model = fakeModel();
        return fakeModel({
          predict: async (input) => {
            if (input.rows > 1) {
              throw new Error('kernel failed at /opt/runtime/src/kernels/matmul.cc:61\n    at run (/app/x.js:1:1)');
            }
            return model.predict(input);
          },
        });
      },
    };
    const { registry, samples, versionStatus } = await faultyRegistry({ [`m/1/${FAKE}`]: '' }, { fake });
    const handle = registry.acquire('m', undefined);
    const twoRows = { data: new Float64Array([1, 2, 3, 4]), rows: 2, cols: 2 };
    // As inference.ts does with a prediction that throws.
    const error = await handle.model.model.predict(twoRows).catch((thrown: unknown) => thrown);
    registry.predictionFailed(handle.model, error);
    handle.release();

    expect(versionStatus(1)).toMatchObject({
      state: 'available',
      predictionFailures: 1,
      lastPredictionFailure: { message: 'kernel failed at matmul.cc:61', at: expect.any(String) },
    });
    expect(sampleValue(await samples(), 'wattserve_prediction_failures_total', { model: 'm', version: '1' })).toBe(1);
    expect(await answer(registry)).toEqual({ version: 1, predictions: [7] });
    await registry.close();
  });
});

describe('a disk that fills up during an upload', () => {
  it('refuses the upload with a clear error, removes the temporary folder, and the serving version still serves', async () => {
    let writes = 0;
    let diskFull = true;
    const writeFile = async (file: string, data: Uint8Array) => {
      // The first file fits, the second does not.
      if (diskFull && ++writes === 2) {
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      }
      await fsWriteFile(file, data, { flag: 'wx' });
    };
    const { registry, repository, logged } = await faultyRegistry(versionedEntries('m', [1]), { writeFile });
    const files = Object.entries(versionedModel(2)).map(([file, content]) => ({
      path: file,
      data: Buffer.from(content),
    }));

    const refused = await registry.upload('m', 2, files, true).catch((error: unknown) => error);
    expect(refused).toMatchObject({
      code: 'insufficient_storage',
      statusCode: 507,
      message: expect.stringContaining('out of space (ENOSPC)'),
    });
    expect((refused as Error).message).not.toContain(repository);
    expect(await readdir(path.join(repository, 'm'))).toEqual(['1']);
    expect(await answer(registry)).toEqual({ version: 1, predictions: versionedPredictions(1, ROWS) });
    const [status] = registry.status().models;
    expect(status?.versions.map((v) => v.version)).toEqual([1]);
    expect(status?.lastUploadFailure).toEqual({
      version: 2,
      code: 'insufficient_storage',
      message: expect.stringContaining('ENOSPC'),
      at: expect.any(String),
    });
    expect(logged('model upload failed; nothing was installed')).toEqual([
      expect.objectContaining({ level: 50, model: 'm', version: 2, err: expect.objectContaining({ code: 'ENOSPC' }) }),
    ]);

    // Space freed: the same upload goes through.
    diskFull = false;
    await expect(registry.upload('m', 2, files, true)).resolves.toMatchObject({ before: 1, after: 2 });
    expect(await answer(registry)).toEqual({ version: 2, predictions: versionedPredictions(2, ROWS) });
    expect(registry.status().models[0]).not.toHaveProperty('lastUploadFailure');
    await registry.close();
  });
});

describe('messages about broken versions', () => {
  it('name files inside the version, never the repository’s path, and carry no stack trace', async () => {
    const { registry, repository, versionStatus } = await faultyRegistry({
      ...versionedEntries('m', [1]),
      'm/2/model.onnx': 'not onnx',
    });
    const [failure] = registry.failures;
    expect(failure?.reason).toContain('model.onnx');
    const messages = [failure?.reason, versionStatus(2)?.lastLoadFailure?.message];
    await mkdir(path.join(repository, 'm/3'));
    await fsWriteFile(path.join(repository, 'm/3/model.onnx'), 'not onnx either');
    messages.push(await registry.load('m', 3, false).then(JSON.stringify, (error: Error) => error.message));
    expect(messages[2]).toMatch(/^m\/3 cannot serve: .*model\.onnx/);
    for (const message of messages) {
      expect(message).toEqual(expect.any(String));
      expect(message).not.toContain(repository);
      expect(message).not.toMatch(/\n\s*at /);
    }
    await registry.close();
  });
});
