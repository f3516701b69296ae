/**
 * Upload archives for the fuzz: a small zip writer (so that names, duplicates and file types are
 * exactly as generated, which no zip library allows), tar and tar.gz through tar-stream, fflate's
 * own zips, and damaged or disguised bodies. Archives are described by a spec and built when a run
 * executes, so that a valid model can be made for the version the run uploads to.
 */
import { tmpdir } from 'node:os';
import path from 'node:path';
import { crc32, deflateRawSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { zipSync } from 'fflate';
import tar from 'tar-stream';
import { versionedModel } from '../helpers.js';
import { fuzzString, jsonObject, jsonText, sometimes } from './arbitraries.js';

export type EntryKind = 'file' | 'directory' | 'symlink' | 'link' | 'fifo' | 'character-device';

/** Where an escaping entry would land: beside the repository, or in the temporary folder. */
export const ESCAPE_MARKER = `wattserve-fuzz-escape-${process.pid}`;
export const ESCAPE_IN_TMP = path.join(tmpdir(), ESCAPE_MARKER);

/** What an entry holds; `model` parts are made for the version the run uploads to. */
export type ContentSpec =
  | { kind: 'model-onnx' }
  | { kind: 'model-metadata' }
  | { kind: 'flipped-onnx'; at: number; xor: number }
  | { kind: 'cut-onnx'; at: number }
  | { kind: 'text'; text: string }
  | { kind: 'bytes'; bytes: Uint8Array }
  | { kind: 'zeros'; size: number };

export interface EntrySpec {
  /** The name, `{parent}` standing for the folder around the repository. */
  name: string;
  kind: EntryKind;
  content: ContentSpec;
  linkname?: string;
}

export type ArchiveFormat = 'zip' | 'zip-deflate' | 'fflate-zip' | 'tar' | 'tar.gz';

export interface ArchiveSpec {
  format: ArchiveFormat;
  entries: EntrySpec[];
  /** Damage to the finished archive: cut short, a byte changed, or a disguise (another format's magic). */
  damage:
    | { kind: 'none' }
    | { kind: 'cut'; at: number }
    | { kind: 'flip'; at: number; xor: number }
    | { kind: 'magic'; magic: string };
}

const MODEL_FILES = ['model.onnx', 'metadata.json'];

/** Entry names: a model's files (at the root or in one top folder), and every way a path can go wrong. */
const entryName: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...MODEL_FILES) },
  { weight: 2, arbitrary: fc.constantFrom('v/model.onnx', 'v/metadata.json', './model.onnx', 'a//metadata.json') },
  { weight: 1, arbitrary: fc.constantFrom('model.json', 'group1-shard1of1.bin', 'weight.json', 'README.md', 'x.pkl') },
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      '..',
      '../x',
      `../../${ESCAPE_MARKER}`,
      `../../../${ESCAPE_MARKER}`,
      `../../../../${ESCAPE_MARKER}`,
      `a/../../../${ESCAPE_MARKER}`,
      `v/../../../../${ESCAPE_MARKER}`,
      `{parent}/abs-${ESCAPE_MARKER}`,
      ESCAPE_IN_TMP,
      '/etc/passwd',
      'C:\\x',
      'C:/x',
      `..\\..\\..\\${ESCAPE_MARKER}`,
      '\\abs',
      'a\\b',
      'a\u0000b',
      'model.onnx\u0000.txt',
      'x'.repeat(300),
      `${'d/'.repeat(20)}f`,
      `${'x'.repeat(200)}/${'y'.repeat(200)}`,
      'модель.onnx',
      '🙂/model.onnx',
      '',
      '.',
      './',
      'dir/',
      '.upload-x/model.onnx',
      'metadata.json/x',
    ),
  },
  { weight: 1, arbitrary: fuzzString },
);

const entryKind: fc.Arbitrary<EntryKind> = fc.oneof(
  { weight: 20, arbitrary: fc.constant('file' as const) },
  { weight: 1, arbitrary: fc.constantFrom('directory', 'symlink', 'link', 'fifo', 'character-device') },
);

/** metadata.json that is not what the model needs: wrong types, wrong widths, pollution keys. */
const oddMetadata: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '{"features":["a"]}',
    '{"features":["a","b","c"]}',
    '{"features":["a","a"]}',
    '{"features":"a,b"}',
    '{"features":[1,2]}',
    '{"features":["a","b"],"outputs":["y","z"]}',
    '{"features":["a","b"],"outputs":[{"name":1}]}',
    '{"__proto__":{"polluted":1},"features":["a","b"]}',
    '{"constructor":{"prototype":{"polluted":1}},"features":["a","b"]}',
    '{"features":["a","b"],"description":{"x":1}}',
    '[]',
    'null',
    '',
    '\uFEFF{"features":["a","b"]}',
  ),
  fc
    .array(fc.tuple(fc.constantFrom('features', 'outputs', 'description', 'source', 'x'), jsonText), { maxLength: 3 })
    .map(jsonObject),
);

const contentSpec: fc.Arbitrary<ContentSpec> = fc.oneof(
  { weight: 6, arbitrary: fc.constant({ kind: 'model-onnx' as const }) },
  { weight: 6, arbitrary: fc.constant({ kind: 'model-metadata' as const }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('flipped-onnx' as const),
      at: fc.nat(),
      xor: fc.integer({ min: 1, max: 255 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('cut-onnx' as const), at: fc.nat() }) },
  { weight: 2, arbitrary: oddMetadata.map((text) => ({ kind: 'text' as const, text })) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((bytes) => ({ kind: 'bytes' as const, bytes })) },
  { weight: 1, arbitrary: fc.constantFrom(0, 1_100_000).map((size) => ({ kind: 'zeros' as const, size })) },
);

const entrySpec: fc.Arbitrary<EntrySpec> = fc
  .record({
    name: entryName,
    kind: entryKind,
    content: contentSpec,
    linkname: fc.constantFrom('../../etc/passwd', '/etc/passwd', 'model.onnx'),
  })
  .map((entry) => {
    // A model file's name gets that model part mostly, so that valid archives come up often.
    if (entry.name.endsWith('model.onnx') && entry.content.kind === 'model-metadata')
      return { ...entry, content: { kind: 'model-onnx' as const } };
    if (entry.name.endsWith('metadata.json') && entry.content.kind === 'model-onnx')
      return { ...entry, content: { kind: 'model-metadata' as const } };
    return entry;
  });

/** A valid model's two files, at the root or in one top folder. */
const validEntries: fc.Arbitrary<EntrySpec[]> = fc
  .tuple(fc.constantFrom('', 'v/', './', '2/'), fc.boolean())
  .map(([top, metadataFirst]) => {
    const files: EntrySpec[] = [
      { name: `${top}model.onnx`, kind: 'file', content: { kind: 'model-onnx' } },
      { name: `${top}metadata.json`, kind: 'file', content: { kind: 'model-metadata' } },
    ];
    return metadataFirst ? files.reverse() : files;
  });

export const archiveSpec: fc.Arbitrary<ArchiveSpec> = fc.record({
  format: fc.constantFrom<ArchiveFormat>('zip', 'zip-deflate', 'fflate-zip', 'tar', 'tar.gz'),
  entries: fc.oneof(
    { weight: 3, arbitrary: validEntries },
    {
      weight: 4,
      // A valid model with one entry added or changed.
      arbitrary: fc.tuple(validEntries, entrySpec, fc.nat(), fc.boolean()).map(([valid, odd, at, replace]) => {
        const copy = [...valid];
        copy.splice(at % (copy.length + 1), replace ? 1 : 0, odd);
        return copy;
      }),
    },
    { weight: 3, arbitrary: fc.array(entrySpec, { minLength: 0, maxLength: 5 }) },
    {
      weight: 1,
      // Duplicates.
      arbitrary: fc
        .tuple(validEntries, fc.nat())
        .map(([valid, at]) => [...valid, valid[at % valid.length] as EntrySpec]),
    },
  ),
  damage: fc.oneof(
    { weight: 12, arbitrary: fc.constant({ kind: 'none' as const }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }) },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
    },
    {
      weight: 1,
      arbitrary: fc
        .constantFrom('PK\u0003\u0004', 'PK\u0005\u0006', '\u001f\u008b', '')
        .map((magic) => ({ kind: 'magic' as const, magic })),
    },
  ),
});

/** An entry's name as written into the archive. */
export function entryNameFor(entry: EntrySpec, parent: string): string {
  return entry.name.replaceAll('{parent}', parent);
}

/** An entry's bytes for an upload to `version`. */
export function contentFor(content: ContentSpec, version: number): Uint8Array {
  const model = versionedModel(version);
  const onnx = model['model.onnx'] as Uint8Array;
  switch (content.kind) {
    case 'model-onnx':
      return onnx;
    case 'model-metadata':
      return Buffer.from(model['metadata.json'] as string);
    case 'flipped-onnx': {
      const copy = Uint8Array.from(onnx);
      const at = content.at % copy.length;
      copy[at] = (copy[at] ?? 0) ^ content.xor;
      return copy;
    }
    case 'cut-onnx':
      return onnx.subarray(0, content.at % onnx.length);
    case 'text':
      return Buffer.from(content.text);
    case 'bytes':
      return content.bytes;
    case 'zeros':
      return new Uint8Array(content.size);
  }
}

const UNIX_TYPE: Record<EntryKind, number> = {
  file: 0o100644,
  directory: 0o040755,
  symlink: 0o120777,
  link: 0o100644, // no hard links in a zip: a plain file
  fifo: 0o010644,
  'character-device': 0o020644,
};

/** A zip written byte by byte: names as given (UTF-8 flag set), duplicates kept, Unix types in the attributes. */
export function writeZip(files: Array<{ name: string; data: Uint8Array; kind: EntryKind }>, deflate: boolean): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const file of files) {
    const name = Buffer.from(file.kind === 'directory' && !file.name.endsWith('/') ? `${file.name}/` : file.name);
    const data = file.kind === 'directory' ? new Uint8Array(0) : file.data;
    const stored = deflate ? deflateRawSync(data) : Buffer.from(data);
    const crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x0800, 6);
    local.writeUInt16LE(deflate ? 8 : 0, 8);
    local.writeUInt16LE(0, 10);
    local.writeUInt16LE(0x21, 12);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(stored.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(0, 28);
    locals.push(local, name, stored);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x0800, 8);
    central.writeUInt16LE(deflate ? 8 : 0, 10);
    central.writeUInt16LE(0, 12);
    central.writeUInt16LE(0x21, 14);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(stored.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE((UNIX_TYPE[file.kind] << 16) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    centrals.push(central, name);
    offset += local.length + name.length + stored.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(files.length, 8);
  end.writeUInt16LE(files.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
}

async function writeTar(
  files: Array<{ name: string; data: Uint8Array; kind: EntryKind; linkname?: string }>,
): Promise<Buffer> {
  const pack = tar.pack();
  for (const file of files) {
    const header: Parameters<tar.Pack['entry']>[0] = {
      name: file.name,
      type: file.kind,
      mode: file.kind === 'directory' ? 0o755 : 0o644,
    };
    if (file.kind === 'symlink' || file.kind === 'link') header.linkname = file.linkname ?? 'model.onnx';
    if (file.kind === 'file') pack.entry(header, Buffer.from(file.data));
    else pack.entry(header);
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The archive's bytes for an upload to `version`, and the entry names it holds (for the leak check). */
export async function buildArchive(
  spec: ArchiveSpec,
  version: number,
  parent: string,
): Promise<{ bytes: Buffer; names: string[] }> {
  const files = spec.entries.map((entry) => {
    const file: { name: string; data: Uint8Array; kind: EntryKind; linkname?: string } = {
      name: entryNameFor(entry, parent),
      data: contentFor(entry.content, version),
      kind: entry.kind,
    };
    if (entry.linkname !== undefined) file.linkname = entry.linkname;
    return file;
  });
  let bytes: Buffer;
  switch (spec.format) {
    case 'zip':
    case 'zip-deflate':
      bytes = writeZip(files, spec.format === 'zip-deflate');
      break;
    case 'fflate-zip': {
      // fflate keeps the last of duplicate names and writes no file types: what most zip tools make.
      const tree: Record<string, Uint8Array> = {};
      for (const file of files) if (file.kind === 'file') tree[file.name] = file.data;
      bytes = Buffer.from(zipSync(tree));
      break;
    }
    case 'tar':
    case 'tar.gz': {
      const raw = await writeTar(files);
      bytes = spec.format === 'tar.gz' ? gzipSync(raw) : raw;
      break;
    }
  }
  const damage = spec.damage;
  if (damage.kind === 'cut') bytes = bytes.subarray(0, damage.at % Math.max(1, bytes.length));
  else if (damage.kind === 'flip' && bytes.length > 0) {
    bytes = Buffer.from(bytes);
    const at = damage.at % bytes.length;
    bytes[at] = (bytes[at] ?? 0) ^ damage.xor;
  } else if (damage.kind === 'magic') {
    bytes = Buffer.concat([Buffer.from(damage.magic, 'latin1'), bytes.subarray(damage.magic.length === 0 ? 0 : 4)]);
    if (damage.magic === '') bytes = Buffer.from(bytes.toString('base64'));
  }
  return { bytes, names: files.map((file) => file.name) };
}

/**
 * Whether the server must refuse the archive whatever else it holds: an entry (other than a tar
 * folder, which is skipped unread) with a name that is absolute, climbs with `..`, or has a
 * backslash or NUL, or that is a link or a device.
 */
export function mustBeRefused(spec: ArchiveSpec, parent: string): boolean {
  if (spec.format === 'fflate-zip') return false; // fflate rewrites what it is given; judged by the server alone
  const isTar = spec.format === 'tar' || spec.format === 'tar.gz';
  return spec.entries.some((entry) => {
    if (isTar && entry.kind === 'directory') return false;
    // A zip has no hard links: writeZip writes them as files.
    const kind = !isTar && entry.kind === 'link' ? 'file' : entry.kind;
    if (kind !== 'file' && kind !== 'directory') return true;
    const name = entryNameFor(entry, parent);
    // A tar header ends a name at NUL: what the server reads then depends on the encoding.
    if (!isTar && name.includes('\0')) return true;
    if (name.includes('\\') || name.startsWith('/') || /^[A-Za-z]:/.test(name)) return true;
    return name.split('/').includes('..');
  });
}

/** The chance of a garbage body that is no archive at all. */
export const garbageBody: fc.Arbitrary<Buffer | null> = sometimes(
  fc.oneof(
    fc.uint8Array({ maxLength: 600 }).map((bytes) => Buffer.from(bytes)),
    fc.constantFrom('', '{}', 'PK', '\u001f\u008b').map((text) => Buffer.from(text, 'latin1')),
    fc.uint8Array({ minLength: 300, maxLength: 600 }).map((bytes) => {
      const copy = Buffer.from(bytes);
      copy.write('ustar', 257, 'latin1');
      return copy;
    }),
  ),
  8,
);
