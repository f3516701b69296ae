/**
 * Soak test: `npm run soak`. Starts the real server (src/server.ts, as a child process, on
 * 127.0.0.1 and a free port) over a throwaway model repository — the shipped example models plus
 * `soak-vm`, a tiny ONNX model whose answers name its version (y = version·a + b) — and drives it
 * for SOAK_SECONDS with SOAK_CONCURRENCY keep-alive connections: good traffic on every protocol,
 * bad traffic of every kind the server must refuse, and a swapper that uploads, promotes, rolls
 * back, labels, unloads, publishes on disk and reloads versions of soak-vm the whole time.
 *
 * It checks every good answer (soak-vm's predictions must be exactly those of the version it
 * names; the shipped models' must equal their first answer), that bad requests get a 4xx, and at
 * the end that every model that served at the start still serves and the server still runs. It
 * prints a summary and, as its last line, the same as one JSON object; exit code 0 when every
 * invariant held, 1 when one did not, 2 when the soak could not run. It talks to 127.0.0.1 only.
 *
 * Knobs (environment): SOAK_SECONDS (60), SOAK_CONCURRENCY (16), SOAK_MAX_REQUESTS (10000000),
 * SOAK_BAD_SHARE (0.3), SOAK_SWAP_PAUSE_MS (100), SOAK_MAX_SHED_SHARE (0.01), SOAK_SEED (1),
 * SOAK_KEEP (true keeps the temporary folder, with the server's log, after a pass too; a failed
 * soak always keeps it).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { createSigner } from 'fast-jwt';
import tar from 'tar-stream';
import { LOOPBACK_HOST, loopbackRequest, ServerChild } from './lib/loopback.js';
import { linearOnnxModel } from './onnx-linear.js';
import { seededRandom } from './synthetic-pods.js';

// ---------------------------------------------------------------------------------------------
// Settings

function setting(name: string, fallback: number, check: (value: number) => boolean, rule: string): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || !check(value)) {
    process.stderr.write(`soak: ${name} must be ${rule} (got "${raw}")\n`);
    process.exit(2);
  }
  return value;
}

const positive = (v: number) => v > 0;
const whole = (v: number) => Number.isInteger(v) && v > 0;
const share = (v: number) => v >= 0 && v <= 1;
const SECONDS = setting('SOAK_SECONDS', 60, positive, 'a number of seconds above 0');
const CONCURRENCY = setting('SOAK_CONCURRENCY', 16, whole, 'a whole number above 0');
const MAX_REQUESTS = setting('SOAK_MAX_REQUESTS', 10_000_000, whole, 'a whole number above 0');
const BAD_SHARE = setting('SOAK_BAD_SHARE', 0.3, share, 'between 0 and 1');
const SWAP_PAUSE_MS = setting('SOAK_SWAP_PAUSE_MS', 100, (v) => Number.isInteger(v) && v >= 0, 'a whole number');
const MAX_SHED_SHARE = setting('SOAK_MAX_SHED_SHARE', 0.01, share, 'between 0 and 1');
const SEED = setting('SOAK_SEED', 1, Number.isInteger, 'a whole number');
const KEEP = process.env.SOAK_KEEP === 'true';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SHIPPED_MODELS = path.join(ROOT, 'models');

/** The server's limits for the soak: small, so refusing oversized requests stays cheap. */
const MAX_BODY_BYTES = 256 * 1024;
const MAX_ROWS = 1000;
const POLL_MS = 250;

// ---------------------------------------------------------------------------------------------
// Models and payloads

const VM = 'soak-vm';
const LINEAR = 'pod-power-linear';
const MLP = 'pod-power-mlp';
const KEPLER = 'kepler-ec2-rapl-bpfonly';

/** A version of soak-vm: y = version·a + b over features a, b (as test/helpers.ts's versionedModel). */
function versionedModel(version: number): Record<string, Uint8Array | string> {
  return {
    'model.onnx': linearOnnxModel({ weights: [[version], [1]], bias: [0] }),
    'metadata.json': JSON.stringify({ features: ['a', 'b'] }),
  };
}

const predictionsOf = (version: number, rows: readonly (readonly number[])[]) =>
  rows.map(([a = 0, b = 0]) => version * a + b);

/** Rows whose answers are exact in float32; the first row's answer is the version itself. */
const ROWS = [
  [1, 0],
  [2, 3],
  [0.5, 7],
  [0, 0],
];
const MANY_ROWS = Array.from({ length: 100 }, () => ROWS).flat();

const PODS = [
  [3600, 1.1e10, 1.9e10, 2.1e8, 3.5e6, 4e5, 2.5e9, 900],
  [450, 1.2e9, 1.6e9, 9e6, 4.4e5, 3e4, 3e8, 40],
  [0, 0, 0, 0, 0, 0, 6e7, 0],
];
const MANY_PODS = Array.from({ length: 134 }, () => PODS).flat();

async function tarGz(files: Record<string, Uint8Array | string>): Promise<Buffer> {
  const pack = tar.pack();
  for (const [name, content] of Object.entries(files)) pack.entry({ name }, Buffer.from(content));
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return gzipSync(Buffer.concat(chunks));
}

/** Uploads that must be refused with 422 and leave nothing behind, in turn. */
const CORRUPT_UPLOADS: Array<[string, () => Promise<Buffer>]> = [
  ['junk model.onnx', () => tarGz({ 'model.onnx': 'junk', 'metadata.json': JSON.stringify({ features: ['a', 'b'] }) })],
  ['not an archive', async () => randomBytes(2048)],
  ['width mismatch', () => tarGz({ ...versionedModel(1), 'metadata.json': JSON.stringify({ features: ['a'] }) })],
  ['infinite warm-up', () => tarGz({ 'model.onnx': linearOnnxModel({ weights: [[1], [1]], bias: [Infinity] }) })],
  ['path traversal', () => tarGz({ '../escape/model.onnx': versionedModel(1)['model.onnx'] ?? '' })],
  ['empty archive', () => tarGz({})],
];

// ---------------------------------------------------------------------------------------------
// HTTP

interface Spec {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  ms: number;
}

/** The server's port, once it is started. */
let port = 0;

/** A request to the server; the answer's body as text, which is all the checks below read. */
async function send(agent: http.Agent, spec: Spec, timeoutMs = 30_000): Promise<Answer> {
  const answer = await loopbackRequest({ ...spec, port, agent, timeoutMs });
  return { ...answer, body: answer.body.toString('utf8') };
}

const json = (value: unknown) => JSON.stringify(value);
const jsonPost = (url: string, body: unknown, headers: Record<string, string> = {}): Spec => ({
  method: 'POST',
  path: url,
  headers: { 'content-type': 'application/json', ...headers },
  body: typeof body === 'string' ? body : json(body),
});

function errorCode(answer: Answer): string | undefined {
  try {
    const body = JSON.parse(answer.body) as { error?: { code?: unknown }; msg?: unknown };
    // Kepler's routes refuse in Kepler's shape, {"powers": {}, "msg": "…"}.
    if (typeof body.msg === 'string' && body.msg !== '') return '(kepler msg)';
    const code = body.error?.code;
    return typeof code === 'string' ? code : undefined;
  } catch {
    return undefined;
  }
}

function retryHint(answer: Answer): boolean {
  if (answer.headers['retry-after'] !== undefined) return true;
  try {
    return (
      typeof (JSON.parse(answer.body) as { error?: { retryAfterSeconds?: unknown } }).error?.retryAfterSeconds ===
      'number'
    );
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Checks of good answers

/** Versions of soak-vm made from versionedModel: the only ones whose answers may appear. */
const goodVersions = new Set<number>([1, 2]);
const versionsSeen = new Map<number, number>();

type Format = 'json' | 'csv' | 'jsonl';

/** Reads the per-row predictions of an answer in any of the three formats (one output per row). */
function rowValues(answer: Answer, format: Format): { values: unknown[]; version?: unknown } {
  if (format === 'json') {
    const body = JSON.parse(answer.body) as { version?: unknown; predictions?: unknown };
    return { values: Array.isArray(body.predictions) ? body.predictions : [], version: body.version };
  }
  const lines = answer.body.split('\n').filter((line) => line.trim() !== '');
  if (format === 'csv') return { values: lines.map((line) => Number(line.trim())) };
  return { values: lines.map((line) => (JSON.parse(line) as unknown[])[0]) };
}

const CONTENT_TYPES: Record<Format, string> = {
  json: 'application/json',
  csv: 'text/csv',
  jsonl: 'application/jsonlines',
};

/**
 * A problem with a soak-vm answer, or undefined: the answer is in the format asked, names (or,
 * in CSV and JSON Lines, implies through the first row) a version made by versionedModel, and
 * holds exactly that version's predictions for every row.
 */
function vmCheck(format: Format, rows: readonly (readonly number[])[], pinned?: number) {
  return (answer: Answer): string | undefined => {
    if (!String(answer.headers['content-type'] ?? '').startsWith(CONTENT_TYPES[format])) {
      return `content-type ${answer.headers['content-type']}, asked for ${CONTENT_TYPES[format]}`;
    }
    const { values, version: named } = rowValues(answer, format);
    const version = format === 'json' ? named : values[0];
    if (typeof version !== 'number' || !goodVersions.has(version)) return `version ${String(version)} never existed`;
    if (pinned !== undefined && version !== pinned) return `asked for version ${pinned}, got ${version}`;
    if (json(values) !== json(predictionsOf(version, rows))) return `not version ${version}'s predictions`;
    versionsSeen.set(version, (versionsSeen.get(version) ?? 0) + 1);
    return undefined;
  };
}

const NUMBER = /-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/g;

/** Same text, numbers equal to 1e-6 relative: a shipped model's answer must not change. */
function sameAnswer(expected: string, actual: string): boolean {
  if (expected.replace(NUMBER, '#') !== actual.replace(NUMBER, '#')) return false;
  const a = expected.match(NUMBER) ?? [];
  const b = actual.match(NUMBER) ?? [];
  return a.every((x, i) => {
    const [p, q] = [Number(x), Number(b[i])];
    return Math.abs(p - q) <= 1e-6 * Math.max(Math.abs(p), 1e-9);
  });
}

let startModels: string[] = [];

function listsStartModels(answer: Answer): string | undefined {
  const names = new Set((JSON.parse(answer.body) as { models: Array<{ name: string }> }).models.map((m) => m.name));
  const missing = startModels.filter((name) => !names.has(name));
  return missing.length === 0 ? undefined : `GET /models lost ${missing.join(', ')}`;
}

// ---------------------------------------------------------------------------------------------
// Traffic

interface Template {
  name: string;
  /** Groups the request count. */
  route: string;
  good: boolean;
  weight: number;
  spec: Spec;
  /** Good: a problem with a 2xx answer. */
  check?: (answer: Answer) => string | undefined;
  /** Good: the answer must equal the first one (shipped models do not change). */
  baseline?: boolean;
  /** Bad: the statuses it should get; another 4xx is reported, a 2xx or 5xx fails the soak. */
  expect?: number[];
}

interface Tokens {
  write: string;
  read: string;
  expired: string;
  wrongSecret: string;
  none: string;
}

function templates(t: Tokens): Template[] {
  const vm = `/predict/${VM}`;
  const inv = (type: string, body: string, headers: Record<string, string> = {}): Spec => ({
    method: 'POST',
    path: '/invocations',
    headers: { 'content-type': type, 'x-amzn-sagemaker-target-model': VM, ...headers },
    body,
  });
  const csv = (rows: readonly (readonly number[])[]) => `${rows.map((row) => row.join(',')).join('\n')}\n`;
  const jsonl = (rows: readonly (readonly number[])[]) => `${rows.map((row) => json(row)).join('\n')}\n`;
  const good = (name: string, route: string, weight: number, spec: Spec, extra: Partial<Template> = {}): Template => ({
    name,
    route,
    good: true,
    weight,
    spec,
    ...extra,
  });
  const bad = (name: string, route: string, weight: number, spec: Spec, expect: number[]): Template => ({
    name,
    route,
    good: false,
    weight,
    spec,
    expect,
  });
  const admin = (token: string) => ({ authorization: `Bearer ${token}` });
  const keplerBody = {
    metrics: ['bpf_cpu_time_ms', 'bpf_page_cache_hit'],
    values: [
      [50000, 12],
      [0, 0],
      [1234, 5],
    ],
    output_type: 'AbsPower',
    source: 'intel_rapl',
    system_features: null,
    system_values: null,
    trainer_name: '',
    filter: '',
  };
  const modelServerBody = {
    metrics: ['bpf_cpu_time_ms', 'bpf_page_cache_hit'],
    output_type: 'AbsPower',
    source: 'intel_rapl',
    node_type: 0,
    weight: true,
    trainer_name: '',
    filter: '',
  };
  const deep = `{"instances": ${'['.repeat(64)}1${']'.repeat(64)}}`;
  const oversized = json({ model: VM, instances: Array.from({ length: 20_000 }, () => [123456.789, 987654.321]) });

  return [
    // Good: soak-vm, checked against the version each answer names.
    good('predict vm', 'POST /predict', 6, jsonPost(vm, { instances: ROWS }), { check: vmCheck('json', ROWS) }),
    good('predict vm (model in body)', 'POST /predict', 2, jsonPost('/predict', { model: VM, instances: ROWS }), {
      check: vmCheck('json', ROWS),
    }),
    good('predict vm version 1', 'POST /predict', 1, jsonPost('/predict', { model: VM, version: 1, instances: ROWS }), {
      check: vmCheck('json', ROWS, 1),
    }),
    good(
      'predict vm by feature names',
      'POST /predict',
      1,
      jsonPost(vm, { features: ['b', 'a'], instances: ROWS.map(([a, b]) => [b, a]) }),
      { check: vmCheck('json', ROWS) },
    ),
    good('predict vm bare array', 'POST /predict', 1, jsonPost(vm, ROWS), { check: vmCheck('json', ROWS) }),
    good('predict vm 400 rows', 'POST /predict', 1, jsonPost(vm, { instances: MANY_ROWS }), {
      check: vmCheck('json', MANY_ROWS),
    }),
    good('invocations vm csv', 'POST /invocations', 2, inv('text/csv', csv(ROWS), { accept: 'text/csv' }), {
      check: vmCheck('csv', ROWS),
    }),
    good(
      'invocations vm json',
      'POST /invocations',
      2,
      inv('application/json', json({ instances: ROWS }), {
        accept: 'application/json',
        'x-amzn-sagemaker-custom-attributes': 'soak=1',
      }),
      {
        check: (answer) =>
          answer.headers['x-amzn-sagemaker-custom-attributes'] === 'soak=1'
            ? vmCheck('json', ROWS)(answer)
            : 'custom attributes not echoed',
      },
    ),
    good(
      'invocations vm jsonlines',
      'POST /invocations',
      2,
      inv('application/jsonlines', jsonl(ROWS), { accept: 'application/jsonlines' }),
      { check: vmCheck('jsonl', ROWS) },
    ),
    good('invocations vm accept */*', 'POST /invocations', 1, inv('text/csv', csv(ROWS), { accept: '*/*' }), {
      check: vmCheck('json', ROWS),
    }),
    good('invocations vm no accept', 'POST /invocations', 1, inv('text/csv', csv(ROWS)), {
      check: vmCheck('json', ROWS),
    }),
    good(
      'invocations vm accept q-values',
      'POST /invocations',
      1,
      inv('text/csv', csv(ROWS), { accept: 'text/csv;q=0.5, application/jsonlines;q=0.9, image/png' }),
      { check: vmCheck('jsonl', ROWS) },
    ),
    good(
      'invocations vm csv header',
      'POST /invocations',
      1,
      inv('text/csv; header=present', `b,a\n${csv(ROWS.map(([a, b]) => [b ?? 0, a ?? 0]))}`, { accept: 'text/csv' }),
      { check: vmCheck('csv', ROWS) },
    ),
    // Good: the shipped models, whose answers must not change.
    good('predict linear', 'POST /predict', 3, jsonPost(`/predict/${LINEAR}`, { instances: PODS }), { baseline: true }),
    good('predict mlp', 'POST /predict', 2, jsonPost(`/predict/${MLP}`, { instances: PODS }), { baseline: true }),
    good('predict linear 402 rows', 'POST /predict', 1, jsonPost(`/predict/${LINEAR}`, { instances: MANY_PODS }), {
      baseline: true,
    }),
    good(
      'predict kepler',
      'POST /predict',
      1,
      jsonPost(`/predict/${KEPLER}`, {
        instances: [
          [50000, 12],
          [0, 0],
        ],
      }),
      { baseline: true },
    ),
    good(
      'invocations linear csv',
      'POST /invocations',
      1,
      {
        method: 'POST',
        path: '/invocations',
        headers: { 'content-type': 'text/csv', accept: 'text/csv', 'x-amzn-sagemaker-target-model': LINEAR },
        body: csv(PODS),
      },
      { baseline: true },
    ),
    good(
      'invocations mlp jsonlines',
      'POST /invocations',
      1,
      {
        method: 'POST',
        path: '/invocations',
        headers: { 'content-type': 'application/jsonlines', 'x-amzn-sagemaker-target-model': MLP },
        body: jsonl(PODS),
      },
      { baseline: true },
    ),
    good('kepler estimate', 'POST /kepler/estimate', 2, jsonPost('/kepler/estimate', keplerBody), { baseline: true }),
    good('kepler model server', 'POST /model', 1, jsonPost('/model', modelServerBody), { baseline: true }),
    // Good: health, listings, admin reads, metrics.
    good('ping', 'GET /ping', 2, { method: 'GET', path: '/ping' }),
    good('live', 'GET /live', 1, { method: 'GET', path: '/live' }),
    good('models', 'GET /models', 1, { method: 'GET', path: '/models' }, { check: listsStartModels }),
    good('model linear', 'GET /models', 1, { method: 'GET', path: `/models/${LINEAR}` }, { baseline: true }),
    good('admin list', 'admin', 1, { method: 'GET', path: '/admin/models', headers: admin(t.read) }),
    good('metrics', 'GET /metrics', 0.2, { method: 'GET', path: '/metrics' }),

    // Bad: each must be refused with a 4xx.
    bad('malformed json', 'POST /predict', 2, jsonPost(vm, '{"instances": [[1, 2]'), [400]),
    bad('wrong type', 'POST /predict', 1, jsonPost(vm, { instances: 'many' }), [400]),
    bad('unknown field', 'POST /predict', 1, jsonPost(vm, { instances: ROWS, colour: 'red' }), [400]),
    bad('ragged rows', 'POST /predict', 2, jsonPost(vm, { instances: [[1, 2], [3]] }), [400]),
    bad('string cell', 'POST /predict', 1, jsonPost(vm, { instances: [[1, 'two']] }), [400]),
    bad('infinite cell', 'POST /predict', 1, jsonPost(vm, '{"instances": [[1e400, 1]]}'), [400]),
    bad('float32 overflow', 'POST /predict', 1, jsonPost(vm, { instances: [[1e39, 1]] }), [400]),
    bad('NaN in csv', 'POST /invocations', 1, inv('text/csv', 'NaN,1\n'), [400]),
    bad('unknown feature', 'POST /predict', 1, jsonPost(vm, { features: ['a', 'zz'], instances: [[1, 2]] }), [400]),
    bad('repeated feature', 'POST /predict', 1, jsonPost(vm, { features: ['a', 'a'], instances: [[1, 2]] }), [400]),
    bad('wrong width', 'POST /predict', 1, jsonPost(vm, { instances: [[1, 2, 3]] }), [400]),
    bad('no rows', 'POST /predict', 1, jsonPost(vm, { instances: [] }), [400]),
    bad('prototype key', 'POST /predict', 1, jsonPost(vm, '{"__proto__": {"x": 1}, "instances": [[1, 2]]}'), [400]),
    bad(
      'too many rows',
      'POST /predict',
      1,
      jsonPost(vm, { instances: Array.from({ length: MAX_ROWS + 1 }, () => [1, 2]) }),
      [413],
    ),
    bad('too many columns', 'POST /predict', 1, jsonPost(vm, { instances: [Array(1200).fill(1)] }), [413, 400]),
    bad('too deep', 'POST /predict', 1, jsonPost(vm, deep), [400]),
    bad('body too large', 'POST /predict', 1, jsonPost('/predict', oversized), [413]),
    bad('unknown model', 'POST /predict', 1, jsonPost('/predict/no-such-model', { instances: ROWS }), [404]),
    bad('unknown version', 'POST /predict', 1, jsonPost(vm, { version: 999999, instances: ROWS }), [404]),
    bad('no model named', 'POST /predict', 1, jsonPost('/predict', { instances: ROWS }), [400]),
    bad(
      'wrong content type',
      'POST /predict',
      1,
      { method: 'POST', path: vm, headers: { 'content-type': 'text/plain' }, body: json({ instances: ROWS }) },
      [415],
    ),
    bad('no content type', 'POST /invocations', 1, { method: 'POST', path: '/invocations', body: csv(ROWS) }, [415]),
    bad('xml', 'POST /invocations', 1, inv('application/xml', '<rows/>'), [415]),
    bad('bad accept', 'POST /invocations', 1, inv('text/csv', csv(ROWS), { accept: 'image/png' }), [406]),
    bad('ragged csv', 'POST /invocations', 1, inv('text/csv', '1,2\n3\n'), [400]),
    bad('ragged jsonlines', 'POST /invocations', 1, inv('application/jsonlines', '[1,2]\n[3]\n'), [400]),
    bad('unknown csv header', 'POST /invocations', 1, inv('text/csv; header=present', 'a,zz\n1,2\n'), [400]),
    bad(
      'other model in body',
      'POST /invocations',
      1,
      inv('application/json', json({ model: LINEAR, instances: ROWS })),
      [400],
    ),
    bad('kepler malformed', 'POST /kepler/estimate', 1, jsonPost('/kepler/estimate', { metrics: 5 }), [400]),
    bad(
      'kepler no match',
      'POST /kepler/estimate',
      1,
      jsonPost('/kepler/estimate', { ...keplerBody, source: 'acpi' }),
      [400],
    ),
    bad('model server no match', 'POST /model', 1, jsonPost('/model', { ...modelServerBody, source: 'acpi' }), [400]),
    bad('no such route', 'other', 1, { method: 'GET', path: '/no/such/route' }, [404]),
    bad('undecodable url', 'POST /predict', 1, jsonPost('/predict/%E0%A4%A', { instances: ROWS }), [400, 404]),
    bad(
      'headers too large',
      'GET /ping',
      0.5,
      { method: 'GET', path: '/ping', headers: { 'x-padding': 'p'.repeat(20 * 1024) } },
      [431],
    ),
    bad('admin no token', 'admin', 1, { method: 'GET', path: '/admin/models' }, [401]),
    bad('admin junk token', 'admin', 1, { method: 'GET', path: '/admin/models', headers: admin('junk') }, [401]),
    bad(
      'admin wrong secret',
      'admin',
      1,
      { method: 'GET', path: '/admin/models', headers: admin(t.wrongSecret) },
      [401],
    ),
    bad('admin expired', 'admin', 1, { method: 'GET', path: '/admin/models', headers: admin(t.expired) }, [401]),
    bad('admin alg none', 'admin', 1, { method: 'GET', path: '/admin/models', headers: admin(t.none) }, [401]),
    bad(
      'admin read-only write',
      'admin',
      1,
      { method: 'POST', path: `/admin/models/${VM}/reload`, headers: admin(t.read) },
      [403],
    ),
    // Always version 999999: a junk upload that left anything behind would turn the next into a 409.
    bad(
      'admin junk upload',
      'admin',
      1,
      {
        method: 'PUT',
        path: `/admin/models/${VM}/versions/999999`,
        headers: { ...admin(t.write), 'content-type': 'application/gzip' },
        body: randomBytes(4096),
      },
      [422],
    ),
    bad(
      'admin junk zip',
      'admin',
      0.5,
      {
        method: 'PUT',
        path: `/admin/models/${VM}/versions/999999`,
        headers: { ...admin(t.write), 'content-type': 'application/zip' },
        body: Buffer.concat([Buffer.from('PK\x03\x04'), randomBytes(1024)]),
      },
      [422],
    ),
    bad(
      'admin promote unknown',
      'admin',
      0.5,
      jsonPost(`/admin/models/${VM}/promote`, { version: 999998 }, admin(t.write)),
      [404],
    ),
    bad(
      'admin promote bad body',
      'admin',
      0.5,
      jsonPost(`/admin/models/${VM}/promote`, { version: 'x' }, admin(t.write)),
      [400],
    ),
  ];
}

// ---------------------------------------------------------------------------------------------
// Tallies

const stats = {
  requests: 0,
  byRoute: new Map<string, number>(),
  byCode: new Map<string, number>(),
  classes: { '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0, transport: 0 },
  good: { sent: 0, ok: 0, wrong: 0, notOk: 0, shed: 0, transport: 0 },
  bad: { sent: 0, refused: 0, otherCode: 0, accepted: 0, serverError: 0, transport: 0 },
  latency: { predict: [] as number[], ping: [] as number[] },
  /** 429s and 503 overloaded: the server shedding load, as designed, with a retry hint. */
  shed: 0,
  shedWithoutHint: 0,
  /** Every 5xx but shed 503s, the swapper's included. */
  fiveXX: 0,
  failures: [] as string[],
  notes: [] as string[],
};

const bump = (map: Map<string, number>, key: string, by = 1) => map.set(key, (map.get(key) ?? 0) + by);

function fail(reason: string): void {
  if (stats.failures.length < 1000) stats.failures.push(reason);
}

function note(reason: string): void {
  if (stats.notes.length < 1000) stats.notes.push(reason);
}

const snippet = (text: string) => (text.length > 200 ? `${text.slice(0, 200)}…` : text).replace(/\s+/g, ' ');

const baselines = new Map<string, string>();

function record(template: Template, result: Answer | Error): void {
  stats.requests++;
  bump(stats.byRoute, template.route);
  const tally = template.good ? stats.good : stats.bad;
  tally.sent++;
  if (result instanceof Error) {
    stats.classes.transport++;
    if (template.good) {
      stats.good.transport++;
      fail(`${template.name}: no answer (${result.message})`);
    } else {
      // The server may close the connection on a request it refuses mid-body (oversized body or headers).
      stats.bad.transport++;
    }
    return;
  }
  const { status } = result;
  const code = errorCode(result);
  const cls = `${Math.floor(status / 100)}xx` as keyof typeof stats.classes;
  if (cls in stats.classes) stats.classes[cls]++;
  if (status >= 300) bump(stats.byCode, `${status} ${code ?? '(no code)'}`);
  if (template.good && template.route === 'POST /predict') stats.latency.predict.push(result.ms);
  if (template.good && template.route === 'GET /ping') stats.latency.ping.push(result.ms);
  // Readiness is never shed: a /ping that is not 200 fails below.
  const shed = (status === 429 || (status === 503 && code === 'overloaded')) && template.route !== 'GET /ping';
  if (shed) {
    stats.shed++;
    if (template.good) stats.good.shed++;
    if (!retryHint(result)) {
      stats.shedWithoutHint++;
      fail(`${template.name}: ${status} ${code} without a retry hint`);
    }
    return;
  }
  if (status >= 500) stats.fiveXX++;
  if (template.good) {
    if (status < 200 || status >= 300) {
      stats.good.notOk++;
      fail(`${template.name}: ${status} ${code ?? ''} ${snippet(result.body)}`);
      return;
    }
    let problem: string | undefined;
    try {
      problem = template.check?.(result);
      if (problem === undefined && template.baseline) {
        const expected = baselines.get(template.name);
        if (expected !== undefined && !sameAnswer(expected, result.body)) problem = 'answer changed from the first one';
      }
    } catch (error) {
      problem = `unreadable answer (${(error as Error).message})`;
    }
    if (problem === undefined) {
      stats.good.ok++;
    } else {
      stats.good.wrong++;
      fail(`wrong answer: ${template.name}: ${problem}: ${snippet(result.body)}`);
    }
    return;
  }
  if (status >= 500) {
    stats.bad.serverError++;
    fail(`${template.name}: ${status} ${code ?? ''} ${snippet(result.body)}`);
  } else if (status < 400) {
    stats.bad.accepted++;
    fail(`${template.name}: accepted with ${status}: ${snippet(result.body)}`);
  } else if (template.expect?.includes(status)) {
    stats.bad.refused++;
  } else {
    stats.bad.otherCode++;
    note(`${template.name}: ${status} ${code ?? ''}, expected ${template.expect?.join(' or ')}`);
  }
}

// ---------------------------------------------------------------------------------------------
// The swapper

const swaps = new Map<string, number>();
let swapCycles = 0;

interface Swapper {
  repository: string;
  staging: string;
  agent: http.Agent;
  writeToken: string;
  running: () => boolean;
}

async function swapper(s: Swapper): Promise<void> {
  const auth = { authorization: `Bearer ${s.writeToken}` };
  const pause = () => new Promise((resolve) => setTimeout(resolve, SWAP_PAUSE_MS));
  const act = async (action: string, spec: Spec, expected: number[]): Promise<Answer | undefined> => {
    let answer: Answer;
    try {
      answer = await send(s.agent, { ...spec, headers: { ...auth, ...spec.headers } }, 60_000);
    } catch (error) {
      fail(`swapper ${action}: no answer (${(error as Error).message})`);
      return undefined;
    }
    if (answer.status >= 300) bump(stats.byCode, `${answer.status} ${errorCode(answer) ?? '(no code)'}`);
    if (answer.status >= 500) stats.fiveXX++;
    if (expected.includes(answer.status)) {
      bump(swaps, action);
    } else {
      fail(`swapper ${action}: ${answer.status}, expected ${expected.join(' or ')}: ${snippet(answer.body)}`);
    }
    await pause();
    return answer;
  };
  const upload = (version: number, body: Buffer, promote = true): Spec => ({
    method: 'PUT',
    path: `/admin/models/${VM}/versions/${version}${promote ? '?promote=true' : ''}`,
    headers: { 'content-type': 'application/gzip' },
    body,
  });
  const folder = (version: number) => path.join(s.repository, VM, String(version));
  /** Writes a version beside the repository, then renames it in, as an operator (or a Job) would. */
  const publish = async (version: number, files: Record<string, Uint8Array | string>) => {
    const staged = path.join(s.staging, `${version}-${randomBytes(4).toString('hex')}`);
    await mkdir(staged, { recursive: true });
    for (const [file, content] of Object.entries(files)) await writeFile(path.join(staged, file), content);
    await rename(staged, folder(version));
  };
  /** Waits for a poll to pick a version up (state available or failed); false after 10 s. */
  const pickedUp = async (version: number, state: string): Promise<boolean> => {
    const until = Date.now() + 10_000;
    while (Date.now() < until) {
      const answer = await send(s.agent, { method: 'GET', path: `/admin/models/${VM}`, headers: auth }).catch(
        () => undefined,
      );
      if (answer?.status === 200) {
        const status = JSON.parse(answer.body) as { versions: Array<{ version: number; state: string }> };
        if (status.versions.some((v) => v.version === version && v.state === state)) return true;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return false;
  };

  let next = 3;
  /** Versions the swapper made that are loaded, oldest first (1 and 2 stay loaded throughout). */
  const loaded: number[] = [];
  /** Folders to delete at the next clean-up: versions unloaded, versions that failed. */
  const retired: number[] = [];
  while (s.running()) {
    swapCycles++;
    const cycle = swapCycles;
    const version = next++;
    goodVersions.add(version);
    await act('upload and promote', upload(version, await tarGz(versionedModel(version))), [201]);
    loaded.push(version);
    const [kind, corrupt] = CORRUPT_UPLOADS[cycle % CORRUPT_UPLOADS.length] as (typeof CORRUPT_UPLOADS)[number];
    // The next good upload takes this number: a refused upload must leave nothing behind.
    await act(`corrupt upload refused (${kind})`, upload(next, await corrupt()), [422]);
    if (!s.running()) break;
    await act('rollback', jsonPost(`/admin/models/${VM}/promote`, { version: 1 }), [200]);
    await act('promote', jsonPost(`/admin/models/${VM}/promote`, { version }), [200]);
    await act('label', { ...jsonPost(`/admin/models/${VM}/labels/canary`, { version }), method: 'PUT' }, [200]);
    // Unload the older ones, not serving: after the requests holding them finish.
    for (const old of loaded.splice(0, loaded.length - 1)) {
      await act('unload', { method: 'DELETE', path: `/admin/models/${VM}/versions/${old}` }, [200]);
      retired.push(old);
    }
    if (!s.running()) break;
    if (cycle % 3 === 0) {
      // The serving version, forced: the highest other available version takes over.
      await act(
        'forced unload',
        { method: 'DELETE', path: `/admin/models/${VM}/versions/${version}?force=true` },
        [200],
      );
      loaded.splice(loaded.indexOf(version), 1);
      retired.push(version);
    }
    if (cycle % 4 === 2) {
      const published = next++;
      goodVersions.add(published);
      await publish(published, versionedModel(published));
      if (await pickedUp(published, 'available')) bump(swaps, 'published on disk, picked up by a poll');
      else fail(`swapper: version ${published} written into the repository was not loaded within 10 s`);
      loaded.push(published);
    }
    if (cycle % 5 === 3) {
      const junk = next++;
      await publish(junk, { 'model.onnx': 'junk' });
      if (await pickedUp(junk, 'failed')) bump(swaps, 'broken version on disk, failed by a poll');
      else fail(`swapper: broken version ${junk} written into the repository was not marked failed within 10 s`);
      retired.push(junk);
    }
    if (cycle % 5 === 4) {
      // Clean up as an operator would: delete the folders of unloaded and broken versions; polls drop them.
      for (const gone of retired.splice(0)) {
        await rm(folder(gone), { recursive: true, force: true });
        bump(swaps, 'folder deleted');
      }
    }
    await act('reload', { method: 'POST', path: `/admin/models/${VM}/reload` }, [200]);
  }
}

// ---------------------------------------------------------------------------------------------
// The server

function rssBytes(pid: number | undefined): Promise<number | undefined> {
  if (pid === undefined) return Promise.resolve(undefined);
  return readFile(`/proc/${pid}/status`, 'utf8')
    .then((status) => {
      const kib = /VmRSS:\s+(\d+)/.exec(status)?.[1];
      return kib === undefined ? undefined : Number(kib) * 1024;
    })
    .catch(() => undefined);
}

interface LogSummary {
  errors: Map<string, number>;
  warnings: Map<string, number>;
  /** The slowest requests the server logged as slow: method, URL, status, ms. */
  slow: string[];
  other: number;
}

async function readLog(file: string): Promise<LogSummary> {
  const summary: LogSummary = { errors: new Map(), warnings: new Map(), slow: [], other: 0 };
  const slow: Array<[number, string]> = [];
  const text = await readFile(file, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const entry = JSON.parse(line) as Record<string, unknown>;
      const level = typeof entry.level === 'number' ? entry.level : 0;
      const msg = typeof entry.msg === 'string' ? entry.msg : '(no msg)';
      if (level >= 50) bump(summary.errors, msg);
      else if (level >= 40) bump(summary.warnings, msg);
      if (msg === 'slow request' && typeof entry.ms === 'number') {
        slow.push([entry.ms, `${entry.method} ${entry.url} ${entry.statusCode} in ${Math.round(entry.ms)} ms`]);
      }
    } catch {
      summary.other++;
    }
  }
  summary.slow = slow
    .sort((a, b) => b[0] - a[0])
    .slice(0, 5)
    .map(([, what]) => what);
  return summary;
}

// ---------------------------------------------------------------------------------------------
// Summary

function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

function latency(values: number[]) {
  const round = (v: number) => Math.round(v * 100) / 100;
  return {
    count: values.length,
    p50: round(percentile(values, 50)),
    p99: round(percentile(values, 99)),
    max: round(values.length === 0 ? Number.NaN : Math.max(...values)),
  };
}

const mib = (bytes: number | undefined) => (bytes === undefined ? '?' : `${(bytes / 1024 / 1024).toFixed(0)} MiB`);
const listed = (map: Map<string, number>) =>
  [...map.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([key, count]) => `${key} ×${count}`)
    .join(', ') || 'none';

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<number> {
  const base = await mkdtemp(path.join(tmpdir(), 'wattserve-soak-'));
  const repository = path.join(base, 'models');
  const staging = path.join(base, 'staging');
  const logFile = path.join(base, 'server.log');
  for (const model of [LINEAR, MLP, KEPLER]) {
    await cp(path.join(SHIPPED_MODELS, model, '1'), path.join(repository, model, '1'), { recursive: true });
  }
  for (const version of [1, 2]) {
    await mkdir(path.join(repository, VM, String(version)), { recursive: true });
    for (const [file, content] of Object.entries(versionedModel(version))) {
      await writeFile(path.join(repository, VM, String(version), file), content);
    }
  }
  await mkdir(staging);

  const secret = randomBytes(32).toString('hex');
  const env: Record<string, string> = {
    MODEL_REPOSITORY: repository,
    LOG_LEVEL: 'warn',
    ADMIN_JWT_SECRET: secret,
    MODEL_POLL_INTERVAL_MS: String(POLL_MS),
    MAX_BODY_BYTES: String(MAX_BODY_BYTES),
    MAX_ROWS: String(MAX_ROWS),
    DRAIN_TIMEOUT_MS: '5000',
    // Large requests (the 400-row ones) go to the worker threads, where the server has them.
    WORKER_ROWS_THRESHOLD: '200',
    // Passed through, to soak the server without its worker threads (WORKER_THREADS=0) too.
    ...(process.env.WORKER_THREADS !== undefined && { WORKER_THREADS: process.env.WORKER_THREADS }),
  };
  const log = openSync(logFile, 'a');
  // The child has its own copy of the log's descriptor: ours closes once it is started.
  const server = await ServerChild.spawn({ env, output: log }).finally(() => closeSync(log));
  port = server.port;
  const pid = server.child.pid;

  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY, maxFreeSockets: CONCURRENCY });
  const pingAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const adminAgent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  /** Exit 2 when the soak cannot run; 1 when the server answered wrong before it began (a 5xx, say). */
  const setupFailed = async (why: string, exitCode = 2) => {
    server.kill();
    const tail = (await readFile(logFile, 'utf8').catch(() => '')).split('\n').slice(-20).join('\n');
    process.stderr.write(`soak: ${why}\n${tail}\nthe server's log and repository: ${base}\n`);
    process.stdout.write(`FAIL: ${why}\n${json({ ok: false, reasons: [why] })}\n`);
    return exitCode;
  };

  // Up when /ping answers 200.
  const notReady = await server.untilReady({ timeoutMs: 90_000, pingTimeoutMs: 5000, agent: pingAgent }).then(
    () => undefined,
    (error: Error) => error.message,
  );
  if (notReady !== undefined) return setupFailed(notReady);
  const startupSeconds = (performance.now() - server.startedAt) / 1000;

  const sign = createSigner({ key: secret, algorithm: 'HS256', expiresIn: 3_600_000 });
  const tokens: Tokens = {
    write: sign({ sub: 'soak', scope: 'models:read models:write' }),
    read: sign({ sub: 'soak', scope: 'models:read' }),
    expired: createSigner({ key: secret, algorithm: 'HS256' })({
      sub: 'soak',
      scope: 'models:read',
      exp: Math.floor(Date.now() / 1000) - 60,
    }),
    wrongSecret: createSigner({ key: randomBytes(32).toString('hex'), algorithm: 'HS256', expiresIn: 3_600_000 })({
      sub: 'soak',
      scope: 'models:read',
    }),
    none: `${Buffer.from(json({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${Buffer.from(
      json({ sub: 'soak', scope: 'models:read', exp: Math.floor(Date.now() / 1000) + 3600 }),
    ).toString('base64url')}.`,
  };
  const all = templates(tokens);

  // What serves at the start, and each shipped model's first answers (later ones must equal them).
  const listing = await send(agent, { method: 'GET', path: '/models' });
  const models = (JSON.parse(listing.body) as { models: Array<{ name: string; features: string[] }> }).models;
  startModels = models.map((m) => m.name);
  const zeroRow = (name: string): Spec => {
    const width = models.find((m) => m.name === name)?.features.length ?? 1;
    return jsonPost(`/predict/${name}`, { instances: [Array(width).fill(0)] });
  };
  const firstAnswers = new Map<string, string>();
  for (const name of startModels.filter((n) => n !== VM)) {
    const answer = await send(agent, zeroRow(name));
    if (answer.status !== 200)
      return setupFailed(`${name} did not answer at the start: ${answer.status} ${snippet(answer.body)}`, 1);
    firstAnswers.set(name, answer.body);
  }
  for (const template of all.filter((t) => t.baseline)) {
    const answer = await send(agent, template.spec);
    if (answer.status !== 200) {
      return setupFailed(`${template.name} did not answer at the start: ${answer.status} ${snippet(answer.body)}`, 1);
    }
    baselines.set(template.name, answer.body);
  }
  const rssStart = await rssBytes(pid);
  const rssSamples: number[] = [];

  // Drive.
  const begin = performance.now();
  const deadline = Date.now() + SECONDS * 1000;
  let issued = 0;
  const running = () => Date.now() < deadline && issued < MAX_REQUESTS && server.exit === undefined;
  const goodOnes = all.filter((t) => t.good && t.weight > 0);
  const badOnes = all.filter((t) => !t.good && t.weight > 0);
  const picker = (pool: Template[]) => {
    const total = pool.reduce((sum, t) => sum + t.weight, 0);
    return (r: number) => {
      let left = r * total;
      for (const t of pool) {
        left -= t.weight;
        if (left < 0) return t;
      }
      return pool[pool.length - 1] as Template;
    };
  };
  const pickGood = picker(goodOnes);
  const pickBad = picker(badOnes);
  const worker = async (index: number) => {
    const random = seededRandom(SEED * 1000 + index);
    while (running()) {
      issued++;
      const template = badOnes.length > 0 && random() < BAD_SHARE ? pickBad(random()) : pickGood(random());
      record(template, await send(agent, template.spec).catch((error: Error) => error));
    }
  };
  // Like a load balancer's health check, but every 50 ms: readiness must hold through every swap.
  const ping = all.find((t) => t.name === 'ping') as Template;
  // The server's memory every 5 s: a leak shows as a steady climb, a cache as a plateau.
  const sampler = async () => {
    for (let next = Date.now() + 5000; running(); next += 5000) {
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, Math.min(next, deadline) - Date.now())));
      const rss = await rssBytes(pid);
      if (rss !== undefined && running()) rssSamples.push(rss);
    }
  };
  const pinger = async () => {
    while (running()) {
      record(ping, await send(pingAgent, ping.spec).catch((error: Error) => error));
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  // Stops everything if the soak overruns badly (a request that never ends, say).
  const watchdog = setTimeout(
    () => {
      process.stderr.write('soak: still running 120 s past SOAK_SECONDS; giving up\n');
      server.kill();
      process.exit(1);
    },
    (SECONDS + 120) * 1000,
  );
  watchdog.unref();
  await Promise.all([
    ...Array.from({ length: CONCURRENCY }, (_, index) => worker(index)),
    pinger(),
    sampler(),
    swapper({ repository, staging, agent: adminAgent, writeToken: tokens.write, running }),
  ]);
  const elapsed = (performance.now() - begin) / 1000;

  // Models lost: every model that served at the start must still be listed and answer, and the server run.
  const lost: string[] = [];
  const rssEnd = await rssBytes(pid);
  let finalPing: number | undefined;
  let serverSwaps: number | undefined;
  if (server.exit === undefined) {
    finalPing = (await send(pingAgent, ping.spec).catch(() => undefined))?.status;
    const end = await send(agent, { method: 'GET', path: '/models' }).catch(() => undefined);
    const names = new Set(
      end?.status === 200
        ? (JSON.parse(end.body) as { models: Array<{ name: string }> }).models.map((m) => m.name)
        : [],
    );
    for (const name of startModels) {
      let problem: string | undefined;
      if (!names.has(name)) problem = 'not listed by GET /models';
      else if (name === VM) {
        const answer = await send(agent, jsonPost(`/predict/${VM}`, { instances: ROWS })).catch(() => undefined);
        problem = answer?.status === 200 ? vmCheck('json', ROWS)(answer) : `answered ${answer?.status ?? 'nothing'}`;
      } else {
        const answer = await send(agent, zeroRow(name)).catch(() => undefined);
        problem =
          answer?.status !== 200
            ? `answered ${answer?.status ?? 'nothing'}`
            : sameAnswer(firstAnswers.get(name) ?? '', answer.body)
              ? undefined
              : 'answers differently than at the start';
      }
      if (problem !== undefined) lost.push(`${name} (${problem})`);
    }
    const metrics = await send(agent, { method: 'GET', path: '/metrics' }).catch(() => undefined);
    const swapsLine = metrics?.body
      .split('\n')
      .find((line) => line.startsWith('wattserve_model_swaps_total') && line.includes(`model="${VM}"`));
    if (swapsLine !== undefined) serverSwaps = Number(swapsLine.split(' ').pop());
  } else {
    lost.push(...startModels.map((name) => `${name} (the server ${server.exit})`));
  }
  const serverAlive = server.exit === undefined;
  server.kill();
  agent.destroy();
  pingAgent.destroy();
  adminAgent.destroy();
  const logSummary = await readLog(logFile);

  // Verdict.
  const reasons: string[] = [];
  const fiveXX = stats.fiveXX;
  if (!serverAlive) reasons.push(`the server ${server.exit}`);
  if (fiveXX > 0) reasons.push(`${fiveXX} answers were 5xx`);
  if (lost.length > 0) reasons.push(`${lost.length} models lost`);
  if (stats.good.wrong > 0) reasons.push(`${stats.good.wrong} wrong answers`);
  if (stats.good.notOk > 0) reasons.push(`${stats.good.notOk} good requests answered non-2xx`);
  if (stats.good.transport > 0) reasons.push(`${stats.good.transport} good requests got no answer`);
  if (stats.bad.accepted > 0) reasons.push(`${stats.bad.accepted} bad requests were accepted`);
  if (stats.good.shed > MAX_SHED_SHARE * Math.max(stats.good.sent, 1)) {
    reasons.push(`${stats.good.shed} good requests shed, over SOAK_MAX_SHED_SHARE=${MAX_SHED_SHARE}`);
  }
  if (stats.shedWithoutHint > 0) reasons.push(`${stats.shedWithoutHint} shed answers without a retry hint`);
  const swapFailures = stats.failures.filter((f) => f.startsWith('swapper')).length;
  if (swapFailures > 0) reasons.push(`${swapFailures} swapper actions went wrong`);
  if (finalPing !== undefined && finalPing !== 200) reasons.push(`/ping answered ${finalPing} at the end`);
  if (stats.requests === 0) reasons.push('no request was served');
  const ok = reasons.length === 0;
  if (ok && !KEEP) await rm(base, { recursive: true, force: true });

  const predict = latency(stats.latency.predict);
  const pingLatency = latency(stats.latency.ping);
  const swapTotal = [...swaps.values()].reduce((a, b) => a + b, 0);
  const codes4xx = new Map([...stats.byCode].filter(([key]) => key.startsWith('4')));
  const codes5xx = new Map([...stats.byCode].filter(([key]) => key.startsWith('5')));
  const out = (line = '') => process.stdout.write(`${line}\n`);
  out(`wattserve soak: ${SECONDS} s, ${CONCURRENCY} connections + a pinger + a swapper, seed ${SEED}`);
  out(
    `server: pid ${pid} on ${LOOPBACK_HOST}:${port}, ready in ${startupSeconds.toFixed(1)} s; ${serverAlive ? 'alive at the end' : server.exit}`,
  );
  out();
  out(
    `requests served: ${stats.requests} in ${elapsed.toFixed(1)} s (${(stats.requests / elapsed).toFixed(0)}/s); ` +
      `good ${stats.good.sent}, bad ${stats.bad.sent}, swapper ${swapTotal}`,
  );
  out('by route:');
  for (const [route, count] of [...stats.byRoute].sort((a, b) => b[1] - a[1])) {
    out(`  ${route.padEnd(22)} ${String(count).padStart(8)}`);
  }
  out('statuses (traffic; the swapper’s refusals counted in the codes):');
  out(`  2xx ${stats.classes['2xx']}`);
  out(`  4xx ${stats.classes['4xx']}: ${listed(codes4xx)}`);
  out(`  5xx ${stats.classes['5xx']}: ${listed(codes5xx)}`);
  out(
    `  shed (429, 503 overloaded, with a retry hint; up to ${MAX_SHED_SHARE * 100}% of good requests allowed): ` +
      `${stats.shed} (${stats.good.shed} good)`,
  );
  out(
    `  no answer: good ${stats.good.transport}, bad ${stats.bad.transport} (connection closed on an oversized request)`,
  );
  out(
    `good requests: ${stats.good.ok} right, ${stats.good.wrong} wrong answers, ${stats.good.notOk} non-2xx; ` +
      `bad requests: ${stats.bad.refused} refused as expected, ${stats.bad.otherCode} with another 4xx, ` +
      `${stats.bad.accepted} accepted, ${stats.bad.serverError} 5xx`,
  );
  out(
    `latency ms: /predict p50 ${predict.p50} p99 ${predict.p99} max ${predict.max} (${predict.count}); ` +
      `/ping p50 ${pingLatency.p50} p99 ${pingLatency.p99} max ${pingLatency.max} (${pingLatency.count})`,
  );
  out(`swaps: ${swapCycles} cycles; ${listed(swaps)}`);
  out(
    `  server counted ${serverSwaps ?? '?'} serving-version changes of ${VM}; ` +
      `${versionsSeen.size} versions seen in answers (of ${goodVersions.size} made)`,
  );
  out(
    `models lost: ${lost.length} (${startModels.length} served at the start${lost.length ? `: ${lost.join('; ')}` : ''})`,
  );
  out(`wrong answers: ${stats.good.wrong}`);
  out(
    `server memory (RSS): ${mib(rssStart)} after start-up, ${mib(rssEnd)} at the end; every 5 s: ` +
      `${rssSamples.map((rss) => (rss / 1024 / 1024).toFixed(0)).join(' ') || '-'} MiB`,
  );
  out(`server log: errors: ${listed(logSummary.errors)}; warnings: ${listed(logSummary.warnings)}`);
  if (logSummary.slow.length > 0) out(`  slowest requests it logged: ${logSummary.slow.join('; ')}`);
  if (stats.notes.length > 0) {
    out(`notes (${stats.notes.length}, bad requests refused with another 4xx than expected), first ones:`);
    for (const line of [...new Set(stats.notes)].slice(0, 10)) out(`  ${line}`);
  }
  if (stats.failures.length > 0) {
    out(`failures (${stats.failures.length}), first ones:`);
    for (const line of [...new Set(stats.failures)].slice(0, 15)) out(`  ${line}`);
  }
  const kept = KEEP || !ok ? ` (server log and repository kept in ${base})` : '';
  out(`${ok ? 'PASS' : `FAIL: ${reasons.join('; ')}`}${kept}`);
  out(
    json({
      ok,
      reasons,
      seconds: Math.round(elapsed * 10) / 10,
      concurrency: CONCURRENCY,
      seed: SEED,
      requests: stats.requests,
      ratePerSecond: Math.round(stats.requests / elapsed),
      byRoute: Object.fromEntries(stats.byRoute),
      statuses: { ...stats.classes, shed: stats.shed },
      codes: Object.fromEntries(stats.byCode),
      good: stats.good,
      bad: stats.bad,
      fiveXX,
      latencyMs: { predict, ping: pingLatency },
      swaps: { cycles: swapCycles, actions: Object.fromEntries(swaps), serverSwaps },
      versionsSeen: versionsSeen.size,
      modelsAtStart: startModels,
      modelsLost: lost,
      wrongAnswers: stats.good.wrong,
      serverAlive,
      rssBytes: { start: rssStart, end: rssEnd, every5s: rssSamples },
      serverLog: {
        errors: Object.fromEntries(logSummary.errors),
        warnings: Object.fromEntries(logSummary.warnings),
        slowest: logSummary.slow,
      },
      failures: stats.failures.slice(0, 50),
    }),
  );
  return ok ? 0 : 1;
}

// The server child, if started, is killed on exit by scripts/lib/loopback.ts.
main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`soak: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(2);
  },
);
