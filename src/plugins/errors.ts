import { type ServerResponse, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyBaseLogger, FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { ApiError } from '../errors.js';
import { PredictionError } from '../inference.js';
import { RAW_REPLY_SECURITY_HEADERS } from './security-headers.js';

/**
 * Turns every failure into the catalogue's JSON body. Client errors carry their message; server
 * faults are logged with their cause and answered with a generic 500, never the stack itself.
 */
export default fp(
  async function errorReplies(app: FastifyInstance) {
    app.setErrorHandler((error, request, reply) => {
      const apiError = logAndMap(error, request);
      if (apiError.retryAfterSeconds !== undefined) reply.header('retry-after', apiError.retryAfterSeconds);
      return reply.code(apiError.statusCode).type('application/json').send(apiError.toBody());
    });

    app.setNotFoundHandler((request, reply) => {
      const error = new ApiError('not_found', `no route ${request.method} ${request.url.split('?')[0]}`);
      return reply.code(error.statusCode).send(error.toBody());
    });
  },
  { name: 'error-replies' },
);

/**
 * The catalogue error for any failure, logged: server faults with their cause at error level (a
 * 503 while loading is an expected answer, not a fault), refused requests at debug.
 */
export function logAndMap(error: unknown, request: FastifyRequest): ApiError {
  // Routes may set their own limit (model uploads take MAX_MODEL_BYTES).
  const bodyLimit = request.routeOptions.bodyLimit ?? request.server.initialConfig.bodyLimit ?? 0;
  const upload = request.routeOptions.config.modelUpload === true;
  return mapAndLog(error, request.log, bodyLimit, { url: request.url }, upload);
}

/** logAndMap for failures outside an HTTP request (the Kepler socket): `where` says what failed. */
export function mapAndLog(
  error: unknown,
  log: FastifyBaseLogger,
  bodyLimit: number,
  where: Record<string, string>,
  upload = false,
): ApiError {
  const apiError = toApiError(error as FastifyError, bodyLimit, upload);
  if (apiError.statusCode === 500) {
    const cause = error instanceof PredictionError ? error.cause : error;
    log.error({ err: cause, ...where }, apiError.message);
  } else {
    log.debug({ code: apiError.code, field: apiError.field, ...where }, apiError.message);
  }
  return apiError;
}

/** Maps Fastify's own request errors (body parsing, limits) onto the catalogue. */
export function toApiError(error: FastifyError, bodyLimit: number, upload = false): ApiError {
  if (error instanceof ApiError) return error;
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return upload
        ? new ApiError('upload_too_large', `the archive is larger than ${bodyLimit} bytes (MAX_MODEL_BYTES)`, 'body')
        : new ApiError('body_too_large', `the body is larger than the limit of ${bodyLimit} bytes`, 'body');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError(
        'unsupported_media_type',
        'missing or unsupported Content-Type; send application/json, text/csv or application/jsonlines',
        'content-type',
      );
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new ApiError('invalid_json', 'the JSON body is empty', 'body');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new ApiError(
        'invalid_json',
        'the body is not valid JSON (or has a forbidden key such as __proto__)',
        'body',
      );
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new ApiError('invalid_body', 'the Content-Length does not match the body', 'content-length');
  }
  if (typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) {
    return new ApiError('invalid_body', error.message, 'body');
  }
  return new ApiError('internal_error', 'internal error');
}

/**
 * Fastify's routing errors (a URL that does not decode), answered like every other error. Passed
 * as the `frameworkErrors` option: it runs before any plugin could.
 */
export function frameworkErrorReply(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const message = error.code === 'FST_ERR_BAD_URL' ? 'the URL is not valid' : 'the request cannot be routed';
  // No hook runs for these: do here what the request-id, metrics and security-header hooks would.
  request.server.metrics?.requestAnswered({ route: 'unmatched', model: '', version: '', statusCode: 400, seconds: 0 });
  reply.code(400).header('x-request-id', request.id).headers(RAW_REPLY_SECURITY_HEADERS).type('application/json');
  reply.send(new ApiError('bad_request', message).toBody());
}

/**
 * Requests Node's HTTP server refuses before Fastify answers them: malformed request line or
 * headers (400), headers over MAX_HEADER_BYTES (431), a request not received in full within
 * REQUEST_TIMEOUT_MS, or headers not within HEADERS_TIMEOUT_MS (408: Node reports both as
 * ERR_HTTP_REQUEST_TIMEOUT). A JSON answer, then the connection is closed. Made into Fastify's
 * `clientErrorHandler` by clientErrorReplier.
 */
export function clientErrorReplier(
  limits: ClientLimits,
): (this: FastifyInstance, error: NodeJS.ErrnoException, socket: Socket) => void {
  // Fastify calls it with the app as `this`.
  return function replyToClientError(error, socket) {
    clientErrorReply(error, socket, limits, this.log);
  };
}

/** The server's limits, as clientErrorReply names them in its answers. */
export interface ClientLimits {
  maxHeaderBytes: number;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
}

function clientErrorReply(
  error: NodeJS.ErrnoException,
  socket: Socket,
  limits: ClientLimits,
  log: FastifyBaseLogger,
): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  // A request whose answer has started (a pipelined one) cannot be given another: just close.
  const inFlight = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
  if (!socket.writable || inFlight?.headersSent === true) {
    socket.destroy();
    return;
  }
  const apiError = clientError(error.code, limits);
  log.debug({ code: apiError.code, cause: error.code }, apiError.message);
  const body = JSON.stringify(apiError.toBody());
  const headers = {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
    Connection: 'close',
    ...RAW_REPLY_SECURITY_HEADERS,
  };
  const head = Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  // Then destroyed, not just ended: a request caught mid-body must not keep reading (and its
  // handler waiting) until the client gives up.
  socket.end(`HTTP/1.1 ${apiError.statusCode} ${STATUS_CODES[apiError.statusCode]}\r\n${head}\r\n${body}`, () =>
    socket.destroy(),
  );
}

function clientError(code: string | undefined, limits: ClientLimits): ApiError {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return new ApiError(
        'headers_too_large',
        `the request headers are over the limit of ${limits.maxHeaderBytes} bytes`,
      );
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new ApiError(
        'request_timeout',
        `the request was not received in time (headers within ${limits.headersTimeoutMs} ms, ` +
          `all of it within ${limits.requestTimeoutMs} ms)`,
      );
    default:
      return new ApiError('bad_request', 'the HTTP request is malformed');
  }
}
