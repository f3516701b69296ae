import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { cp, open, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import onnxProto from 'onnx-proto';
import request from 'supertest';
import { describe, expect, it, vi } from 'vitest';
import { linearOnnxModel } from '../../scripts/onnx-linear.js';
import {
  captureLogs,
  makeRepository,
  SHIPPED_MODELS,
  startApp,
  versionedEntries,
  versionedModel,
  versionedPredictions,
  writeVersion,
} from '../helpers.js';
import { sampleValue, scrape } from '../metrics-scrape.js';
import { bearer, SECRET, tarGz } from './helpers.js';

/**
 * Faults on disk and in backends while the app serves, injected without seams: files deleted or
 * truncated under a loaded version, weights whose read never ends (a FIFO, as a hung network mount
 * behaves), a model whose runtime throws on some inputs. Each time the last good version keeps
 * serving and the fault shows in the logs, /metrics and GET /admin/models.
 */

const ROWS = [[1, 2]];

async function faultyApp(entries: Parameters<typeof makeRepository>[0], env: Record<string, string> = {}) {
  const repository = await makeRepository(entries);
  const { lines, logStream } = captureLogs();
  const app = await startApp(
    { MODEL_REPOSITORY: repository, ADMIN_JWT_SECRET: SECRET, LOG_LEVEL: 'info', ...env },
    { logStream },
  );
  const logged = (message: RegExp) => lines.filter((line) => message.test(String(line.msg)));
  return { app, repository, logged };
}

async function listing(app: FastifyInstance, version: number) {
  const { body } = await request(app.server).get('/admin/models/m').set(bearer()).expect(200);
  return body.versions.find((v: { version: number }) => v.version === version);
}

/** The version answering a request that names none, checked against that version's own answer. */
async function served(app: FastifyInstance, model = 2): Promise<number> {
  const { body } = await request(app.server).post('/predict').send({ model: 'm', instances: ROWS }).expect(200);
  expect(body.predictions).toEqual(versionedPredictions(model, ROWS));
  return body.version;
}

/** Writes a file stamped a minute later than anything before, so a rescan sees the change. */
async function rewrite(file: string, content: Uint8Array | string): Promise<void> {
  await writeFile(file, content);
  const later = new Date(Date.now() + 60_000);
  await utimes(file, later, later);
}

describe('a model file deleted or truncated while its version serves', () => {
  it('keeps the copy loaded before serving through polls, shows the fault, and picks up the repaired files', async () => {
    const { app, repository, logged } = await faultyApp(versionedEntries('m', [1, 2]), {
      MODEL_POLL_INTERVAL_MS: '50',
    });
    const modelFile = path.join(repository, 'm/2/model.onnx');
    const bytes = await readFile(modelFile);

    await rm(modelFile);
    await vi.waitFor(async () => expect((await listing(app, 2)).lastLoadFailure?.reason).toBe('unrecognised_files'), {
      timeout: 5000,
    });
    expect(await listing(app, 2)).toMatchObject({ state: 'available', backend: 'onnx' });
    expect(await served(app)).toBe(2);
    let samples = await scrape(app);
    expect(sampleValue(samples, 'wattserve_model_reload_failed', { model: 'm', version: '2' })).toBe(1);
    expect(sampleValue(samples, 'wattserve_model_load_failures_total', { reason: 'unrecognised_files' })).toBe(1);
    expect(logged(/failed to load again; the copy loaded before keeps serving/)).toContainEqual(
      expect.objectContaining({ level: 50, model: 'm', version: 2, stillServing: true }),
    );

    await rewrite(modelFile, bytes.subarray(0, Math.floor(bytes.length / 2)));
    await vi.waitFor(
      async () => expect((await listing(app, 2)).lastLoadFailure?.reason).not.toBe('unrecognised_files'),
      { timeout: 5000 },
    );
    expect(await served(app)).toBe(2);
    await request(app.server).get('/ping').expect(200);

    await writeVersion(repository, 'm', 2, 7);
    await vi.waitFor(async () => expect(await served(app, 7)).toBe(2), { timeout: 5000 });
    await vi.waitFor(async () => expect(await listing(app, 2)).not.toHaveProperty('lastLoadFailure'), {
      timeout: 5000,
    });
    samples = await scrape(app);
    expect(sampleValue(samples, 'wattserve_model_reload_failed', { model: 'm', version: '2' })).toBe(0);
  });

  it('answers an admin reload with what failed and why, without the repository’s path, and keeps serving', async () => {
    const { app, repository } = await faultyApp(versionedEntries('m', [1, 2]));
    const modelFile = path.join(repository, 'm/2/model.onnx');
    await rewrite(modelFile, (await readFile(modelFile)).subarray(0, 20));
    const { body } = await request(app.server).post('/admin/models/m/reload').set(bearer()).expect(200);
    expect(body).toMatchObject({
      before: 2,
      after: 2,
      loaded: [],
      failed: [{ version: 2, reason: expect.any(String) }],
    });
    expect(body.failed[0].reason).toContain('model.onnx');
    expect(JSON.stringify(body)).not.toContain(repository);
    expect(body.status.versions[1]).toMatchObject({ version: 2, state: 'available', lastLoadFailure: {} });
    expect(await served(app)).toBe(2);
  });
});

describe('answers about versions that cannot serve', () => {
  it('never carry the repository’s path, the upload’s temporary folder, or a stack trace', async () => {
    const { app, repository } = await faultyApp(versionedEntries('m', [1]));
    await writeVersion(repository, 'm', 2);
    await writeFile(path.join(repository, 'm/2/model.onnx'), 'not onnx');
    const loaded = await request(app.server).post('/admin/models/m/versions/2/load').set(bearer()).expect(422);
    const uploaded = await request(app.server)
      .put('/admin/models/m/versions/3')
      .set(bearer())
      .type('application/gzip')
      .send(await tarGz({ ...versionedModel(3), 'model.onnx': 'not onnx either' }))
      .expect(422);
    const listed = await request(app.server).get('/admin/models').set(bearer()).expect(200);
    for (const { body } of [loaded, uploaded]) {
      expect(body.error).toMatchObject({ code: 'invalid_model', message: expect.stringContaining('model.onnx') });
    }
    for (const { text } of [loaded, uploaded, listed]) {
      expect(text).not.toContain(repository);
      expect(text).not.toContain('.upload-');
      expect(text).not.toMatch(/\\n\s*at /);
    }
    expect(await served(app, 1)).toBe(1);
  });
});

describe('a model load that hangs', () => {
  it('fails after MODEL_LOAD_TIMEOUT_MS, the serving version stays, and the model it loads late is freed, never served', async () => {
    const { app, repository, logged } = await faultyApp(versionedEntries('m', [1]), { MODEL_LOAD_TIMEOUT_MS: '2000' });
    // Version 2 is the TF.js MLP whose weights file is a FIFO: reading it blocks until it is written.
    await cp(path.join(SHIPPED_MODELS, 'pod-power-mlp/1'), path.join(repository, 'm/2'), { recursive: true });
    const shard = path.join(repository, 'm/2/group1-shard1of1.bin');
    const weights = await readFile(shard);
    await rm(shard);
    await promisify(execFile)('mkfifo', [shard]);
    try {
      const { body } = await request(app.server)
        .post('/admin/models/m/versions/2/load?promote=true')
        .set(bearer())
        .expect(422);
      expect(body.error).toMatchObject({
        code: 'invalid_model',
        message: expect.stringContaining('MODEL_LOAD_TIMEOUT_MS'),
      });
      expect(await listing(app, 2)).toMatchObject({ state: 'failed', lastLoadFailure: { reason: 'timeout' } });
      expect(await served(app, 1)).toBe(1);
      await request(app.server).get('/ping').expect(200);
      const samples = await scrape(app);
      expect(sampleValue(samples, 'wattserve_model_load_failures_total', { reason: 'timeout' })).toBe(1);
      expect(sampleValue(samples, 'wattserve_model_versions', { model: 'm', version: '2', state: 'failed' })).toBe(1);
      expect(logged(/^model version failed to load$/)).toEqual([
        expect.objectContaining({ level: 50, version: 2, failure: 'timeout' }),
      ]);

      // The read completes at last: the model loads, is freed at once, and never serves.
      await writeToFifo(shard, weights);
      await vi.waitFor(() => expect(logged(/timed out finished after all/)).toHaveLength(1), { timeout: 10_000 });
      expect(await listing(app, 2)).toMatchObject({ state: 'failed' });
      await request(app.server).post('/predict').send({ model: 'm', version: 2, instances: ROWS }).expect(404);
      expect(await served(app, 1)).toBe(1);
    } finally {
      await writeToFifo(shard, weights);
    }
  });
});

describe('a backend that throws on predict', () => {
  it('answers 500 prediction_failed, counts it per version in /metrics and the listing, and the version keeps serving', async () => {
    // onnxruntime refuses any batch but 1 row for this graph: the one-row warm-up passes, two rows throw.
    const { app, logged } = await faultyApp({
      'm/1/model.onnx': oneRowAtATime(),
      'm/1/metadata.json': JSON.stringify({ features: ['a', 'b'] }),
    });
    const failed = await request(app.server)
      .post('/predict')
      .send({ model: 'm', instances: [...ROWS, ...ROWS] })
      .expect(500);
    expect(failed.body.error).toEqual({ code: 'prediction_failed', message: expect.any(String) });
    expect(failed.text).not.toMatch(/invalid dimensions|\/onnxruntime/);
    expect(logged(/failed to predict/)).toContainEqual(expect.objectContaining({ level: 50 }));

    const samples = await scrape(app);
    expect(sampleValue(samples, 'wattserve_prediction_failures_total', { model: 'm', version: '1' })).toBe(1);
    expect(await listing(app, 1)).toMatchObject({
      state: 'available',
      predictionFailures: 1,
      lastPredictionFailure: { message: expect.stringContaining('invalid dimensions'), at: expect.any(String) },
    });
    expect(await served(app, 1)).toBe(1);
  });
});

/** Opens the FIFO without blocking (nobody may be reading any more) and writes the bytes; a no-op with no reader. */
async function writeToFifo(fifo: string, bytes: Uint8Array): Promise<void> {
  const handle = await open(fifo, constants.O_WRONLY | constants.O_NONBLOCK).catch(() => undefined);
  if (handle === undefined) return;
  try {
    await handle.write(bytes);
  } finally {
    await handle.close();
  }
}

/** versionedModel(1)'s graph with its row dimension fixed at 1. */
function oneRowAtATime(): Uint8Array {
  const { onnx } = onnxProto;
  const model = onnx.ModelProto.decode(linearOnnxModel({ weights: [[1], [1]], bias: [0] }));
  const rows = model.graph?.input?.[0]?.type?.tensorType?.shape?.dim;
  if (rows === undefined || rows === null) throw new Error('no input shape');
  rows[0] = onnx.TensorShapeProto.Dimension.create({ dimValue: 1 });
  return onnx.ModelProto.encode(model).finish();
}
