import contentType from 'content-type';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { negotiateResponseType } from '../codecs/accept.js';
import { formatCsv, parseCsv } from '../codecs/csv.js';
import { type PredictionRequest, parseNativeBody, predictionBody } from '../codecs/json.js';
import { formatJsonLines, parseJsonLines } from '../codecs/jsonlines.js';
import type { ResponseMediaType } from '../config.js';
import { ApiError } from '../errors.js';
import { type Prediction, predict } from '../inference.js';

const CUSTOM_ATTRIBUTES = 'x-amzn-sagemaker-custom-attributes';
const TARGET_MODEL = 'x-amzn-sagemaker-target-model';

/** The SageMaker hosting container contract: GET /ping and POST /invocations. */
export default async function sagemakerProtocol(app: FastifyInstance) {
  const { maxRows, defaultAccept } = app.config;

  app.get('/ping', async (_request, reply) => {
    if (!app.models.ready) {
      throw new ApiError(
        'not_ready',
        app.models.list().length === 0 ? 'no model is serving yet' : 'models are still loading',
      );
    }
    return reply.code(200).send();
  });

  app.post('/invocations', async (request: FastifyRequest, reply: FastifyReply) => {
    const attributes = request.headers[CUSTOM_ATTRIBUTES];
    if (typeof attributes === 'string') reply.header(CUSTOM_ATTRIBUTES, attributes);

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
    const prediction = await predict(app.models, { ...body, model: typeof target === 'string' ? target : body.model });
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

function parseContentType(type: string | undefined): contentType.ParsedMediaType {
  try {
    return contentType.parse(type ?? '');
  } catch {
    throw new ApiError('unsupported_media_type', 'a Content-Type header is required', 'content-type');
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
