import { mkdir, mkdtemp, readdir, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ModelVersion } from './loader.js';
import { folderSignature, type VersionSource } from './repository.js';

/** One file of an uploaded version: a relative path with `/` separators, already checked. */
export interface VersionFile {
  path: string;
  data: Uint8Array;
}

/** The upload cannot go where it should: the version `exists`, or a file is `in-the-way`. */
export class InstallConflictError extends Error {
  override name = 'InstallConflictError';
  constructor(
    readonly kind: 'exists' | 'in-the-way',
    message: string,
  ) {
    super(message);
  }
}

/** The files cannot be written as named (a name too long for the file system). */
export class UnwritableFileError extends Error {
  override name = 'UnwritableFileError';
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
  const location = `${name}/${version}`;
  const createdModelDir =
    (await mkdir(modelDir, { recursive: true }).catch(
      conflictIf(['EEXIST', 'ENOTDIR'], 'in-the-way', `${name} is a file in the repository, not a model folder`),
    )) !== undefined;
  const temp = await mkdtemp(path.join(modelDir, '.upload-'));
  let loaded: ModelVersion | undefined;
  try {
    for (const file of files) {
      const target = inside(temp, ...file.path.split('/'));
      const tooLong = (error: NodeJS.ErrnoException): never => {
        if (error.code === 'ENAMETOOLONG') throw new UnwritableFileError(`${file.path}: the path is too long`);
        throw error;
      };
      await mkdir(path.dirname(target), { recursive: true }).catch(tooLong);
      await writeFile(target, file.data, { flag: 'wx' }).catch(tooLong);
    }
    const topLevel = (await readdir(temp, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
    // Renaming keeps names, sizes and times: the signature read here is the installed folder's.
    const signature = await folderSignature(temp, topLevel);
    loaded = await validate({ name, version, dir: temp, location, files: topLevel, signature });
    const finalDir = inside(modelDir, String(version));
    await rename(temp, finalDir).catch(
      conflictIf(['EEXIST', 'ENOTEMPTY', 'ENOTDIR'], 'exists', `${location} exists already`),
    );
    return { loaded, source: { name, version, dir: finalDir, location, files: topLevel, signature } };
  } catch (error) {
    await loaded?.model.dispose();
    await rm(temp, { recursive: true, force: true });
    if (createdModelDir) await rmdir(modelDir).catch(() => undefined);
    throw error;
  }
}

function conflictIf(codes: readonly string[], kind: InstallConflictError['kind'], message: string) {
  return (error: NodeJS.ErrnoException): never => {
    if (error.code !== undefined && codes.includes(error.code)) throw new InstallConflictError(kind, message);
    throw error;
  };
}

/** A path below `base`; throws if the parts would lead anywhere else (they are checked before, this is the backstop). */
function inside(base: string, ...parts: string[]): string {
  const target = path.resolve(base, ...parts);
  if (!target.startsWith(path.resolve(base) + path.sep)) throw new Error(`${parts.join('/')} leads outside ${base}`);
  return target;
}
