import type { FastifyInstance } from 'fastify';
import { ApiError } from '../errors.js';
import { logAndMap } from '../plugins/errors.js';

/** Generic messages for server faults: the cause is in the log, never in the answer. */
const FAULTS: Record<number, string> = { 500: 'internal error' };

/** Longest piece of a client's URL echoed in a 404. */
const SHOWN = 40;

/** The error body KServe V2 and TF Serving clients read: the message, prefixed with its field. */
export function messageErrorBody(error: ApiError): { error: string } {
  return { error: error.field === undefined ? error.message : `${error.field}: ${error.message}` };
}

/**
 * Answers every error of one encapsulated plugin's routes (and the body parsing and hooks that run
 * for them: invalid or too deep JSON, a body too large, 503 overloaded) and its unmatched URLs as
 * `{"error": "<field>: <problem>"}`, with the statuses the error catalogue gives them.
 */
export function messageErrorReplies(app: FastifyInstance, prefix: string): void {
  app.setErrorHandler((error, request, reply) => {
    const mapped = logAndMap(error, request);
    const apiError =
      mapped.code === 'unsupported_media_type'
        ? new ApiError('unsupported_media_type', `the ${prefix} routes take application/json`, 'content-type')
        : mapped;
    if (apiError.retryAfterSeconds !== undefined) reply.header('retry-after', apiError.retryAfterSeconds);
    const fault = FAULTS[apiError.statusCode];
    const body = fault === undefined ? messageErrorBody(apiError) : { error: fault };
    return reply.code(apiError.statusCode).type('application/json').send(body);
  });
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0] ?? '';
    const shown = path.length > SHOWN ? `${path.slice(0, SHOWN)}…` : path;
    return reply.code(404).send({ error: `no route ${request.method} ${shown}` });
  });
}
