import type { z } from 'zod';
import { ApiError } from './errors.js';

const MAX_PROBLEMS = 10;
const MAX_MESSAGE = 200;

/**
 * A schema failure as `path: message` lines, for start-up, model-load and request errors people
 * read. Bounded: an object with thousands of unknown keys must not become a megabyte-long answer.
 */
export function zodProblems(error: z.ZodError): string[] {
  const problems = error.issues.slice(0, MAX_PROBLEMS).map((issue) => {
    const line = `${issue.path.join('.') || '(root)'}: ${issue.message}`;
    return line.length > MAX_MESSAGE ? `${line.slice(0, MAX_MESSAGE)}…` : line;
  });
  const more = error.issues.length - MAX_PROBLEMS;
  return more > 0 ? [...problems, `and ${more} more`] : problems;
}

/**
 * Parses one part of a request, or answers 400 naming the field and the problem: `invalid_body`
 * for the body, as on every other route, `bad_request` for the URL (path and query). No value (an
 * empty body) is read as an empty object.
 */
export function parseRequestPart<T>(schema: z.ZodType<T>, value: unknown, part: string): T {
  const parsed = schema.safeParse(value ?? {});
  if (parsed.success) return parsed.data;
  const [first] = parsed.error.issues;
  const field = first?.path.length ? first.path.join('.') : part;
  throw new ApiError(part === 'body' ? 'invalid_body' : 'bad_request', zodProblems(parsed.error).join('; '), field);
}
