import { ApiError } from './errors.js';

/**
 * How a model's unpinned requests (those naming no version or label) are spread over its labels:
 * `split` sends a share of them to each label's version, the rest to the serving version; `shadow`
 * names a label whose version gets a copy of a `shadowShare` of the requests the serving version
 * answers, compared but never returned.
 */
export interface TrafficPolicy {
  readonly split: ReadonlyMap<string, number>;
  readonly shadow: string | undefined;
  readonly shadowShare: number;
}

export const NO_TRAFFIC_POLICY: TrafficPolicy = { split: new Map(), shadow: undefined, shadowShare: 1 };

/** Labels a split may name: enough for any rollout, few enough that checking a policy costs nothing. */
export const MAX_SPLIT_LABELS = 32;

/** The policy with its labels resolved to what they point at when the model's snapshot is built. */
export interface RoutedTraffic<V> {
  /**
   * Cumulative upper bounds: a request whose share is below `upTo` (and at or above the previous
   * one's) goes to `version`; to the serving version when that is undefined (a label pointing nowhere).
   */
  readonly split: readonly { readonly label: string; readonly upTo: number; readonly version: V | undefined }[];
  readonly shadow: { readonly label: string; readonly version: V; readonly share: number } | undefined;
}

/** Checks a policy an admin asks for: shares between 0 and 1, the split's adding up to at most 1. */
export function checkPolicy(policy: TrafficPolicy): void {
  const { split, shadowShare } = policy;
  if (split.size > MAX_SPLIT_LABELS) {
    throw new ApiError('invalid_body', `at most ${MAX_SPLIT_LABELS} labels, not ${split.size}`, 'split');
  }
  if (!isShare(shadowShare)) {
    throw new ApiError('invalid_body', `a share is a number from 0 to 1, not ${shadowShare}`, 'shadowShare');
  }
  let total = 0;
  for (const [label, share] of split) {
    if (!isShare(share)) {
      throw new ApiError('invalid_body', `a share is a number from 0 to 1, not ${share}`, `split.${label}`);
    }
    total += share;
  }
  // Shares given with three decimals each (0.1 + 0.2) may add up to a hair over their sum.
  if (total > 1 + 1e-9) {
    throw new ApiError(
      'invalid_body',
      `the shares add up to ${total}; at most 1 (the rest goes to the serving version)`,
      'split',
    );
  }
}

/** Resolves a policy's labels with `versionOf`; a label that points nowhere gets no traffic. */
export function routeTraffic<V>(policy: TrafficPolicy, versionOf: (label: string) => V | undefined): RoutedTraffic<V> {
  const split: { label: string; upTo: number; version: V | undefined }[] = [];
  let upTo = 0;
  for (const [label, share] of [...policy.split].sort(([a], [b]) => a.localeCompare(b))) {
    upTo += share;
    if (share > 0) split.push({ label, upTo, version: versionOf(label) });
  }
  const shadowVersion = policy.shadow === undefined ? undefined : versionOf(policy.shadow);
  const shadow =
    policy.shadow === undefined || shadowVersion === undefined || policy.shadowShare === 0
      ? undefined
      : { label: policy.shadow, version: shadowVersion, share: policy.shadowShare };
  return { split, shadow };
}

/** The version a request with this share (in [0, 1)) goes to, or undefined for the serving version. */
export function versionForShare<V>(traffic: RoutedTraffic<V>, share: number): V | undefined {
  for (const entry of traffic.split) if (share < entry.upTo) return entry.version;
  return undefined;
}

function isShare(value: number): boolean {
  return value >= 0 && value <= 1;
}

/**
 * A share in [0, 1) from a request id, so that retries and the calls of one client-side request
 * (same X-Request-Id) reach the same version: FNV-1a, then murmur3's finaliser, because ids that
 * differ only in their last characters (req-1, req-2, …) must still spread evenly.
 */
export function shareOf(key: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return (hash >>> 0) / 2 ** 32;
}
