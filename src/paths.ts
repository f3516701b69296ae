import path from 'node:path';

/**
 * Whether `candidate` lies below `root` (not `root` itself), both absolute or both relative to the
 * same folder; no file system access, so symbolic links are the caller's to resolve first.
 */
export function isInside(root: string, candidate: string): boolean {
  const relative = path.relative(root, candidate);
  return relative !== '' && !path.isAbsolute(relative) && relative.split(path.sep)[0] !== '..';
}
