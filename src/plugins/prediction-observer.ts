import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { PredictionObserver } from '../inference.js';
import type { Matrix } from '../matrix.js';
import type { ModelVersion } from '../registry/loader.js';
import { routeLabel } from './metrics.js';

/** Where a prediction came from: the route (its metrics label) and the request's id. */
export interface PredictionContext {
  readonly route: string;
  readonly requestId: string;
}

/**
 * Told of every prediction that succeeds, with its input (the model's columns, in its feature
 * order) and its answer, before the answer is encoded; and of every answer refused because the
 * model gave a non-finite value (422). Called on the request's path: a tap copies what it keeps and
 * does its work later. What it throws is logged, never the request's failure.
 */
export interface PredictionTap {
  predicted(context: PredictionContext, model: ModelVersion, input: Matrix, result: Matrix): void;
  nonFinite?(context: PredictionContext, model: ModelVersion, input: Matrix, result: Matrix): void;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Capture, drift monitoring: each plugin that watches predictions adds its tap here. */
    predictionTaps: PredictionTap[];
  }
}

/** The list of taps, filled by the plugins registered after this one. */
export default fp(
  async function predictionTaps(app: FastifyInstance) {
    app.decorate('predictionTaps', []);
  },
  { name: 'prediction-taps' },
);

/**
 * The observer a protocol hands to predict(): notes which version answered (for the answer's
 * X-Model-Version and the request's metrics), records the inference and tells the taps.
 */
export function observerFor(request: FastifyRequest): PredictionObserver {
  const chosen = (model: ModelVersion) => {
    request.servedBy = model;
  };
  return predictionObserver(request.server, chosen, () => ({ route: routeLabel(request), requestId: request.id }));
}

/** The same for predictions asked outside HTTP (Kepler's unix socket): a request id is made up. */
export function observerForRoute(app: FastifyInstance, route: string): PredictionObserver {
  return predictionObserver(
    app,
    () => {},
    () => ({ route, requestId: randomUUID() }),
  );
}

function predictionObserver(
  app: FastifyInstance,
  chosen: (model: ModelVersion) => void,
  context: () => PredictionContext,
): PredictionObserver {
  const { metrics, predictionTaps } = app;
  const tell = (model: ModelVersion, call: (tap: PredictionTap, where: PredictionContext) => void) => {
    if (predictionTaps.length === 0) return;
    const where = context();
    for (const tap of predictionTaps) {
      try {
        call(tap, where);
      } catch (error) {
        app.log.warn({ err: error, model: model.name, version: model.version }, 'a prediction tap failed');
      }
    }
  };
  return {
    chosen,
    predicted(model, seconds, result, input) {
      metrics?.predicted(model, seconds, result);
      tell(model, (tap, where) => tap.predicted(where, model, input, result));
    },
    nonFinite(model, result, input) {
      tell(model, (tap, where) => tap.nonFinite?.(where, model, input, result));
    },
  };
}
