import { mkdir, mkdtemp, readdir, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ModelVersion } from './loader.js';
import { readVersionFolder, type VersionSource } from './repository.js';

/** One file of an uploaded version: a relative path with `/` separators, already checked. */
export interface VersionFile {
  path: string;
  data: Uint8Array;
}

/** The version folder exists already (on disk, or written by a concurrent upload). */
export class VersionExistsError extends Error {
  override name = 'VersionExistsError';
}

/**
 * Writes an uploaded version into the repository without a moment where a half-written folder is
 * visible: the files go to a temporary folder beside the versions (its name is not a version
 * number, so scans ignore it), `validate` loads and checks them there, and only then is the folder
 * renamed to `<name>/<version>`. Whatever fails, nothing is left behind.
 */
export async function installVersion(
  root: string,
  name: string,
  version: number,
  files: readonly VersionFile[],
  validate: (source: VersionSource) => Promise<ModelVersion>,
): Promise<{ loaded: ModelVersion; source: VersionSource }> {
  const modelDir = inside(root, name);
  const finalDir = inside(modelDir, String(version));
  const createdModelDir = (await mkdir(modelDir, { recursive: true })) !== undefined;
  const temp = await mkdtemp(path.join(modelDir, '.upload-'));
  let loaded: ModelVersion | undefined;
  try {
    for (const file of files) {
      const target = inside(temp, ...file.path.split('/'));
      await mkdir(path.dirname(target), { recursive: true });
      await writeFile(target, file.data, { flag: 'wx' });
    }
    const topLevel = (await readdir(temp, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
    const location = `${name}/${version}`;
    loaded = await validate({ name, version, dir: temp, location, files: topLevel, signature: '' });
    try {
      await rename(temp, finalDir);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' || code === 'ENOTEMPTY') throw new VersionExistsError(`${location} exists already`);
      throw error;
    }
    const source = await readVersionFolder(root, name, version);
    if (source === undefined) throw new Error(`${location} vanished right after it was written`);
    return { loaded, source };
  } catch (error) {
    await loaded?.model.dispose();
    await rm(temp, { recursive: true, force: true });
    if (createdModelDir) await rmdir(modelDir).catch(() => undefined);
    throw error;
  }
}

/** A path below `base`; throws if the parts would lead anywhere else (they are checked before, this is the backstop). */
function inside(base: string, ...parts: string[]): string {
  const target = path.resolve(base, ...parts);
  if (!target.startsWith(path.resolve(base) + path.sep)) throw new Error(`${parts.join('/')} leads outside ${base}`);
  return target;
}
