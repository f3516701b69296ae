/**
 * Writes a linear model `output = input · weights + bias` as an ONNX graph (MatMul + Add), with
 * onnx-proto. Used by make-example-models.ts and by tests that need small ONNX files.
 */
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

export interface LinearOnnxOptions {
  /** One row per input feature, one column per output. */
  weights: readonly (readonly number[])[];
  /** One value per output. */
  bias: readonly number[];
  graphName?: string;
  inputName?: string;
  outputName?: string;
}

export function linearOnnxModel(options: LinearOnnxOptions): Uint8Array {
  const { weights, bias, graphName = 'linear', inputName = 'input', outputName = 'output' } = options;
  const features = weights.length;
  const outputs = bias.length;
  const float = onnx.TensorProto.DataType.FLOAT;
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'wattserve scripts/onnx-linear.ts',
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: graphName,
      node: [
        { opType: 'MatMul', input: [inputName, 'weights'], output: ['weighted'], name: 'matmul' },
        { opType: 'Add', input: ['weighted', 'bias'], output: [outputName], name: 'add_bias' },
      ],
      initializer: [
        { name: 'weights', dataType: float, dims: [features, outputs], floatData: weights.flat() },
        { name: 'bias', dataType: float, dims: [outputs], floatData: [...bias] },
      ],
      input: [tensorInfo(inputName, features)],
      output: [tensorInfo(outputName, outputs)],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

/** A float tensor of shape [pods, width], the pod dimension left free. */
function tensorInfo(name: string, width: number) {
  return {
    name,
    type: {
      tensorType: {
        elemType: onnx.TensorProto.DataType.FLOAT,
        shape: { dim: [{ dimParam: 'pods' }, { dimValue: width }] },
      },
    },
  };
}

/** The weights and bias of a model written by linearOnnxModel, read back from its bytes. */
export function readLinearOnnx(bytes: Uint8Array): { weights: number[][]; bias: number[] } {
  const graph = onnx.ModelProto.decode(bytes).graph;
  const tensor = (name: string) => {
    const found = graph?.initializer?.find((t) => t.name === name);
    if (!found?.floatData || !found.dims) throw new Error(`no float initializer "${name}"`);
    return { data: found.floatData, dims: found.dims.map(Number) };
  };
  const w = tensor('weights');
  const cols = w.dims[1] ?? 1;
  const weights = Array.from({ length: w.dims[0] ?? 0 }, (_, r) => w.data.slice(r * cols, (r + 1) * cols));
  return { weights, bias: tensor('bias').data };
}
