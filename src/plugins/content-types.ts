import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

/** Media types whose bodies reach the routes as text, parsed there by the pure codecs. */
export const TEXT_BODY_TYPES = ['text/csv', 'application/jsonlines'] as const;

export default fp(
  async function textBodies(app: FastifyInstance) {
    app.addContentTypeParser([...TEXT_BODY_TYPES], { parseAs: 'string' }, (_request, body, done) => done(null, body));
  },
  { name: 'text-bodies' },
);
