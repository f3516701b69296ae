import path from 'node:path';
import { z } from 'zod';
import { readJsonFile } from '../backends/backend.js';
import { zodProblems } from '../zod-problems.js';

export const METADATA_FILE = 'metadata.json';

const name = z.string().min(1);
const outputSpec = z.union([name, z.object({ name, unit: z.string().optional() })]);

/**
 * One feature's `feature_stats` entry: finite numbers, min ≤ max, std ≥ 0, nine ordered deciles within
 * [min, max], and optionally (older files have none) the share of the data at or below each decile:
 * nine numbers in [0, 1], non-decreasing, equal where the deciles are equal, 1 at an edge equal to max.
 */
const featureStatsSchema = z
  .object({
    min: z.number(),
    max: z.number(),
    mean: z.number(),
    std: z.number().nonnegative(),
    deciles: z.array(z.number()).length(9, 'must hold exactly 9 numbers (the edges at 10%, 20%, … 90%)'),
    cdf_at_deciles: z
      .array(z.number().min(0).max(1))
      .length(9, 'must hold exactly 9 numbers (the share of the data at or below each decile)')
      .optional(),
  })
  .superRefine((stats, context) => {
    if (stats.min > stats.max) {
      context.addIssue({ code: 'custom', path: ['min'], message: `min ${stats.min} is above max ${stats.max}` });
    }
    stats.deciles.forEach((edge, i) => {
      const previous = stats.deciles[i - 1];
      if (previous !== undefined && edge < previous) {
        context.addIssue({ code: 'custom', path: ['deciles', i], message: `${edge} is below the edge before it` });
      } else if (edge < stats.min || edge > stats.max) {
        const range = `[${stats.min}, ${stats.max}]`;
        context.addIssue({ code: 'custom', path: ['deciles', i], message: `${edge} is outside min…max ${range}` });
      }
    });
    stats.cdf_at_deciles?.forEach((share, i) => {
      const previous = stats.cdf_at_deciles?.[i - 1];
      const edge = stats.deciles[i];
      const path = ['cdf_at_deciles', i];
      if (previous !== undefined && share < previous) {
        context.addIssue({ code: 'custom', path, message: `${share} is below the share before it` });
      } else if (previous !== undefined && edge === stats.deciles[i - 1] && share !== previous) {
        context.addIssue({
          code: 'custom',
          path,
          message: `${share} differs from the share at the same decile ${edge}`,
        });
      } else if (edge === stats.max && share !== 1) {
        context.addIssue({ code: 'custom', path, message: `${share} is not 1 at the decile ${edge}, the maximum` });
      }
    });
  });

const metadataSchema = z.looseObject({
  features: z
    .array(name)
    .min(1)
    .refine((names) => new Set(names).size === names.length, 'feature names must be unique')
    .optional(),
  outputs: z.array(outputSpec).min(1).optional(),
  description: z.string().optional(),
  source: z.string().optional(),
  /** Keyed by feature name; whether those are the model's features is checked once they are known (loader). */
  feature_stats: z.record(name, featureStatsSchema).optional(),
});

/**
 * What one feature looked like in the data the model was fitted on (metadata.json `feature_stats`):
 * the reference drift is measured against. `deciles` are the nine edges at 10%, 20%, … 90%;
 * `cdf_at_deciles` the share of the data at or below each of them (absent in older files).
 */
export interface FeatureStats {
  readonly min: number;
  readonly max: number;
  readonly mean: number;
  readonly std: number;
  readonly deciles: readonly number[];
  readonly cdf_at_deciles?: readonly number[];
}

export interface ModelMetadata {
  features: string[] | undefined;
  outputs: string[] | undefined;
  about: { description?: string; source?: string };
  /** Per feature name; undefined when metadata.json has none (Kepler models, older models). */
  featureStats: Readonly<Record<string, FeatureStats>> | undefined;
}

/** Reads the optional metadata.json beside a model; a missing file means no metadata. */
export async function readMetadata(dir: string, files: readonly string[]): Promise<ModelMetadata> {
  if (!files.includes(METADATA_FILE)) {
    return { features: undefined, outputs: undefined, about: {}, featureStats: undefined };
  }
  const parsed = metadataSchema.safeParse(await readJsonFile(path.join(dir, METADATA_FILE)));
  if (!parsed.success) {
    throw new Error(`${METADATA_FILE} is invalid: ${zodProblems(parsed.error).join('; ')}`);
  }
  const m = parsed.data;
  return {
    features: m.features,
    outputs: m.outputs?.map((output) => (typeof output === 'string' ? output : output.name)),
    about: { description: m.description, source: m.source },
    // An empty object says no more than no object: no feature has a reference.
    featureStats:
      m.feature_stats === undefined || Object.keys(m.feature_stats).length === 0 ? undefined : m.feature_stats,
  };
}
