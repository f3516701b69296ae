import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { parseJsonText } from '../codecs/json.js';

/** Media types whose bodies reach the routes as bytes, decoded there by the pure codecs. */
export const TEXT_BODY_TYPES = ['text/csv', 'application/jsonlines'] as const;

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route decodes its JSON body itself, from a Buffer (a large body goes to a worker thread). */
    rawJson?: boolean;
    /** The route takes model archives: a body over its limit is 413 upload_too_large (MAX_MODEL_BYTES). */
    modelUpload?: boolean;
  }
}

/**
 * Body parsers: CSV and JSON Lines as bytes; JSON parsed with the nesting limit (MAX_JSON_DEPTH),
 * or handed over as bytes to routes that decode it themselves.
 */
export default fp<{ maxJsonDepth: number }>(
  async function bodyParsers(app: FastifyInstance, { maxJsonDepth }) {
    app.addContentTypeParser([...TEXT_BODY_TYPES], { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
    app.removeContentTypeParser('application/json');
    app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
      // No route: nothing reads the body, and parsing it would cost the event loop for nothing.
      if (request.is404 || request.routeOptions.config.rawJson === true) return done(null, body);
      try {
        done(null, parseJsonText((body as Buffer).toString('utf8'), maxJsonDepth));
      } catch (error) {
        done(error as Error, undefined);
      }
    });
  },
  { name: 'body-parsers' },
);
