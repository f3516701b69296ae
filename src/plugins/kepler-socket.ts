import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { estimate, estimateFailureFor } from '../kepler/estimator.js';
import { type EstimatorSocket, listenEstimatorSocket } from '../kepler/socket.js';
import { mapAndLog } from './errors.js';
import { observerForRoute } from './prediction-observer.js';

/** What the socket's predictions are counted and captured under: no URL pattern to name them by. */
const KEPLER_SOCKET_ROUTE = 'unix:kepler-estimator';

// Kepler's requests are small (about 100 KB for 500 processes) and it has one connection open
// at a time; these bounds keep a misbehaving local client from holding memory or connections.
const SOCKET_LIMITS = { maxBytes: 1024 * 1024, deadlineMs: 10_000, maxConnections: 64 };

/**
 * With KEPLER_ESTIMATOR_SOCKET set, serves Kepler's estimator on that unix socket beside HTTP,
 * so the Python sidecar can be replaced without touching Kepler.
 */
export default fp(
  async function keplerSocket(app: FastifyInstance) {
    const { keplerEstimatorSocket: path } = app.config;
    if (path === undefined) return;
    let socket: EstimatorSocket | undefined;
    app.addHook('onReady', async () => {
      socket = await listenEstimatorSocket({
        path,
        ...SOCKET_LIMITS,
        maxJsonDepth: app.config.limits.maxJsonDepth,
        log: app.log,
        answer: (body) =>
          estimate(app.predictor, body, observerForRoute(app, KEPLER_SOCKET_ROUTE), app.predictor.deadline(0)).catch(
            (error: unknown) => estimateFailureFor(mapAndLog(error, app.log, SOCKET_LIMITS.maxBytes, { socket: path })),
          ),
      });
    });
    app.addHook('onClose', async () => socket?.close());
  },
  { name: 'kepler-socket', dependencies: ['predictor'] },
);
