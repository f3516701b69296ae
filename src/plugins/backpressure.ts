import underPressure from '@fastify/under-pressure';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Config } from '../config.js';
import { ApiError } from '../errors.js';

/**
 * Routes served whatever the load: liveness (a busy pod must not be killed for being busy) and
 * the metrics (an overloaded pod must not go unobserved).
 */
const ALWAYS_SERVED = new Set(['/live', '/v2/health/live', '/metrics']);

/**
 * Admin routes served under pressure: reads, and the cheap actions that are the remedies for it
 * (promote back to the version that did not lag, unload a version or model to free memory, labels
 * and traffic policies). Loading
 * a version (load, upload, reload) reads and checks a whole model, which is what pressure cannot
 * afford: those are refused like predictions. A new admin route is refused until listed here.
 */
export const ADMIN_SERVED_UNDER_PRESSURE: ReadonlySet<string> = new Set([
  'GET /admin/models',
  'GET /admin/models/:name',
  'POST /admin/models/:name/promote',
  'DELETE /admin/models/:name/versions/:version',
  'PUT /admin/models/:name/labels/:label',
  'DELETE /admin/models/:name/labels/:label',
  // Sending a canary's share back to the serving version, or stopping a shadow's copies.
  'PUT /admin/models/:name/traffic',
  'DELETE /admin/models/:name/traffic',
  'POST /v2/repository/index',
  'POST /v2/repository/models/:name/unload',
  // SageMaker multi-model: SageMaker frees memory by unloading models.
  'DELETE /models/:name',
]);

/** Whether a request is answered even while the server is under pressure. */
export function servedUnderPressure(request: FastifyRequest): boolean {
  const url = request.routeOptions.url;
  if (url === undefined) return false;
  if (ALWAYS_SERVED.has(url)) return true;
  const method = request.method === 'HEAD' ? 'GET' : request.method;
  return ADMIN_SERVED_UNDER_PRESSURE.has(`${method} ${url}`);
}

/** What each of under-pressure's checks is called in answers and logs. */
const THRESHOLDS: Record<string, string> = {
  [underPressure.TYPE_EVENT_LOOP_DELAY]: 'event-loop delay',
  [underPressure.TYPE_HEAP_USED_BYTES]: 'heap used',
};

export interface BackpressureOptions {
  config: Config;
  /** How often the event-loop delay and the heap are sampled (under-pressure's own default: 1 s). */
  sampleIntervalMs?: number;
}

/**
 * Load shedding: while the event loop lags (mean delay over the last sample above
 * MAX_EVENT_LOOP_DELAY_MS) or the heap is past MAX_HEAP_USED_BYTES, requests are answered
 * 503 `overloaded` with a retry hint (in the body as well, since SageMaker drops Retry-After), /ping
 * included, so load balancers and readiness probes send the work elsewhere. /live, /metrics and
 * the remedial admin routes are still served. Pressure starting and ending is logged at warn,
 * once each.
 */
export default fp<BackpressureOptions>(
  async function backpressure(app: FastifyInstance, { config, sampleIntervalMs = 1000 }) {
    const { maxEventLoopDelayMs, maxHeapUsedBytes, retryAfterSeconds } = config;
    if (maxEventLoopDelayMs === 0 && maxHeapUsedBytes === 0) return;

    await app.register(underPressure, {
      maxEventLoopDelay: maxEventLoopDelayMs,
      maxHeapUsedBytes,
      sampleInterval: sampleIntervalMs,
      // A promise: resolved, the request goes on; rejected, its error goes to our error handler.
      pressureHandler: async (request, _reply, type) => {
        if (servedUnderPressure(request)) return;
        const what = THRESHOLDS[type] ?? type;
        throw new ApiError(
          'overloaded',
          `the server is overloaded (${what} over its limit); retry in ${retryAfterSeconds} s`,
          undefined,
          retryAfterSeconds,
        );
      },
    });

    // under-pressure has no event for it: watch its state at its own pace, and log the changes.
    let pressed = false;
    const watch = setInterval(() => {
      if (app.isUnderPressure() === pressed) return;
      pressed = !pressed;
      const usage = app.memoryUsage();
      const over = [
        ...(maxEventLoopDelayMs > 0 && usage.eventLoopDelay > maxEventLoopDelayMs ? ['event-loop delay'] : []),
        ...(maxHeapUsedBytes > 0 && usage.heapUsed > maxHeapUsedBytes ? ['heap used'] : []),
      ];
      const details = {
        over,
        eventLoopDelayMs: Math.round(usage.eventLoopDelay),
        maxEventLoopDelayMs,
        heapUsedBytes: usage.heapUsed,
        maxHeapUsedBytes,
      };
      if (pressed) app.log.warn(details, 'under pressure: refusing requests with 503 overloaded');
      else app.log.warn(details, 'pressure over: serving requests again');
    }, sampleIntervalMs);
    watch.unref();
    app.addHook('onClose', async () => clearInterval(watch));
  },
  { name: 'backpressure' },
);
