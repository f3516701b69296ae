import { describe, expect, it } from 'vitest';
import {
  inferenceResponse,
  modelMetadata,
  parseInferenceRequest,
  selectOutputs,
} from '../../src/codecs/open-inference.js';
import { ApiError } from '../../src/errors.js';
import { messageErrorBody as errorBody } from '../../src/protocols/message-errors.js';
import { apiErrorOf } from '../helpers.js';

const limits = { maxRows: 4, maxColumns: 3 };
const parse = (body: unknown, given: { maxRows: number; maxColumns: number } = limits) =>
  parseInferenceRequest(body, given);
const tensor = (fields: Record<string, unknown> = {}) => ({
  name: 'input',
  shape: [2, 2],
  datatype: 'FP32',
  data: [1, 2, 3, 4],
  ...fields,
});

describe('parseInferenceRequest', () => {
  it('reads the spec example: one 2-D tensor, flat data, id and outputs', () => {
    const request = parse({ id: '42', inputs: [tensor()], outputs: [{ name: 'power' }] });
    expect(request).toEqual({
      id: '42',
      features: undefined,
      outputs: ['power'],
      matrix: { data: Float64Array.from([1, 2, 3, 4]), rows: 2, cols: 2 },
    });
  });

  it('reads data nested as its shape, row-major', () => {
    const nested = [
      [1, 2],
      [3, 4],
    ];
    expect(Array.from(parse({ inputs: [tensor({ data: nested })] }).matrix.data)).toEqual([1, 2, 3, 4]);
  });

  it('refuses nested data that does not have the shape: transposed, ragged or deeper', () => {
    const cases: Array<[unknown, string]> = [
      // Data of shape [2, 3] (transposed) for a [3, 2] tensor; ragged rows; deeper than the shape; a bare number among rows.
      [
        [
          [1, 2, 3],
          [4, 5, 6],
        ],
        'inputs[0].data',
      ],
      [[[1, 2], [3, 4, 5], [6]], 'inputs[0].data[1]'],
      [
        [
          [[1], [2]],
          [3, 4],
          [5, 6],
        ],
        'inputs[0].data[0][0]',
      ],
      [[[1, 2], 3, [4, 5]], 'inputs[0].data[1]'],
    ];
    for (const [data, field] of cases) {
      const input = tensor({ shape: [3, 2], data });
      expect({ data, error: apiErrorOf(() => parse({ inputs: [input] })) }).toEqual({
        data,
        error: { code: 'invalid_body', field, status: 400 },
      });
    }
  });

  it('allocates nothing for data the body does not hold: a huge shape with little data is refused as it is', () => {
    const feature = (name: string, data: number[]) => ({ name, shape: [100_000], datatype: 'FP64', data });
    const inputs = [
      feature('a', Array(100_000).fill(0)),
      ...Array.from({ length: 999 }, (_, i) => feature(`f${i}`, [])),
    ];
    expect(apiErrorOf(() => parse({ inputs }, { maxRows: 100_000, maxColumns: 1000 }))).toMatchObject({
      code: 'invalid_body',
      field: 'inputs[1].data',
    });
    expect(
      apiErrorOf(() =>
        parse({ inputs: [tensor({ shape: [100_000, 1000], data: [1] })] }, { maxRows: 100_000, maxColumns: 1000 }),
      ),
    ).toMatchObject({ code: 'invalid_body', field: 'inputs[0].data' });
  });

  it('takes any name for a lone 2-D tensor', () => {
    expect(parse({ inputs: [tensor({ name: 'float_input' })] }).features).toBeUndefined();
  });

  it('reads one tensor per feature, [rows] or [rows, 1], into columns named after them', () => {
    const request = parse({
      inputs: [
        { name: 'b', shape: [2], datatype: 'INT64', data: [10, 20] },
        { name: 'a', shape: [2, 1], datatype: 'FP64', data: [[1], [2]] },
      ],
    });
    expect(request.features).toEqual(['b', 'a']);
    expect(request.matrix).toEqual({ data: Float64Array.from([10, 1, 20, 2]), rows: 2, cols: 2 });
  });

  it('reads a lone [rows, 1] tensor as a feature, unless it is named input', () => {
    const column = { shape: [2, 1], datatype: 'FP32', data: [1, 2] };
    expect(parse({ inputs: [{ name: 'cpu', ...column }] }).features).toEqual(['cpu']);
    expect(parse({ inputs: [{ name: 'input', ...column }] }).features).toBeUndefined();
  });

  it.each(['FP32', 'FP64', 'INT32', 'INT64'])('accepts %s', (datatype) => {
    expect(parse({ inputs: [tensor({ datatype })] }).matrix.rows).toBe(2);
  });

  it.each<[string, unknown, string, string | undefined]>([
    ['not an object', [1], 'invalid_body', 'body'],
    ['no inputs', {}, 'invalid_body', 'inputs'],
    ['an unknown field', { inputs: [tensor()], model: 'x' }, 'invalid_body', 'model'],
    ['an unknown tensor field', { inputs: [tensor({ value: 1 })] }, 'invalid_body', 'inputs[0].value'],
    ['parameters that are not an object', { inputs: [tensor()], parameters: [] }, 'invalid_body', 'parameters'],
    ['UINT8', { inputs: [tensor({ datatype: 'UINT8' })] }, 'invalid_body', 'inputs[0].datatype'],
    ['BYTES', { inputs: [tensor({ datatype: 'BYTES' })] }, 'invalid_body', 'inputs[0].datatype'],
    ['a fractional dimension', { inputs: [tensor({ shape: [2, 1.5] })] }, 'invalid_body', 'inputs[0].shape'],
    ['too few values', { inputs: [tensor({ data: [1, 2, 3] })] }, 'invalid_body', 'inputs[0].data'],
    ['too many values', { inputs: [tensor({ data: [1, 2, 3, 4, 5] })] }, 'invalid_body', 'inputs[0].data'],
    ['null', { inputs: [tensor({ data: [1, null, 3, 4] })] }, 'not_a_number', 'inputs[0].data[1]'],
    [
      'NaN-like beyond float32',
      { inputs: [tensor({ data: [1, 2, 3, -1e39] })] },
      'non_finite_value',
      'inputs[0].data[3]',
    ],
    [
      'a fraction as INT64',
      { inputs: [tensor({ datatype: 'INT64', data: [1, 2.5, 3, 4] })] },
      'not_a_number',
      'inputs[0].data[1]',
    ],
    [
      'too many rows',
      { inputs: [tensor({ shape: [5, 1], name: 'input', data: [1, 2, 3, 4, 5] })] },
      'too_many_rows',
      'inputs[0].shape',
    ],
    [
      'too many columns',
      { inputs: [tensor({ shape: [1, 4], data: [1, 2, 3, 4] })] },
      'too_many_columns',
      'inputs[0].shape',
    ],
    [
      'too many feature tensors',
      { inputs: ['a', 'b', 'c', 'd'].map((name) => tensor({ name, shape: [1], data: [1] })) },
      'too_many_columns',
      'inputs',
    ],
    ['no rows', { inputs: [tensor({ shape: [0, 2], data: [] })] }, 'empty_matrix', 'inputs[0].shape'],
    ['no columns', { inputs: [tensor({ shape: [2, 0], data: [] })] }, 'empty_matrix', 'inputs[0].shape'],
    [
      'ragged feature tensors',
      { inputs: [tensor({ name: 'a', shape: [2], data: [1, 2] }), tensor({ name: 'b', shape: [1], data: [1] })] },
      'ragged_rows',
      'inputs[1].shape',
    ],
    ['two 2-D tensors', { inputs: [tensor(), tensor({ name: 'other' })] }, 'invalid_body', 'inputs[0].shape'],
    ['outputs named twice', { inputs: [tensor()], outputs: [{ name: 'y' }, { name: 'y' }] }, 'invalid_body', 'outputs'],
    ['an output with no name', { inputs: [tensor()], outputs: [{}] }, 'invalid_body', 'outputs[0].name'],
  ])('refuses %s', (_what, body, code, field) => {
    expect(apiErrorOf(() => parse(body))).toMatchObject({ code, field });
  });
});

describe('selectOutputs and inferenceResponse', () => {
  const model = { name: 'm', version: 3, outputs: ['package', 'dram'] };
  const result = { data: Float64Array.from([1, 2, 3, 4, 5, 6]), rows: 3, cols: 2 };

  it('answers one [rows] tensor per output, data flat, and echoes the id', () => {
    expect(inferenceResponse(model, result, selectOutputs(undefined, model.outputs), 'abc')).toEqual({
      model_name: 'm',
      model_version: '3',
      id: 'abc',
      outputs: [
        { name: 'package', datatype: 'FP64', shape: [3], data: [1, 3, 5] },
        { name: 'dram', datatype: 'FP64', shape: [3], data: [2, 4, 6] },
      ],
    });
  });

  it('answers FP64 tensors (float32 results widened exactly), and only the outputs selected', () => {
    const single = { data: Float32Array.from([0.1, 0.2]), rows: 2, cols: 1 };
    const response = inferenceResponse({ ...model, outputs: ['power'] }, single, [0], undefined);
    expect(response).not.toHaveProperty('id');
    expect(response.outputs).toEqual([{ name: 'power', datatype: 'FP64', shape: [2], data: Array.from(single.data) }]);
    expect(inferenceResponse(model, result, selectOutputs(['dram'], model.outputs), undefined).outputs).toHaveLength(1);
  });

  it('refuses an unknown output, listing those there are', () => {
    expect(apiErrorOf(() => selectOutputs(['heat'], model.outputs))).toMatchObject({
      code: 'invalid_body',
      field: 'outputs[0].name',
    });
  });
});

describe('modelMetadata', () => {
  it('describes one input [-1, features] and an output [-1] per model output, with -1 as the batch', () => {
    const model = { name: 'k', version: 2, backend: 'kepler' as const, features: ['a', 'b'], outputs: ['package'] };
    expect(modelMetadata(model, [2, 1])).toEqual({
      name: 'k',
      versions: ['1', '2'],
      platform: 'kepler',
      inputs: [{ name: 'input', datatype: 'FP64', shape: [-1, 2] }],
      outputs: [{ name: 'package', datatype: 'FP64', shape: [-1] }],
      parameters: { version: '2', features: 'a,b', outputs: 'package' },
    });
  });
});

describe('errorBody', () => {
  it('is {error: "<field>: <message>"}', () => {
    expect(errorBody(new ApiError('invalid_body', 'is required', 'inputs'))).toEqual({ error: 'inputs: is required' });
    expect(errorBody(new ApiError('not_ready', 'loading'))).toEqual({ error: 'loading' });
  });
});
