import type { FastifyInstance } from 'fastify';
import { ApiError } from '../errors.js';
import { keplerBodyLimit } from '../kepler/estimator.js';
import { keplerCandidates, parseSelectionRequest, requestObject, selectModel } from '../kepler/selection.js';

/**
 * Kepler's model server protocol: POST /model, which Kepler's in-process regressor calls to fetch
 * the weights of the model that fits its request (`"weight": true`), or else its zip archive.
 * `node_type` is accepted and not used: wattserve serves what its repository holds.
 */
export default async function keplerModelServerProtocol(app: FastifyInstance) {
  app.post('/model', { bodyLimit: keplerBodyLimit(app.config.maxBodyBytes) }, async (request, reply) => {
    const fields = requestObject(request.body);
    if (fields.weight !== undefined && typeof fields.weight !== 'boolean') {
      throw new ApiError('invalid_body', 'must be true or false', 'weight');
    }
    const { kepler } = selectModel(keplerCandidates(app.models), parseSelectionRequest(fields));
    if (fields.weight === true) return { model_name: kepler.modelName, ...(kepler.weights as object) };
    return reply
      .type('application/zip')
      .header('content-disposition', `attachment; filename="${kepler.modelName}.zip"`)
      .send(Buffer.from(await kepler.archive()));
  });
}
