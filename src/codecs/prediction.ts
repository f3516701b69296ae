import type { ResponseMediaType } from '../config.js';
import { ApiError } from '../errors.js';
import type { Matrix, MatrixLimits } from '../matrix.js';
import { formatCsv, parseCsv } from './csv.js';
import { type PredictionRequest, parseJsonText, parseNativeBody, predictionBody, type ServedModel } from './json.js';
import { formatJsonLines, parseJsonLines } from './jsonlines.js';
import { parseContentType } from './media-types.js';

/** The limits on what a prediction body may hold, each with its own error code. */
export interface DecodeLimits extends MatrixLimits {
  readonly maxJsonDepth: number;
  readonly maxCsvLineBytes: number;
}

/** The media types a prediction body may come in. */
export type RequestMediaType = 'application/json' | 'text/csv' | 'application/jsonlines';

/** The body's media type and whether a CSV body starts with a header line; 415 for anything else. */
export function requestMediaType(header: string | undefined): { type: RequestMediaType; header: boolean } {
  const parsed = parseContentType(header);
  switch (parsed.type) {
    case 'application/json':
    case 'application/jsonlines':
      return { type: parsed.type, header: false };
    case 'text/csv':
      return { type: parsed.type, header: parsed.parameters.header?.toLowerCase() === 'present' };
    default:
      throw new ApiError(
        'unsupported_media_type',
        `cannot read ${parsed.type}; send text/csv, application/json or application/jsonlines`,
        'content-type',
      );
  }
}

/** Reads a prediction body of any of the media types: the same on the event loop and in a worker. */
export function decodePrediction(
  media: { type: RequestMediaType; header: boolean },
  text: string,
  limits: DecodeLimits,
): PredictionRequest {
  const noNames = { model: undefined, version: undefined, features: undefined };
  switch (media.type) {
    case 'application/json':
      return parseNativeBody(parseJsonText(text, limits.maxJsonDepth), limits);
    case 'text/csv': {
      const { matrix, columns } = parseCsv(text, { ...limits, header: media.header });
      return { ...noNames, features: columns, matrix };
    }
    case 'application/jsonlines':
      return { ...noNames, matrix: parseJsonLines(text, limits) };
  }
}

/**
 * About how many rows a body holds, counted without parsing it: lines for CSV and JSON Lines,
 * opening brackets for JSON. Decides whether a body is large enough to go to a worker thread.
 */
export function estimateRows(type: RequestMediaType, body: Buffer): number {
  const mark = type === 'application/json' ? 0x5b : 0x0a;
  let count = 0;
  for (let at = body.indexOf(mark); at !== -1; at = body.indexOf(mark, at + 1)) count++;
  return count;
}

/** A prediction in the response media type: the native JSON answer, CSV lines or JSON Lines. */
export function encodePrediction(model: ServedModel, result: Matrix, type: ResponseMediaType): string | object {
  switch (type) {
    case 'application/json':
      return predictionBody(model, result);
    case 'text/csv':
      return formatCsv(result);
    case 'application/jsonlines':
      return formatJsonLines(result);
  }
}
