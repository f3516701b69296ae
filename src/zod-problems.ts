import type { z } from 'zod';

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
