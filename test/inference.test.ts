import { describe, expect, it } from 'vitest';
import { InFlightLimit } from '../src/in-flight.js';
import { type ModelRunner, predict } from '../src/inference.js';
import { makeRepository, startApp, versionedEntries, versionedPredictions } from './helpers.js';

const ROWS = [
  [1, 2],
  [3, 4],
];

describe('a mirror (shadow traffic) never fails the request it copies', () => {
  it('whether it throws when asked to prepare, to compare or to cancel, and the in-flight place is given back', async () => {
    const app = await startApp({ MODEL_REPOSITORY: await makeRepository(versionedEntries('m', [1])) });
    const inFlight = new InFlightLimit(1, 1);
    const request = { model: 'm', version: undefined, features: undefined, matrix: matrixOf(ROWS) };
    const failing = {
      prepare: () => {
        throw new Error('prepare');
      },
      compare: () => ({
        compare: () => {
          throw new Error('compare');
        },
        cancel: () => {},
      }),
    };
    for (const mirror of Object.values(failing)) {
      for (let attempt = 0; attempt < 3; attempt++) {
        const { result } = await predict(app.models, request, { inFlight, mirror });
        expect(Array.from(result.data)).toEqual(versionedPredictions(1, ROWS));
        expect(inFlight.inFlight('m')).toBe(0);
      }
    }
    let cancelled = 0;
    const cancelling = () => ({
      compare: () => {},
      cancel: () => {
        cancelled += 1;
        throw new Error('cancel');
      },
    });
    // Past its deadline the request fails after the mirror was prepared: the mirror is cancelled.
    const slow: ModelRunner = async (model, input) => {
      await new Promise((resolve) => setTimeout(resolve, 50));
      return model.model.predict(input);
    };
    const late = predict(app.models, request, {
      inFlight,
      mirror: cancelling,
      run: slow,
      deadline: performance.now() + 5,
    });
    await expect(late).rejects.toMatchObject({ code: 'deadline_exceeded' });
    expect(cancelled).toBe(1);
    await expect.poll(() => inFlight.inFlight('m')).toBe(0);
  });
});

function matrixOf(rows: number[][]) {
  return { data: Float64Array.from(rows.flat()), rows: rows.length, cols: rows[0]?.length ?? 0 };
}
