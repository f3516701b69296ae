import { describe, expect, it } from 'vitest';
import { eightDigits } from '../../src/kepler/estimator.js';
import { seededRandom } from '../../scripts/synthetic-pods.js';

describe('eightDigits: the watts in a Kepler reply', () => {
  it('equals Number(value.toPrecision(8)) over twelve orders of magnitude, both signs', () => {
    const random = seededRandom(8);
    for (let i = 0; i < 200_000; i++) {
      const value = (random() - 0.3) * 10 ** (random() * 24 - 15);
      expect({ value, rounded: eightDigits(value) }).toEqual({ value, rounded: Number(value.toPrecision(8)) });
    }
  });

  it('handles powers of ten, values just below them, zero, and what is out of its range', () => {
    const edges = [0, -0, 1, 10, 1000, 0.001, 999.99999999, 0.00099999999, 9999999.9, 1e7, 1.23456789e12, 1e-20, -4.5];
    for (const value of edges) expect(eightDigits(value)).toBe(Number(value.toPrecision(8)));
    expect(eightDigits(123.456789012)).toBe(123.45679);
  });
});
