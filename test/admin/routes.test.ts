import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import {
  makeRepository,
  startApp,
  versionedEntries,
  versionedModel,
  versionedPredictions,
  writeVersion,
} from '../helpers.js';
import { bearer, SECRET, tarGz } from './helpers.js';

const ROWS = [
  [1, 2],
  [3, 4],
];

async function adminApp(versions: number[] = [1, 2]) {
  const repository = await makeRepository(versionedEntries('m', versions));
  const app = await startApp({ MODEL_REPOSITORY: repository, ADMIN_JWT_SECRET: SECRET });
  return { app, repository };
}

/** Which version answers a prediction that names none, checked against that version's own answer. */
async function servingVersion(app: FastifyInstance): Promise<number> {
  const { body } = await request(app.server).post('/predict').send({ model: 'm', instances: ROWS }).expect(200);
  expect(body.predictions).toEqual(versionedPredictions(body.version, ROWS));
  return body.version;
}

const admin = (app: FastifyInstance) => ({
  get: (url: string) => request(app.server).get(`/admin${url}`).set(bearer()),
  post: (url: string, body?: object) => request(app.server).post(`/admin${url}`).set(bearer()).send(body),
  put: (url: string, body: Buffer | object) =>
    Buffer.isBuffer(body)
      ? request(app.server).put(`/admin${url}`).set(bearer()).type('application/gzip').send(body)
      : request(app.server).put(`/admin${url}`).set(bearer()).send(body),
  delete: (url: string) => request(app.server).delete(`/admin${url}`).set(bearer()),
});

describe('GET /admin/models', () => {
  it('lists every version with its state, backend, load time, in-flight count, and what serves', async () => {
    const repository = await makeRepository({ ...versionedEntries('m', [1, 2]), 'm/3/model.onnx': 'garbage' });
    const app = await startApp({ MODEL_REPOSITORY: repository, ADMIN_JWT_SECRET: SECRET });
    const { body } = await admin(app).get('/models').expect(200);
    expect(body).toEqual({
      unreadable: [],
      models: [
        {
          name: 'm',
          serving: 2,
          labels: {},
          versions: [
            {
              version: 1,
              state: 'available',
              location: 'm/1',
              backend: 'onnx',
              loadedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
              loadSeconds: expect.any(Number),
              inFlight: 0,
            },
            expect.objectContaining({ version: 2, state: 'available' }),
            expect.objectContaining({ version: 3, state: 'failed', reason: expect.any(String), inFlight: 0 }),
          ],
        },
      ],
    });
  });

  it('answers 404 for a model it does not know', async () => {
    const { app } = await adminApp();
    const { body } = await admin(app).get('/models/nope').expect(404);
    expect(body.error).toMatchObject({ code: 'unknown_model', field: 'name' });
  });
});

describe('promote and rollback', () => {
  it('switches what serves, and back', async () => {
    const { app } = await adminApp();
    expect(await servingVersion(app)).toBe(2);
    const rollback = await admin(app).post('/models/m/promote', { version: 1 }).expect(200);
    expect(rollback.body).toMatchObject({ model: 'm', before: 2, after: 1, status: { serving: 1 } });
    expect(await servingVersion(app)).toBe(1);
    await admin(app).post('/models/m/promote', { version: 2 }).expect(200);
    expect(await servingVersion(app)).toBe(2);
  });

  it('refuses a version that is not available, and a body without a version', async () => {
    const { app } = await adminApp();
    expect((await admin(app).post('/models/m/promote', { version: 9 }).expect(404)).body.error.code).toBe(
      'unknown_version',
    );
    const missing = await admin(app).post('/models/m/promote', {}).expect(400);
    expect(missing.body.error).toMatchObject({ code: 'invalid_body', field: 'version' });
    const wrongType = await admin(app).post('/models/m/promote', { version: '2' }).expect(400);
    expect(wrongType.body.error.field).toBe('version');
  });
});

describe('unload', () => {
  it('refuses the serving version unless forced and another version can take over', async () => {
    const { app } = await adminApp();
    const refused = await admin(app).delete('/models/m/versions/2').expect(409);
    expect(refused.body.error.message).toMatch(/force=true/);
    const forced = await admin(app).delete('/models/m/versions/2?force=true').expect(200);
    expect(forced.body).toMatchObject({ before: 2, after: 1 });
    expect(forced.body.status.versions).toContainEqual(expect.objectContaining({ version: 2, state: 'unloaded' }));
    expect(await servingVersion(app)).toBe(1);
    const last = await admin(app).delete('/models/m/versions/1?force=true').expect(409);
    expect(last.body.error.message).toMatch(/only available version/);
  });

  it('unloads a version that does not serve, after which requests pinning it get a 404', async () => {
    const { app } = await adminApp();
    await admin(app).delete('/models/m/versions/1').expect(200);
    const { body } = await request(app.server).post('/predict').send({ model: 'm', version: 1, instances: ROWS });
    expect(body.error.code).toBe('unknown_version');
  });

  it('answers 400 naming the field for a version that is not written as a version folder is', async () => {
    const { app } = await adminApp();
    for (const version of ['latest', '1.0', '0x1', '1e0', '0', '9007199254740993']) {
      const { body } = await admin(app).delete(`/models/m/versions/${version}`).expect(400);
      expect(body.error).toMatchObject({ code: 'bad_request', field: 'version' });
    }
    expect((await admin(app).get('/models/m')).body.versions).toHaveLength(2);
  });
});

describe('load from the repository', () => {
  it('loads a version written after start-up; it serves only when asked to', async () => {
    const { app, repository } = await adminApp([1]);
    await writeVersion(repository, 'm', 2);
    const loaded = await admin(app).post('/models/m/versions/2/load').expect(200);
    expect(loaded.body).toMatchObject({ before: 1, after: 1 });
    expect(await servingVersion(app)).toBe(1);
    await writeVersion(repository, 'm', 3);
    await admin(app).post('/models/m/versions/3/load?promote=true').expect(200);
    expect(await servingVersion(app)).toBe(3);
  });

  it('answers 404 for a folder that is not there, 409 for a version already loaded', async () => {
    const { app } = await adminApp([1]);
    expect((await admin(app).post('/models/m/versions/5/load').expect(404)).body.error.code).toBe('unknown_version');
    expect((await admin(app).post('/models/m/versions/1/load').expect(409)).body.error.code).toBe('conflict');
  });

  it('answers 422 with the reason for a broken version, which is listed as failed while the old one serves', async () => {
    const { app, repository } = await adminApp([1]);
    await mkdir(path.join(repository, 'm/2'));
    await writeFile(path.join(repository, 'm/2/model.onnx'), 'not onnx');
    const { body } = await admin(app).post('/models/m/versions/2/load?promote=true').expect(422);
    expect(body.error).toMatchObject({ code: 'invalid_model', message: expect.stringContaining('m/2') });
    expect(await servingVersion(app)).toBe(1);
    const listing = await admin(app).get('/models/m').expect(200);
    expect(listing.body.versions).toContainEqual(expect.objectContaining({ version: 2, state: 'failed' }));
    await request(app.server).get('/ping').expect(200);
  });
});

describe('upload', () => {
  it('writes a .tar.gz version into the repository, loads it, and answers 201', async () => {
    const { app, repository } = await adminApp([1]);
    const archive = await tarGz(versionedModel(2));
    const { body, headers } = await admin(app).put('/models/m/versions/2?promote=true', archive).expect(201);
    expect(headers.location).toBe('/admin/models/m');
    expect(body).toMatchObject({ before: 1, after: 2 });
    expect((await readdir(path.join(repository, 'm/2'))).sort()).toEqual(['metadata.json', 'model.onnx']);
    expect(await servingVersion(app)).toBe(2);
  });

  it('creates a new model from an upload, whatever Content-Type curl sent, or none', async () => {
    const { app } = await adminApp([1]);
    const archive = await tarGz(Object.fromEntries(Object.entries(versionedModel(4)).map(([f, c]) => [`4/${f}`, c])));
    // As curl --data-binary sends it: raw bytes labelled as a form.
    const upload = await app.inject({
      method: 'PUT',
      url: '/admin/models/fresh/versions/4',
      headers: { ...bearer(), 'content-type': 'application/x-www-form-urlencoded' },
      payload: archive,
    });
    expect(upload.statusCode).toBe(201);
    // As curl -T sends it: no Content-Type at all.
    const unlabelled = await app.inject({
      method: 'PUT',
      url: '/admin/models/fresh/versions/5',
      headers: bearer(),
      payload: await tarGz(versionedModel(5)),
    });
    expect(unlabelled.statusCode).toBe(201);
    const { body } = await request(app.server).post('/predict').send({ model: 'fresh', instances: ROWS }).expect(200);
    expect(body.predictions).toEqual(versionedPredictions(4, ROWS));
  });

  it('takes the archive as bytes even when labelled as JSON', async () => {
    const { app } = await adminApp([1]);
    const upload = await app.inject({
      method: 'PUT',
      url: '/admin/models/m/versions/2',
      headers: { ...bearer(), 'content-type': 'application/json' },
      payload: await tarGz(versionedModel(2)),
    });
    expect(upload.statusCode).toBe(201);
  });

  it('needs a token like every admin route', async () => {
    const { app, repository } = await adminApp([1]);
    await request(app.server)
      .put('/admin/models/m/versions/2')
      .type('application/gzip')
      .send(await tarGz(versionedModel(2)))
      .expect(401);
    expect(await readdir(path.join(repository, 'm'))).toEqual(['1']);
  });

  it('answers 409 when a file of the repository stands where the model folder would go', async () => {
    const repository = await makeRepository({ ...versionedEntries('m', [1]), 'notes.txt': 'operator notes' });
    const app = await startApp({ MODEL_REPOSITORY: repository, ADMIN_JWT_SECRET: SECRET });
    const { body } = await admin(app)
      .put('/models/notes.txt/versions/1', await tarGz(versionedModel(1)))
      .expect(409);
    expect(body.error).toMatchObject({ code: 'conflict', field: 'name' });
  });

  it('answers 422 for an archive entry whose name no file system takes', async () => {
    const { app, repository } = await adminApp([1]);
    const archive = await tarGz({ ...versionedModel(2), [`${'n'.repeat(300)}.txt`]: 'x' });
    const { body } = await admin(app).put('/models/m/versions/2', archive).expect(422);
    expect(body.error.code).toBe('invalid_archive');
    expect(await readdir(path.join(repository, 'm'))).toEqual(['1']);
  });

  it('answers 409 when the version exists, on disk or in the registry', async () => {
    const { app } = await adminApp([1]);
    const { body } = await admin(app)
      .put('/models/m/versions/1', await tarGz(versionedModel(1)))
      .expect(409);
    expect(body.error.code).toBe('version_exists');
  });

  it('refuses a model that does not load with 422, leaves nothing behind, and keeps serving', async () => {
    const { app, repository } = await adminApp([1]);
    const broken = await tarGz({ 'model.onnx': 'definitely not onnx' });
    const { body } = await admin(app).put('/models/m/versions/2?promote=true', broken).expect(422);
    expect(body.error.code).toBe('invalid_model');
    expect(await readdir(path.join(repository, 'm'))).toEqual(['1']);
    expect(await servingVersion(app)).toBe(1);
    const listing = await admin(app).get('/models/m').expect(200);
    expect(listing.body.versions.map((v: { version: number }) => v.version)).toEqual([1]);
    // The refused number is free for a good upload.
    await admin(app)
      .put('/models/m/versions/2', await tarGz(versionedModel(2)))
      .expect(201);
  });

  it('refuses an archive that climbs out of the repository (zip-slip) and writes nothing', async () => {
    const { app, repository } = await adminApp([1]);
    const climbing = await tarGz({ ...versionedModel(2), '../../escaped.txt': 'pwned' });
    const { body } = await admin(app).put('/models/m/versions/2', climbing).expect(422);
    expect(body.error).toMatchObject({ code: 'invalid_archive', message: expect.stringContaining('..') });
    expect(existsSync(path.join(repository, '..', 'escaped.txt'))).toBe(false);
    expect(existsSync(path.join(repository, 'escaped.txt'))).toBe(false);
    expect(await readdir(path.join(repository, 'm'))).toEqual(['1']);
  });

  it('refuses a body that is no archive, and archives over MAX_MODEL_BYTES or MAX_UPLOAD_ENTRIES', async () => {
    const repository = await makeRepository(versionedEntries('m', [1]));
    const app = await startApp({
      MODEL_REPOSITORY: repository,
      ADMIN_JWT_SECRET: SECRET,
      MAX_MODEL_BYTES: '2000',
      MAX_UPLOAD_ENTRIES: '2',
    });
    const notArchive = await admin(app)
      .put('/models/m/versions/2', { instances: [[1, 2]] })
      .expect(422);
    expect(notArchive.body.error.code).toBe('invalid_archive');
    // A few hundred bytes of gzip that unpack to 5000.
    const bomb = await admin(app)
      .put('/models/m/versions/2', await tarGz({ 'model.onnx': 'x'.repeat(5000) }))
      .expect(413);
    expect(bomb.body.error).toMatchObject({
      code: 'upload_too_large',
      message: expect.stringContaining('MAX_MODEL_BYTES'),
    });
    const oversized = await admin(app).put('/models/m/versions/2', randomBytes(3000)).expect(413);
    expect(oversized.body.error).toMatchObject({
      code: 'upload_too_large',
      message: expect.stringContaining('MAX_MODEL_BYTES'),
    });
    const crowded = await admin(app)
      .put('/models/m/versions/2', await tarGz({ a: '1', b: '2', c: '3' }))
      .expect(413);
    expect(crowded.body.error).toMatchObject({
      code: 'too_many_entries',
      message: expect.stringContaining('MAX_UPLOAD_ENTRIES'),
    });
    expect(await readdir(path.join(repository, 'm'))).toEqual(['1']);
  });

  it('answers 409 when the repository root is a single model (SageMaker layout), which has no version folders', async () => {
    const repository = await makeRepository(versionedModel(1));
    const app = await startApp({ MODEL_REPOSITORY: repository, ADMIN_JWT_SECRET: SECRET });
    const { body } = await admin(app)
      .put('/models/m/versions/2', await tarGz(versionedModel(2)))
      .expect(409);
    expect(body.error.message).toMatch(/single model/);
    expect((await readdir(repository)).sort()).toEqual(['metadata.json', 'model.onnx']);
  });

  it('answers 400 for a model name that could be a path', async () => {
    const { app } = await adminApp([1]);
    const { body } = await admin(app)
      .put('/models/..%2Fetc/versions/2', await tarGz(versionedModel(2)))
      .expect(400);
    expect(body.error).toMatchObject({ code: 'bad_request', field: 'name' });
  });
});

describe('reload', () => {
  it('loads new folders (the newest serves), unloads removed ones, and reports what it did', async () => {
    const { app, repository } = await adminApp([1, 2]);
    await writeVersion(repository, 'm', 3);
    await rm(path.join(repository, 'm/1'), { recursive: true });
    const { body } = await admin(app).post('/models/m/reload').expect(200);
    expect(body).toMatchObject({ before: 2, after: 3, loaded: [3], removed: [1], failed: [] });
    expect(await servingVersion(app)).toBe(3);
    expect(body.status.versions.map((v: { version: number }) => v.version)).toEqual([2, 3]);
  });

  it('answers 404 for a model neither loaded nor on disk', async () => {
    const { app } = await adminApp([1]);
    await admin(app).post('/models/ghost/reload').expect(404);
  });
});

describe('bodies of the other admin routes', () => {
  it('are JSON only, within MAX_BODY_BYTES, and a bad one is answered briefly', async () => {
    const { app } = await adminApp();
    const bytes = await request(app.server)
      .post('/admin/models/m/promote')
      .set(bearer())
      .type('application/octet-stream')
      .send(Buffer.alloc(1000));
    expect(bytes.status).toBe(415);
    const manyKeys = Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`k${i}`, i]));
    const { body, text } = await admin(app)
      .post('/models/m/promote', { version: 1, ...manyKeys })
      .expect(400);
    expect(body.error.code).toBe('invalid_body');
    expect(text.length).toBeLessThan(2000);
  });
});

describe('labels', () => {
  it('point at available versions and show in the listing; unloading a version drops its labels', async () => {
    const { app } = await adminApp([1, 2]);
    await admin(app).put('/models/m/labels/stable', { version: 1 }).expect(200);
    await admin(app).put('/models/m/labels/canary', { version: 2 }).expect(200);
    expect((await admin(app).get('/models/m')).body.labels).toEqual({ stable: 1, canary: 2 });
    await admin(app).delete('/models/m/labels/canary').expect(200);
    await admin(app).delete('/models/m/versions/1?force=true').expect(200);
    expect((await admin(app).get('/models/m')).body.labels).toEqual({});
    expect((await admin(app).put('/models/m/labels/stable', { version: 1 }).expect(409)).body.error.code).toBe(
      'conflict',
    );
    expect((await admin(app).delete('/models/m/labels/nope').expect(404)).body.error.code).toBe('unknown_label');
  });
});
