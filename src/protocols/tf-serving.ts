import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { parseVersion } from '../codecs/json.js';
import { parseContentType } from '../codecs/media-types.js';
import {
  checkFeatureNames,
  columnarResponse,
  MAX_NAME_LENGTH,
  modelMetadata,
  modelStatus,
  type PredictFormat,
  parsePredictRequest,
  predictResponse,
  shown,
  splitVerb,
} from '../codecs/tf-serving.js';
import { ApiError } from '../errors.js';
import { observerFor } from '../plugins/prediction-observer.js';
import type { ModelVersion } from '../registry/loader.js';
import { messageErrorReplies } from './message-errors.js';

type Params = { Params: { name: string; version?: string; label?: string } };

/**
 * The TensorFlow Serving REST API, registered under /v1: model status, model metadata and predict
 * (row and columnar formats) over the registry and the predictor. Errors here are TF Serving's
 * `{"error": "<message>"}`, with the statuses wattserve gives them everywhere.
 *
 * The predict URLs end in `:predict` (`/v1/models/m:predict`, `…/versions/2:predict`,
 * `…/labels/stable:predict`). find-my-way takes `::` after a parameter into the parameter's name
 * (`/models/:name::predict` gives a parameter `name::predict` holding `m:predict`), so the routes
 * are the plain parameter ones and the verb is split off the last segment here.
 */
export default async function tfServingProtocol(app: FastifyInstance) {
  const { predictor } = app;

  messageErrorReplies(app, '/v1');

  const status = async (request: FastifyRequest<Params>) => {
    const { name, label } = request.params;
    const model = app.models.status().models.find((m) => m.name === name);
    if (model === undefined || model.versions.length === 0) {
      if (app.models.loading) throw new ApiError('not_ready', 'models are still loading');
      throw new ApiError('unknown_model', `no model named "${shown(name)}"`, 'name');
    }
    if (label !== undefined)
      return modelStatus(model.versions.filter((v) => v.version === resolve(name, undefined, label).version));
    const version = versionNumber(request.params.version);
    if (request.params.version === undefined) return modelStatus(model.versions);
    const found = model.versions.filter((v) => v.version === version);
    if (found.length === 0) {
      throw new ApiError(
        'unknown_version',
        `model "${name}" has no version "${shown(request.params.version)}"`,
        'version',
      );
    }
    return modelStatus(found);
  };
  app.get('/models/:name', status);
  app.get('/models/:name/versions/:version', status);
  app.get('/models/:name/labels/:label', status);

  const metadata = async (request: FastifyRequest<Params>) => {
    const { name, version, label } = request.params;
    return modelMetadata(resolve(name, version, label));
  };
  app.get('/models/:name/metadata', metadata);
  app.get('/models/:name/versions/:version/metadata', metadata);
  app.get('/models/:name/labels/:label/metadata', metadata);

  const predict = async (request: FastifyRequest<Params>, reply: FastifyReply) => {
    const { params } = request;
    // The verb is on the last segment: the label, else the version, else the name.
    const name =
      params.version === undefined && params.label === undefined ? splitVerb(params.name, 'name') : params.name;
    const versionText = params.version === undefined ? undefined : splitVerb(params.version, 'version');
    const label = params.label === undefined ? undefined : splitVerb(params.label, 'label');
    if (parseContentType(request.headers['content-type']).type !== 'application/json') {
      throw new ApiError('unsupported_media_type', 'the /v1 routes take application/json', 'content-type');
    }
    const deadline = predictor.deadline(reply.elapsedTime);
    const model = resolve(name, versionText, label);
    const body = parsePredictRequest(request.body, predictor.limits);
    const field = fieldOf(body.format);
    // Unknown and missing feature names are refused before the model runs.
    if (body.features !== undefined) checkFeatureNames(body.features, model.features, field);
    let prediction: Awaited<ReturnType<typeof predictor.predict>>;
    try {
      prediction = await predictor.predict(
        {
          model: name,
          // Pinned when the URL names a version or label; else the model's traffic policy applies.
          version: versionText === undefined && label === undefined ? undefined : model.version,
          features: body.features,
          matrix: body.matrix,
          routingKey: request.id,
        },
        observerFor(request),
        deadline,
      );
    } catch (error) {
      throw renamed(error, field);
    }
    const { model: served, result } = prediction;
    const answer =
      body.format === 'row' ? predictResponse(served.outputs, result) : columnarResponse(served.outputs, result);
    return reply.type('application/json').send(answer);
  };
  // Status and predict share these patterns: predictions get a route label of their own in the metrics.
  const predictRoute = (url: string) => ({ config: { metricsRoute: `${url}:predict` } });
  app.post('/models/:name', predictRoute('/v1/models/:name'), predict);
  app.post('/models/:name/versions/:version', predictRoute('/v1/models/:name/versions/:version'), predict);
  app.post('/models/:name/labels/:label', predictRoute('/v1/models/:name/labels/:label'), predict);

  /** The model version a URL names (by version, by label, or the serving one); 404 when none serves. */
  function resolve(name: string, versionText: string | undefined, label: string | undefined): ModelVersion {
    const snapshot = app.models.servingSnapshot(name);
    if (snapshot === undefined)
      throw new ApiError('unknown_model', `no model named "${shown(name)}" is loaded`, 'name');
    let version = versionNumber(versionText);
    if (label !== undefined) {
      version = label.length > MAX_NAME_LENGTH ? undefined : snapshot.labels.get(label);
      if (version === undefined) {
        const labels = [...snapshot.labels.keys()].sort().join(', ');
        throw new ApiError(
          'unknown_label',
          `model "${name}" has no label "${shown(label)}"; labels: ${labels || '(none)'}`,
          'label',
        );
      }
    }
    if (version === undefined) return snapshot.serving;
    const model = snapshot.versions.get(version);
    if (model === undefined) {
      const loaded = [...snapshot.versions.keys()].sort((a, b) => a - b).join(', ');
      throw new ApiError(
        'unknown_version',
        `model "${name}" has no version "${shown(versionText ?? String(version))}"; loaded: ${loaded}`,
        'version',
      );
    }
    return model;
  }
}

/** A version in the URL: a positive integer, else one no model has (-1: a 404 where it is looked up). */
function versionNumber(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  try {
    return parseVersion(text, 'version');
  } catch {
    return -1;
  }
}

function fieldOf(format: PredictFormat): string {
  return format === 'row' ? 'instances' : 'inputs';
}

/** Errors of the column mapping and width name the request's field, not `features`. */
function renamed(error: unknown, field: string): unknown {
  if (error instanceof ApiError && (error.field === 'features' || error.code === 'wrong_width')) {
    return new ApiError(error.code, error.message, field);
  }
  return error;
}
