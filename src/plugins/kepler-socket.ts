import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { estimate, estimateFailureFor } from '../kepler/estimator.js';
import { type EstimatorSocket, listenEstimatorSocket } from '../kepler/socket.js';
import { toApiError } from './errors.js';

// Kepler's client waits on the socket with no timeout of its own; a silent client is dropped.
const IDLE_TIMEOUT_MS = 10_000;

/**
 * With KEPLER_ESTIMATOR_SOCKET set, serves Kepler's estimator on that unix socket beside HTTP,
 * so the Python sidecar can be replaced without touching Kepler.
 */
export default fp(
  async function keplerSocket(app: FastifyInstance) {
    const { keplerEstimatorSocket: path, maxRows, maxBodyBytes } = app.config;
    if (path === undefined) return;
    let socket: EstimatorSocket | undefined;
    app.addHook('onReady', async () => {
      socket = await listenEstimatorSocket({
        path,
        maxBytes: maxBodyBytes,
        idleTimeoutMs: IDLE_TIMEOUT_MS,
        log: app.log,
        answer: (body) =>
          estimate(app.models, body, maxRows).catch((error: unknown) => {
            const apiError = toApiError(error as Parameters<typeof toApiError>[0], maxBodyBytes);
            if (apiError.statusCode === 500) app.log.error({ err: error }, 'Kepler estimate failed');
            return estimateFailureFor(apiError);
          }),
      });
    });
    app.addHook('onClose', async () => socket?.close());
  },
  { name: 'kepler-socket', dependencies: ['model-registry'] },
);
