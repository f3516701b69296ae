import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { modelFromBothPlaces } from '../codecs/json.js';
import { negotiateResponseType } from '../codecs/media-types.js';
import { requestMediaType } from '../codecs/prediction.js';
import { ApiError } from '../errors.js';
import { observerFor } from '../plugins/metrics.js';
import { sendEncoded } from './send.js';

const CUSTOM_ATTRIBUTES = 'x-amzn-sagemaker-custom-attributes';
const TARGET_MODEL = 'x-amzn-sagemaker-target-model';

/** The SageMaker hosting container contract: GET /ping and POST /invocations. */
export default async function sagemakerProtocol(app: FastifyInstance) {
  const { defaultAccept } = app.config;
  const { predictor } = app;

  app.get('/ping', async (_request, reply) => {
    const notReady = app.models.notReadyReason;
    if (notReady !== undefined) throw new ApiError('not_ready', notReady);
    return reply.code(200).send();
  });

  // Echoed on every answer, errors included, even those given before this scope's hooks run
  // (503 overloaded is answered from the root's onRequest hook).
  app.addHook('onSend', async (request, reply, payload) => {
    const attributes = request.headers[CUSTOM_ATTRIBUTES];
    if (typeof attributes === 'string') reply.header(CUSTOM_ATTRIBUTES, attributes);
    return payload;
  });

  app.post('/invocations', { config: { rawJson: true } }, async (request: FastifyRequest, reply: FastifyReply) => {
    const accept = request.headers.accept;
    const responseType = negotiateResponseType(accept, defaultAccept);
    if (responseType === undefined) {
      throw new ApiError(
        'not_acceptable',
        `cannot answer with ${accept}; offered: application/json, text/csv, application/jsonlines`,
        'accept',
      );
    }
    const media = requestMediaType(request.headers['content-type']);
    const deadline = predictor.deadline(reply.elapsedTime);
    const body = await predictor.decode(media, request.body, deadline);
    const target = request.headers[TARGET_MODEL];
    const model =
      typeof target === 'string'
        ? modelFromBothPlaces(target, body.model, 'the X-Amzn-SageMaker-Target-Model header')
        : body.model;
    const { model: served, result } = await predictor.predict({ ...body, model }, observerFor(request), deadline);
    return sendEncoded(reply, responseType, await predictor.encode(served, result, responseType, deadline));
  });
}
