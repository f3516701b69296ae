import { describe, expect, it } from 'vitest';
import { ApiError } from '../src/errors.js';
import { checkPolicy, routeTraffic, shareOf, versionForShare } from '../src/traffic.js';
import { apiErrorOf } from './helpers.js';

const splitOf = (entries: [string, number][]) => ({ split: new Map(entries), shadow: undefined, shadowShare: 1 });

/** The share of `ids` whose hash falls below `share`. */
function fractionBelow(ids: readonly string[], share: number): number {
  return ids.filter((id) => shareOf(id) < share).length / ids.length;
}

describe('a request id picks its share of the traffic', () => {
  it('the same id always gets the same share, in [0, 1)', () => {
    for (const id of ['a', 'req-1', '6f1c2f8e-0b7e-4a8e-9d1f-0c2b3a4d5e6f', '']) {
      const share = shareOf(id);
      expect(share).toBeGreaterThanOrEqual(0);
      expect(share).toBeLessThan(1);
      expect(shareOf(id)).toBe(share);
    }
  });

  it('ids that differ only in their last characters spread evenly (within 1 pp over 100,000)', () => {
    const sequential = Array.from({ length: 100_000 }, (_, i) => `req-${i}`);
    for (const share of [0.01, 0.1, 0.25, 0.5, 0.9]) {
      expect(Math.abs(fractionBelow(sequential, share) - share)).toBeLessThan(0.01);
    }
  });

  it('random UUIDs spread evenly too', () => {
    const uuids = Array.from({ length: 20_000 }, () => crypto.randomUUID());
    expect(Math.abs(fractionBelow(uuids, 0.1) - 0.1)).toBeLessThan(0.01);
  });
});

describe('a traffic policy routes shares to labels', () => {
  const labels = new Map([
    ['canary', 2],
    ['blue', 3],
  ]);
  const policy = {
    split: new Map([
      ['canary', 0.1],
      ['blue', 0.2],
    ]),
    shadow: 'canary',
    shadowShare: 0.5,
  };

  it('each label gets its share in label order; the rest goes to the serving version', () => {
    const routed = routeTraffic(policy, (label) => labels.get(label));
    // blue sorts first: [0, 0.2) → 3, [0.2, 0.3) → 2, the rest → serving.
    expect(versionForShare(routed, 0)).toBe(3);
    expect(versionForShare(routed, 0.199)).toBe(3);
    expect(versionForShare(routed, 0.2)).toBe(2);
    expect(versionForShare(routed, 0.299)).toBe(2);
    expect(versionForShare(routed, 0.301)).toBeUndefined();
    expect(routed.shadow).toEqual({ label: 'canary', version: 2, share: 0.5 });
  });

  it('a label that points nowhere keeps its share for the serving version, whatever its place', () => {
    // canary (sorted second) points nowhere: [0, 0.2) → 3, [0.2, 0.3) → serving, the rest → serving.
    const withoutCanary = routeTraffic(policy, (label) => (label === 'blue' ? 3 : undefined));
    expect(versionForShare(withoutCanary, 0.1)).toBe(3);
    expect(versionForShare(withoutCanary, 0.25)).toBeUndefined();
    expect(withoutCanary.shadow).toBeUndefined();
    // blue (sorted first) points nowhere: its 0.2 must not fall to canary.
    const withoutBlue = routeTraffic(policy, (label) => (label === 'canary' ? 2 : undefined));
    expect(versionForShare(withoutBlue, 0.1)).toBeUndefined();
    expect(versionForShare(withoutBlue, 0.25)).toBe(2);
  });

  it('refuses shares outside 0..1 and shares adding up to more than 1, naming the field', () => {
    expect(apiErrorOf(() => checkPolicy(splitOf([['canary', 1.5]])))).toMatchObject({
      code: 'invalid_body',
      field: 'split.canary',
    });
    expect(apiErrorOf(() => checkPolicy(splitOf([['canary', -0.1]])))).toMatchObject({ field: 'split.canary' });
    expect(apiErrorOf(() => checkPolicy(splitOf([['canary', Number.NaN]])))).toMatchObject({ field: 'split.canary' });
    const tooMuch = new Map([
      ['a', 0.6],
      ['b', 0.5],
    ]);
    expect(apiErrorOf(() => checkPolicy({ split: tooMuch, shadow: undefined, shadowShare: 1 }))).toMatchObject({
      code: 'invalid_body',
      field: 'split',
    });
    expect(() =>
      checkPolicy(
        splitOf([
          ['a', 0.7],
          ['b', 0.2],
          ['c', 0.1],
        ]),
      ),
    ).not.toThrow(ApiError);
    const many = splitOf(Array.from({ length: 33 }, (_, i) => [`l${i}`, 0.01] as [string, number]));
    expect(apiErrorOf(() => checkPolicy(many))).toMatchObject({ field: 'split' });
    const badShadowShare = { split: new Map(), shadow: 'canary', shadowShare: 2 };
    expect(apiErrorOf(() => checkPolicy(badShadowShare))).toMatchObject({ field: 'shadowShare' });
  });
});
