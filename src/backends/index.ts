import type { Backend } from './backend.js';
import { keplerBackend } from './kepler.js';
import { onnxBackend } from './onnx.js';
import { tfjsBackend } from './tfjs.js';

/** Every backend, tried in this order against a version folder's files. */
export const BACKENDS: readonly Backend[] = [onnxBackend, tfjsBackend, keplerBackend];

/** The one backend that claims the files; throws when none or several do. */
export function backendFor(files: readonly string[]): Backend {
  const claiming = BACKENDS.filter((backend) => backend.claims(files));
  if (claiming.length === 1 && claiming[0] !== undefined) return claiming[0];
  if (claiming.length === 0) {
    throw new Error(
      'no model file found (expected model.onnx, model.json in TF.js layers format, or a Kepler archive or weight.json)',
    );
  }
  throw new Error(`the folder holds model files for several backends (${claiming.map((b) => b.name).join(', ')})`);
}
