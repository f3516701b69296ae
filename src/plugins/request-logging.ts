import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import fp from 'fastify-plugin';
import type { Config } from '../config.js';

/** What an incoming X-Request-Id may be to be trusted as ours: short, and safe in logs and headers. */
const REQUEST_ID = /^[\w.:-]{1,128}$/;

/**
 * The request id: the caller's `X-Request-Id` when it is a sane one (so a trace crosses nginx and
 * replicas), else a fresh UUID. Passed to Fastify as `genReqId`.
 */
export function requestId(request: IncomingMessage): string {
  const given = request.headers['x-request-id'];
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
}

/** Returns the request id on every answer, and logs requests slower than SLOW_REQUEST_MS at warn. */
export default fp<{ config: Config }>(
  async function requestLogging(app, { config }) {
    // Callback hooks: an async hook costs a promise per request on the hot path.
    app.addHook('onRequest', (request, reply, done) => {
      reply.header('x-request-id', request.id);
      done();
    });
    app.addHook('onResponse', (request, reply, done) => {
      if (reply.elapsedTime >= config.slowRequestMs) {
        request.log.warn(
          { method: request.method, url: request.url, statusCode: reply.statusCode, ms: Math.round(reply.elapsedTime) },
          'slow request',
        );
      }
      done();
    });
  },
  { name: 'request-logging' },
);
