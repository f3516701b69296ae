import type { KeplerModelInfo } from '../backends/kepler.js';
import { normaliseEnergySource } from '../backends/kepler.js';
import { ApiError } from '../errors.js';
import type { ModelRegistry } from '../registry/registry.js';

/** What Kepler asks for when it names no model: kepler.md, "Model selection". */
export interface SelectionRequest {
  outputType: string;
  source: string;
  metrics: readonly string[];
  trainerName: string | undefined;
  filter: string | undefined;
}

export interface Candidate {
  name: string;
  version: number;
  features: readonly string[];
  outputs: readonly string[];
  kepler: KeplerModelInfo;
}

/** The serving version of every loaded Kepler model. */
export function keplerCandidates(registry: ModelRegistry): Candidate[] {
  if (registry.loading) throw new ApiError('not_ready', 'models are still loading');
  return registry.list().flatMap(({ name, serving }) =>
    serving.model.kepler === undefined
      ? []
      : [
          {
            name,
            version: serving.version,
            features: serving.features,
            outputs: serving.outputs,
            kepler: serving.model.kepler,
          },
        ],
  );
}

/** The selection fields of a Kepler request body (the estimator's or the model server's). */
export function parseSelectionRequest(fields: Record<string, unknown>): SelectionRequest {
  return {
    metrics: stringList(fields.metrics, 'metrics', true),
    outputType: requiredString(fields.output_type, 'output_type'),
    source: requiredString(fields.source, 'source'),
    trainerName: optionalString(fields.trainer_name, 'trainer_name'),
    filter: optionalString(fields.filter, 'filter'),
  };
}

/** The body as an object, or a 400. */
export function requestObject(body: unknown): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new ApiError('invalid_body', 'the request must be a JSON object', 'body');
  }
  return body as Record<string, unknown>;
}

/** A list of strings; Go sends a nil slice as null, which counts as empty unless required. */
export function stringList(value: unknown, field: string, required: boolean): string[] {
  if ((value === null || value === undefined) && !required) return [];
  if (!Array.isArray(value) || value.some((item) => typeof item !== 'string')) {
    throw new ApiError('invalid_body', 'must be an array of strings', field);
  }
  return value as string[];
}

function requiredString(value: unknown, field: string): string {
  if (typeof value !== 'string' || value === '') throw new ApiError('invalid_body', 'is required', field);
  return value;
}

function optionalString(value: unknown, field: string): string | undefined {
  if (value === null || value === undefined || value === '') return undefined;
  if (typeof value !== 'string') throw new ApiError('invalid_body', 'must be a string', field);
  return value;
}

interface Threshold {
  attribute: string;
  value: number;
}

/**
 * Among the Kepler models, those with the request's output type and energy source whose
 * features are all in `metrics`, that pass `trainer_name` and `filter`: the one with the lowest
 * mae (a model without mae comes last). Throws a 400 saying what matched nothing.
 */
export function selectModel<C extends Candidate>(candidates: readonly C[], request: SelectionRequest): C {
  const thresholds = parseFilter(request.filter);
  const source = normaliseEnergySource(request.source) ?? request.source;
  const metrics = new Set(request.metrics);
  const steps: Array<[string, (c: C) => boolean]> = [
    [`output type ${request.outputType}`, (c) => c.kepler.outputType === request.outputType],
    [`energy source ${request.source}`, (c) => c.kepler.energySource === source],
    ['the given metrics', (c) => c.features.every((feature) => metrics.has(feature))],
    [
      `trainer ${request.trainerName}`,
      (c) => !request.trainerName || c.kepler.modelName.startsWith(request.trainerName),
    ],
    [`filter ${request.filter}`, (c) => thresholds.every((t) => passes(c.kepler.attributes, t))],
  ];
  let remaining = [...candidates];
  for (const [what, keep] of steps) {
    remaining = remaining.filter(keep);
    if (remaining.length === 0) {
      throw new ApiError(
        'no_matching_model',
        candidates.length === 0 ? 'no Kepler model is loaded' : `no loaded Kepler model matches ${what}`,
      );
    }
  }
  const mae = (c: C) => c.kepler.attributes.mae ?? Number.POSITIVE_INFINITY;
  return remaining.reduce((best, c) => (mae(c) < mae(best) ? c : best));
}

/** `mae:50;abs_max_corr:0.5` → thresholds; an empty filter keeps everything. */
export function parseFilter(filter: string | undefined): Threshold[] {
  if (filter === undefined || filter.trim() === '') return [];
  return filter
    .split(';')
    .filter((part) => part.trim() !== '')
    .map((part) => {
      const [attribute, value, ...rest] = part.split(':').map((s) => s.trim());
      const threshold = Number(value);
      if (!attribute || value === undefined || value === '' || rest.length > 0 || !Number.isFinite(threshold)) {
        throw new ApiError('invalid_body', `"${part}" is not attribute:threshold`, 'filter');
      }
      return { attribute, value: threshold };
    });
}

/** Lower is better for every attribute (mae, mape, …) except abs_max_corr; a missing one fails. */
function passes(attributes: Readonly<Record<string, number>>, { attribute, value }: Threshold): boolean {
  const actual = attributes[attribute];
  if (actual === undefined || !Object.hasOwn(attributes, attribute)) return false;
  return attribute === 'abs_max_corr' ? actual >= value : actual <= value;
}
