import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { ModelVersion } from '../registry/loader.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The model version chosen for this request (set by observerFor's observer), for its answer and metrics. */
    servedBy: ModelVersion | undefined;
  }
}

export const MODEL_VERSION_HEADER = 'x-model-version';

/**
 * Every answer a model version gave, or refused, says which version it was (`X-Model-Version`),
 * whatever the protocol and media type: with a traffic split, clients and logs can tell the
 * canary's answers from the stable ones.
 */
export default fp(
  async function servedVersion(app: FastifyInstance) {
    app.decorateRequest('servedBy', undefined);
    // A callback hook: an async one costs a promise per request on the hot path.
    app.addHook('onSend', (request, reply, payload, done) => {
      const model = request.servedBy;
      if (model !== undefined) reply.header(MODEL_VERSION_HEADER, String(model.version));
      done(null, payload);
    });
  },
  { name: 'served-version' },
);
