import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import yauzl from 'yauzl';

/** One regular file of an archive: a relative path with `/` separators, checked not to escape. */
export interface ArchiveFile {
  path: string;
  data: Uint8Array;
}

/** The archive cannot be used: its message names the entry and the problem, for the uploader. */
export class ArchiveError extends Error {
  override name = 'ArchiveError';
  constructor(
    message: string,
    /** The catalogue code: a limit passed (413), or an archive that is not usable (422). */
    readonly code: 'invalid_archive' | 'upload_too_large' | 'too_many_entries' = 'invalid_archive',
  ) {
    super(message);
  }
}

export interface ArchiveLimits {
  /** The most the files may add up to, unpacked (MAX_MODEL_BYTES). */
  maxBytes: number;
  /** The most entries, folders included (MAX_UPLOAD_ENTRIES): headers alone cost memory. */
  maxEntries: number;
}

/** What Linux file systems take for one name; a model has no use for deeper trees. */
const MAX_NAME_BYTES = 255;
const MAX_DEPTH = 16;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;

export type ArchiveFormat = 'zip' | 'tar.gz' | 'tar';

/** Recognises the archive by its first bytes, whatever the name or Content-Type said. */
export function archiveFormat(bytes: Uint8Array): ArchiveFormat | undefined {
  if (bytes[0] === 0x50 && bytes[1] === 0x4b && (bytes[2] === 0x03 || bytes[2] === 0x05)) return 'zip';
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) return 'tar.gz';
  if (Buffer.from(bytes.subarray(257, 262)).toString('latin1') === 'ustar') return 'tar';
  return undefined;
}

/**
 * The regular files of a `.zip`, `.tar.gz` or `.tar` archive. Refused with an ArchiveError: an
 * unknown format, absolute paths, `..`, links and device entries, duplicate paths, and files
 * adding up to more than maxBytes (counted as they inflate, so a small bomb costs nothing).
 * When every file sits in one top folder (`tar czf v2.tgz 2/`), that folder is dropped.
 */
export async function unpackArchive(bytes: Uint8Array, limits: ArchiveLimits): Promise<ArchiveFile[]> {
  const format = archiveFormat(bytes);
  if (format === undefined) throw new ArchiveError('the body is not a .zip, .tar.gz or .tar archive');
  const files = format === 'zip' ? await unzip(bytes, limits) : await untar(bytes, format === 'tar.gz', limits);
  if (files.length === 0) throw new ArchiveError('the archive holds no files');
  const paths = new Set<string>();
  for (const file of files) {
    if (paths.has(file.path)) throw new ArchiveError(`${file.path}: the archive holds this path twice`);
    paths.add(file.path);
  }
  for (const file of files) {
    const parts = file.path.split('/');
    const clash = parts.slice(1).find((_, i) => paths.has(parts.slice(0, i + 1).join('/')));
    if (clash !== undefined) {
      throw new ArchiveError(`${file.path}: a file of the archive stands where this path needs a folder`);
    }
  }
  return withoutCommonFolder(files);
}

/** The entry's path made relative and clean, or undefined for the archive's own root (`./`). */
export function entryPath(name: string): string | undefined {
  if (name.includes('\\') || name.includes('\0'))
    throw new ArchiveError(`${name}: backslashes and NUL are not allowed`);
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name))
    throw new ArchiveError(`${name}: absolute paths are not allowed`);
  const parts = name.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) throw new ArchiveError(`${name}: ".." is not allowed in paths`);
  if (parts.length > MAX_DEPTH || parts.some((part) => Buffer.byteLength(part) > MAX_NAME_BYTES)) {
    throw new ArchiveError(`${name}: deeper than ${MAX_DEPTH} folders, or a name over ${MAX_NAME_BYTES} bytes`);
  }
  return parts.length === 0 ? undefined : parts.join('/');
}

function withoutCommonFolder(files: ArchiveFile[]): ArchiveFile[] {
  const tops = new Set(files.map((file) => (file.path.includes('/') ? file.path.split('/')[0] : '')));
  const [top] = tops;
  if (tops.size !== 1 || top === undefined || top === '') return files;
  return files.map((file) => ({ ...file, path: file.path.slice(top.length + 1) }));
}

class SizeGuard {
  #total = 0;
  #entries = 0;
  constructor(readonly limits: ArchiveLimits) {}

  entry(): void {
    this.#entries += 1;
    const { maxEntries } = this.limits;
    if (this.#entries > maxEntries) {
      throw new ArchiveError(
        `the archive has more than ${maxEntries} entries (MAX_UPLOAD_ENTRIES)`,
        'too_many_entries',
      );
    }
  }

  add(bytes: number, name: string): void {
    this.#total += bytes;
    const { maxBytes } = this.limits;
    if (this.#total > maxBytes) {
      throw new ArchiveError(
        `${name}: the files unpack to more than ${maxBytes} bytes (MAX_MODEL_BYTES)`,
        'upload_too_large',
      );
    }
  }
}

async function unzip(bytes: Uint8Array, limits: ArchiveLimits): Promise<ArchiveFile[]> {
  let zip: yauzl.ZipFile;
  try {
    // validateEntrySizes: an entry that inflates past its declared size is an error, so the
    // declared sizes checked below are the real ones.
    zip = await yauzl.fromBufferPromise(Buffer.from(bytes), { validateEntrySizes: true, strictFileNames: true });
  } catch (error) {
    throw new ArchiveError(`not a readable zip archive: ${(error as Error).message}`);
  }
  const guard = new SizeGuard(limits);
  const files: ArchiveFile[] = [];
  try {
    for await (const entry of zip.eachEntry()) {
      guard.entry();
      const mode = (entry.externalFileAttributes >>> 16) & S_IFMT;
      const isDirectory = entry.fileName.endsWith('/') || mode === S_IFDIR;
      if (mode !== 0 && mode !== S_IFREG && !isDirectory) {
        throw new ArchiveError(`${entry.fileName}: links and special files are not allowed`);
      }
      const path = entryPath(entry.fileName);
      if (isDirectory || path === undefined) continue;
      guard.add(entry.uncompressedSize, entry.fileName);
      const chunks: Buffer[] = [];
      for await (const chunk of await zip.openReadStreamPromise(entry)) chunks.push(chunk as Buffer);
      files.push({ path, data: Buffer.concat(chunks) });
    }
  } catch (error) {
    zip.close();
    if (error instanceof ArchiveError) throw error;
    const message = (error as Error).message;
    // yauzl checks entry names before we see them; its words for a path that would escape.
    if (/^(absolute path|invalid relative path|invalid characters in fileName): /.test(message)) {
      throw new ArchiveError(
        `unsafe path in the archive (${message}): absolute paths, ".." and backslashes are not allowed`,
      );
    }
    throw new ArchiveError(`the zip archive is damaged: ${message}`);
  }
  return files;
}

async function untar(bytes: Uint8Array, gzipped: boolean, limits: ArchiveLimits): Promise<ArchiveFile[]> {
  const guard = new SizeGuard(limits);
  const extract = tar.extract();
  // The tar stream is the files plus headers and padding; bounding it stops a gzip bomb of
  // padding or headers before it costs time, whatever the files themselves add up to.
  const tarLimit = 2 * limits.maxBytes + 1024 * 1024;
  let tarBytes = 0;
  const bounded = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      tarBytes += chunk.length;
      const tooLarge = tarBytes > tarLimit;
      done(
        tooLarge ? new ArchiveError(`the archive unpacks to more than ${tarLimit} bytes`, 'upload_too_large') : null,
        chunk,
      );
    },
  });
  const input = Readable.from([Buffer.from(bytes)]);
  const piping = gzipped ? pipeline(input, createGunzip(), bounded, extract) : pipeline(input, bounded, extract);
  const piped = piping.then(
    () => undefined,
    (error: Error) => error,
  );
  const files: ArchiveFile[] = [];
  let failure: unknown;
  try {
    for await (const entry of extract) {
      const { name, type } = entry.header;
      guard.entry();
      if (type === 'directory') {
        entry.resume();
        continue;
      }
      if (type !== 'file' && type !== 'contiguous-file') {
        throw new ArchiveError(`${name}: ${type} entries are not allowed (regular files only)`);
      }
      const path = entryPath(name);
      const chunks: Buffer[] = [];
      for await (const chunk of entry) {
        guard.add((chunk as Buffer).length, name);
        chunks.push(chunk as Buffer);
      }
      if (path !== undefined) files.push({ path, data: Buffer.concat(chunks) });
    }
  } catch (error) {
    failure = error;
    extract.destroy();
  }
  // Whichever side saw the problem first, the uploader gets our own message when there is one.
  const problems = [failure, await piped].filter((problem) => problem !== undefined);
  const problem = problems.find((p) => p instanceof ArchiveError) ?? problems[0];
  if (problem instanceof ArchiveError) throw problem;
  if (problem !== undefined) {
    throw new ArchiveError(`the ${gzipped ? 'tar.gz' : 'tar'} archive is damaged: ${(problem as Error).message}`);
  }
  return files;
}
