import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { modelFromBothPlaces } from '../codecs/json.js';
import { negotiateResponseType } from '../codecs/media-types.js';
import { requestMediaType } from '../codecs/prediction.js';
import { ApiError } from '../errors.js';
import { observerFor } from '../plugins/prediction-observer.js';
import { sendEncoded } from './send.js';

const CUSTOM_ATTRIBUTES = 'x-amzn-sagemaker-custom-attributes';
const TARGET_MODEL = 'x-amzn-sagemaker-target-model';

/** The model an invocation names outside its body, and where (for the error when the body names another). */
export interface NamedModel {
  model: string;
  where: string;
}

/** The SageMaker hosting container contract: GET /ping and POST /invocations. */
export default async function sagemakerProtocol(app: FastifyInstance) {
  app.get('/ping', async (_request, reply) => {
    const notReady = app.models.notReadyReason;
    if (notReady !== undefined) throw new ApiError('not_ready', notReady);
    return reply.code(200).send();
  });

  app.addHook('onSend', echoCustomAttributes);

  app.post('/invocations', { config: { rawJson: true } }, async (request: FastifyRequest, reply: FastifyReply) => {
    const target = request.headers[TARGET_MODEL];
    const named =
      typeof target === 'string' ? { model: target, where: 'the X-Amzn-SageMaker-Target-Model header' } : undefined;
    return answerInvocation(app, request, reply, named);
  });
}

/**
 * An onSend hook echoing X-Amzn-SageMaker-Custom-Attributes on every answer, errors included,
 * even those given before the scope's other hooks run (503 overloaded is answered from the root's
 * onRequest hook).
 */
export async function echoCustomAttributes(request: FastifyRequest, reply: FastifyReply, payload: unknown) {
  const attributes = request.headers[CUSTOM_ATTRIBUTES];
  if (typeof attributes === 'string') reply.header(CUSTOM_ATTRIBUTES, attributes);
  return payload;
}

/**
 * One SageMaker invocation (POST /invocations, and multi-model mode's POST /models/{name}/invoke):
 * the body as its Content-Type says, the answer in the type Accept prefers
 * (SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT when it allows any), from the model `named` gives, else the
 * body's, else the default one.
 */
export async function answerInvocation(
  app: FastifyInstance,
  request: FastifyRequest,
  reply: FastifyReply,
  named: NamedModel | undefined,
) {
  const { predictor } = app;
  const accept = request.headers.accept;
  const responseType = negotiateResponseType(accept, app.config.defaultAccept);
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
  const model = named === undefined ? body.model : modelFromBothPlaces(named.model, body.model, named.where);
  const { model: served, result } = await predictor.predict(
    { ...body, model, routingKey: request.id },
    observerFor(request),
    deadline,
  );
  return sendEncoded(reply, responseType, await predictor.encode(served, result, responseType, deadline));
}
