import type { z } from 'zod';

/** A schema failure as `path: message` lines, for start-up and model-load errors people read. */
export function zodProblems(error: z.ZodError): string[] {
  return error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`);
}
