import path from 'node:path';
import ort from 'onnxruntime-node';
import { asFloat32, type Matrix } from '../matrix.js';
import { type Backend, type LoadedModel, outputMatrix } from './backend.js';

const MODEL_FILE = 'model.onnx';

/** ONNX models (scikit-learn, Keras, PyTorch exports) through onnxruntime-node on the CPU. */
export const onnxBackend: Backend = {
  name: 'onnx',
  claims: (files) => files.includes(MODEL_FILE),
  async load(dir) {
    const session = await ort.InferenceSession.create(path.join(dir, MODEL_FILE), {
      // Requests are small (tens of pods × ~10 features): a thread pool costs more than it saves.
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
    });
    try {
      return onnxModel(session);
    } catch (error) {
      await session.release();
      throw error;
    }
  },
};

function onnxModel(session: ort.InferenceSession): LoadedModel {
  if (session.inputNames.length !== 1) {
    throw new Error(
      `the model has ${session.inputNames.length} inputs; wattserve feeds exactly one [rows, features] tensor`,
    );
  }
  const input = session.inputMetadata[0];
  if (input === undefined || !input.isTensor) throw new Error('the model input is not a tensor');
  if (input.type !== 'float32' && input.type !== 'float64') {
    throw new Error(`the model input is ${input.type}; wattserve feeds float32 or float64`);
  }
  if (input.shape.length !== 2) {
    throw new Error(`the model input has shape [${input.shape.join(', ')}]; expected [rows, features]`);
  }
  const width = input.shape[1];
  const inputName = input.name;
  const outputName = session.outputNames[0];
  if (outputName === undefined) throw new Error('the model has no output');
  const toInput =
    input.type === 'float32'
      ? (m: Matrix) => new ort.Tensor('float32', asFloat32(m.data), [m.rows, m.cols])
      : (m: Matrix) =>
          new ort.Tensor('float64', m.data instanceof Float64Array ? m.data : Float64Array.from(m.data), [
            m.rows,
            m.cols,
          ]);

  return {
    runtime: 'onnxruntime cpu',
    inputWidth: typeof width === 'number' && width > 0 ? width : undefined,
    async predict(matrix) {
      const results = await session.run({ [inputName]: toInput(matrix) }, [outputName]);
      const output = results[outputName];
      if (output === undefined) throw new Error(`the model returned no "${outputName}"`);
      const data = output.data;
      // Regressors answer float32 or float64; integer outputs are converted to numbers.
      const values =
        data instanceof Float32Array || data instanceof Float64Array
          ? data
          : Float64Array.from(data as ArrayLike<number | bigint | string>, Number);
      return outputMatrix(values, matrix.rows);
    },
    dispose: () => session.release(),
  };
}
