import { move, transferableSymbol, valueSymbol } from 'piscina';
import type { BackendName } from '../backends/backend.js';
import type { PredictionRequest, ServedModel } from '../codecs/json.js';
import type { DecodeLimits, RequestMediaType } from '../codecs/prediction.js';
import type { ResponseMediaType } from '../config.js';
import type { ErrorBody } from '../errors.js';
import type { Matrix } from '../matrix.js';

/** A model version as a worker finds it on disk: the files the event loop loaded, as they were then. */
export interface WorkerModel {
  backend: BackendName;
  dir: string;
  files: string[];
  signature: string;
}

export type WorkerTask =
  | { kind: 'decode'; media: { type: RequestMediaType; header: boolean }; body: Uint8Array; limits: DecodeLimits }
  | { kind: 'predict'; model: WorkerModel; input: Matrix }
  | { kind: 'encode'; model: ServedModel; result: Matrix; type: ResponseMediaType };

/**
 * What a worker answers. Client errors travel as their body (an Error loses its fields between
 * threads); `unavailable` says the worker could not load the model as the event loop has it.
 */
export type WorkerReply =
  | { kind: 'decoded'; request: PredictionRequest }
  | { kind: 'predicted'; result: Matrix }
  | { kind: 'encoded'; payload: Uint8Array }
  | { kind: 'refused'; error: ErrorBody['error'] }
  | { kind: 'unavailable'; reason: string };

/**
 * The value with these arrays' memory moved to the other thread rather than copied: copying the
 * 600,000 numbers of a 6 MB body costs the sending thread about 60 ms, moving them nothing.
 */
export function moving<T extends object>(value: T, arrays: readonly ArrayBufferView[]): T {
  const transferable = {
    get [transferableSymbol]() {
      return arrays.map((array) => array.buffer);
    },
    get [valueSymbol]() {
      return value;
    },
  };
  return move(transferable as never) as T;
}

/** The buffers of these arrays, for a transferList; an array sharing its buffer is copied first. */
export function ownBuffer<T extends Float64Array | Float32Array | Uint8Array>(array: T): T {
  return array.byteOffset === 0 && array.byteLength === array.buffer.byteLength ? array : (array.slice() as T);
}
