import Fastify, { type FastifyInstance, LogController, type RouteOptions } from 'fastify';
import type { DestinationStream } from 'pino';
import admin from './admin/index.js';
import type { Config } from './config.js';
import backpressure from './plugins/backpressure.js';
import capture from './plugins/capture.js';
import contentTypes from './plugins/content-types.js';
import docs from './plugins/docs.js';
import driftMonitor from './plugins/drift.js';
import errorReplies, { clientErrorReplier, frameworkErrorReply } from './plugins/errors.js';
import adminJwt from './plugins/jwt.js';
import keplerSocket from './plugins/kepler-socket.js';
import metrics from './plugins/metrics.js';
import predictionTaps from './plugins/prediction-observer.js';
import predictor from './plugins/predictor.js';
import modelRegistry from './plugins/registry.js';
import requestLogging, { requestId } from './plugins/request-logging.js';
import securityHeaders from './plugins/security-headers.js';
import servedVersion from './plugins/served-version.js';
import keplerEstimatorProtocol from './protocols/kepler-estimator.js';
import keplerModelServerProtocol from './protocols/kepler-model-server.js';
import nativeProtocol from './protocols/native.js';
import openInferenceProtocol from './protocols/open-inference.js';
import sagemakerProtocol from './protocols/sagemaker.js';
import sagemakerMultiModelProtocol from './protocols/sagemaker-multi-model.js';
import tfServingProtocol from './protocols/tf-serving.js';
import { nodeServerOptions } from './server-options.js';

export interface AppOptions {
  /** Wait for every model to load before the app is ready (default), or load them in the background. */
  waitForModels?: boolean;
  /** Where log lines go (stdout by default); tests read them from here. */
  logStream?: DestinationStream;
  /** Called with every route as it is registered (a test checks openapi.yaml covers them all). */
  onRoute?: (route: RouteOptions) => void;
  /** How often load is sampled for backpressure (1 s by default); tests shorten it. */
  pressureSampleIntervalMs?: number;
}

/** Builds the whole service without listening: server.ts starts it, tests inject into it. */
export async function buildApp(config: Config, options: AppOptions = {}): Promise<FastifyInstance> {
  const server = nodeServerOptions(config);
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
    // Timeouts and over-long headers are answered here, as JSON: 408 request_timeout, 431.
    clientErrorHandler: clientErrorReplier({
      maxHeaderBytes: config.limits.maxHeaderBytes,
      headersTimeoutMs: server.headersTimeout,
      requestTimeoutMs: config.requestTimeoutMs,
    }),
    // Slow clients: the request line and headers must arrive within HEADERS_TIMEOUT_MS (a client
    // that connects and trickles, or sends nothing, is cut off), the whole request within
    // REQUEST_TIMEOUT_MS. Neither runs while the answer is computed: that is the deadline's job.
    requestTimeout: config.requestTimeoutMs,
    // Idle keep-alive connections are closed after KEEP_ALIVE_TIMEOUT_MS, longer than the proxies'
    // own idle timeouts (nginx upstream keepalive and AWS load balancers: 60 s), so the proxy closes
    // first and never sends a request on a connection the app is closing.
    keepAliveTimeout: config.keepAliveTimeoutMs,
    // No socket inactivity timeout: it would also cut a request whose prediction is slow, which
    // sends nothing while it computes; the timeouts above cover slow and idle clients.
    connectionTimeout: 0,
    http: server,
  });
  if (options.onRoute !== undefined) app.addHook('onRoute', options.onRoute);

  await app.register(requestLogging, { config });
  await app.register(servedVersion);
  await app.register(predictionTaps);
  await app.register(metrics, { config });
  await app.register(errorReplies);
  // Both add onRequest hooks ahead of every route's: security headers first, so answers refused
  // for load carry them too; then load shedding, before any work is done for the request.
  await app.register(securityHeaders);
  await app.register(backpressure, { config, sampleIntervalMs: options.pressureSampleIntervalMs });
  await app.register(contentTypes, { maxJsonDepth: config.limits.maxJsonDepth });
  await app.register(modelRegistry, { config, waitForModels: options.waitForModels ?? true });
  await app.register(driftMonitor, { config });
  await app.register(capture);
  await app.register(predictor);
  await app.register(nativeProtocol);
  await app.register(sagemakerProtocol);
  if (config.sagemakerMultiModel) await app.register(sagemakerMultiModelProtocol);
  await app.register(openInferenceProtocol, { prefix: '/v2' });
  await app.register(tfServingProtocol, { prefix: '/v1' });
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
