import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { BACKENDS } from '../backends/index.js';
import { MODEL_NAME_PATTERN } from '../config.js';

/** One model version found on disk. */
export interface VersionSource {
  name: string;
  version: number;
  dir: string;
  /** Where the version lives, relative to the repository root ('.' for a single-model root). */
  location: string;
  files: string[];
  /** Names, sizes and modification times of the files: a change means the version was rewritten. */
  signature: string;
}

const VERSION_PATTERN = /^[1-9]\d*$/;

export class RepositoryError extends Error {
  override name = 'RepositoryError';
}

/** A folder of the repository that could not be read, and why. */
export interface UnreadableFolder {
  location: string;
  reason: string;
}

export interface RepositoryContents {
  versions: VersionSource[];
  /** Model or version folders that could not be listed; they are skipped, the rest still load. */
  unreadable: UnreadableFolder[];
  /** True when the root itself is the one model (SageMaker's layout): no `<name>/<version>` folders. */
  singleModel: boolean;
}

/**
 * Lists the model versions in a repository: `<root>/<name>/<version>/`, or, when the root itself
 * holds a model file (SageMaker's /opt/ml/model), a single model called `singleModelName`, version 1.
 * Folders that are not valid names or positive integers are ignored. Only an unreadable root is an
 * error; an unreadable folder below it is reported and skipped.
 */
export async function scanRepository(root: string, singleModelName: string): Promise<RepositoryContents> {
  const rootFiles = await listFolder(root).catch((error: NodeJS.ErrnoException) => {
    throw new RepositoryError(`cannot read the model repository ${root}: ${error.code ?? error.message}`);
  });
  if (holdsOneModel(rootFiles.files)) {
    const only = await versionSource(root, '.', singleModelName, 1, rootFiles.files);
    return { versions: [only], unreadable: [], singleModel: true };
  }
  const contents: RepositoryContents = { versions: [], unreadable: [], singleModel: false };
  const list = async (location: string) => {
    try {
      return await listFolder(path.join(root, location));
    } catch (error) {
      const reason = `cannot read the folder: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`;
      contents.unreadable.push({ location, reason });
      return undefined;
    }
  };
  for (const name of rootFiles.folders.filter((folder) => MODEL_NAME_PATTERN.test(folder)).sort()) {
    const model = await list(name);
    const versions = (model?.folders ?? [])
      .filter((f) => VERSION_PATTERN.test(f))
      .sort((a, b) => Number(a) - Number(b));
    for (const folder of versions) {
      const location = `${name}/${folder}`;
      const version = await list(location);
      if (version !== undefined) {
        contents.versions.push(await versionSource(root, location, name, Number(folder), version.files));
      }
    }
  }
  return contents;
}

/** True when the repository root itself is the one model (SageMaker's layout). */
export async function isSingleModelRoot(root: string): Promise<boolean> {
  return holdsOneModel((await listFolder(root)).files);
}

function holdsOneModel(rootFiles: readonly string[]): boolean {
  return BACKENDS.some((backend) => backend.claims(rootFiles));
}

/**
 * The files of `<root>/<name>/<version>/` as a version to load, or undefined when there is no such
 * folder. The name must already match MODEL_NAME_PATTERN (which allows no path separators).
 */
export async function readVersionFolder(
  root: string,
  name: string,
  version: number,
): Promise<VersionSource | undefined> {
  const location = `${name}/${version}`;
  const listing = await listFolder(path.join(root, location)).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return undefined;
    throw error;
  });
  return listing && versionSource(root, location, name, version, listing.files);
}

/**
 * Any folder that holds one model's files directly (SageMaker multi-model mode's `url`), as
 * version `version` of `name`; `location` is what listings show for it. Throws as fs does when the
 * folder cannot be read.
 */
export async function readModelFolder(
  dir: string,
  name: string,
  version: number,
  location: string,
): Promise<VersionSource> {
  const { files } = await listFolder(dir);
  return { name, version, dir, location, files, signature: await folderSignature(dir, files) };
}

/** The total size of a version's files: roughly what loading it takes in memory. */
export async function sourceBytes(source: VersionSource): Promise<number> {
  const sizes = await Promise.all(source.files.map(async (file) => (await stat(path.join(source.dir, file))).size));
  return sizes.reduce((total, size) => total + size, 0);
}

async function versionSource(
  root: string,
  location: string,
  name: string,
  version: number,
  files: string[],
): Promise<VersionSource> {
  const dir = path.join(root, location);
  return { name, version, dir, location, files, signature: await folderSignature(dir, files) };
}

/** The files' names, sizes and modification times: what changes when a version is rewritten. */
export async function folderSignature(dir: string, files: readonly string[]): Promise<string> {
  const stamps = await Promise.all(
    files.map(async (file) => {
      const info = await stat(path.join(dir, file)).catch(() => undefined);
      return `${file}:${info?.size}:${info?.mtimeMs}`;
    }),
  );
  return stamps.sort().join('\n');
}

/** Files and folders in dir; symbolic links count as what they point to (Kubernetes mounts use them). */
async function listFolder(dir: string): Promise<{ files: string[]; folders: string[] }> {
  const files: string[] = [];
  const folders: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const target = entry.isSymbolicLink() ? await stat(path.join(dir, entry.name)).catch(() => undefined) : entry;
    if (target?.isFile()) files.push(entry.name);
    else if (target?.isDirectory()) folders.push(entry.name);
  }
  return { files, folders };
}
