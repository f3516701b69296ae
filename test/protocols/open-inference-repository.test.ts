import type { FastifyInstance } from 'fastify';
import { describe, expect, it } from 'vitest';
import { bearer, handmadeToken, inAMinute, SECRET, token } from '../admin/helpers.js';
import { makeRepository, startApp, versionedEntries, versionedPredictions, writeVersion } from '../helpers.js';
import { messageError } from './message-errors.js';

const READ_ONLY = bearer(token({ scope: 'models:read' }));
const WRITE_ONLY = bearer(token({ scope: 'models:write' }));

async function repositoryApp(entries: Record<string, string | Uint8Array> = versionedEntries('m', [1, 2])) {
  const repository = await makeRepository(entries);
  const app = await startApp({ MODEL_REPOSITORY: repository, ADMIN_JWT_SECRET: SECRET });
  return { app, repository };
}

const post = (app: FastifyInstance, url: string, payload?: unknown, headers: Record<string, string> = bearer()) =>
  app.inject({
    method: 'POST',
    url: `/v2/repository${url}`,
    headers,
    ...(payload !== undefined && { payload: payload as object }),
  });

const index = async (app: FastifyInstance, payload: unknown = {}) => {
  const response = await post(app, '/index', payload);
  expect(response.statusCode).toBe(200);
  return response.json() as Array<{ name: string; version: string; state: string; reason: string }>;
};

/** A V2 inference on model `name` with rows [1, 2] (inputs a and b). */
const infer = (app: FastifyInstance, name: string) =>
  app.inject({
    method: 'POST',
    url: `/v2/models/${name}/infer`,
    payload: {
      inputs: [
        { name: 'a', shape: [1], datatype: 'FP64', data: [1] },
        { name: 'b', shape: [1], datatype: 'FP64', data: [2] },
      ],
    },
  });

/** The version that answered an inference, told apart by its prediction (y = version·a + b). */
async function servedBy(app: FastifyInstance, name: string): Promise<number> {
  const response = await infer(app, name);
  expect(response.statusCode).toBe(200);
  const body = response.json() as { model_version: string; outputs: Array<{ data: number[] }> };
  const version = Number(body.model_version);
  expect(body.outputs[0]?.data).toEqual(versionedPredictions(version, [[1, 2]]));
  return version;
}

describe('POST /v2/repository/index', () => {
  it('lists every version with its Triton state and reason, and filters ready ones', async () => {
    const { app } = await repositoryApp({ ...versionedEntries('m', [1, 2]), 'm/3/model.onnx': 'garbage' });
    const entries = await index(app);
    expect(entries.map(({ reason, ...entry }) => entry)).toEqual([
      { name: 'm', version: '1', state: 'READY' },
      { name: 'm', version: '2', state: 'READY' },
      { name: 'm', version: '3', state: 'UNAVAILABLE' },
    ]);
    expect(entries[0]?.reason).toBe('');
    expect(entries[2]?.reason).not.toBe('');
    expect((await index(app, { ready: true })).map((e) => e.version)).toEqual(['1', '2']);
    expect((await index(app, { ready: false })).length).toBe(3);
  });

  it('takes an empty body as {}', async () => {
    const { app } = await repositoryApp();
    const response = await post(app, '/index');
    expect(response.statusCode).toBe(200);
    expect(response.json()).toHaveLength(2);
  });

  it('lists a model folder put in the repository after start, never loaded, as UNAVAILABLE', async () => {
    const { app, repository } = await repositoryApp();
    await writeVersion(repository, 'n', 1);
    expect(await index(app)).toContainEqual({ name: 'n', version: '1', state: 'UNAVAILABLE', reason: 'not loaded' });
    expect((await index(app, { ready: true })).map((e) => e.name)).not.toContain('n');
  });

  it('answers 400 {error} naming the field for a bad body', async () => {
    const { app } = await repositoryApp();
    const bad = await messageError(await post(app, '/index', { ready: 'yes' }));
    expect(bad.status).toBe(400);
    expect(bad.error).toMatch(/^ready: /);
    const notObject = await messageError(await post(app, '/index', [1]));
    expect(notObject.status).toBe(400);
  });
});

describe('POST /v2/repository/models/{name}/unload and /load', () => {
  it('unloads every version: inference 503, not ready, index UNAVAILABLE; load serves the highest again', async () => {
    const { app } = await repositoryApp();
    expect(await servedBy(app, 'm')).toBe(2);

    const unloaded = await post(app, '/models/m/unload', {});
    expect(unloaded.statusCode).toBe(200);
    expect(unloaded.json()).toEqual({});
    const refused = await messageError(await infer(app, 'm'));
    expect(refused.status).toBe(503);
    expect((await app.inject({ url: '/v2/models/m/ready' })).statusCode).toBe(404);
    expect((await app.inject({ url: '/v2/health/ready' })).statusCode).toBe(503);
    expect(await index(app)).toEqual([
      { name: 'm', version: '1', state: 'UNAVAILABLE', reason: 'unloaded' },
      { name: 'm', version: '2', state: 'UNAVAILABLE', reason: 'unloaded' },
    ]);
    expect(await index(app, { ready: true })).toEqual([]);
    // Unloading again is not an error.
    expect((await post(app, '/models/m/unload')).statusCode).toBe(200);

    const loaded = await post(app, '/models/m/load', {});
    expect(loaded.statusCode).toBe(200);
    expect(loaded.json()).toEqual({});
    expect(await servedBy(app, 'm')).toBe(2);
    expect((await app.inject({ url: '/v2/models/m/versions/1/ready' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/v2/health/ready' })).statusCode).toBe(200);
    expect((await index(app, { ready: true })).map((e) => e.version)).toEqual(['1', '2']);
  });

  it('loads a model added to the repository after start, and new versions of a loaded one', async () => {
    const { app, repository } = await repositoryApp();
    await writeVersion(repository, 'n', 1);
    expect((await post(app, '/models/n/load')).statusCode).toBe(200);
    expect(await servedBy(app, 'n')).toBe(1);
    await writeVersion(repository, 'm', 3);
    expect((await post(app, '/models/m/load', { parameters: {} })).statusCode).toBe(200);
    expect(await servedBy(app, 'm')).toBe(3);
  });

  it('answers 422 naming a version that does not load, and keeps serving the others', async () => {
    const { app } = await repositoryApp({ ...versionedEntries('m', [1]), 'm/2/model.onnx': 'garbage' });
    const failed = await messageError(await post(app, '/models/m/load'));
    expect(failed.status).toBe(422);
    expect(failed.error).toMatch(/version 2/);
    expect(failed.error).toMatch(/version 1 serves/);
    expect(await servedBy(app, 'm')).toBe(1);
  });

  it('answers 404 {error} for a model neither loaded nor in the repository', async () => {
    const { app } = await repositoryApp();
    for (const action of ['load', 'unload']) {
      const missing = await messageError(await post(app, `/models/nope/${action}`));
      expect(missing.status).toBe(404);
      expect(missing.error).toMatch(/^name: .*"nope"/);
    }
  });

  it('refuses load parameters it cannot honour, accepts unload_dependents', async () => {
    const { app } = await repositoryApp();
    const config = await messageError(await post(app, '/models/m/load', { parameters: { config: '{}' } }));
    expect(config.status).toBe(400);
    expect(config.error).toMatch(/^parameters\.config: /);
    const flag = await messageError(await post(app, '/models/m/unload', { parameters: { unload_dependents: 'x' } }));
    expect(flag.status).toBe(400);
    expect(flag.error).toMatch(/^parameters\.unload_dependents: /);
    expect((await post(app, '/models/m/unload', { parameters: { unload_dependents: true } })).statusCode).toBe(200);
  });
});

describe('the admin token on /v2/repository', () => {
  const attacks: Record<string, () => Record<string, string>> = {
    'no token': () => ({}),
    'an expired token': () => bearer(token({ exp: Math.floor(Date.now() / 1000) - 5 }, { expiresIn: 0 })),
    'a token signed with another secret': () => bearer(token({}, { key: 'another-secret-0123456789abcdefghij' })),
    'alg: none': () =>
      bearer(handmadeToken({ alg: 'none', typ: 'JWT' }, { scope: 'models:read models:write', exp: inAMinute() })),
  };
  for (const [attack, headers] of Object.entries(attacks)) {
    it(`refuses ${attack} with 401 {error} and WWW-Authenticate`, async () => {
      const { app } = await repositoryApp();
      for (const url of ['/index', '/models/m/load', '/models/m/unload']) {
        const response = await post(app, url, {}, headers());
        const refused = await messageError(response);
        expect(refused.status).toBe(401);
        expect(refused.error).toMatch(/^authorization: /);
        expect(response.headers['www-authenticate']).toMatch(/^Bearer realm="wattserve-admin", error="invalid_token"/);
      }
      expect(await servedBy(app, 'm')).toBe(2);
    });
  }

  it('needs models:read for the index and models:write for load and unload (403 otherwise)', async () => {
    const { app } = await repositoryApp();
    expect((await post(app, '/index', {}, READ_ONLY)).statusCode).toBe(200);
    const writer = await post(app, '/index', {}, WRITE_ONLY);
    expect((await messageError(writer)).status).toBe(403);
    expect(writer.headers['www-authenticate']).toContain('scope="models:read"');
    for (const url of ['/models/m/load', '/models/m/unload']) {
      const response = await post(app, url, {}, READ_ONLY);
      const refused = await messageError(response);
      expect(refused.status).toBe(403);
      expect(refused.error).toMatch(/models:write/);
      expect(response.headers['www-authenticate']).toContain('error="insufficient_scope"');
    }
    expect(await servedBy(app, 'm')).toBe(2);
  });
});

describe('without the admin API configured', () => {
  it('has no repository routes and lists no extension', async () => {
    const app = await startApp({ MODEL_REPOSITORY: await makeRepository(versionedEntries('m', [1])) });
    for (const url of ['/index', '/models/m/load', '/models/m/unload']) {
      const missing = await messageError(await post(app, url, {}));
      expect(missing.status).toBe(404);
      expect(missing.error).toMatch(/^no route POST/);
    }
    expect((await app.inject({ url: '/v2' })).json().extensions).toEqual([]);
  });

  it('lists model_repository in GET /v2 when it is configured', async () => {
    const { app } = await repositoryApp();
    expect((await app.inject({ url: '/v2' })).json().extensions).toEqual(['model_repository']);
  });
});
