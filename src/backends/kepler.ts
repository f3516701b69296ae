import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { strFromU8, strToU8, unzipSync, zipSync } from 'fflate';
import { z } from 'zod';
import { buildFormula, trainerOf } from '../kepler/weights.js';
import { zodProblems } from '../zod-problems.js';
import { type Backend, type LoadedModel, parseJsonText, readJsonFile } from './backend.js';

const UNPACKED_WEIGHTS = 'weight.json';
const KEPLER_METADATA = 'metadata.json';

/** What Kepler's model selection and `POST /model` need to know of a loaded Kepler model. */
export interface KeplerModelInfo {
  /** `SGDRegressorTrainer_0` */
  modelName: string;
  /** `AbsPower` or `DynPower` */
  outputType: string;
  /** `rapl-sysfs` or `acpi` */
  energySource: string;
  /** The numeric metadata entries (mae, mape, abs_max_corr, …), which `filter` compares against. */
  attributes: Readonly<Record<string, number>>;
  /** The weights file as it was read. */
  weights: unknown;
  /** The model as a kepler-model-db zip archive, with the weights inside as weight.json. */
  archive(): Promise<Uint8Array>;
}

const metadataSchema = z.looseObject({
  model_name: z.string().min(1),
  features: z.array(z.string().min(1)).min(1),
  output_type: z.string().min(1),
  main_feature: z.string().optional(),
  energy_source: z.string().optional(),
  source: z.string().optional(),
});

/**
 * Kepler's own regressors as kepler-model-db publishes them: `<Trainer>_<n>.zip` beside its
 * weights file `<Trainer>_<n>.json`, or unpacked with `weight.json`. Never unpickles: archives
 * without a weights file (GradientBoosting, KNeighbors, …) are refused.
 */
export const keplerBackend: Backend = {
  name: 'kepler',
  claims: (files) => files.includes(UNPACKED_WEIGHTS) || files.some((file) => file.endsWith('.zip')),
  async load(dir, files) {
    const source = files.includes(UNPACKED_WEIGHTS) ? await readUnpacked(dir, files) : await readArchive(dir, files);
    const metadata = parseMetadata(source.metadata);
    if (source.weights === undefined) {
      throw new Error(
        `${trainerOf(metadata.model_name)} has no weights file (${source.weightsName}): wattserve runs Kepler's linear and curve-fit trainers without Python; export this model to ONNX and put model.onnx in this folder in place of the archive`,
      );
    }
    const features = metadata.features;
    const formula = buildFormula(source.weights, {
      modelName: metadata.model_name,
      features,
      mainFeature: metadata.main_feature,
    });
    const info: KeplerModelInfo = {
      modelName: metadata.model_name,
      outputType: metadata.output_type,
      energySource:
        normaliseEnergySource(metadata.energy_source ?? metadata.source ?? '') ?? energySourceOf(formula.components),
      attributes: Object.fromEntries(
        Object.entries(metadata).filter((entry): entry is [string, number] => typeof entry[1] === 'number'),
      ),
      weights: source.weights,
      archive: source.archive,
    };
    const noSystem = new Map<string, string>();
    const model: LoadedModel = {
      runtime: `kepler ${formula.kind} (float64)`,
      inputWidth: features.length,
      features,
      outputs: formula.components,
      kepler: info,
      async predict(input, context) {
        const data = formula.predict(input.data, input.rows, input.cols, context?.system ?? noSystem);
        return { data, rows: input.rows, cols: formula.components.length };
      },
      async dispose() {},
    };
    return model;
  },
};

interface KeplerFiles {
  metadata: unknown;
  weights: unknown;
  /** The file the weights were expected in, for messages. */
  weightsName: string;
  archive(): Promise<Uint8Array>;
}

/**
 * The folder as kepler-model-server unpacks a model: metadata.json, weight.json and the rest. The
 * files are read now: the folder may be renamed or removed while the model serves (hot swap).
 */
async function readUnpacked(dir: string, files: readonly string[]): Promise<KeplerFiles> {
  if (!files.includes(KEPLER_METADATA))
    throw new Error(`${UNPACKED_WEIGHTS} needs the Kepler ${KEPLER_METADATA} beside it`);
  const contents = Object.fromEntries(
    await Promise.all(files.map(async (file) => [file, new Uint8Array(await readFile(path.join(dir, file)))] as const)),
  );
  const json = (file: string) => parseJsonText(strFromU8(contents[file] ?? new Uint8Array()), file);
  return {
    metadata: json(KEPLER_METADATA),
    weights: json(UNPACKED_WEIGHTS),
    weightsName: UNPACKED_WEIGHTS,
    async archive() {
      return zipSync(contents);
    },
  };
}

/** The pair as kepler-model-db publishes it: `<Trainer>_<n>.zip` and `<Trainer>_<n>.json`. */
async function readArchive(dir: string, files: readonly string[]): Promise<KeplerFiles> {
  const zips = files.filter((file) => file.endsWith('.zip'));
  if (zips.length !== 1) throw new Error(`expected one Kepler archive (.zip) in the folder, found ${zips.length}`);
  const zipName = zips[0] as string;
  const zipBytes = new Uint8Array(await readFile(path.join(dir, zipName)));
  let inside: Record<string, Uint8Array>;
  try {
    inside = unzipSync(zipBytes);
  } catch (error) {
    throw new Error(`${zipName} is not a readable zip archive: ${(error as Error).message}`);
  }
  const metadataBytes = inside[KEPLER_METADATA];
  if (metadataBytes === undefined) throw new Error(`${zipName} holds no ${KEPLER_METADATA}`);
  const weightsName = `${zipName.slice(0, -'.zip'.length)}.json`;
  // A sibling weights file as downloaded, or weight.json inside an archive kepler-model-server served.
  const weights = files.includes(weightsName)
    ? await readJsonFile(path.join(dir, weightsName))
    : inside[UNPACKED_WEIGHTS] && parseJsonText(strFromU8(inside[UNPACKED_WEIGHTS]), UNPACKED_WEIGHTS);
  return {
    metadata: parseJsonText(strFromU8(metadataBytes), `${zipName}/${KEPLER_METADATA}`),
    weights,
    weightsName,
    async archive() {
      return zipSync({ ...inside, [UNPACKED_WEIGHTS]: strToU8(JSON.stringify(weights)) });
    },
  };
}

function parseMetadata(json: unknown): z.infer<typeof metadataSchema> {
  const parsed = metadataSchema.safeParse(json);
  if (!parsed.success) {
    throw new Error(`the Kepler ${KEPLER_METADATA} is invalid: ${zodProblems(parsed.error).join('; ')}`);
  }
  return parsed.data;
}

/** Kepler's names for energy sources: it sends `intel_rapl`; `rapl` also means rapl-sysfs. */
export function normaliseEnergySource(name: string): string | undefined {
  const lower = name.trim().toLowerCase();
  if (lower === 'rapl-sysfs' || lower === 'intel_rapl' || lower === 'rapl') return 'rapl-sysfs';
  if (lower === 'acpi') return 'acpi';
  return undefined;
}

function energySourceOf(components: readonly string[]): string {
  return components.includes('platform') ? 'acpi' : 'rapl-sysfs';
}
