import Negotiator from 'negotiator';
import { RESPONSE_MEDIA_TYPES, type ResponseMediaType } from '../config.js';

/**
 * Picks the response media type from an Accept header, honouring q-values. A missing header or
 * one that accepts anything gets the configured default. Returns undefined when nothing offered
 * is acceptable.
 */
export function negotiateResponseType(
  accept: string | undefined,
  fallback: ResponseMediaType,
): ResponseMediaType | undefined {
  if (accept === undefined || accept.trim() === '') return fallback;
  // Negotiator prefers earlier offers among equals, so the default goes first.
  const offers = [fallback, ...RESPONSE_MEDIA_TYPES.filter((type) => type !== fallback)];
  const chosen = new Negotiator({ headers: { accept } }).mediaType(offers);
  return chosen as ResponseMediaType | undefined;
}
