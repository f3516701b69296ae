import { mkdir, symlink } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { describe, expect, it, vi } from 'vitest';
import { bearer, SECRET, tarGz } from '../admin/helpers.js';
import { makeRepository, startApp, versionedModel, versionedPredictions } from '../helpers.js';

/**
 * SageMaker multi-model mode (SAGEMAKER_MULTI_MODEL=true), as SageMaker's "custom containers
 * contract for multi-model endpoints" has it: LoadModel, ListModels, DescribeModel, UnloadModel and
 * InvokeModel under /models, with `model_name` as the key.
 */

const ROWS = [
  [1, 2],
  [3, 4],
];
const csv = (rows: number[][]) => `${rows.map((row) => row.join(',')).join('\n')}\n`;

/** A repository with one folder per entry, holding versionedModel(version)'s files directly, as SageMaker lays them out. */
function modelFolders(folders: Record<string, number>) {
  return Object.fromEntries(
    Object.entries(folders).flatMap(([folder, version]) =>
      Object.entries(versionedModel(version)).map(([file, content]) => [`${folder}/${file}`, content]),
    ),
  );
}

async function multiModelApp(folders: Record<string, number>, env: Record<string, string> = {}) {
  const repository = await makeRepository(modelFolders(folders));
  const app = await startApp({ SAGEMAKER_MULTI_MODEL: 'true', MODEL_REPOSITORY: repository, ...env });
  return { app, repository };
}

const load = (app: FastifyInstance, payload: object) => app.inject({ method: 'POST', url: '/models', payload });
const loadFrom = (app: FastifyInstance, repository: string, name: string, folder: string) =>
  load(app, { model_name: name, url: path.join(repository, folder) });
const invoke = (app: FastifyInstance, name: string, headers: Record<string, string> = {}, body = csv(ROWS)) =>
  app.inject({
    method: 'POST',
    url: `/models/${name}/invoke`,
    headers: { 'content-type': 'text/csv', ...headers },
    payload: body,
  });

describe('start-up in multi-model mode', () => {
  it('loads nothing from the repository and is ready at once', async () => {
    const { app } = await multiModelApp({ 'a/model': 1 });
    expect((await app.inject('/ping')).statusCode).toBe(200);
    const listing = await app.inject('/models');
    expect(listing.statusCode).toBe(200);
    expect(listing.json()).toEqual({ models: [] });
  });
});

describe('POST /models (LoadModel)', () => {
  it('loads a folder under a name that lists, describes and predicts', async () => {
    const { app, repository } = await multiModelApp({ 'a/model': 3 });
    const url = path.join(repository, 'a/model');
    const loaded = await load(app, { model_name: 'alpha', url });
    expect(loaded.statusCode).toBe(200);
    expect(loaded.json()).toEqual({ modelName: 'alpha', modelUrl: url });

    expect((await app.inject('/models')).json()).toEqual({ models: [{ modelName: 'alpha', modelUrl: url }] });
    expect((await app.inject('/models/alpha')).json()).toEqual({ modelName: 'alpha', modelUrl: url });
    const predicted = await invoke(app, 'alpha');
    expect(predicted.statusCode).toBe(200);
    expect(predicted.json().predictions).toEqual(versionedPredictions(3, ROWS));
  });

  it('answers 409 when the name is loaded, whatever the folder, and when two loads of it race', async () => {
    const { app, repository } = await multiModelApp({ 'a/model': 1, 'b/model': 2, 'c/model': 3 });
    expect((await loadFrom(app, repository, 'alpha', 'a/model')).statusCode).toBe(200);
    const again = await loadFrom(app, repository, 'alpha', 'b/model');
    expect(again.statusCode).toBe(409);
    expect(again.json().error).toMatchObject({ code: 'conflict', field: 'model_name' });
    expect((await invoke(app, 'alpha')).json().predictions).toEqual(versionedPredictions(1, ROWS));

    const racing = await Promise.all([
      loadFrom(app, repository, 'gamma', 'c/model'),
      loadFrom(app, repository, 'gamma', 'c/model'),
    ]);
    expect(racing.map((answer) => answer.statusCode).sort()).toEqual([200, 409]);
  });

  it.each([
    ['a relative path climbing out', '../elsewhere/model'],
    ['the repository root itself', '.'],
  ])('refuses a url outside the repository: %s', async (_, url) => {
    const { app } = await multiModelApp({ 'a/model': 1 });
    const refused = await load(app, { model_name: 'alpha', url });
    expect(refused.statusCode).toBe(400);
    expect(refused.json().error).toMatchObject({ code: 'invalid_body', field: 'url' });
  });

  it('refuses an absolute path elsewhere, and a symbolic link leading out, though both hold a model', async () => {
    const { app, repository } = await multiModelApp({ 'a/model': 1 });
    const elsewhere = await makeRepository(modelFolders({ 'x/model': 1 }));
    await symlink(path.join(elsewhere, 'x'), path.join(repository, 'escape'));
    for (const url of [path.join(elsewhere, 'x/model'), path.join(repository, 'escape/model')]) {
      const refused = await load(app, { model_name: 'alpha', url });
      expect(refused.statusCode).toBe(400);
      expect(refused.json().error).toMatchObject({ code: 'invalid_body', field: 'url' });
    }
    expect((await app.inject('/models')).json()).toEqual({ models: [] });
  });

  it('refuses a folder whose files link out of it, without quoting what they point at', async () => {
    const { app, repository } = await multiModelApp({ 'a/model': 1 });
    const elsewhere = await makeRepository({ 'secret.json': 'TOPSECRET-do-not-show', ...modelFolders({ x: 3 }) });
    await mkdir(path.join(repository, 'evil'));
    await symlink(path.join(repository, 'a/model/model.onnx'), path.join(repository, 'evil/model.onnx'));
    await symlink(path.join(elsewhere, 'secret.json'), path.join(repository, 'evil/metadata.json'));
    await mkdir(path.join(repository, 'borrowed'));
    for (const file of ['model.onnx', 'metadata.json']) {
      await symlink(path.join(elsewhere, 'x', file), path.join(repository, 'borrowed', file));
    }
    for (const url of ['evil', 'borrowed']) {
      const refused = await load(app, { model_name: url, url });
      expect(refused.statusCode).toBe(400);
      expect(refused.json().error).toMatchObject({ code: 'invalid_body', field: 'url' });
      expect(refused.body).not.toContain('TOPSECRET');
    }
    expect((await app.inject('/models')).json()).toEqual({ models: [] });
  });

  it('never names the repository in an answer, and refuses NUL characters and over-long urls', async () => {
    const { app, repository } = await multiModelApp({ 'a/model': 1 });
    for (const url of ['/etc', '.', 'a/..', repository, `a/model${'\0'}x`, 'a/'.repeat(3000)]) {
      const refused = await load(app, { model_name: 'alpha', url });
      expect(refused.statusCode, url.slice(0, 40)).toBe(400);
      expect(refused.json().error).toMatchObject({ code: 'invalid_body', field: 'url' });
      expect(refused.body).not.toContain(repository);
      expect(refused.body.length).toBeLessThan(500);
    }
  });

  it('follows a symbolic link that stays inside the repository', async () => {
    const { app, repository } = await multiModelApp({ 'a/model': 2 });
    await symlink(path.join(repository, 'a'), path.join(repository, 'linked'));
    expect((await loadFrom(app, repository, 'alpha', 'linked/model')).statusCode).toBe(200);
    expect((await invoke(app, 'alpha')).json().predictions).toEqual(versionedPredictions(2, ROWS));
  });

  it('answers 404 for a missing folder, 400 for a file, 422 for a folder that holds no model', async () => {
    const { app, repository } = await multiModelApp({ 'a/model': 1 });
    await mkdir(path.join(repository, 'empty'));
    const missing = await loadFrom(app, repository, 'alpha', 'nowhere/model');
    expect(missing.statusCode).toBe(404);
    expect(missing.json().error).toMatchObject({ code: 'not_found', field: 'url' });
    const file = await loadFrom(app, repository, 'alpha', 'a/model/model.onnx');
    expect(file.statusCode).toBe(400);
    expect(file.json().error).toMatchObject({ code: 'invalid_body', field: 'url' });
    const empty = await loadFrom(app, repository, 'alpha', 'empty');
    expect(empty.statusCode).toBe(422);
    expect(empty.json().error).toMatchObject({ code: 'invalid_model', field: 'url' });
    // A failed load leaves nothing behind: the name loads from a good folder.
    expect((await loadFrom(app, repository, 'alpha', 'a/model')).statusCode).toBe(200);
  });

  it.each([
    ['a name that is a path', { model_name: '../alpha', url: 'a/model' }, 'model_name'],
    ['no name', { url: 'a/model' }, 'model_name'],
    ['no url', { model_name: 'alpha' }, 'url'],
    ['a url that is not a string', { model_name: 'alpha', url: 7 }, 'url'],
  ])('answers 400 naming the field for %s', async (_, payload, field) => {
    const { app } = await multiModelApp({ 'a/model': 1 });
    const refused = await load(app, payload);
    expect(refused.statusCode).toBe(400);
    expect(refused.json().error).toMatchObject({ code: 'invalid_body', field });
  });

  it('answers 507 with a JSON body past MAX_LOADED_MODELS, until a model is unloaded', async () => {
    const { app, repository } = await multiModelApp({ 'a/model': 1, 'b/model': 2 }, { MAX_LOADED_MODELS: '1' });
    expect((await loadFrom(app, repository, 'alpha', 'a/model')).statusCode).toBe(200);
    const full = await loadFrom(app, repository, 'beta', 'b/model');
    expect(full.statusCode).toBe(507);
    expect(full.headers['content-type']).toMatch(/^application\/json/);
    expect(full.json().error.code).toBe('insufficient_storage');
    expect(full.json().error.message).toMatch(/MAX_LOADED_MODELS/);
    expect((await app.inject({ method: 'DELETE', url: '/models/alpha' })).statusCode).toBe(200);
    expect((await loadFrom(app, repository, 'beta', 'b/model')).statusCode).toBe(200);
  });

  it('counts loads in progress against MAX_LOADED_MODELS: of two at once, one is refused', async () => {
    const { app, repository } = await multiModelApp({ 'a/model': 1, 'b/model': 2 }, { MAX_LOADED_MODELS: '1' });
    const racing = await Promise.all([
      loadFrom(app, repository, 'alpha', 'a/model'),
      loadFrom(app, repository, 'beta', 'b/model'),
    ]);
    expect(racing.map((answer) => answer.statusCode).sort()).toEqual([200, 507]);
    expect((await app.inject('/models')).json().models).toHaveLength(1);
  });

  it('answers 507 when the memory budget cannot take the model', async () => {
    // The process alone holds far more than 1 MB.
    const { app, repository } = await multiModelApp({ 'a/model': 1 }, { MODEL_MEMORY_BUDGET_MB: '1' });
    const refused = await loadFrom(app, repository, 'alpha', 'a/model');
    expect(refused.statusCode).toBe(507);
    expect(refused.json().error).toMatchObject({ code: 'insufficient_storage' });
    expect(refused.json().error.message).toMatch(/MODEL_MEMORY_BUDGET_MB/);
    expect((await app.inject('/models')).json()).toEqual({ models: [] });
  });

  it('loads within a memory budget that can take the model', async () => {
    const { app, repository } = await multiModelApp({ 'a/model': 1 }, { MODEL_MEMORY_BUDGET_MB: '1000000' });
    expect((await loadFrom(app, repository, 'alpha', 'a/model')).statusCode).toBe(200);
  });
});

describe('GET /models (ListModels)', () => {
  const FIVE = { 'm/a': 1, 'm/b': 2, 'm/c': 3, 'm/d': 4, 'm/e': 5 };

  async function fiveLoaded() {
    const { app, repository } = await multiModelApp(FIVE);
    // Loaded out of order: the listing is in name order whatever the order of loading.
    for (const name of ['d', 'a', 'e', 'c', 'b']) {
      expect((await loadFrom(app, repository, name, `m/${name}`)).statusCode).toBe(200);
    }
    return app;
  }

  const names = (body: { models: Array<{ modelName: string }> }) => body.models.map((model) => model.modelName);

  it('pages with next_page_token until no nextPageToken comes back', async () => {
    const app = await fiveLoaded();
    const pages: string[][] = [];
    let url = '/models?page_size=2';
    for (;;) {
      const body = (await app.inject(url)).json();
      pages.push(names(body));
      if (body.nextPageToken === undefined) break;
      url = `/models?page_size=2&next_page_token=${encodeURIComponent(body.nextPageToken)}`;
    }
    expect(pages).toEqual([['a', 'b'], ['c', 'd'], ['e']]);
  });

  it('lists every model on one page by default', async () => {
    const app = await fiveLoaded();
    const body = (await app.inject('/models')).json();
    expect(names(body)).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(body).not.toHaveProperty('nextPageToken');
  });

  it('takes the token under the name it was answered with too, and skips nothing when a model goes', async () => {
    const app = await fiveLoaded();
    const first = (await app.inject('/models?page_size=2')).json();
    expect((await app.inject({ method: 'DELETE', url: '/models/b' })).statusCode).toBe(200);
    const second = (await app.inject(`/models?page_size=2&nextPageToken=${first.nextPageToken}`)).json();
    expect(names(second)).toEqual(['c', 'd']);
  });

  it.each([
    ['a token this server never made', 'next_page_token=not-a-token!', 'next_page_token'],
    ['a page size of 0', 'page_size=0', 'page_size'],
  ])('answers 400 for %s', async (_, query, field) => {
    const app = await fiveLoaded();
    const refused = await app.inject(`/models?${query}`);
    expect(refused.statusCode).toBe(400);
    expect(refused.json().error).toMatchObject({ code: 'bad_request', field });
  });
});

describe('POST /models/{name}/invoke (InvokeModel)', () => {
  it('negotiates like /invocations: CSV or JSON in, the type Accept prefers out', async () => {
    const { app, repository } = await multiModelApp({ 'a/model': 2 });
    await loadFrom(app, repository, 'alpha', 'a/model');
    const expected = versionedPredictions(2, ROWS);
    const fromJson = await invoke(app, 'alpha', { 'content-type': 'application/json' }, JSON.stringify(ROWS));
    expect(fromJson.json().predictions).toEqual(expected);
    const asCsv = await invoke(app, 'alpha', { accept: 'text/csv' });
    expect(asCsv.headers['content-type']).toMatch(/^text\/csv/);
    expect(asCsv.body.trim().split('\n').map(Number)).toEqual(expected);

    const unacceptable = await invoke(app, 'alpha', { accept: 'text/html' });
    expect(unacceptable.statusCode).toBe(406);
    expect(unacceptable.json().error).toMatchObject({ code: 'not_acceptable', field: 'accept' });
    const unsupported = await invoke(app, 'alpha', { 'content-type': 'application/x-protobuf' }, 'x');
    expect(unsupported.statusCode).toBe(415);
  });

  it('picks the model by its path alone, echoing the custom attributes', async () => {
    const { app, repository } = await multiModelApp({ 'a/model': 1, 'b/model': 2 });
    await loadFrom(app, repository, 'alpha', 'a/model');
    await loadFrom(app, repository, 'beta', 'b/model');
    // SageMaker sends the artifact's path here, for logging.
    const answer = await invoke(app, 'beta', {
      'x-amzn-sagemaker-target-model': 'models/beta.tar.gz',
      'x-amzn-sagemaker-custom-attributes': 'trace=1',
    });
    expect(answer.statusCode).toBe(200);
    expect(answer.json().predictions).toEqual(versionedPredictions(2, ROWS));
    expect(answer.headers['x-amzn-sagemaker-custom-attributes']).toBe('trace=1');
  });

  it('answers 404 for a model that is not loaded', async () => {
    const { app } = await multiModelApp({ 'a/model': 1 });
    const missing = await invoke(app, 'alpha');
    expect(missing.statusCode).toBe(404);
    expect(missing.json().error.code).toBe('unknown_model');
  });

  it('lets X-Amzn-SageMaker-Target-Model route /invocations to a loaded model', async () => {
    const { app, repository } = await multiModelApp({ 'a/model': 1, 'b/model': 2 });
    await loadFrom(app, repository, 'alpha', 'a/model');
    await loadFrom(app, repository, 'beta', 'b/model');
    const answer = await app.inject({
      method: 'POST',
      url: '/invocations',
      headers: { 'content-type': 'text/csv', 'x-amzn-sagemaker-target-model': 'alpha' },
      payload: csv(ROWS),
    });
    expect(answer.json().predictions).toEqual(versionedPredictions(1, ROWS));
  });
});

describe('GET and DELETE /models/{name} (DescribeModel, UnloadModel)', () => {
  it('unloads: describe and invoke answer 404 afterwards, and the name loads again', async () => {
    const { app, repository } = await multiModelApp({ 'a/model': 1, 'b/model': 2 });
    await loadFrom(app, repository, 'alpha', 'a/model');
    const unloaded = await app.inject({ method: 'DELETE', url: '/models/alpha' });
    expect(unloaded.statusCode).toBe(200);
    expect(unloaded.json()).toEqual({ modelName: 'alpha', modelUrl: path.join(repository, 'a/model') });
    const described = await app.inject('/models/alpha');
    expect(described.statusCode).toBe(404);
    expect(described.json().error).toMatchObject({ code: 'unknown_model', field: 'model_name' });
    expect((await invoke(app, 'alpha')).statusCode).toBe(404);
    expect((await loadFrom(app, repository, 'alpha', 'b/model')).statusCode).toBe(200);
    expect((await invoke(app, 'alpha')).json().predictions).toEqual(versionedPredictions(2, ROWS));
  });

  it('answers 404 to DELETE of a model that is not loaded', async () => {
    const { app } = await multiModelApp({ 'a/model': 1 });
    const refused = await app.inject({ method: 'DELETE', url: '/models/alpha' });
    expect(refused.statusCode).toBe(404);
    expect(refused.json().error.code).toBe('unknown_model');
  });

  it('answers DELETE only once the requests holding the model finished and its memory is freed', async () => {
    const { app, repository } = await multiModelApp({ 'a/model': 1 });
    await loadFrom(app, repository, 'alpha', 'a/model');
    const held = app.models.acquire('alpha');
    const events: string[] = [];
    const dispose = held.model.model.dispose.bind(held.model.model);
    const disposed = vi.spyOn(held.model.model, 'dispose').mockImplementation(async () => {
      await dispose();
      events.push('disposed');
    });
    const deleting = app.inject({ method: 'DELETE', url: '/models/alpha' }).then((answer) => {
      events.push('answered');
      return answer;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(events).toEqual([]);
    // Out of service at once: no new request reaches it while it drains.
    expect((await app.inject('/models/alpha')).statusCode).toBe(404);
    held.release();
    expect((await deleting).statusCode).toBe(200);
    expect(events).toEqual(['disposed', 'answered']);
    expect(disposed).toHaveBeenCalledTimes(1);
  });
});

describe('the admin API in multi-model mode', () => {
  it('refuses the operations that read <name>/<version> folders, or keep unloaded records, with 409, pointing at /models', async () => {
    const { app } = await multiModelApp({ 'm/1': 1 }, { ADMIN_JWT_SECRET: SECRET });
    const archive = await tarGz(versionedModel(2));
    const attempts = [
      app.inject({ method: 'POST', url: '/admin/models/m/versions/1/load', headers: bearer() }),
      app.inject({ method: 'POST', url: '/admin/models/m/reload', headers: bearer() }),
      app.inject({
        method: 'PUT',
        url: '/admin/models/m/versions/2',
        headers: { ...bearer(), 'content-type': 'application/gzip' },
        payload: archive,
      }),
    ];
    for (const refused of await Promise.all(attempts)) {
      expect(refused.statusCode).toBe(409);
      expect(refused.json().error.code).toBe('conflict');
      expect(refused.json().error.message).toMatch(/through \/models only/);
    }
    expect((await app.inject('/models')).json()).toEqual({ models: [] });
    // The V2 repository extension's unload would leave a name DELETE /models/{name} still answers.
    await app.inject({ method: 'POST', url: '/models', payload: { model_name: 'm', url: 'm/1' } });
    const v2Unload = await app.inject({ method: 'POST', url: '/v2/repository/models/m/unload', headers: bearer() });
    expect(v2Unload.statusCode).toBe(409);
    expect(v2Unload.json().error).toMatch(/through \/models only/);
    expect((await app.inject('/models/m')).statusCode).toBe(200);
  });

  it('lists what POST /models loaded', async () => {
    const { app, repository } = await multiModelApp({ 'a/model': 1 }, { ADMIN_JWT_SECRET: SECRET });
    await loadFrom(app, repository, 'alpha', 'a/model');
    const listing = await app.inject({ url: '/admin/models', headers: bearer() });
    expect(listing.json().models.map((model: { name: string }) => model.name)).toEqual(['alpha']);
  });
});

describe('routes outside multi-model mode', () => {
  it('keeps the native GET /models and has no LoadModel', async () => {
    const repository = await makeRepository(modelFolders({ 'm/1': 1 }));
    const app = await startApp({ MODEL_REPOSITORY: repository });
    expect((await app.inject('/models')).json().models[0]).toMatchObject({ name: 'm', version: 1 });
    expect((await load(app, { model_name: 'alpha', url: 'm/1' })).statusCode).toBe(404);
  });
});
