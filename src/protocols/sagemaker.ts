import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { formatCsv, parseCsv } from '../codecs/csv.js';
import { modelFromBothPlaces, type PredictionRequest, parseNativeBody, predictionBody } from '../codecs/json.js';
import { formatJsonLines, parseJsonLines } from '../codecs/jsonlines.js';
import { negotiateResponseType, parseContentType } from '../codecs/media-types.js';
import type { ResponseMediaType } from '../config.js';
import { ApiError } from '../errors.js';
import { type Prediction, predict } from '../inference.js';
import { observerFor } from '../plugins/metrics.js';

const CUSTOM_ATTRIBUTES = 'x-amzn-sagemaker-custom-attributes';
const TARGET_MODEL = 'x-amzn-sagemaker-target-model';

/** The SageMaker hosting container contract: GET /ping and POST /invocations. */
export default async function sagemakerProtocol(app: FastifyInstance) {
  const { maxRows, defaultAccept } = app.config;

  app.get('/ping', async (_request, reply) => {
    const notReady = app.models.notReadyReason;
    if (notReady !== undefined) throw new ApiError('not_ready', notReady);
    return reply.code(200).send();
  });

  // Echoed on every answer, errors included, even those given before the body is parsed.
  app.addHook('onRequest', async (request, reply) => {
    const attributes = request.headers[CUSTOM_ATTRIBUTES];
    if (typeof attributes === 'string') reply.header(CUSTOM_ATTRIBUTES, attributes);
  });

  app.post('/invocations', async (request: FastifyRequest, reply: FastifyReply) => {
    const accept = request.headers.accept;
    const responseType = negotiateResponseType(accept, defaultAccept);
    if (responseType === undefined) {
      throw new ApiError(
        'not_acceptable',
        `cannot answer with ${accept}; offered: application/json, text/csv, application/jsonlines`,
        'accept',
      );
    }
    const body = decodeInvocation(request.headers['content-type'], request.body, maxRows);
    const target = request.headers[TARGET_MODEL];
    const model =
      typeof target === 'string'
        ? modelFromBothPlaces(target, body.model, 'the X-Amzn-SageMaker-Target-Model header')
        : body.model;
    const prediction = await predict(app.models, { ...body, model }, observerFor(request));
    return reply.type(responseType).send(encodePrediction(prediction, responseType));
  });
}

/** Reads an /invocations body as its Content-Type says: CSV, JSON or JSON Lines. */
export function decodeInvocation(type: string | undefined, body: unknown, maxRows: number): PredictionRequest {
  const parsed = parseContentType(type);
  const noNames = { model: undefined, version: undefined, features: undefined };
  switch (parsed.type) {
    case 'application/json':
      return parseNativeBody(body, maxRows);
    case 'text/csv': {
      const header = parsed.parameters.header?.toLowerCase() === 'present';
      const { matrix, columns } = parseCsv(String(body), { header, maxRows });
      return { ...noNames, features: columns, matrix };
    }
    case 'application/jsonlines':
      return { ...noNames, matrix: parseJsonLines(String(body), maxRows) };
    default:
      throw new ApiError(
        'unsupported_media_type',
        `cannot read ${parsed.type}; send text/csv, application/json or application/jsonlines`,
        'content-type',
      );
  }
}

function encodePrediction(prediction: Prediction, type: ResponseMediaType): string | object {
  switch (type) {
    case 'application/json':
      return predictionBody(prediction);
    case 'text/csv':
      return formatCsv(prediction.result);
    case 'application/jsonlines':
      return formatJsonLines(prediction.result);
  }
}
