import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { modelFromBothPlaces } from '../codecs/json.js';
import { parseContentType } from '../codecs/media-types.js';
import { ApiError } from '../errors.js';
import { observerFor } from '../plugins/prediction-observer.js';
import type { ModelSnapshot } from '../registry/registry.js';
import { sendEncoded } from './send.js';

/** wattserve's own protocol: JSON prediction and a read-only view of the loaded models. */
export default async function nativeProtocol(app: FastifyInstance) {
  const { predictor } = app;
  const config = { rawJson: true };
  app.post('/predict', { config }, predictRoute);
  app.post('/predict/:model', { config }, predictRoute);

  async function predictRoute(request: FastifyRequest<{ Params: { model?: string } }>, reply: FastifyReply) {
    if (parseContentType(request.headers['content-type']).type !== 'application/json') {
      throw new ApiError(
        'unsupported_media_type',
        '/predict takes application/json; send CSV or JSON Lines to /invocations',
        'content-type',
      );
    }
    const deadline = predictor.deadline(reply.elapsedTime);
    const media = { type: 'application/json', header: false } as const;
    const body = await predictor.decode(media, request.body, deadline);
    const { model: fromPath } = request.params;
    const model = fromPath === undefined ? body.model : modelFromBothPlaces(fromPath, body.model, 'the URL');
    const { model: served, result } = await predictor.predict(
      { ...body, model, routingKey: request.id },
      observerFor(request),
      deadline,
    );
    return sendEncoded(reply, 'application/json', await predictor.encode(served, result, 'application/json', deadline));
  }

  // Liveness: the process answers. Readiness (models serve) is /ping; a pod restarted for being
  // unready while a model loads would never become ready.
  app.get('/live', async () => ({ status: 'live' }));

  // In SageMaker multi-model mode these paths are its ListModels and DescribeModel.
  if (!app.config.sagemakerMultiModel) {
    app.get('/models', async () => ({ models: app.models.list().map(describeModel) }));

    app.get<{ Params: { name: string } }>('/models/:name', async (request) => {
      const snapshot = app.models.get(request.params.name);
      if (snapshot === undefined) {
        throw new ApiError('unknown_model', `no model named "${request.params.name}" is loaded`, 'name');
      }
      return describeModel(snapshot);
    });
  }
}

/** A model as GET /models shows it; modelName and modelUrl are the names SageMaker clients read. */
export function describeModel(snapshot: ModelSnapshot) {
  const { serving } = snapshot;
  return {
    name: snapshot.name,
    version: serving.version,
    versions: [...snapshot.versions.keys()].sort((a, b) => a - b),
    backend: serving.backend,
    features: serving.features,
    outputs: serving.outputs,
    ...serving.about,
    modelName: snapshot.name,
    modelUrl: serving.location,
  };
}
