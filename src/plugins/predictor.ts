import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { PredictionBatcher } from '../batching.js';
import { InFlightLimit } from '../in-flight.js';
import { Predictor } from '../predictor.js';
import { ShadowTraffic } from '../shadow.js';
import { PredictionPool } from '../workers/pool.js';

declare module 'fastify' {
  interface FastifyInstance {
    predictor: Predictor;
  }
}

/** The Predictor every protocol computes through, and its worker threads (stopped when the app closes). */
export default fp(
  async function predictor(app: FastifyInstance) {
    const { config } = app;
    const pool =
      config.workerThreads > 0
        ? new PredictionPool(config.workerThreads, config.retryAfterSeconds, (error, startFailed) =>
            startFailed
              ? app.log.error({ err: error }, 'the worker threads cannot start: large requests run on the event loop')
              : app.log.error({ err: error }, 'a worker thread failed'),
          )
        : undefined;
    app.decorate(
      'predictor',
      new Predictor(app.models, {
        limits: config.limits,
        inFlight: new InFlightLimit(config.maxConcurrentPerModel, config.retryAfterSeconds),
        pool,
        batcher:
          config.batching === undefined
            ? undefined
            : new PredictionBatcher(config.batching, (model, error) =>
                app.log.warn(
                  { model: model.name, version: model.version, err: error },
                  'a batched prediction failed: this version is no longer batched, its requests run one by one',
                ),
              ),
        shadows: new ShadowTraffic(app.models, {
          maxInFlightPerModel: config.maxConcurrentPerModel,
          maxRows: config.workerRowsThreshold,
          underPressure: app.hasDecorator('isUnderPressure') ? () => app.isUnderPressure() : () => false,
          events: app.metrics,
          log: app.log,
        }),
        workerRowsThreshold: config.workerRowsThreshold,
        workerBytesThreshold: config.workerBytesThreshold,
        requestTimeoutMs: config.requestTimeoutMs,
        log: app.log,
      }),
    );
    app.addHook('onClose', async () => pool?.close());
  },
  { name: 'predictor', dependencies: ['model-registry'] },
);
