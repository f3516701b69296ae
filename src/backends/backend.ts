import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Matrix } from '../matrix.js';
import type { KeplerModelInfo } from './kepler.js';

export type BackendName = 'onnx' | 'tfjs' | 'kepler';

/** What a prediction may need beside the matrix. */
export interface PredictContext {
  /** Kepler's categorical node features (node_info, cpu_architecture, …) and their values. */
  system?: ReadonlyMap<string, string>;
}

/** A model in memory, ready to predict. Knows nothing of HTTP or of the registry. */
export interface LoadedModel {
  /** What computes the predictions, for the logs (e.g. "tfjs wasm"). */
  readonly runtime: string;
  /** Number of input columns the model declares, or undefined when its input width is not fixed. */
  readonly inputWidth: number | undefined;
  /** Feature and output names the model files carry themselves; metadata.json takes precedence. */
  readonly features?: readonly string[];
  readonly outputs?: readonly string[];
  /** Set for Kepler models: what Kepler's model selection and model server need. */
  readonly kepler?: KeplerModelInfo;
  /** One row of output per input row; cols is the number of outputs. */
  predict(input: Matrix, context?: PredictContext): Promise<Matrix>;
  /** Frees native memory; the model must not be used afterwards. */
  dispose(): Promise<void>;
}

/** One kind of model file: recognises its files in a version folder and loads them. */
export interface Backend {
  readonly name: BackendName;
  /** Whether this version folder (its file names) holds a model of this kind. */
  claims(files: readonly string[]): boolean;
  load(dir: string, files: readonly string[]): Promise<LoadedModel>;
}

/** The rows a backend returned, checked against the rows it was given. */
export function outputMatrix(data: Matrix['data'], rows: number): Matrix {
  if (rows === 0 || data.length % rows !== 0) {
    throw new Error(`the model returned ${data.length} values for ${rows} rows`);
  }
  return { data, rows, cols: data.length / rows };
}

/** Parses JSON text from a model file; a syntax error names the file. */
export function parseJsonText(text: string, name: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    // V8 quotes the start of the text ('Unexpected token 'T', "TOPSECRET-"... is not valid JSON'):
    // answers name the problem, never the file's contents.
    const problem = (error as Error).message.replace(/, ".*$/s, '');
    throw new Error(`${name} is not valid JSON: ${problem}`);
  }
}

export async function readJsonFile(file: string): Promise<unknown> {
  return parseJsonText(await readFile(file, 'utf8'), path.basename(file));
}
