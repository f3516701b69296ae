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
  if (BACKENDS.some((backend) => backend.claims(rootFiles.files))) {
    return {
      versions: [{ name: singleModelName, version: 1, dir: root, location: '.', files: rootFiles.files }],
      unreadable: [],
    };
  }
  const contents: RepositoryContents = { versions: [], unreadable: [] };
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
        contents.versions.push({
          name,
          version: Number(folder),
          dir: path.join(root, location),
          location,
          files: version.files,
        });
      }
    }
  }
  return contents;
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
