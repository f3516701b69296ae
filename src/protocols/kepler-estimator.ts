import type { FastifyInstance } from 'fastify';
import { estimate, estimateFailureFor, keplerBodyLimit } from '../kepler/estimator.js';
import { logAndMap } from '../plugins/errors.js';
import { observerFor } from '../plugins/prediction-observer.js';

/**
 * Kepler's estimator sidecar protocol over HTTP: POST /kepler/estimate. Errors keep Kepler's
 * reply shape (`{"powers": {}, "msg"}`) with a 4xx or 5xx status.
 */
export default async function keplerEstimatorProtocol(app: FastifyInstance) {
  app.setErrorHandler((error, request, reply) => {
    const apiError = logAndMap(error, request);
    if (apiError.retryAfterSeconds !== undefined) reply.header('retry-after', apiError.retryAfterSeconds);
    return reply.code(apiError.statusCode).send(estimateFailureFor(apiError));
  });

  const options = { bodyLimit: keplerBodyLimit(app.config.maxBodyBytes) };
  app.post('/kepler/estimate', options, async (request, reply) =>
    estimate(app.predictor, request.body, observerFor(request), app.predictor.deadline(reply.elapsedTime)),
  );
}
