import path from 'node:path';
import type { Backend, BackendName, LoadedModel } from '../backends/backend.js';
import { backendFor } from '../backends/index.js';
import type { Matrix } from '../matrix.js';
import { type FeatureStats, readMetadata } from './metadata.js';
import type { VersionSource } from './repository.js';

/** A model version that loaded, passed its checks and can serve. */
export interface ModelVersion {
  readonly name: string;
  readonly version: number;
  readonly backend: BackendName;
  /** Input column names, in the order the model takes them. */
  readonly features: readonly string[];
  /** Output column names, one per value the model returns for a row. */
  readonly outputs: readonly string[];
  readonly location: string;
  /** The folder and files it was loaded from, as scanned (worker threads load the same ones). */
  readonly source: VersionSource;
  /** What metadata.json says of the model, for people: its description and where it came from. */
  readonly about: { readonly description?: string; readonly source?: string };
  /** The training data's statistics per feature (metadata.json `feature_stats`), when given. */
  readonly featureStats: Readonly<Record<string, FeatureStats>> | undefined;
  readonly model: LoadedModel;
}

/**
 * Which step a version failed at, or `timeout` when it was still loading after MODEL_LOAD_TIMEOUT_MS:
 * a closed set, for metrics and listings.
 */
export type LoadFailureReason =
  | 'unrecognised_files'
  | 'invalid_metadata'
  | 'backend_error'
  | 'failed_checks'
  | 'timeout';

/**
 * A version that cannot serve. Its message is fit for an answer (see publicMessage); the cause
 * keeps the whole error, paths and stack included, for the logs.
 */
export class LoadFailure extends Error {
  override name = 'LoadFailure';
  constructor(
    readonly reason: LoadFailureReason,
    cause: unknown,
    message: string = messageOf(cause),
  ) {
    super(message, { cause });
  }
}

export interface LoadOptions {
  /**
   * A load (files, backend, checks) still running after this long fails with reason `timeout`. A
   * backend cannot be interrupted: whatever it loads later is disposed as it arrives, never served.
   */
  timeoutMs?: number;
  /** Told when a load that timed out ends after all: `freed` (it loaded, and was disposed) or `failed`. */
  onLateEnd?: (outcome: 'freed' | 'failed', error?: unknown) => void;
  /** Test seam for fault injection: picks the backend for a version's files (a fake that hangs or throws). */
  backendFor?: (files: readonly string[]) => Backend;
}

/** Runs one step of loading; a failure says which step it was. */
async function step<T>(reason: LoadFailureReason, run: () => T | Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw new LoadFailure(reason, error);
  }
}

/**
 * Loads one version and checks it before it may serve: its declared features match the model's
 * input width, and a warm-up prediction on a sample row gives finite numbers of the declared shape.
 * Anything wrong throws a LoadFailure, with the model already disposed; so does a load that takes
 * longer than `timeoutMs`, and what it loads later is disposed when it arrives.
 */
export async function loadVersion(source: VersionSource, options: LoadOptions = {}): Promise<ModelVersion> {
  const loading = loadAndCheck(source, options.backendFor ?? backendFor).catch((error: unknown) => {
    const failure = error instanceof LoadFailure ? error : new LoadFailure('backend_error', error);
    throw new LoadFailure(failure.reason, failure.cause, publicMessage(failure.message, source.dir));
  });
  const { timeoutMs } = options;
  if (timeoutMs === undefined) return loading;
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<'expired'>((resolve) => {
    timer = setTimeout(() => resolve('expired'), timeoutMs);
  });
  try {
    const first = await Promise.race([loading, expired]);
    if (first !== 'expired') return first;
  } finally {
    clearTimeout(timer);
  }
  loading.then(
    async (late) => {
      await late.model.dispose().catch(() => undefined);
      options.onLateEnd?.('freed');
    },
    (error: unknown) => options.onLateEnd?.('failed', error),
  );
  const message = `still loading after ${timeoutMs} ms (MODEL_LOAD_TIMEOUT_MS); it will not serve`;
  throw new LoadFailure('timeout', new Error(message));
}

async function loadAndCheck(
  source: VersionSource,
  backendFor: (files: readonly string[]) => Backend,
): Promise<ModelVersion> {
  const backend = await step('unrecognised_files', () => backendFor(source.files));
  const metadata = await step('invalid_metadata', () => readMetadata(source.dir, source.files));
  const model = await step('backend_error', () => backend.load(source.dir, source.files));
  try {
    const features = featureNames(declaredNames('features', metadata.features, model.features), model.inputWidth);
    checkFeatureStatsKeys(metadata.featureStats, features);
    const sample = await model.predict(zeroRow(features.length));
    const outputs = outputNames(declaredNames('outputs', metadata.outputs, model.outputs), sample);
    return {
      name: source.name,
      version: source.version,
      backend: backend.name,
      features,
      outputs,
      location: source.location,
      source,
      about: metadata.about,
      featureStats: metadata.featureStats,
      model,
    };
  } catch (error) {
    await model.dispose();
    throw error instanceof LoadFailure ? error : new LoadFailure('failed_checks', error);
  }
}

/**
 * metadata.json `feature_stats` may cover some of the model's features, never a feature the model
 * does not take (a typo would silently leave a feature without its drift signals).
 */
export function checkFeatureStatsKeys(
  stats: Readonly<Record<string, unknown>> | undefined,
  features: readonly string[],
): void {
  const unknown = Object.keys(stats ?? {}).filter((key) => !features.includes(key));
  if (unknown.length === 0) return;
  const named =
    unknown.length > 10 ? `${unknown.slice(0, 10).join(', ')} and ${unknown.length - 10} more` : unknown.join(', ');
  const message =
    `metadata.json is invalid: feature_stats names ${unknown.length === 1 ? 'a feature' : 'features'} ` +
    `the model does not take: ${named} (its features are ${features.join(', ')})`;
  throw new LoadFailure('invalid_metadata', new Error(message));
}

/**
 * Names the model files carry themselves (a Kepler archive's features and components) are the
 * ones its formulas use: metadata.json may repeat them, not reorder or rename them.
 */
function declaredNames(
  what: 'features' | 'outputs',
  inMetadata: readonly string[] | undefined,
  inModel: readonly string[] | undefined,
): readonly string[] | undefined {
  if (inModel === undefined) return inMetadata;
  if (inMetadata !== undefined && inMetadata.join('\n') !== inModel.join('\n')) {
    throw new Error(
      `metadata.json lists ${what} ${inMetadata.join(', ')}, but the model's own are ${inModel.join(', ')}`,
    );
  }
  return inModel;
}

export function featureNames(
  declared: readonly string[] | undefined,
  inputWidth: number | undefined,
): readonly string[] {
  if (declared === undefined) {
    if (inputWidth === undefined) {
      throw new Error('the model does not fix its input width; list its features in metadata.json');
    }
    return Array.from({ length: inputWidth }, (_, i) => `f${i}`);
  }
  if (inputWidth !== undefined && declared.length !== inputWidth) {
    throw new Error(`metadata.json lists ${declared.length} features but the model takes ${inputWidth} inputs`);
  }
  return declared;
}

export function outputNames(declared: readonly string[] | undefined, sample: Matrix): readonly string[] {
  if (sample.rows !== 1) throw new Error(`warm-up: the model returned ${sample.rows} rows for 1`);
  if (!sample.data.every(Number.isFinite)) throw new Error('warm-up: the model returned non-finite values');
  if (declared === undefined) return Array.from({ length: sample.cols }, (_, i) => `y${i}`);
  if (declared.length !== sample.cols) {
    throw new Error(`metadata.json lists ${declared.length} outputs but the model returns ${sample.cols}`);
  }
  if (new Set(declared).size !== declared.length)
    throw new Error(`output names must be unique: ${declared.join(', ')}`);
  return declared;
}

function zeroRow(width: number): Matrix {
  return { data: new Float64Array(width), rows: 1, cols: width };
}

/** Absolute paths, and what may stand right before one in a message. */
const ABSOLUTE_PATH = /(^|[\s'"`(=:,[])(\/[^\s'"`(),:[\]/][^\s'"`(),:[\]]*)/g;

/**
 * A message fit for an answer: no stack trace, on one line, paths inside the version's folder
 * relative to it (`model.onnx`, `weights/group1.bin`) and any other absolute path cut to its last
 * part, so neither the repository's place nor the server's layout shows.
 */
export function publicMessage(message: string, dir?: string): string {
  let text = message.split(/\n\s*at /, 1)[0] ?? '';
  if (dir !== undefined && dir !== '') text = text.replaceAll(`${dir}${path.sep}`, '').replaceAll(dir, '.');
  return text
    .replace(ABSOLUTE_PATH, (_match, before: string, absolute: string) => `${before}${path.posix.basename(absolute)}`)
    .replace(/\s*\n\s*/g, ' ')
    .trim();
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
