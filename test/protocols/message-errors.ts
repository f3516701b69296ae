import type { FastifyInstance } from 'fastify';
import { expect, vi } from 'vitest';
import type { Matrix } from '../../src/matrix.js';

/** An answer's status and its whole body, which on /v1 and /v2 errors is exactly {error: string}. */
export async function messageError(response: { statusCode: number; json: () => unknown; body: string }) {
  const body = response.json() as Record<string, unknown>;
  expect(Object.keys(body)).toEqual(['error']);
  expect(typeof body.error).toBe('string');
  expect(response.body).not.toMatch(/\bat .*\.(ts|js):\d+/);
  return { status: response.statusCode, error: body.error as string };
}

/** Makes the serving version of a model wait for the returned release (or fail with `fail`). */
export function stall(app: FastifyInstance, model: string, fail?: Error) {
  const handle = app.models.acquire(model);
  const loaded = handle.model.model;
  handle.release();
  const waiting: Array<() => void> = [];
  const original = loaded.predict.bind(loaded);
  const spy = vi.spyOn(loaded, 'predict').mockImplementation((input: Matrix) => {
    if (fail !== undefined) return Promise.reject(fail);
    return new Promise<Matrix>((resolve) => waiting.push(() => resolve(original(input))));
  });
  return {
    release: () => {
      spy.mockRestore();
      for (const resume of waiting.splice(0)) resume();
    },
    calls: () => spy.mock.calls.length,
  };
}
