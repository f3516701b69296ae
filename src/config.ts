import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { getHeapStatistics } from 'node:v8';
import { z } from 'zod';
import { zodProblems } from './zod-problems.js';

const MEBIBYTE = 1024 * 1024;

/** The media types /invocations can answer with, in the order tried when Accept allows any. */
export const RESPONSE_MEDIA_TYPES = ['application/json', 'text/csv', 'application/jsonlines'] as const;
export type ResponseMediaType = (typeof RESPONSE_MEDIA_TYPES)[number];

/** Model names: what may stand as a folder name in the repository and in a URL. */
export const MODEL_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
export const MODEL_NAME_RULE = 'letters, digits, ".", "_" or "-", starting with a letter or digit';

const positiveInt = z.coerce.number().int().positive();
// setTimeout fires at once for longer delays than this.
const milliseconds = positiveInt.max(2 ** 31 - 1, 'must be at most 2147483647 (about 24 days)');
const nonNegativeInt = z.coerce.number().int().nonnegative();
const flag = z.enum(['true', 'false'], 'true or false').transform((value) => value === 'true');

/**
 * Every knob the service reads from the environment. Each one is documented in the README's
 * configuration table; keep the two in step.
 */
const envSchema = z.object({
  PORT: positiveInt.max(65535).optional(),
  SAGEMAKER_BIND_TO_PORT: positiveInt.max(65535).optional(),
  HOST: z.string().min(1).default('0.0.0.0'),
  // The default depends on SAGEMAKER_MULTI_MODEL: see loadConfig.
  MODEL_REPOSITORY: z.string().min(1).optional(),
  MODEL_NAME: z.string().regex(MODEL_NAME_PATTERN, MODEL_NAME_RULE).default('model'),
  DEFAULT_MODEL: z.string().optional(),
  MAX_ROWS: positiveInt.default(100_000),
  MAX_COLUMNS: positiveInt.default(1000),
  MAX_JSON_DEPTH: positiveInt.min(3, 'must be at least 3 (a body {"instances": [[…]]} is 3 deep)').default(32),
  MAX_CSV_LINE_BYTES: positiveInt.default(64 * 1024),
  MAX_HEADER_BYTES: positiveInt.default(16 * 1024),
  MAX_BODY_BYTES: positiveInt.optional(),
  SAGEMAKER_MAX_PAYLOAD_IN_MB: positiveInt.optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  SLOW_REQUEST_MS: milliseconds.default(1000),
  LOG_REQUESTS: flag.default(false),
  METRICS_ENABLED: flag.default(true),
  METRICS_PORT: positiveInt.max(65535).optional(),
  SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT: z.enum(RESPONSE_MEDIA_TYPES).default('application/json'),
  KEPLER_ESTIMATOR_SOCKET: z.string().optional(),
  DRAIN_TIMEOUT_MS: milliseconds.optional(),
  // SageMaker and Kubernetes (by default) send SIGKILL 30 s after SIGTERM: finish well inside that.
  SHUTDOWN_TIMEOUT_MS: milliseconds.default(25_000),
  MAX_MODEL_BYTES: positiveInt.default(100 * MEBIBYTE),
  MAX_UPLOAD_ENTRIES: positiveInt.default(10_000),
  MAX_CONCURRENT_PER_MODEL: positiveInt.default(128),
  REQUEST_TIMEOUT_MS: milliseconds.default(30_000),
  HEADERS_TIMEOUT_MS: milliseconds.default(10_000),
  // Longer than nginx's upstream keepalive_timeout (60 s) and AWS load balancers' idle timeout
  // (60 s): the proxy closes an idle connection first, never the app under a request in flight.
  KEEP_ALIVE_TIMEOUT_MS: milliseconds.default(65_000),
  MAX_EVENT_LOOP_DELAY_MS: nonNegativeInt.default(1000),
  MAX_HEAP_USED_BYTES: nonNegativeInt.optional(),
  RETRY_AFTER_SECONDS: positiveInt.default(5),
  // Below SHUTDOWN_TIMEOUT_MS: a shutdown waits for the load in progress.
  MODEL_LOAD_TIMEOUT_MS: milliseconds.default(20_000),
  WORKER_THREADS: nonNegativeInt.optional(),
  WORKER_ROWS_THRESHOLD: positiveInt.default(2000),
  WORKER_BYTES_THRESHOLD: positiveInt.default(256 * 1024),
  BATCH_MAX_ROWS: nonNegativeInt.default(1000),
  BATCH_MAX_DELAY_US: nonNegativeInt.max(1_000_000).default(0),
  MODEL_POLL_INTERVAL_MS: milliseconds.optional(),
  SAGEMAKER_MULTI_MODEL: flag.default(false),
  MAX_LOADED_MODELS: positiveInt.optional(),
  MODEL_MEMORY_BUDGET_MB: positiveInt.optional(),
  CAPTURE_DIR: z.string().min(1).optional(),
  CAPTURE_SAMPLE: z.coerce.number().min(0, 'must be from 0 to 1').max(1, 'must be from 0 to 1').default(0),
  CAPTURE_MAX_BYTES: positiveInt.default(64 * MEBIBYTE),
  CAPTURE_MAX_FILES: positiveInt.default(10),
  // Records waiting for the disk; past this they are dropped (and counted), never queued without bound.
  CAPTURE_BUFFER_BYTES: positiveInt.default(8 * MEBIBYTE),
  // One byte per row and feature of every loaded version: a million rows of 8 features is 8 MB each.
  DRIFT_WINDOW_ROWS: positiveInt.max(1_000_000, 'must be at most 1000000').default(10_000),
  // A shorter HMAC secret can be brute-forced offline from any token it signed.
  ADMIN_JWT_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  ADMIN_JWT_PUBLIC_KEY: z.string().optional(),
  ADMIN_JWT_PUBLIC_KEY_FILE: z.string().optional(),
  ADMIN_JWT_ISSUER: z.string().optional(),
  ADMIN_JWT_AUDIENCE: z.string().optional(),
});

/** The JWT algorithms the admin API accepts, one per kind of configured key. */
export type AdminAlgorithm = 'HS256' | 'RS256' | 'ES256' | 'ES384' | 'ES512';

export interface AdminConfig {
  /** The HMAC secret or the PEM public key tokens are verified with. */
  key: string;
  /** The only algorithm accepted: the one the key is for (so no token can pick a weaker one). */
  algorithm: AdminAlgorithm;
  issuer: string | undefined;
  audience: string | undefined;
}

export interface Config {
  port: number;
  host: string;
  modelRepository: string;
  modelName: string;
  defaultModel: string | undefined;
  /** Every limit on what one request may hold; each has its own error code. */
  limits: Limits;
  maxRows: number;
  maxBodyBytes: number;
  logLevel: z.infer<typeof envSchema>['LOG_LEVEL'];
  slowRequestMs: number;
  /** Log every request and answer at info (costs throughput; off by default). */
  logRequests: boolean;
  /** Serve /metrics; on its own port when metricsPort is set (kept off the public proxy). */
  metricsEnabled: boolean;
  metricsPort: number | undefined;
  defaultAccept: ResponseMediaType;
  /** Unix socket path for Kepler's estimator sidecar protocol; off when unset. */
  keplerEstimatorSocket: string | undefined;
  /** How long an unloaded or replaced version may keep serving the requests that hold it. */
  drainTimeoutMs: number;
  /** After SIGTERM, how long in-flight requests may take before the process exits anyway. */
  shutdownTimeoutMs: number;
  /** The most an uploaded model archive may unpack to. */
  maxModelBytes: number;
  /** Most requests one model may have in flight; more are answered 429 model_busy. */
  maxConcurrentPerModel: number;
  /** From arrival to answer (body included): past it, 408 while receiving, 504 while predicting. */
  requestTimeoutMs: number;
  /** Time a client has to send its request headers (slow-loris clients are cut off). */
  headersTimeoutMs: number;
  keepAliveTimeoutMs: number;
  /** Answer 503 overloaded when the event loop lags or the heap grows past these; 0/undefined: off. */
  maxEventLoopDelayMs: number;
  maxHeapUsedBytes: number;
  /** The retry hint (body and Retry-After header) in 429 and 503 answers. */
  retryAfterSeconds: number;
  /** A model version still loading after this long fails (and what served keeps serving). */
  modelLoadTimeoutMs: number;
  /** Threads scoring large requests off the event loop; 0 scores everything in-thread. */
  workerThreads: number;
  /** Requests with more rows than this go to the worker threads. */
  workerRowsThreshold: number;
  /** Bodies larger than this go to the worker threads too, whatever their rows (parsing them costs as much). */
  workerBytesThreshold: number;
  /** Dynamic batching of concurrent small requests to one model version; undefined: off (BATCH_MAX_ROWS=0). */
  batching: { maxRows: number; maxDelayUs: number } | undefined;
  /** Rescan the repository this often and load what changed; off when unset. */
  modelPollIntervalMs: number | undefined;
  /**
   * SageMaker multi-model mode: no model loads at start; SageMaker loads and unloads them through
   * POST and DELETE /models, each from a folder of the repository.
   */
  sagemakerMultiModel: boolean;
  /** Multi-model mode: most models loaded or loading at once (more are 507); undefined: no limit. */
  maxLoadedModels: number | undefined;
  /** Multi-model mode: a load that would take the process's RSS past this is 507; undefined: no budget. */
  modelMemoryBudgetBytes: number | undefined;
  /**
   * Data capture: a `sample` share of prediction requests written as JSON Lines into `dir`, in
   * files of at most `maxFileBytes`, the newest `maxFiles` kept; off (undefined) without
   * CAPTURE_DIR or with CAPTURE_SAMPLE=0.
   */
  capture: { dir: string; sample: number; maxFileBytes: number; maxFiles: number; bufferBytes: number } | undefined;
  /** Input rows per model version the drift signals (PSI) are computed over. */
  driftWindowRows: number;
  /** The admin API's token verification; the admin API is off when unset. */
  admin: AdminConfig | undefined;
}

export interface Limits {
  maxRows: number;
  maxColumns: number;
  maxJsonDepth: number;
  maxCsvLineBytes: number;
  maxHeaderBytes: number;
  maxBodyBytes: number;
  maxModelBytes: number;
  maxUploadEntries: number;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Reads the configuration from environment variables; throws a ConfigError naming every bad one. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const blankless = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== ''));
  const parsed = envSchema.safeParse(blankless);
  if (!parsed.success) {
    const problems = zodProblems(parsed.error);
    throw new ConfigError(`invalid configuration:\n  ${problems.join('\n  ')}`);
  }
  const e = parsed.data;
  const port = e.PORT ?? e.SAGEMAKER_BIND_TO_PORT ?? 8080;
  if (e.METRICS_PORT === port) {
    throw new ConfigError(`invalid configuration:\n  METRICS_PORT: must differ from the app's port (${port})`);
  }
  // A batch waits with its versions held: past either of these, its requests would fail (504, or a
  // version freed under them) for waiting alone.
  const batchWaitLimitMs = Math.min(e.DRAIN_TIMEOUT_MS ?? e.REQUEST_TIMEOUT_MS, e.REQUEST_TIMEOUT_MS);
  if (e.BATCH_MAX_ROWS > 0 && e.BATCH_MAX_DELAY_US > 0 && e.BATCH_MAX_DELAY_US / 1000 >= batchWaitLimitMs) {
    throw new ConfigError(
      `invalid configuration:\n  BATCH_MAX_DELAY_US: must be below DRAIN_TIMEOUT_MS and REQUEST_TIMEOUT_MS (${batchWaitLimitMs} ms)`,
    );
  }
  const multiModelProblem = multiModelConflict(e);
  if (multiModelProblem !== undefined) throw new ConfigError(`invalid configuration:\n  ${multiModelProblem}`);
  const maxBodyBytes = e.MAX_BODY_BYTES ?? (e.SAGEMAKER_MAX_PAYLOAD_IN_MB ?? 6) * MEBIBYTE;
  return {
    port,
    host: e.HOST,
    // SageMaker puts multi-model endpoints' models under /opt/ml/models.
    modelRepository: e.MODEL_REPOSITORY ?? (e.SAGEMAKER_MULTI_MODEL ? '/opt/ml/models' : './models'),
    modelName: e.MODEL_NAME,
    defaultModel: e.DEFAULT_MODEL,
    limits: {
      maxRows: e.MAX_ROWS,
      maxColumns: e.MAX_COLUMNS,
      maxJsonDepth: e.MAX_JSON_DEPTH,
      maxCsvLineBytes: e.MAX_CSV_LINE_BYTES,
      maxHeaderBytes: e.MAX_HEADER_BYTES,
      maxBodyBytes,
      maxModelBytes: e.MAX_MODEL_BYTES,
      maxUploadEntries: e.MAX_UPLOAD_ENTRIES,
    },
    maxRows: e.MAX_ROWS,
    maxBodyBytes,
    logLevel: e.LOG_LEVEL,
    slowRequestMs: e.SLOW_REQUEST_MS,
    logRequests: e.LOG_REQUESTS,
    metricsEnabled: e.METRICS_ENABLED,
    metricsPort: e.METRICS_PORT,
    defaultAccept: e.SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT,
    keplerEstimatorSocket: e.KEPLER_ESTIMATOR_SOCKET,
    // No request may take longer than REQUEST_TIMEOUT_MS: by default a retired version waits that long.
    drainTimeoutMs: e.DRAIN_TIMEOUT_MS ?? e.REQUEST_TIMEOUT_MS,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    maxModelBytes: e.MAX_MODEL_BYTES,
    maxConcurrentPerModel: e.MAX_CONCURRENT_PER_MODEL,
    requestTimeoutMs: e.REQUEST_TIMEOUT_MS,
    headersTimeoutMs: e.HEADERS_TIMEOUT_MS,
    keepAliveTimeoutMs: e.KEEP_ALIVE_TIMEOUT_MS,
    maxEventLoopDelayMs: e.MAX_EVENT_LOOP_DELAY_MS,
    // V8 throws out of memory at its heap limit: start refusing work well before.
    maxHeapUsedBytes: e.MAX_HEAP_USED_BYTES ?? Math.floor(0.9 * getHeapStatistics().heap_size_limit),
    retryAfterSeconds: e.RETRY_AFTER_SECONDS,
    modelLoadTimeoutMs: e.MODEL_LOAD_TIMEOUT_MS,
    // One core stays with the event loop (HTTP, small requests, /ping).
    // Node 20 counts the host's cores, not a container's CPU quota: at most 4 threads (about 40 MB each) unless asked.
    workerThreads: e.WORKER_THREADS ?? Math.min(4, Math.max(1, availableParallelism() - 1)),
    workerRowsThreshold: e.WORKER_ROWS_THRESHOLD,
    workerBytesThreshold: e.WORKER_BYTES_THRESHOLD,
    batching: e.BATCH_MAX_ROWS === 0 ? undefined : { maxRows: e.BATCH_MAX_ROWS, maxDelayUs: e.BATCH_MAX_DELAY_US },
    modelPollIntervalMs: e.MODEL_POLL_INTERVAL_MS,
    sagemakerMultiModel: e.SAGEMAKER_MULTI_MODEL,
    maxLoadedModels: e.MAX_LOADED_MODELS,
    modelMemoryBudgetBytes: e.MODEL_MEMORY_BUDGET_MB === undefined ? undefined : e.MODEL_MEMORY_BUDGET_MB * MEBIBYTE,
    capture:
      e.CAPTURE_DIR === undefined || e.CAPTURE_SAMPLE === 0
        ? undefined
        : {
            dir: e.CAPTURE_DIR,
            sample: e.CAPTURE_SAMPLE,
            maxFileBytes: e.CAPTURE_MAX_BYTES,
            maxFiles: e.CAPTURE_MAX_FILES,
            bufferBytes: e.CAPTURE_BUFFER_BYTES,
          },
    driftWindowRows: e.DRIFT_WINDOW_ROWS,
    admin: adminConfig(e),
  };
}

/**
 * Settings that cannot go with SAGEMAKER_MULTI_MODEL's setting, as one problem line. Polling loads
 * `<name>/<version>` folders by itself, while in multi-model mode SageMaker alone decides what is
 * loaded; the limits on loaded models mean nothing outside that mode, and are refused rather than
 * silently ignored.
 */
function multiModelConflict(e: z.infer<typeof envSchema>): string | undefined {
  if (e.SAGEMAKER_MULTI_MODEL && e.MODEL_POLL_INTERVAL_MS !== undefined) {
    return 'MODEL_POLL_INTERVAL_MS: cannot be set with SAGEMAKER_MULTI_MODEL=true (SageMaker loads models through POST /models)';
  }
  if (!e.SAGEMAKER_MULTI_MODEL) {
    const limit = (['MAX_LOADED_MODELS', 'MODEL_MEMORY_BUDGET_MB'] as const).find((name) => e[name] !== undefined);
    if (limit !== undefined) return `${limit}: only applies with SAGEMAKER_MULTI_MODEL=true`;
  }
  return undefined;
}

function adminConfig(e: z.infer<typeof envSchema>): AdminConfig | undefined {
  const keys = [e.ADMIN_JWT_SECRET, e.ADMIN_JWT_PUBLIC_KEY, e.ADMIN_JWT_PUBLIC_KEY_FILE].filter(Boolean);
  if (keys.length > 1) {
    throw new ConfigError(
      'invalid configuration: set only one of ADMIN_JWT_SECRET, ADMIN_JWT_PUBLIC_KEY, ADMIN_JWT_PUBLIC_KEY_FILE',
    );
  }
  const claims = { issuer: e.ADMIN_JWT_ISSUER, audience: e.ADMIN_JWT_AUDIENCE };
  if (e.ADMIN_JWT_SECRET !== undefined) return { key: e.ADMIN_JWT_SECRET, algorithm: 'HS256', ...claims };
  const file = e.ADMIN_JWT_PUBLIC_KEY_FILE;
  let key = e.ADMIN_JWT_PUBLIC_KEY;
  if (file !== undefined) {
    try {
      key = readFileSync(file, 'utf8');
    } catch (error) {
      throw new ConfigError(
        `invalid configuration: ADMIN_JWT_PUBLIC_KEY_FILE: cannot read ${file}: ${(error as NodeJS.ErrnoException).code}`,
      );
    }
  }
  if (key === undefined) return undefined;
  const variable = file === undefined ? 'ADMIN_JWT_PUBLIC_KEY' : 'ADMIN_JWT_PUBLIC_KEY_FILE';
  return { key, algorithm: algorithmFor(key, variable), ...claims };
}

const EC_ALGORITHMS: Record<string, AdminAlgorithm> = {
  prime256v1: 'ES256',
  secp384r1: 'ES384',
  secp521r1: 'ES512',
};

/** The signing algorithm a PEM public key is for: RSA keys take RS256, EC keys the ES* of their curve. */
function algorithmFor(pem: string, variable: string): AdminAlgorithm {
  let key: ReturnType<typeof createPublicKey>;
  try {
    key = createPublicKey(pem);
  } catch {
    throw new ConfigError(`invalid configuration: ${variable}: not a PEM public key`);
  }
  if (key.asymmetricKeyType === 'rsa') return 'RS256';
  const curve = key.asymmetricKeyDetails?.namedCurve;
  const algorithm = key.asymmetricKeyType === 'ec' && curve !== undefined ? EC_ALGORITHMS[curve] : undefined;
  if (algorithm === undefined) {
    throw new ConfigError(
      `invalid configuration: ${variable}: an RSA or EC (P-256, P-384, P-521) public key is needed, got ${key.asymmetricKeyType} ${curve ?? ''}`.trim(),
    );
  }
  return algorithm;
}
