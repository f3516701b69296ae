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

/**
 * Lists the model versions in a repository: `<root>/<name>/<version>/`, or, when the root itself
 * holds a model file (SageMaker's /opt/ml/model), a single model called `singleModelName`, version 1.
 * Folders that are not valid names or positive integers are ignored.
 */
export async function scanRepository(root: string, singleModelName: string): Promise<VersionSource[]> {
  const rootFiles = await listFolder(root).catch((error: NodeJS.ErrnoException) => {
    throw new RepositoryError(`cannot read the model repository ${root}: ${error.code ?? error.message}`);
  });
  if (BACKENDS.some((backend) => backend.claims(rootFiles.files))) {
    return [{ name: singleModelName, version: 1, dir: root, location: '.', files: rootFiles.files }];
  }
  const sources: VersionSource[] = [];
  for (const name of rootFiles.folders.filter((folder) => MODEL_NAME_PATTERN.test(folder)).sort()) {
    const modelDir = path.join(root, name);
    const { folders } = await listFolder(modelDir);
    for (const folder of folders.filter((f) => VERSION_PATTERN.test(f))) {
      const dir = path.join(modelDir, folder);
      const { files } = await listFolder(dir);
      sources.push({ name, version: Number(folder), dir, location: `${name}/${folder}`, files });
    }
  }
  return sources.sort((a, b) => a.name.localeCompare(b.name) || a.version - b.version);
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
