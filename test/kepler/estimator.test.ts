import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../scripts/synthetic-pods.js';
import { eightDigits } from '../../src/kepler/estimator.js';

describe('eightDigits: the watts in a Kepler reply', () => {
  it('equals Number(value.toPrecision(8)) next to ties of the 8th digit', () => {
    const random = seededRandom(9);
    for (let i = 0; i < 100_000; i++) {
      // An 8-digit number with a 5 after it, give or take a little: the hardest place to round.
      const digits = Math.floor(1e7 + random() * 9e7) + 0.5 + (random() - 0.5) * 1e-6;
      const value = (random() < 0.5 ? -1 : 1) * digits * 10 ** (Math.floor(random() * 12) - 12);
      expect({ value, rounded: eightDigits(value) }).toEqual({ value, rounded: Number(value.toPrecision(8)) });
    }
  });

  it('equals Number(value.toPrecision(8)) over twelve orders of magnitude, both signs', () => {
    const random = seededRandom(8);
    for (let i = 0; i < 200_000; i++) {
      const value = (random() - 0.3) * 10 ** (random() * 24 - 15);
      expect({ value, rounded: eightDigits(value) }).toEqual({ value, rounded: Number(value.toPrecision(8)) });
    }
  });

  it('handles powers of ten, values just below them, zero, and what is out of its range', () => {
    const edges = [0, -0, 1, 10, 1000, 0.001, 999.99999999, 0.00099999999, 9999999.9, 1e7, 1.23456789e12, 1e-20, -4.5];
    // Ties and near-ties of the 8th digit, where the scaled product's own rounding would decide.
    edges.push(70.3020985, -1234567.25, 1234567.25, 0.123456785, -0.123456785, 2.00000005, 9.99999995);
    for (const value of edges) expect(eightDigits(value)).toBe(Number(value.toPrecision(8)));
    expect(eightDigits(123.456789012)).toBe(123.45679);
  });
});
