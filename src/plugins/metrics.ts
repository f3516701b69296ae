import { createServer, type Server } from 'node:http';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Config } from '../config.js';
import type { PredictionObserver } from '../inference.js';
import { ServiceMetrics } from '../metrics.js';
import type { ModelVersion } from '../registry/loader.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Undefined when METRICS_ENABLED=false. */
    metrics: ServiceMetrics | undefined;
  }
  interface FastifyRequest {
    /** The model version that answered this request, for its metric labels. */
    servedBy: ModelVersion | undefined;
  }
}

/** The observer a protocol hands to predict(): records the inference and which model answered. */
export function observerFor(request: FastifyRequest): PredictionObserver | undefined {
  return request.server.metrics?.observer((model) => {
    request.servedBy = model;
  });
}

/**
 * Prometheus metrics: counts and times every request by route pattern, model and status class,
 * and serves GET /metrics, on the app's port or, with METRICS_PORT, on a port of its own.
 */
export default fp<{ config: Config }>(
  async function metrics(app: FastifyInstance, { config }) {
    if (!config.metricsEnabled) {
      app.decorate('metrics', undefined);
      return;
    }
    const service = new ServiceMetrics(() => app.models?.status().models ?? []);
    app.decorate('metrics', service);
    app.decorateRequest('servedBy', undefined);

    app.addHook('onRequest', async (_request, reply) => {
      reply.raw.once('close', service.requestStarted());
    });
    app.addHook('onResponse', async (request, reply) => {
      const route = request.routeOptions.url ?? 'unmatched';
      if (route === '/metrics') return;
      const model = request.servedBy;
      service.requestAnswered({
        route,
        model: model?.name ?? '',
        version: model === undefined ? '' : String(model.version),
        statusCode: reply.statusCode,
        seconds: reply.elapsedTime / 1000,
      });
    });

    if (config.metricsPort === undefined) {
      app.get('/metrics', async (_request, reply) =>
        reply.type(service.registry.contentType).send(await service.registry.metrics()),
      );
      return;
    }
    const server = metricsServer(service);
    app.addHook('onListen', async () => {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.metricsPort, config.host, () => resolve());
      });
      app.log.info({ port: config.metricsPort }, 'metrics served on their own port');
    });
    app.addHook('onClose', async () => {
      if (server.listening) await new Promise((resolve) => server.close(resolve));
    });
  },
  { name: 'metrics' },
);

/** GET /metrics and nothing else, for a port only Prometheus reaches. */
function metricsServer(service: ServiceMetrics): Server {
  return createServer((request, response) => {
    if (request.method !== 'GET' || request.url?.split('?')[0] !== '/metrics') {
      response.writeHead(404, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ error: { code: 'not_found', message: 'only GET /metrics is served here' } }));
      return;
    }
    service.registry.metrics().then(
      (text) => {
        response.writeHead(200, { 'content-type': service.registry.contentType });
        response.end(text);
      },
      () => {
        response.writeHead(500, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ error: { code: 'internal_error', message: 'internal error' } }));
      },
    );
  });
}
