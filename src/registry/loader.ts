import type { BackendName, LoadedModel } from '../backends/backend.js';
import { backendFor } from '../backends/index.js';
import type { Matrix } from '../matrix.js';
import { readMetadata } from './metadata.js';
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
  /** What metadata.json says of the model, for people: its description and where it came from. */
  readonly about: { readonly description?: string; readonly source?: string };
  readonly model: LoadedModel;
}

/** Which step a version failed at: a closed set, for metrics and listings. */
export type LoadFailureReason = 'unrecognised_files' | 'invalid_metadata' | 'backend_error' | 'failed_checks';

export class LoadFailure extends Error {
  override name = 'LoadFailure';
  constructor(
    readonly reason: LoadFailureReason,
    cause: unknown,
  ) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
  }
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
 * Anything wrong throws a LoadFailure, with the model already disposed.
 */
export async function loadVersion(source: VersionSource): Promise<ModelVersion> {
  const backend = await step('unrecognised_files', () => backendFor(source.files));
  const metadata = await step('invalid_metadata', () => readMetadata(source.dir, source.files));
  const model = await step('backend_error', () => backend.load(source.dir, source.files));
  try {
    const features = featureNames(declaredNames('features', metadata.features, model.features), model.inputWidth);
    const sample = await model.predict(zeroRow(features.length));
    const outputs = outputNames(declaredNames('outputs', metadata.outputs, model.outputs), sample);
    return {
      name: source.name,
      version: source.version,
      backend: backend.name,
      features,
      outputs,
      location: source.location,
      about: metadata.about,
      model,
    };
  } catch (error) {
    await model.dispose();
    throw new LoadFailure('failed_checks', error);
  }
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
