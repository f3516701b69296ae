import Fastify, { type FastifyInstance, LogController, type RouteOptions } from 'fastify';
import type { DestinationStream } from 'pino';
import admin from './admin/index.js';
import type { Config } from './config.js';
import contentTypes from './plugins/content-types.js';
import docs from './plugins/docs.js';
import errorReplies, { clientErrorReply, frameworkErrorReply } from './plugins/errors.js';
import adminJwt from './plugins/jwt.js';
import keplerSocket from './plugins/kepler-socket.js';
import metrics from './plugins/metrics.js';
import modelRegistry from './plugins/registry.js';
import requestLogging, { requestId } from './plugins/request-logging.js';
import keplerEstimatorProtocol from './protocols/kepler-estimator.js';
import keplerModelServerProtocol from './protocols/kepler-model-server.js';
import nativeProtocol from './protocols/native.js';
import sagemakerProtocol from './protocols/sagemaker.js';

export interface AppOptions {
  /** Wait for every model to load before the app is ready (default), or load them in the background. */
  waitForModels?: boolean;
  /** Where log lines go (stdout by default); tests read them from here. */
  logStream?: DestinationStream;
  /** Called with every route as it is registered (a test checks openapi.yaml covers them all). */
  onRoute?: (route: RouteOptions) => void;
}

/** Builds the whole service without listening: server.ts starts it, tests inject into it. */
export async function buildApp(config: Config, options: AppOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    // Admin tokens must never reach a log line, whatever a serializer or a handler logs.
    logger: {
      level: config.logLevel,
      redact: ['req.headers.authorization', 'headers.authorization'],
      ...(options.logStream && { stream: options.logStream }),
    },
    // Logging every request costs about 30% of throughput: off unless LOG_REQUESTS=true; errors
    // and slow requests are always logged.
    logController: new LogController({ disableRequestLogging: !config.logRequests }),
    bodyLimit: config.maxBodyBytes,
    requestIdHeader: false,
    // A request already sent on an open connection when shutdown starts is served, not refused:
    // closing stops new connections, and /ping alone turns 503 (the registry's shutdown flag).
    return503OnClosing: false,
    genReqId: requestId,
    frameworkErrors: frameworkErrorReply,
    clientErrorHandler: clientErrorReply,
  });
  if (options.onRoute !== undefined) app.addHook('onRoute', options.onRoute);

  await app.register(requestLogging, { config });
  await app.register(metrics, { config });
  await app.register(errorReplies);
  await app.register(contentTypes);
  await app.register(modelRegistry, { config, waitForModels: options.waitForModels ?? true });
  await app.register(nativeProtocol);
  await app.register(sagemakerProtocol);
  await app.register(keplerEstimatorProtocol);
  await app.register(keplerModelServerProtocol);
  await app.register(keplerSocket);
  if (config.admin !== undefined) {
    await app.register(adminJwt, config.admin);
    await app.register(admin, { prefix: '/admin' });
  }
  await app.register(docs);
  return app;
}
