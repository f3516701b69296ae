import { readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { MODEL_NAME_PATTERN, MODEL_NAME_RULE } from '../config.js';
import { ApiError } from '../errors.js';
import { isInside } from '../paths.js';
import type { ModelSnapshot } from '../registry/registry.js';
import { parseRequestPart } from '../zod-problems.js';
import { answerInvocation, echoCustomAttributes } from './sagemaker.js';

/** Models per ListModels page when SageMaker asks for no page size (it never does). */
export const DEFAULT_PAGE_SIZE = 100;
const MAX_PAGE_SIZE = 1000;

const modelName = z.string().regex(MODEL_NAME_PATTERN, MODEL_NAME_RULE);
// Extra fields are let through: SageMaker may add some, and none of them changes what loads.
const loadBody = z.object({
  model_name: modelName,
  url: z
    .string()
    .min(1, 'must name a folder')
    .max(4096, 'must be at most 4096 characters')
    .refine((url) => !url.includes('\0'), 'must not hold a NUL character'),
});
const listQuery = z.object({
  next_page_token: z.string().optional(),
  // The name ListModels answers with, for clients that send back the field as they got it.
  nextPageToken: z.string().optional(),
  // Not in SageMaker's contract (it pages with the server's size): for clients and tests.
  page_size: z.coerce.number().int().min(1).max(MAX_PAGE_SIZE).optional(),
});

type NameParams = { Params: { name: string } };

/**
 * SageMaker's multi-model endpoint container contract (SAGEMAKER_MULTI_MODEL=true): LoadModel
 * (POST /models), ListModels (GET /models), DescribeModel (GET /models/{name}), UnloadModel
 * (DELETE /models/{name}) and InvokeModel (POST /models/{name}/invoke). Models are keyed by the
 * `model_name` SageMaker assigns; each loads from a folder of the repository holding its files.
 */
export default async function sagemakerMultiModelProtocol(app: FastifyInstance) {
  const repository = app.config.modelRepository;

  app.addHook('onSend', echoCustomAttributes);

  app.post('/models', async (request) => {
    const { model_name: name, url } = parseRequestPart(loadBody, request.body, 'body');
    const dir = await modelFolder(url, repository);
    await app.models.loadFolder(name, dir, url);
    return { modelName: name, modelUrl: url };
  });

  app.get('/models', async (request) => {
    const query = parseRequestPart(listQuery, request.query, 'query');
    const token = query.next_page_token ?? query.nextPageToken;
    return listPage(app.models.list(), token, query.page_size ?? DEFAULT_PAGE_SIZE);
  });

  app.get<NameParams>('/models/:name', async (request) => describe(loadedModel(app, request.params.name)));

  app.delete<NameParams>('/models/:name', async (request) => {
    const { name } = request.params;
    // From the registry's record, not the serving snapshot: a model still loading has none yet.
    const modelUrl = app.models.status().models.find((model) => model.name === name)?.versions[0]?.location;
    // Resolves once the model's requests have finished and its memory is freed: SageMaker loads
    // another model as soon as this answers.
    await app.models.unloadModel(name, true);
    return { modelName: name, modelUrl };
  });

  app.post<NameParams>('/models/:name/invoke', { config: { rawJson: true } }, async (request, reply) =>
    // X-Amzn-SageMaker-Target-Model names the artifact here (`…/model.tar.gz`), not the model:
    // SageMaker says it is for logging, so the path alone picks the model.
    answerInvocation(app, request, reply, { model: request.params.name, where: 'the URL' }),
  );
}

function loadedModel(app: FastifyInstance, name: string): ModelSnapshot {
  const snapshot = app.models.get(name);
  if (snapshot === undefined) throw new ApiError('unknown_model', `no model named "${name}" is loaded`, 'model_name');
  return snapshot;
}

/** A model as ListModels and DescribeModel show it, in SageMaker's field names. */
function describe(snapshot: ModelSnapshot) {
  return { modelName: snapshot.name, modelUrl: snapshot.serving.location };
}

/**
 * One page of the loaded models, in name order. The token is the last name of the page before
 * (opaque to clients): a model loaded or unloaded between two pages shifts nothing else.
 */
export function listPage(models: readonly ModelSnapshot[], token: string | undefined, pageSize: number) {
  const after = token === undefined ? undefined : nameInToken(token);
  const sorted = [...models].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const rest = after === undefined ? sorted : sorted.filter((model) => model.name > after);
  const page = rest.slice(0, pageSize);
  const last = page.at(-1);
  return {
    models: page.map(describe),
    ...(rest.length > pageSize && last !== undefined && { nextPageToken: pageToken(last.name) }),
  };
}

export function pageToken(lastName: string): string {
  return Buffer.from(lastName, 'utf8').toString('base64url');
}

function nameInToken(token: string): string {
  const name = Buffer.from(token, 'base64url').toString('utf8');
  // Only tokens this server made: base64url decoding skips what it cannot read.
  if (!MODEL_NAME_PATTERN.test(name) || pageToken(name) !== token) {
    throw new ApiError('bad_request', 'not a page token from a previous GET /models', 'next_page_token');
  }
  return name;
}

/**
 * The real folder `url` names, which must lie inside the model repository: 400 when it does not,
 * checked on the path as given (before touching the disk, so nothing is told of folders outside)
 * and again once symbolic links are followed (so a link cannot lead out); 404 when there is no
 * such folder. A relative `url` is taken from the repository's root.
 */
export async function modelFolder(url: string, repository: string): Promise<string> {
  const root = path.resolve(repository);
  // The repository's path stays out of answers; SageMaker knows where it mounted it.
  const outside = new ApiError('invalid_body', 'must be a folder inside the model repository', 'url');
  const asked = path.resolve(root, url);
  if (!isInside(root, asked)) throw outside;
  let real: string;
  try {
    real = await realpath(asked);
    if (!isInside(await realpath(root), real)) throw outside;
    if (!(await stat(real)).isDirectory()) throw new ApiError('invalid_body', 'must be a folder of model files', 'url');
    await refuseLinksOut(real);
  } catch (error) {
    if (error instanceof ApiError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new ApiError('not_found', 'there is no such folder', 'url');
    if (code === 'ENAMETOOLONG') throw new ApiError('invalid_body', 'names a path too long for the file system', 'url');
    throw new ApiError('invalid_model', `cannot read the folder: ${code ?? (error as Error).message}`, 'url');
  }
  return real;
}

/**
 * Refuses a folder holding a symbolic link that leads out of it: the backends read what a link
 * points at, so a model archive with a link to /etc/… would otherwise load (or quote) that file.
 */
async function refuseLinksOut(folder: string): Promise<void> {
  for (const entry of await readdir(folder, { withFileTypes: true })) {
    if (!entry.isSymbolicLink()) continue;
    const target = await realpath(path.join(folder, entry.name)).catch(() => undefined);
    if (target === undefined || !isInside(folder, target)) {
      throw new ApiError('invalid_body', `the folder's ${entry.name} is a link that leads out of it`, 'url');
    }
  }
}
