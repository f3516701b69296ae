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

/** Every task carries its request's deadline (Date.now() time): one that starts past it does nothing. */
export type WorkerTask = { deadline: number } & (
  | { kind: 'decode'; media: { type: RequestMediaType; header: boolean }; body: Uint8Array; limits: DecodeLimits }
  | { kind: 'predict'; model: WorkerModel; input: Matrix }
  | { kind: 'encode'; model: ServedModel; result: Matrix; type: ResponseMediaType }
);

/**
 * What a worker answers. Client errors travel as their body (an Error loses its fields between
 * threads); `unavailable` says the worker could not load the model as the event loop has it;
 * `expired` that the task started after its deadline.
 */
export type WorkerReply =
  | { kind: 'decoded'; request: PredictionRequest }
  | { kind: 'predicted'; result: Matrix }
  | { kind: 'encoded'; payload: Uint8Array }
  | { kind: 'refused'; error: ErrorBody['error'] }
  | { kind: 'unavailable'; reason: string }
  | { kind: 'expired' };

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

/**
 * The array, or a copy of it when it shares its memory with others (a small Buffer lives in Node's
 * shared pool): only memory of its own can move to another thread.
 */
export function ownBuffer<T extends Float64Array | Float32Array | Uint8Array>(array: T): T {
  if (array.byteOffset === 0 && array.byteLength === array.buffer.byteLength) return array;
  // Not slice(): on a Buffer it is a view of the same memory.
  if (array instanceof Float64Array) return new Float64Array(array) as T;
  if (array instanceof Float32Array) return new Float32Array(array) as T;
  return new Uint8Array(array) as T;
}
