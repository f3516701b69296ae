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

/** The repository's file system is full (ENOSPC) or the quota is used up (EDQUOT). */
export class OutOfSpaceError extends Error {
  override name = 'OutOfSpaceError';
  constructor(
    readonly code: string,
    options: ErrorOptions,
  ) {
    super(`the model repository is out of space (${code})`, options);
  }
}

export interface InstallOptions {
  /** Test seam for fault injection (a disk that fills up): writes one file that must not exist yet. */
  writeFile?: (file: string, data: Uint8Array) => Promise<void>;
}

const OUT_OF_SPACE = ['ENOSPC', 'EDQUOT'];

/** Rethrows a full disk as an OutOfSpaceError, anything else as it is. */
function outOfSpace(error: NodeJS.ErrnoException): never {
  if (error.code !== undefined && OUT_OF_SPACE.includes(error.code)) {
    throw new OutOfSpaceError(error.code, { cause: error });
  }
  throw error;
}

const writeNewFile = (file: string, data: Uint8Array) => writeFile(file, data, { flag: 'wx' });

/**
 * Writes an uploaded version into the repository without a moment where a half-written folder is
 * visible: the files go to a temporary folder beside the versions (its name is not a version
 * number, so scans ignore it), `validate` loads and checks them there, and only then is the folder
 * renamed to `<name>/<version>`. Whatever fails, a full disk included (OutOfSpaceError), nothing
 * is left behind.
 */
export async function installVersion(
  root: string,
  name: string,
  version: number,
  files: readonly VersionFile[],
  validate: (source: VersionSource) => Promise<ModelVersion>,
  options: InstallOptions = {},
): Promise<{ loaded: ModelVersion; source: VersionSource }> {
  const write = options.writeFile ?? writeNewFile;
  const modelDir = inside(root, name);
  const location = `${name}/${version}`;
  const createdModelDir =
    (await mkdir(modelDir, { recursive: true })
      .catch(conflictIf(['EEXIST', 'ENOTDIR'], 'in-the-way', `${name} is a file in the repository, not a model folder`))
      .catch(outOfSpace)) !== undefined;
  let temp: string | undefined;
  let loaded: ModelVersion | undefined;
  try {
    temp = await mkdtemp(path.join(modelDir, '.upload-')).catch(outOfSpace);
    for (const file of files) {
      const target = inside(temp, ...file.path.split('/'));
      const unwritable = (error: NodeJS.ErrnoException): never => {
        if (error.code === 'ENAMETOOLONG') throw new UnwritableFileError(`${file.path}: the path is too long`);
        return outOfSpace(error);
      };
      await mkdir(path.dirname(target), { recursive: true }).catch(unwritable);
      await write(target, file.data).catch(unwritable);
    }
    const topLevel = (await readdir(temp, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
    // Renaming keeps names, sizes and times: the signature read here is the installed folder's.
    const signature = await folderSignature(temp, topLevel);
    loaded = await validate({ name, version, dir: temp, location, files: topLevel, signature });
    const finalDir = inside(modelDir, String(version));
    await rename(temp, finalDir)
      .catch(conflictIf(['EEXIST', 'ENOTEMPTY', 'ENOTDIR'], 'exists', `${location} exists already`))
      .catch(outOfSpace);
    return { loaded, source: { name, version, dir: finalDir, location, files: topLevel, signature } };
  } catch (error) {
    await loaded?.model.dispose();
    if (temp !== undefined) await rm(temp, { recursive: true, force: true });
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
