import contentType from 'content-type';
import Negotiator from 'negotiator';
import { RESPONSE_MEDIA_TYPES, type ResponseMediaType } from '../config.js';
import { ApiError } from '../errors.js';

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
  const chosen = new Negotiator({ headers: { accept: withoutParameters(accept) } }).mediaType(offers);
  return chosen as ResponseMediaType | undefined;
}

/**
 * Drops media type parameters other than q: Negotiator only matches a range whose parameters
 * the offer also has, and clients send `application/json; charset=utf-8`.
 */
function withoutParameters(accept: string): string {
  return accept
    .split(',')
    .map((range) => {
      const [type = '', ...parameters] = range.split(';');
      const q = parameters.find((parameter) => /^\s*q\s*=/i.test(parameter));
      return q === undefined ? type.trim() : `${type.trim()};${q.trim()}`;
    })
    .join(', ');
}

/** The media type of a Content-Type header, lower-cased, with its parameters. */
export function parseContentType(header: string | undefined): contentType.ParsedMediaType {
  try {
    return contentType.parse(header ?? '');
  } catch {
    throw new ApiError(
      'unsupported_media_type',
      'the Content-Type header is missing or malformed; send application/json, text/csv or application/jsonlines',
      'content-type',
    );
  }
}
