import { readFileSync } from 'node:fs';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { parseVersion } from '../codecs/json.js';
import { parseContentType } from '../codecs/media-types.js';
import { inferenceResponse, modelMetadata, parseInferenceRequest, selectOutputs } from '../codecs/open-inference.js';
import { ApiError } from '../errors.js';
import { observerFor } from '../plugins/prediction-observer.js';
import type { ModelVersion } from '../registry/loader.js';
import { messageErrorReplies } from './message-errors.js';
import openInferenceRepository, { REPOSITORY_EXTENSION } from './open-inference-repository.js';

const VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

type ModelParams = { Params: { name: string; version?: string } };

/**
 * The KServe V2 / Open Inference Protocol REST API, registered under /v2: server and model
 * metadata, health, and inference over the registry and the predictor. Errors here are the
 * protocol's `{"error": "<message>"}`, with the statuses wattserve gives them everywhere. With the
 * admin API configured, also the model repository extension (open-inference-repository.ts).
 */
export default async function openInferenceProtocol(app: FastifyInstance) {
  const { predictor } = app;

  messageErrorReplies(app, '/v2');

  // The model repository extension sits behind the admin token: without one configured it does not exist.
  const repository = app.config.admin !== undefined;
  const extensions = repository ? [REPOSITORY_EXTENSION] : [];
  if (repository) await app.register(openInferenceRepository);

  app.get('', async () => ({ name: 'wattserve', version: VERSION, extensions }));

  app.get('/health/live', async () => ({ live: true }));

  app.get('/health/ready', async () => {
    const notReady = app.models.notReadyReason;
    if (notReady !== undefined) throw new ApiError('not_ready', notReady);
    return { ready: true };
  });

  const metadata = async (request: FastifyRequest<ModelParams>) => {
    const { name } = request.params;
    const model = servable(name, request.params.version);
    const versions = [...(app.models.get(name)?.versions.keys() ?? [])];
    return modelMetadata(model, versions);
  };
  app.get('/models/:name', metadata);
  app.get('/models/:name/versions/:version', metadata);

  const ready = async (request: FastifyRequest<ModelParams>) => {
    const { name } = request.params;
    try {
      servable(name, request.params.version);
    } catch (error) {
      // The protocol answers "not ready" with a 4xx here, whatever the reason.
      if (error instanceof ApiError && error.code === 'not_ready') {
        throw new ApiError('unknown_model', `model "${name}" is not ready: ${error.message}`, 'name');
      }
      throw error;
    }
    return { name, ready: true };
  };
  app.get('/models/:name/ready', ready);
  app.get('/models/:name/versions/:version/ready', ready);

  const infer = async (request: FastifyRequest<ModelParams>, reply: FastifyReply) => {
    if (parseContentType(request.headers['content-type']).type !== 'application/json') {
      throw new ApiError('unsupported_media_type', 'the /v2 routes take application/json', 'content-type');
    }
    const deadline = predictor.deadline(reply.elapsedTime);
    const { name } = request.params;
    const version = versionNumber(name, request.params.version);
    const body = parseInferenceRequest(request.body, predictor.limits);
    // An unknown output is refused before the model runs for it.
    selectOutputs(body.outputs, servable(name, request.params.version).outputs);
    let prediction: Awaited<ReturnType<typeof predictor.predict>>;
    try {
      prediction = await predictor.predict(
        { model: name, version, features: body.features, matrix: body.matrix, routingKey: request.id },
        observerFor(request),
        deadline,
      );
    } catch (error) {
      throw renamed(error);
    }
    const { model, result } = prediction;
    const columns = selectOutputs(body.outputs, model.outputs);
    return reply.type('application/json').send(inferenceResponse(model, result, columns, body.id));
  };
  app.post('/models/:name/infer', infer);
  app.post('/models/:name/versions/:version/infer', infer);

  /** The version of a model that metadata and readiness describe; 404 when it cannot serve. */
  function servable(name: string, versionText: string | undefined): ModelVersion {
    const snapshot = app.models.servingSnapshot(name);
    if (snapshot === undefined) {
      const loaded = app.models
        .list()
        .map((s) => s.name)
        .join(', ');
      throw new ApiError('unknown_model', `no model named "${name}" is loaded; loaded: ${loaded || '(none)'}`, 'name');
    }
    const version = versionNumber(name, versionText);
    if (version === undefined) return snapshot.serving;
    const model = snapshot.versions.get(version);
    if (model === undefined) {
      const loaded = [...snapshot.versions.keys()].sort((a, b) => a - b).join(', ');
      throw new ApiError('unknown_version', `model "${name}" has no version ${version}; loaded: ${loaded}`, 'version');
    }
    return model;
  }
}

/** A version in the URL: a positive integer, else a version no model has (404). */
function versionNumber(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  try {
    return parseVersion(text, 'version');
  } catch {
    throw new ApiError(
      'unknown_version',
      `model "${name}" has no version "${text}"; versions are positive integers`,
      'version',
    );
  }
}

/** Feature-name errors from the column mapping name the request's `inputs`, not `features`. */
function renamed(error: unknown): unknown {
  if (error instanceof ApiError && error.field === 'features') {
    return new ApiError(error.code, `${error.message} (input tensor names)`, 'inputs');
  }
  if (error instanceof ApiError && error.code === 'wrong_width') {
    return new ApiError(error.code, error.message, 'inputs');
  }
  return error;
}
