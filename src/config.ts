import { z } from 'zod';
import { zodProblems } from './zod-problems.js';

const MEBIBYTE = 1024 * 1024;

/** The media types /invocations can answer with, in the order tried when Accept allows any. */
export const RESPONSE_MEDIA_TYPES = ['application/json', 'text/csv', 'application/jsonlines'] as const;
export type ResponseMediaType = (typeof RESPONSE_MEDIA_TYPES)[number];

/** Model names: what may stand as a folder name in the repository and in a URL. */
export const MODEL_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

const positiveInt = z.coerce.number().int().positive();

/**
 * Every knob the service reads from the environment. Each one is documented in the README's
 * configuration table; keep the two in step.
 */
const envSchema = z.object({
  PORT: positiveInt.max(65535).optional(),
  SAGEMAKER_BIND_TO_PORT: positiveInt.max(65535).optional(),
  HOST: z.string().min(1).default('0.0.0.0'),
  MODEL_REPOSITORY: z.string().min(1).default('./models'),
  MODEL_NAME: z
    .string()
    .regex(MODEL_NAME_PATTERN, 'letters, digits, ".", "_" or "-", starting with a letter or digit')
    .default('model'),
  DEFAULT_MODEL: z.string().optional(),
  MAX_ROWS: positiveInt.default(100_000),
  MAX_BODY_BYTES: positiveInt.optional(),
  SAGEMAKER_MAX_PAYLOAD_IN_MB: positiveInt.optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  SLOW_REQUEST_MS: positiveInt.default(1000),
  SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT: z.enum(RESPONSE_MEDIA_TYPES).default('application/json'),
  KEPLER_ESTIMATOR_SOCKET: z.string().optional(),
});

export interface Config {
  port: number;
  host: string;
  modelRepository: string;
  modelName: string;
  defaultModel: string | undefined;
  maxRows: number;
  maxBodyBytes: number;
  logLevel: z.infer<typeof envSchema>['LOG_LEVEL'];
  slowRequestMs: number;
  defaultAccept: ResponseMediaType;
  /** Unix socket path for Kepler's estimator sidecar protocol; off when unset. */
  keplerEstimatorSocket: string | undefined;
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
  return {
    port: e.PORT ?? e.SAGEMAKER_BIND_TO_PORT ?? 8080,
    host: e.HOST,
    modelRepository: e.MODEL_REPOSITORY,
    modelName: e.MODEL_NAME,
    defaultModel: e.DEFAULT_MODEL,
    maxRows: e.MAX_ROWS,
    maxBodyBytes: e.MAX_BODY_BYTES ?? (e.SAGEMAKER_MAX_PAYLOAD_IN_MB ?? 6) * MEBIBYTE,
    logLevel: e.LOG_LEVEL,
    slowRequestMs: e.SLOW_REQUEST_MS,
    defaultAccept: e.SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT,
    keplerEstimatorSocket: e.KEPLER_ESTIMATOR_SOCKET,
  };
}
