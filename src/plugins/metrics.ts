import { createServer, type Server } from 'node:http';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Config } from '../config.js';
import { ServiceMetrics } from '../metrics.js';
import { nodeServerOptions } from '../server-options.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Undefined when METRICS_ENABLED=false. */
    metrics: ServiceMetrics | undefined;
  }
  interface FastifyContextConfig {
    /** The route label in the metrics, when the URL pattern is shared with another method's route. */
    metricsRoute?: string;
  }
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

    // Callback hooks: an async hook costs a promise per request on the hot path.
    app.addHook('onRequest', (request, reply, done) => {
      const finished = service.requestStarted();
      // 'close' comes once, written or not.
      reply.raw.on('close', () => {
        finished();
        // onResponse runs only for answers that were written; count the abandoned ones here.
        if (!reply.raw.writableFinished) service.requestAbandoned(requestLabels(request));
      });
      done();
    });
    app.addHook('onResponse', (request, reply, done) => {
      const labels = requestLabels(request);
      if (labels.route !== '/metrics') {
        service.requestAnswered({ ...labels, statusCode: reply.statusCode, seconds: reply.elapsedTime / 1000 });
      }
      done();
    });

    if (config.metricsPort === undefined) {
      app.get('/metrics', async (_request, reply) => reply.type(service.contentType).send(await service.text()));
      return;
    }
    const server = metricsServer(service, config);
    // Bound when the app gets ready, so a port already taken stops start-up (an error in onListen
    // would only be logged, leaving the service running without metrics).
    app.addHook('onReady', async () => {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.metricsPort, config.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      server.on('error', (error) => app.log.error({ err: error }, 'metrics server error'));
      app.log.info({ port: config.metricsPort }, 'metrics served on their own port');
    });
    app.addHook('onClose', async () => {
      if (!server.listening) return;
      const closed = new Promise((resolve) => server.close(resolve));
      // A scraper's keep-alive connection would otherwise hold shutdown for its idle timeout.
      server.closeIdleConnections();
      await closed;
    });
  },
  { name: 'metrics' },
);

/** The route a request is counted under: its URL pattern, unless the route names another label. */
export function routeLabel(request: FastifyRequest): string {
  const { url, config } = request.routeOptions;
  return config?.metricsRoute ?? url ?? 'unmatched';
}

/** Route pattern, and the model that answered (or '' when none was chosen). */
function requestLabels(request: FastifyRequest) {
  const model = request.servedBy;
  return {
    route: routeLabel(request),
    model: model?.name ?? '',
    version: model === undefined ? '' : String(model.version),
  };
}

/** GET /metrics and nothing else, for a port only Prometheus reaches. */
function metricsServer(service: ServiceMetrics, config: Config): Server {
  // The app's limits for slow or oversized requests, not Node's (60 s for headers, 300 s in all).
  return createServer(nodeServerOptions(config), (request, response) => {
    if (request.method !== 'GET' || request.url?.split('?')[0] !== '/metrics') {
      response.writeHead(404, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ error: { code: 'not_found', message: 'only GET /metrics is served here' } }));
      return;
    }
    service.text().then(
      (text) => {
        response.writeHead(200, { 'content-type': service.contentType });
        response.end(text);
      },
      () => {
        response.writeHead(500, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ error: { code: 'internal_error', message: 'internal error' } }));
      },
    );
  });
}
