import { once } from 'node:events';
import { crc32, createDeflateRaw, deflateRawSync, gzipSync } from 'node:zlib';
import { Zip, type ZipAttributes, type ZipInputFile, zipSync } from 'fflate';
import tar, { type Header as TarHeader } from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { ArchiveError, type ArchiveFile, archiveFormat, entryPath, unpackArchive } from '../../src/codecs/archive.js';

const MB = 1024 * 1024;
const LIMITS = { maxBytes: MB, maxEntries: 10_000 };

// ---- archive builders ------------------------------------------------------------------------

interface TarEntry {
  name: string;
  data?: string | Uint8Array;
  type?: TarHeader['type'];
  linkname?: string;
}

/** A plain tar of the entries, in order, as tar-stream writes it (ustar headers). */
async function tarOf(entries: TarEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const chunk of pack) chunks.push(chunk as Buffer);
  })();
  for (const { name, data, type = 'file', linkname } of entries) {
    const body = type === 'file' ? Buffer.from(data ?? '') : undefined;
    await new Promise<void>((resolve, reject) => {
      const done = (error?: Error | null) => (error ? reject(error) : resolve());
      const header: Partial<TarHeader> & { name: string } = { name, type, size: body?.length ?? 0, mtime: new Date(0) };
      if (linkname !== undefined) header.linkname = linkname;
      if (body === undefined) pack.entry(header, done);
      else pack.entry(header, body, done);
    });
  }
  pack.finalize();
  await collected;
  return Buffer.concat(chunks);
}

async function tgzOf(entries: TarEntry[]): Promise<Buffer> {
  return gzipSync(await tarOf(entries));
}

/** The 512-byte ustar header tar-stream writes for a file of `size` bytes, without writing the body. */
async function tarHeaderOf(name: string, size: number): Promise<Buffer> {
  const pack = tar.pack();
  pack.entry({ name, size, mtime: new Date(0) });
  for await (const chunk of pack) return (chunk as Buffer).subarray(0, 512);
  throw new Error('tar-stream wrote no header');
}

/**
 * `head`, then `megabytes` MB of zeros, then `tail`, gzipped to a few tens of KB. Built as
 * concatenated gzip members (a valid .gz that gunzip reads through) so that the test does not
 * spend its time compressing 50 MB.
 */
function gzipBomb(head: Uint8Array, megabytes: number, tail: Uint8Array = new Uint8Array(0)): Buffer {
  const zeros = gzipSync(Buffer.alloc(MB), { level: 9 });
  return Buffer.concat([gzipSync(head), ...Array<Buffer>(megabytes).fill(zeros), gzipSync(tail)]);
}

/** Regular files by path; a tuple adds fflate's per-file attributes (e.g. a unix symlink mode). */
type ZipEntries = Record<string, string | Uint8Array | [string | Uint8Array, ZipAttributes]>;

function zipOf(entries: ZipEntries): Buffer {
  const files: Record<string, Uint8Array | [Uint8Array, ZipAttributes]> = {};
  for (const [name, entry] of Object.entries(entries)) {
    files[name] = Array.isArray(entry) ? [bytesOf(entry[0]), entry[1]] : bytesOf(entry);
  }
  return Buffer.from(zipSync(files, { mtime: new Date('2020-01-01T00:00:00Z') }));
}

/**
 * A zip of one entry whose data is already deflated, its central directory declaring
 * `declaredSize`. node:zlib deflates (fast, unlike fflate's JS deflate on 50 MB) and fflate's
 * streaming Zip writes the headers around the precompressed data.
 */
function zipAround(name: string, deflated: Uint8Array, crc: number, declaredSize: number): Buffer {
  const chunks: Uint8Array[] = [];
  const zip = new Zip((error, chunk) => {
    if (error) throw error;
    chunks.push(chunk);
  });
  const file: ZipInputFile = {
    filename: name,
    size: declaredSize,
    crc,
    compression: 8,
    mtime: new Date('2020-01-01T00:00:00Z'),
  };
  zip.add(file);
  file.ondata?.(null, new Uint8Array(deflated), true);
  zip.end();
  return Buffer.concat(chunks);
}

function bytesOf(data: string | Uint8Array): Uint8Array {
  return typeof data === 'string' ? new TextEncoder().encode(data) : data;
}

/** Deterministic non-trivial bytes, so a wrong offset or a lost chunk shows. */
function pattern(length: number, seed = 1): Buffer {
  const out = Buffer.alloc(length);
  let x = seed;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/**
 * A zip of 50 MB of zeros in one entry (about 50 KB), its central directory declaring
 * `declaredSize`. The zeros are deflated once, streamed from one 1 MB buffer, and shared.
 */
let zeros50: Promise<{ deflated: Buffer; crc: number }> | undefined;
async function zipBomb(name: string, declaredSize = 50 * MB): Promise<Buffer> {
  zeros50 ??= (async () => {
    const megabyte = Buffer.alloc(MB);
    const deflate = createDeflateRaw({ level: 9 });
    const compressed = (async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of deflate) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks);
    })();
    let crc = 0;
    for (let i = 0; i < 50; i++) {
      crc = crc32(megabyte, crc);
      if (!deflate.write(megabyte)) await once(deflate, 'drain');
    }
    deflate.end();
    return { deflated: await compressed, crc };
  })();
  const { deflated, crc } = await zeros50;
  return zipAround(name, deflated, crc, declaredSize);
}

/** The files as path → exact bytes, sorted, for comparison. */
function byPath(files: ArchiveFile[]): Record<string, Buffer> {
  return Object.fromEntries(
    files.map((file) => [file.path, Buffer.from(file.data)] as const).sort(([a], [b]) => a.localeCompare(b)),
  );
}

async function refusal(promise: Promise<unknown>): Promise<ArchiveError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(ArchiveError);
  return error as ArchiveError;
}

const SHARD = pattern(3000, 7);
const MODEL_FILES = {
  'model.json': '{"format":"layers-model"}',
  'group1-shard1of1.bin': SHARD,
  'sub/dir/file.txt': 'hello\n',
};
const EXPECTED = {
  'group1-shard1of1.bin': SHARD,
  'model.json': Buffer.from('{"format":"layers-model"}'),
  'sub/dir/file.txt': Buffer.from('hello\n'),
};
const modelTarEntries = (): TarEntry[] => [
  { name: 'sub', type: 'directory' },
  { name: 'sub/dir', type: 'directory' },
  ...Object.entries(MODEL_FILES).map(([name, data]) => ({ name, data })),
];

// ---- the spec --------------------------------------------------------------------------------

describe('unpackArchive: formats', () => {
  it('unpacks a .zip to its paths and exact bytes', async () => {
    const files = await unpackArchive(zipOf(MODEL_FILES), LIMITS);
    expect(byPath(files)).toEqual(EXPECTED);
  });

  it('unpacks a .tar.gz to its paths and exact bytes', async () => {
    const files = await unpackArchive(await tgzOf(modelTarEntries()), LIMITS);
    expect(byPath(files)).toEqual(EXPECTED);
  });

  it('unpacks a plain .tar to its paths and exact bytes', async () => {
    const files = await unpackArchive(await tarOf(modelTarEntries()), LIMITS);
    expect(byPath(files)).toEqual(EXPECTED);
  });

  it('unpacks a .zip whose data another tool deflated (node:zlib), to the exact bytes', async () => {
    const data = pattern(5000, 9);
    const archive = zipAround('model.bin', deflateRawSync(data), crc32(data), data.length);
    expect(byPath(await unpackArchive(archive, LIMITS))).toEqual({ 'model.bin': data });
  });

  it('recognises the format by its first bytes, whatever the name said', async () => {
    expect(archiveFormat(zipOf({ a: 'x' }))).toBe('zip');
    expect(archiveFormat(await tgzOf([{ name: 'a', data: 'x' }]))).toBe('tar.gz');
    expect(archiveFormat(await tarOf([{ name: 'a', data: 'x' }]))).toBe('tar');
    expect(archiveFormat(gzipSync(Buffer.from('not a tar')))).toBe('tar.gz');
    expect(archiveFormat(Buffer.from('{"model":"m"}'))).toBeUndefined();
    expect(archiveFormat(new Uint8Array(0))).toBeUndefined();
  });

  it('refuses random bytes as not an archive', async () => {
    const error = await refusal(unpackArchive(pattern(4096, 3), LIMITS));
    expect(error.message).toContain('not a .zip, .tar.gz or .tar archive');
  });

  it('refuses a JSON body as not an archive', async () => {
    const error = await refusal(unpackArchive(Buffer.from('{"model":"m","instances":[[1,2]]}'), LIMITS));
    expect(error.message).toContain('not a .zip, .tar.gz or .tar archive');
  });

  it('refuses an empty body as not an archive', async () => {
    const error = await refusal(unpackArchive(new Uint8Array(0), LIMITS));
    expect(error.message).toContain('not a .zip, .tar.gz or .tar archive');
  });
});

describe('unpackArchive: paths', () => {
  it('drops a single top folder that holds every file', async () => {
    const archive = await tgzOf([
      { name: '2/', type: 'directory' },
      { name: '2/model.onnx', data: 'onnx' },
      { name: '2/metadata.json', data: '{}' },
    ]);
    expect(Object.keys(byPath(await unpackArchive(archive, LIMITS)))).toEqual(['metadata.json', 'model.onnx']);
  });

  it('drops a single top folder in a zip too, keeping deeper folders', async () => {
    const archive = zipOf({ '2/model.onnx': 'onnx', '2/assets/vocab.txt': 'a' });
    expect(Object.keys(byPath(await unpackArchive(archive, LIMITS)))).toEqual(['assets/vocab.txt', 'model.onnx']);
  });

  it('keeps the paths when the files sit in two top folders', async () => {
    const archive = await tgzOf([
      { name: '1/model.onnx', data: 'a' },
      { name: '2/model.onnx', data: 'b' },
    ]);
    expect(Object.keys(byPath(await unpackArchive(archive, LIMITS)))).toEqual(['1/model.onnx', '2/model.onnx']);
  });

  it('keeps the paths when a file sits at the root beside a folder', async () => {
    const archive = zipOf({ 'model.onnx': 'a', 'sub/metadata.json': '{}' });
    expect(Object.keys(byPath(await unpackArchive(archive, LIMITS)))).toEqual(['model.onnx', 'sub/metadata.json']);
  });

  it('turns ./model.onnx into model.onnx and skips the ./ root entry', async () => {
    const archive = await tgzOf([
      { name: './', type: 'directory' },
      { name: './model.onnx', data: 'onnx' },
      { name: './metadata.json', data: '{}' },
    ]);
    expect(byPath(await unpackArchive(archive, LIMITS))).toEqual({
      'metadata.json': Buffer.from('{}'),
      'model.onnx': Buffer.from('onnx'),
    });
  });

  it('drops the top folder of a ./2/ archive (tar czf v2.tgz ./2)', async () => {
    const archive = await tgzOf([
      { name: './2/model.onnx', data: 'onnx' },
      { name: './2/metadata.json', data: '{}' },
    ]);
    expect(Object.keys(byPath(await unpackArchive(archive, LIMITS)))).toEqual(['metadata.json', 'model.onnx']);
  });
});

describe('unpackArchive: unsafe entries are refused, naming the entry', () => {
  it('refuses a file that stands where another entry needs a folder', async () => {
    const error = await refusal(unpackArchive(zipOf({ 'm/a': 'x', 'm/a/b': 'y' }), LIMITS));
    expect(error.message).toContain('a/b');
  });

  it('refuses an absolute path in a tar', async () => {
    const archive = await tgzOf([{ name: '/etc/passwd', data: 'root:x:0:0' }]);
    const error = await refusal(unpackArchive(archive, LIMITS));
    expect(error.message).toContain('/etc/passwd');
    expect(error.message).toContain('absolute');
  });

  it('refuses an absolute path in a zip', async () => {
    const error = await refusal(unpackArchive(zipOf({ '/etc/passwd': 'root:x:0:0' }), LIMITS));
    expect(error.message).toContain('/etc/passwd');
    expect(error.message).toContain('absolute');
  });

  it('refuses an entry that climbs out with .. in a tar', async () => {
    const archive = await tgzOf([
      { name: 'model.onnx', data: 'ok' },
      { name: '../evil.txt', data: 'x' },
    ]);
    const error = await refusal(unpackArchive(archive, LIMITS));
    expect(error.message).toContain('../evil.txt');
  });

  it('refuses an entry that climbs out with .. in the middle of its path', async () => {
    const error = await refusal(unpackArchive(await tarOf([{ name: 'a/../../evil', data: 'x' }]), LIMITS));
    expect(error.message).toContain('a/../../evil');
  });

  it('refuses an entry that climbs out with .. in a zip', async () => {
    const error = await refusal(unpackArchive(zipOf({ 'model.onnx': 'ok', '../evil.txt': 'x' }), LIMITS));
    expect(error.message).toContain('../evil.txt');
  });

  it('refuses a .. path that would come back inside (a/../../evil) in a zip', async () => {
    const error = await refusal(unpackArchive(zipOf({ 'a/../../evil': 'x' }), LIMITS));
    expect(error.message).toContain('a/../../evil');
  });

  it('refuses a symlink in a tar', async () => {
    const archive = await tgzOf([
      { name: 'model.onnx', data: 'ok' },
      { name: 'passwd', type: 'symlink', linkname: '/etc/passwd' },
    ]);
    const error = await refusal(unpackArchive(archive, LIMITS));
    expect(error.message).toContain('passwd');
    expect(error.message).toContain('symlink');
  });

  it('refuses a hard link in a tar', async () => {
    const archive = await tarOf([
      { name: 'model.onnx', data: 'ok' },
      { name: 'copy.onnx', type: 'link', linkname: 'model.onnx' },
    ]);
    const error = await refusal(unpackArchive(archive, LIMITS));
    expect(error.message).toContain('copy.onnx');
    expect(error.message).toContain('link');
  });

  it('refuses a symlink entry in a zip (unix mode 120777)', async () => {
    const symlink: ZipAttributes = { os: 3, attrs: (0o120777 << 16) >>> 0 };
    const archive = zipOf({ 'model.onnx': 'ok', 'passwd.link': ['/etc/passwd', symlink] });
    const error = await refusal(unpackArchive(archive, LIMITS));
    expect(error.message).toContain('passwd.link');
    expect(error.message).toContain('links');
  });

  it('accepts a zip file entry with ordinary unix permissions (mode 100644)', async () => {
    const regular: ZipAttributes = { os: 3, attrs: (0o100644 << 16) >>> 0 };
    const files = await unpackArchive(zipOf({ 'model.onnx': ['onnx', regular] }), LIMITS);
    expect(byPath(files)).toEqual({ 'model.onnx': Buffer.from('onnx') });
  });

  it.each([
    ['character-device', 'tty'],
    ['block-device', 'sda'],
    ['fifo', 'pipe'],
  ] as const)('refuses a %s entry in a tar', async (type, name) => {
    const archive = await tarOf([
      { name: 'model.onnx', data: 'ok' },
      { name, type },
    ]);
    const error = await refusal(unpackArchive(archive, LIMITS));
    expect(error.message).toContain(name);
    expect(error.message).toContain(type);
  });

  it('refuses a path that appears twice in a tar', async () => {
    const archive = await tgzOf([
      { name: 'model.onnx', data: 'first' },
      { name: 'model.onnx', data: 'second' },
    ]);
    const error = await refusal(unpackArchive(archive, LIMITS));
    expect(error.message).toContain('model.onnx');
    expect(error.message).toContain('twice');
  });

  it('refuses a path that appears twice once cleaned (model.onnx and ./model.onnx)', async () => {
    const archive = await tarOf([
      { name: 'model.onnx', data: 'first' },
      { name: './model.onnx', data: 'second' },
    ]);
    const error = await refusal(unpackArchive(archive, LIMITS));
    expect(error.message).toContain('model.onnx');
    expect(error.message).toContain('twice');
  });

  it('refuses a path that appears twice in a zip', async () => {
    const archive = zipOf({ 'sub/model.onnx': 'first', 'sub//model.onnx': 'second' });
    const error = await refusal(unpackArchive(archive, LIMITS));
    expect(error.message).toContain('sub/model.onnx');
    expect(error.message).toContain('twice');
  });
});

describe('unpackArchive: size limits', () => {
  it('refuses a .tar.gz whose files add up to more than maxBytes, naming MAX_MODEL_BYTES', async () => {
    const archive = await tgzOf([
      { name: 'a.bin', data: pattern(600) },
      { name: 'b.bin', data: pattern(600, 2) },
    ]);
    const error = await refusal(unpackArchive(archive, { ...LIMITS, maxBytes: 1000 }));
    expect(error.message).toContain('MAX_MODEL_BYTES');
    expect(error.message).toContain('b.bin');
    expect(error.code).toBe('upload_too_large');
  });

  it('refuses more entries than maxEntries, folders included, with too_many_entries', async () => {
    const zip = zipOf({ 'a/': '', 'a/x': '1', 'a/y': '2' });
    expect((await refusal(unpackArchive(zip, { ...LIMITS, maxEntries: 2 }))).code).toBe('too_many_entries');
    const tarball = await tarOf([
      { name: 'x', data: '1' },
      { name: 'y', data: '2' },
      { name: 'z', data: '3' },
    ]);
    const error = await refusal(unpackArchive(tarball, { ...LIMITS, maxEntries: 2 }));
    expect(error).toMatchObject({ code: 'too_many_entries', message: expect.stringContaining('MAX_UPLOAD_ENTRIES') });
    expect(await unpackArchive(tarball, { ...LIMITS, maxEntries: 3 })).toHaveLength(3);
  });

  it('refuses a plain .tar whose files add up to more than maxBytes, naming MAX_MODEL_BYTES', async () => {
    const archive = await tarOf([
      { name: 'a.bin', data: pattern(600) },
      { name: 'b.bin', data: pattern(600, 2) },
    ]);
    const error = await refusal(unpackArchive(archive, { ...LIMITS, maxBytes: 1000 }));
    expect(error.message).toContain('MAX_MODEL_BYTES');
    expect(error.message).toContain('b.bin');
  });

  it('refuses a .zip whose files add up to more than maxBytes, naming MAX_MODEL_BYTES', async () => {
    const archive = zipOf({ 'a.bin': pattern(600), 'b.bin': pattern(600, 2) });
    const error = await refusal(unpackArchive(archive, { ...LIMITS, maxBytes: 1000 }));
    expect(error.message).toContain('MAX_MODEL_BYTES');
    expect(error.message).toContain('b.bin');
  });

  it('accepts files adding up to exactly maxBytes in each format', async () => {
    const files = { 'a.bin': pattern(600), 'b.bin': pattern(400, 2) };
    const entries = Object.entries(files).map(([name, data]) => ({ name, data }));
    for (const archive of [zipOf(files), await tgzOf(entries), await tarOf(entries)]) {
      expect(byPath(await unpackArchive(archive, { ...LIMITS, maxBytes: 1000 }))).toEqual(files);
    }
  });

  it('refuses a gzip bomb (50 MB of zeros in one tar entry) quickly, before inflating it all', async () => {
    const bomb = gzipBomb(await tarHeaderOf('bomb.bin', 50 * MB), 50, Buffer.alloc(1024));
    expect(bomb.length).toBeLessThan(100 * 1024);
    const error = await refusal(unpackArchive(bomb, LIMITS));
    expect(error.message).toContain('bomb.bin');
    expect(error.message).toContain('MAX_MODEL_BYTES');
  });

  it('refuses a gzip bomb of zero padding after a small file, bounding the tar stream itself', async () => {
    const tarball = await tarOf([{ name: 'model.onnx', data: 'ok' }]);
    const bomb = gzipBomb(tarball, 50);
    expect(bomb.length).toBeLessThan(100 * 1024);
    const error = await refusal(unpackArchive(bomb, LIMITS));
    expect(error.message).toContain('unpacks to more than');
  });

  it('refuses a zip bomb (50 MB of zeros in one entry) from its declared size, before inflating it', async () => {
    const bomb = await zipBomb('bomb.bin');
    expect(bomb.length).toBeLessThan(100 * 1024);
    const error = await refusal(unpackArchive(bomb, LIMITS));
    expect(error.message).toContain('bomb.bin');
    expect(error.message).toContain('MAX_MODEL_BYTES');
  });

  it('refuses a zip entry that inflates past the size it declares (a lying zip bomb)', async () => {
    const bomb = await zipBomb('bomb.bin', 1000);
    const error = await refusal(unpackArchive(bomb, LIMITS));
    expect(error.message).toContain('damaged');
    expect(error.message).toContain('expected 1000');
  });
});

describe('unpackArchive: empty and damaged archives', () => {
  it('refuses a .tar.gz holding only folders', async () => {
    const archive = await tgzOf([
      { name: '2/', type: 'directory' },
      { name: '2/sub/', type: 'directory' },
    ]);
    const error = await refusal(unpackArchive(archive, LIMITS));
    expect(error.message).toContain('no files');
  });

  it('refuses an empty .tar.gz', async () => {
    const error = await refusal(unpackArchive(await tgzOf([]), LIMITS));
    expect(error.message).toContain('no files');
  });

  it('refuses a plain .tar holding only a folder', async () => {
    const error = await refusal(unpackArchive(await tarOf([{ name: '2/', type: 'directory' }]), LIMITS));
    expect(error.message).toContain('no files');
  });

  it('refuses an empty .zip', async () => {
    const error = await refusal(unpackArchive(zipOf({}), LIMITS));
    expect(error.message).toContain('no files');
  });

  it('refuses a .zip holding only folders', async () => {
    const archive = Buffer.from(zipSync({ '2': {}, '2/sub': {} }));
    const error = await refusal(unpackArchive(archive, LIMITS));
    expect(error.message).toContain('no files');
  });

  it('refuses a truncated .tar.gz with an ArchiveError', async () => {
    const archive = await tgzOf([{ name: 'model.bin', data: pattern(20_000) }]);
    const error = await refusal(unpackArchive(archive.subarray(0, archive.length >> 1), LIMITS));
    expect(error.message).toContain('damaged');
  });

  it('refuses a .tar.gz whose gzip checksum is wrong with an ArchiveError', async () => {
    const archive = await tgzOf([{ name: 'model.bin', data: pattern(2000) }]);
    const damaged = Buffer.from(archive);
    damaged.writeUInt32LE(damaged.readUInt32LE(damaged.length - 8) ^ 0xffffffff, damaged.length - 8);
    const error = await refusal(unpackArchive(damaged, LIMITS));
    expect(error.message).toContain('damaged');
  });

  it('refuses gzip magic followed by garbage with an ArchiveError', async () => {
    const error = await refusal(unpackArchive(Buffer.concat([Buffer.from([0x1f, 0x8b]), pattern(3000)]), LIMITS));
    expect(error.message).toContain('damaged');
  });

  it('refuses a .gz that holds no tar (a gzipped model file) with an ArchiveError', async () => {
    const error = await refusal(unpackArchive(gzipSync(pattern(3000, 5)), LIMITS));
    expect(error.message).toContain('damaged');
  });

  it('refuses a plain .tar cut short in the middle of a file with an ArchiveError', async () => {
    const archive = await tarOf([{ name: 'model.bin', data: pattern(20_000) }]);
    const error = await refusal(unpackArchive(archive.subarray(0, 5000), LIMITS));
    expect(error.message).toContain('damaged');
  });

  it('refuses a .zip cut short (no central directory) with an ArchiveError', async () => {
    const archive = zipOf({ 'model.bin': pattern(20_000) });
    const error = await refusal(unpackArchive(archive.subarray(0, archive.length >> 1), LIMITS));
    expect(error.message).toContain('zip');
  });

  it('refuses a .zip whose compressed data is garbled with an ArchiveError', async () => {
    const text = 'the quick brown fox jumps over the lazy dog\n'.repeat(500);
    const archive = zipOf({ 'model.txt': text });
    const damaged = Buffer.from(archive);
    // Local header (30 bytes + name) then the deflate stream: overwrite its middle.
    damaged.fill(0xff, 60, 120);
    const error = await refusal(unpackArchive(damaged, LIMITS));
    expect(error.message).toContain('damaged');
  });
});

describe('entryPath', () => {
  it('keeps a clean relative path as it is', () => {
    expect(entryPath('sub/dir/file.txt')).toBe('sub/dir/file.txt');
  });

  it('collapses empty and . segments: a//b/./c is a/b/c', () => {
    expect(entryPath('a//b/./c')).toBe('a/b/c');
    expect(entryPath('./a/')).toBe('a');
  });

  it('gives undefined for the archive root ./', () => {
    expect(entryPath('./')).toBeUndefined();
    expect(entryPath('.')).toBeUndefined();
  });

  it.each(['a\\b', '..\\evil', 'a\0b'])('refuses a backslash or NUL: %j', (name) => {
    expect(() => entryPath(name)).toThrow(ArchiveError);
    expect(() => entryPath(name)).toThrow(/backslashes and NUL/);
  });

  it.each(['C:/Windows/evil.dll', 'c:evil', '/etc/passwd', '//server/share'])(
    'refuses an absolute path: %s',
    (name) => {
      expect(() => entryPath(name)).toThrow(ArchiveError);
      expect(() => entryPath(name)).toThrow(`${name}: absolute paths are not allowed`);
    },
  );

  it.each(['..', '../evil.txt', 'a/../../evil', 'a/..', 'a/./../b'])('refuses a .. segment: %s', (name) => {
    expect(() => entryPath(name)).toThrow(ArchiveError);
    expect(() => entryPath(name)).toThrow(`${name}: ".." is not allowed in paths`);
  });

  it('allows names that merely contain dots', () => {
    expect(entryPath('model..onnx')).toBe('model..onnx');
    expect(entryPath('.hidden/...')).toBe('.hidden/...');
  });
});
