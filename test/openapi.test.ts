import { readFileSync } from 'node:fs';
import type { RouteOptions } from 'fastify';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ERRORS } from '../src/errors.js';
import { DOCS_PREFIX } from '../src/plugins/docs.js';
import { SECRET, tarGz } from './admin/helpers.js';
import { KEPLER, LINEAR, MLP, makeRepository, PODS, startApp, versionedEntries, versionedModel } from './helpers.js';
import { type Case, Conformance } from './openapi/conformance.js';
import {
  allRefs,
  deref,
  type Header,
  loadSpec,
  lookUp,
  operationsOf,
  type Response,
  SchemaValidator,
} from './openapi/spec.js';

const spec = loadSpec();
const operations = operationsOf(spec);
const validator = new SchemaValidator(spec);

/**
 * Operations outside /admin that still need the admin token, with the scope each needs: the Open
 * Inference Protocol's model repository extension (the index only reads, though it is a POST).
 */
const GUARDED_OUTSIDE_ADMIN: Record<string, 'models:read' | 'models:write'> = {
  'POST /v2/repository/index': 'models:read',
  'POST /v2/repository/models/{name}/load': 'models:write',
  'POST /v2/repository/models/{name}/unload': 'models:write',
};

/** What @fastify/swagger-ui registers under /docs (HEAD aside): the UI and this document, not the API. */
const DOCS_ROUTES = [
  'GET /docs',
  'GET /docs/json',
  'GET /docs/yaml',
  'GET /docs/static/index.html',
  'GET /docs/static/swagger-initializer.js',
  'GET /docs/static/*',
];

describe('openapi.yaml is a sound OpenAPI 3.1 document', () => {
  it('is OpenAPI 3.1 and carries the package version', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(spec.openapi).toMatch(/^3\.1\.\d+$/);
    expect(spec.info.version).toBe(pkg.version);
  });

  it('has no reference that points nowhere, and no component that nothing references', () => {
    const refs = allRefs(spec);
    expect(refs.filter(({ ref }) => lookUp(spec, ref) === undefined)).toEqual([]);
    const used = new Set(refs.map(({ ref }) => ref));
    const unused = Object.entries(spec.components)
      .filter(([kind]) => kind !== 'securitySchemes')
      .flatMap(([kind, entries]) => Object.keys(entries).map((name) => `#/components/${kind}/${name}`))
      .filter((ref) => !used.has(ref));
    expect(unused).toEqual([]);
  });

  it('compiles every schema as JSON Schema 2020-12, with no unknown keyword or format', () => {
    expect(validator.compileAll(spec)).toEqual([]);
  });

  it('gives every operation a unique operationId, declared tags and documented responses with X-Request-Id', () => {
    const ids = operations.map((op) => op.operation.operationId);
    expect(ids.filter((id) => id === undefined)).toEqual([]);
    expect(ids.filter((id, i) => ids.indexOf(id) !== i)).toEqual([]);
    const tags = new Set(spec.tags?.map((tag) => tag.name));
    const problems: string[] = [];
    for (const { key, operation } of operations) {
      for (const tag of operation.tags ?? []) if (!tags.has(tag)) problems.push(`${key}: undeclared tag ${tag}`);
      const responses = Object.entries(operation.responses ?? {});
      if (!responses.some(([status]) => /^2\d\d$/.test(status))) problems.push(`${key}: no success response`);
      for (const [status, responseOrRef] of responses) {
        if (!/^[1-5]\d\d$/.test(status)) problems.push(`${key}: response key ${status} is not a status code`);
        const response = deref<Response>(spec, responseOrRef);
        const requestId = response.headers?.['X-Request-Id'];
        if (requestId === undefined || !deref<Header>(spec, requestId).required) {
          problems.push(`${key} ${status}: X-Request-Id is not documented as always sent`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('declares each path template parameter exactly once, as a required path parameter', () => {
    const problems: string[] = [];
    for (const { key, path, parameters } of operations) {
      const inTemplate = [...path.matchAll(/\{(\w+)\}/g)].map((match) => match[1]).sort();
      const declared = parameters.filter((p) => p.in === 'path');
      const names = declared.map((p) => p.name).sort();
      if (JSON.stringify(inTemplate) !== JSON.stringify(names)) {
        problems.push(`${key}: template has ${inTemplate.join(', ')}, parameters ${names.join(', ')}`);
      }
      for (const p of declared) if (p.required !== true) problems.push(`${key}: path parameter ${p.name} not required`);
    }
    expect(problems).toEqual([]);
  });

  it('lists the whole error catalogue, each code under the status the server gives it', () => {
    const enumOf = (name: string): string[] => {
      const schema = spec.components.schemas[name] as { enum?: string[] };
      return schema.enum ?? [];
    };
    expect([...enumOf('ErrorCode')].sort()).toEqual(Object.keys(ERRORS).sort());

    // Error<status>: the Error schema narrowed to the codes of one status.
    const byStatus = new Map<number, string[]>();
    for (const [name, schema] of Object.entries(spec.components.schemas)) {
      const status = /^Error(\d{3})$/.exec(name)?.[1];
      if (status === undefined) continue;
      const narrowed = (schema as { allOf: unknown[] }).allOf[1] as {
        properties: { error: { properties: { code: { enum?: string[]; const?: string } } } };
      };
      const { code } = narrowed.properties.error.properties;
      byStatus.set(Number(status), code.enum ?? (code.const === undefined ? [] : [code.const]));
    }
    const misplaced = [...byStatus].flatMap(([status, codes]) =>
      codes.filter((code) => ERRORS[code as keyof typeof ERRORS] !== status).map((code) => `${code} under ${status}`),
    );
    expect(misplaced).toEqual([]);
    // headers_too_large is answered by Node's parser before any route: the description covers it.
    const listed = new Set([...byStatus.values()].flat());
    expect(Object.keys(ERRORS).filter((code) => !listed.has(code))).toEqual(['headers_too_large']);
  });

  it('guards every /admin operation with bearerAuth and the scope its method needs, the V2 repository ones with theirs, and nothing else', () => {
    const requirements = Object.fromEntries(operations.map((op) => [op.key, op.operation.security]));
    const scopeOf = (op: (typeof operations)[number]) => {
      if (op.path.startsWith('/admin/')) return op.method === 'GET' ? 'models:read' : 'models:write';
      return GUARDED_OUTSIDE_ADMIN[op.key];
    };
    const expected = Object.fromEntries(
      operations.map((op) => {
        const scope = scopeOf(op);
        return [op.key, scope === undefined ? undefined : [{ bearerAuth: [scope] }]];
      }),
    );
    expect(requirements).toEqual(expected);
    // The table names real operations, none under /admin (those follow the method rule).
    const keys = operations.map((op) => op.key);
    expect(
      Object.keys(GUARDED_OUTSIDE_ADMIN).filter(
        (key) => !keys.includes(key) || key.split(' ')[1]?.startsWith('/admin/'),
      ),
    ).toEqual([]);
    expect(spec.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
  });
});

describe('openapi.yaml covers the routes the app registers', () => {
  it('documents every route (HEAD and the /docs routes aside), and nothing that is not one', async () => {
    const registered: string[] = [];
    const onRoute = (route: RouteOptions) => {
      for (const method of [route.method].flat()) registered.push(`${method} ${route.url.replace(/:(\w+)/g, '{$1}')}`);
    };
    // Multi-model mode registers routes of its own (and drops none the other app lacks): the union.
    await startApp({ ADMIN_JWT_SECRET: SECRET }, { onRoute });
    await startApp({ SAGEMAKER_MULTI_MODEL: 'true', MODEL_REPOSITORY: await makeRepository({}) }, { onRoute });

    const routes = [...new Set(registered.filter((route) => !route.startsWith('HEAD ')))];
    const isDocs = (route: string) => {
      const path = route.split(' ')[1] ?? '';
      return path === DOCS_PREFIX || path.startsWith(`${DOCS_PREFIX}/`);
    };
    expect(routes.filter(isDocs).sort()).toEqual([...DOCS_ROUTES].sort());

    const api = routes.filter((route) => !isDocs(route));
    const documented = operations.map((op) => op.key);
    expect({
      undocumented: api.filter((route) => !documented.includes(route)),
      notRegistered: documented.filter((route) => !api.includes(route)),
    }).toEqual({ undocumented: [], notRegistered: [] });
  });
});

describe('real answers match openapi.yaml', () => {
  const conformance = new Conformance(spec, validator);
  const pod = PODS[0] as number[];
  const keplerRequest = {
    metrics: ['bpf_cpu_time_ms', 'bpf_page_cache_hit'],
    values: [
      [50000, 12],
      [0, 0],
    ],
    output_type: 'AbsPower',
    source: 'intel_rapl',
    system_features: null,
    system_values: null,
  };
  const modelRequest = {
    metrics: ['bpf_cpu_time_ms', 'bpf_page_cache_hit'],
    output_type: 'AbsPower',
    source: 'rapl-sysfs',
    node_type: 1,
  };
  const json = { 'content-type': 'application/json' };

  it('public routes, successes and errors', async () => {
    const app = await startApp({ ADMIN_JWT_SECRET: SECRET, MAX_BODY_BYTES: '65536' });
    const cases: Case[] = [
      { route: 'GET /live', url: '/live', status: 200 },
      { route: 'GET /ping', url: '/ping', status: 200, headers: { 'x-amzn-sagemaker-custom-attributes': 'a=b' } },
      { route: 'GET /models', url: '/models', status: 200 },
      { route: 'GET /models/{name}', url: `/models/${LINEAR}`, status: 200 },
      { route: 'GET /models/{name}', url: '/models/nope', status: 404 },
      { route: 'GET /models/{name}', url: '/models/%E0%A4%A', status: 400 },
      { route: 'GET /metrics', url: '/metrics', status: 200, headers: { 'x-request-id': 'scrape-1' } },

      { route: 'POST /predict', url: '/predict', status: 200, payload: { model: LINEAR, instances: PODS } },
      { route: 'POST /predict', url: '/predict', status: 200, payload: { model: KEPLER, instances: [[50000, 12]] } },
      {
        route: 'POST /predict',
        url: '/predict',
        status: 200,
        payload: {
          model: KEPLER,
          version: '1',
          features: ['bpf_page_cache_hit', 'bpf_cpu_time_ms'],
          instances: [[1, 2]],
        },
      },
      { route: 'POST /predict', url: '/predict', status: 400, payload: PODS },
      { route: 'POST /predict', url: '/predict', status: 400, payload: { model: LINEAR, instances: [[1e39]] } },
      { route: 'POST /predict', url: '/predict', status: 404, payload: { model: 'nope', instances: PODS } },
      {
        route: 'POST /predict',
        url: '/predict',
        status: 413,
        payload: { model: LINEAR, instances: Array(3000).fill(pod) },
      },
      {
        route: 'POST /predict',
        url: '/predict',
        status: 415,
        headers: { 'content-type': 'text/csv' },
        payload: pod.join(','),
      },
      { route: 'POST /predict/{model}', url: `/predict/${MLP}`, status: 200, payload: PODS },
      { route: 'POST /predict/{model}', url: `/predict/${LINEAR}`, status: 200, payload: { instances: PODS } },
      { route: 'POST /predict/{model}', url: `/predict/${LINEAR}`, status: 400, payload: { instances: [[1, 2]] } },
      { route: 'POST /predict/{model}', url: '/predict/nope', status: 404, payload: { instances: PODS } },

      {
        route: 'POST /invocations',
        url: '/invocations',
        status: 200,
        headers: {
          'content-type': 'text/csv',
          accept: 'text/csv',
          'x-amzn-sagemaker-target-model': MLP,
          'x-amzn-sagemaker-custom-attributes': 'trace=1',
        },
        payload: `${PODS.map((row) => row.join(',')).join('\n')}\n`,
      },
      {
        route: 'POST /invocations',
        url: '/invocations',
        status: 200,
        headers: {
          'content-type': 'application/jsonlines',
          accept: 'application/jsonlines',
          'x-amzn-sagemaker-target-model': KEPLER,
        },
        payload: '[50000, 12]\n[0, 0]\n',
      },
      {
        route: 'POST /invocations',
        url: '/invocations',
        status: 200,
        headers: { 'content-type': 'text/csv; header=present', 'x-amzn-sagemaker-target-model': KEPLER },
        payload: 'bpf_page_cache_hit,bpf_cpu_time_ms\n12,50000\n',
      },
      {
        route: 'POST /invocations',
        url: '/invocations',
        status: 200,
        headers: { ...json, accept: 'application/json;q=0.5, text/html' },
        payload: { model: LINEAR, instances: PODS },
      },
      { route: 'POST /invocations', url: '/invocations', status: 400, payload: { instances: PODS } },
      {
        route: 'POST /invocations',
        url: '/invocations',
        status: 404,
        headers: { ...json, 'x-amzn-sagemaker-target-model': 'nope' },
        payload: PODS,
      },
      {
        route: 'POST /invocations',
        url: '/invocations',
        status: 406,
        headers: { 'content-type': 'text/csv', accept: 'image/png' },
        payload: '1,2\n',
      },
      {
        route: 'POST /invocations',
        url: '/invocations',
        status: 415,
        headers: { 'content-type': 'text/plain' },
        payload: '1,2\n',
      },

      { route: 'POST /kepler/estimate', url: '/kepler/estimate', status: 200, payload: keplerRequest },
      {
        route: 'POST /kepler/estimate',
        url: '/kepler/estimate',
        status: 200,
        payload: { ...keplerRequest, values: [], trainer_name: 'SGDRegressorTrainer', filter: 'mae:1000' },
      },
      {
        route: 'POST /kepler/estimate',
        url: '/kepler/estimate',
        status: 400,
        payload: { ...keplerRequest, output_type: 'DynPower' },
      },
      {
        route: 'POST /kepler/estimate',
        url: '/kepler/estimate',
        status: 413,
        payload: { ...keplerRequest, values: Array(6000).fill([50000, 12]) },
      },
      {
        route: 'POST /kepler/estimate',
        url: '/kepler/estimate',
        status: 415,
        headers: { 'content-type': 'application/xml' },
        payload: '<estimate/>',
      },

      { route: 'POST /model', url: '/model', status: 200, payload: { ...modelRequest, weight: true } },
      { route: 'POST /model', url: '/model', status: 200, payload: modelRequest },
      { route: 'POST /model', url: '/model', status: 400, payload: { ...modelRequest, source: 'acpi' } },
      { route: 'POST /model', url: '/model', status: 400, payload: { ...modelRequest, weight: 'yes' } },
      {
        route: 'POST /model',
        url: '/model',
        status: 415,
        headers: { 'content-type': 'application/xml' },
        payload: '<model/>',
      },

      { route: 'GET /admin/models', url: '/admin/models', status: 200 },
      { route: 'GET /admin/models', url: '/admin/models', status: 401, auth: 'none' },
      {
        route: 'GET /admin/models',
        url: '/admin/models',
        status: 401,
        auth: 'none',
        headers: { authorization: 'Bearer not.a.token' },
      },
      { route: 'GET /admin/models', url: '/admin/models', status: 403, auth: 'other-scope' },
      { route: 'GET /admin/models/{name}', url: `/admin/models/${KEPLER}`, status: 200 },
    ];
    expect(await conformance.run(app, cases)).toEqual([]);
  });

  it('readiness when a model that should serve does not', async () => {
    const app = await startApp({ DEFAULT_MODEL: 'missing' });
    const cases: Case[] = [
      { route: 'GET /ping', url: '/ping', status: 503 },
      { route: 'GET /v2/health/ready', url: '/v2/health/ready', status: 503 },
    ];
    expect(await conformance.run(app, cases)).toEqual([]);
  });

  it('Open Inference Protocol (/v2) routes, successes and errors', async () => {
    const app = await startApp({ MAX_BODY_BYTES: '65536' });
    /** The 2-D layout: one tensor [rows, features], data flat. */
    const matrixInput = (rows: number[][]) => ({
      name: 'input',
      shape: [rows.length, rows[0]?.length ?? 0],
      datatype: 'FP32',
      data: rows.flat(),
    });
    /** The per-feature layout: one tensor of shape [rows] per feature. */
    const featureInputs = (names: readonly string[], rows: number[][], datatype: string) =>
      names.map((name, col) => ({ name, shape: [rows.length], datatype, data: rows.map((row) => row[col]) }));
    const KEPLER_FEATURES = ['bpf_cpu_time_ms', 'bpf_page_cache_hit'];
    const body = { id: '1', inputs: [matrixInput(PODS)] };
    const perFeature = { inputs: featureInputs(KEPLER_FEATURES, [[50000, 12]], 'INT64'), outputs: [{ name: 'dram' }] };
    const cases: Case[] = [
      { route: 'GET /v2', url: '/v2', status: 200 },
      { route: 'GET /v2/health/live', url: '/v2/health/live', status: 200 },
      { route: 'GET /v2/health/ready', url: '/v2/health/ready', status: 200 },
      { route: 'GET /v2/models/{name}', url: `/v2/models/${KEPLER}`, status: 200 },
      { route: 'GET /v2/models/{name}', url: '/v2/models/nope', status: 404 },
      { route: 'GET /v2/models/{name}/versions/{version}', url: `/v2/models/${MLP}/versions/1`, status: 200 },
      { route: 'GET /v2/models/{name}/versions/{version}', url: `/v2/models/${MLP}/versions/2`, status: 404 },
      { route: 'GET /v2/models/{name}/ready', url: `/v2/models/${LINEAR}/ready`, status: 200 },
      { route: 'GET /v2/models/{name}/ready', url: '/v2/models/nope/ready', status: 404 },
      {
        route: 'GET /v2/models/{name}/versions/{version}/ready',
        url: `/v2/models/${LINEAR}/versions/1/ready`,
        status: 200,
      },
      {
        route: 'GET /v2/models/{name}/versions/{version}/ready',
        url: `/v2/models/${LINEAR}/versions/5/ready`,
        status: 404,
      },
      { route: 'POST /v2/models/{name}/infer', url: `/v2/models/${LINEAR}/infer`, status: 200, payload: body },
      { route: 'POST /v2/models/{name}/infer', url: `/v2/models/${KEPLER}/infer`, status: 200, payload: perFeature },
      {
        route: 'POST /v2/models/{name}/infer',
        url: `/v2/models/${LINEAR}/infer`,
        status: 400,
        payload: { inputs: [] },
      },
      { route: 'POST /v2/models/{name}/infer', url: '/v2/models/nope/infer', status: 404, payload: body },
      {
        route: 'POST /v2/models/{name}/infer',
        url: `/v2/models/${LINEAR}/infer`,
        status: 413,
        payload: { inputs: [matrixInput(Array(3000).fill(PODS[0]))] },
      },
      {
        route: 'POST /v2/models/{name}/infer',
        url: `/v2/models/${LINEAR}/infer`,
        status: 415,
        headers: { 'content-type': 'text/csv' },
        payload: '1,2\n',
      },
      {
        route: 'POST /v2/models/{name}/versions/{version}/infer',
        url: `/v2/models/${MLP}/versions/1/infer`,
        status: 200,
        payload: body,
      },
      {
        route: 'POST /v2/models/{name}/versions/{version}/infer',
        url: `/v2/models/${MLP}/versions/7/infer`,
        status: 404,
        payload: body,
      },
    ];
    expect(await conformance.run(app, cases)).toEqual([]);
  });

  it('TensorFlow Serving (/v1) routes, successes and errors', async () => {
    const root = await makeRepository({ 'm/1': { model: LINEAR }, 'm/2': { model: LINEAR } });
    const app = await startApp({ MODEL_REPOSITORY: root, MAX_BODY_BYTES: '65536' });
    await app.models.setLabel('m', 'stable', 1);
    const KEPLER_FEATURES = ['bpf_cpu_time_ms', 'bpf_page_cache_hit'];
    const keplerApp = await startApp({ MAX_BODY_BYTES: '65536' });
    const predict = (url: string, status: number, payload: unknown, headers?: Record<string, string>): Case => ({
      route: `POST ${url
        .replace(/^\/v1\/models\/[^/]+/, '/v1/models/{name}')
        .replace(/\/versions\/[^/]+$/, '/versions/{version}')
        .replace(/\/labels\/[^/]+$/, '/labels/{label}')}`,
      url,
      status,
      payload,
      ...(headers && { headers }),
    });
    const cases: Case[] = [
      { route: 'GET /v1/models/{name}', url: '/v1/models/m', status: 200 },
      { route: 'GET /v1/models/{name}', url: '/v1/models/nope', status: 404 },
      { route: 'GET /v1/models/{name}/versions/{version}', url: '/v1/models/m/versions/2', status: 200 },
      { route: 'GET /v1/models/{name}/versions/{version}', url: '/v1/models/m/versions/9', status: 404 },
      { route: 'GET /v1/models/{name}/metadata', url: '/v1/models/m/metadata', status: 200 },
      { route: 'GET /v1/models/{name}/metadata', url: '/v1/models/nope/metadata', status: 404 },
      {
        route: 'GET /v1/models/{name}/versions/{version}/metadata',
        url: '/v1/models/m/versions/1/metadata',
        status: 200,
      },
      {
        route: 'GET /v1/models/{name}/versions/{version}/metadata',
        url: '/v1/models/m/versions/3/metadata',
        status: 404,
      },
      {
        route: 'GET /v1/models/{name}/labels/{label}/metadata',
        url: '/v1/models/m/labels/stable/metadata',
        status: 200,
      },
      { route: 'GET /v1/models/{name}/labels/{label}/metadata', url: '/v1/models/m/labels/nope/metadata', status: 404 },
      { route: 'GET /v1/models/{name}/labels/{label}', url: '/v1/models/m/labels/stable', status: 200 },
      { route: 'GET /v1/models/{name}/labels/{label}', url: '/v1/models/m/labels/nope', status: 404 },
      predict('/v1/models/m:predict', 200, { instances: PODS }),
      predict('/v1/models/m:predict', 200, { signature_name: 'serving_default', inputs: PODS }),
      predict('/v1/models/m:predict', 400, { instances: PODS, inputs: PODS }),
      predict('/v1/models/m:predict', 400, { signature_name: 'other', instances: PODS }),
      predict('/v1/models/nope:predict', 404, { instances: PODS }),
      predict('/v1/models/m:classify', 404, { instances: PODS }),
      predict('/v1/models/m:predict', 413, { instances: Array(3000).fill(pod) }),
      predict('/v1/models/m:predict', 415, '1,2\n', { 'content-type': 'text/csv' }),
      predict('/v1/models/m/versions/1:predict', 200, { instances: [{ input: pod }] }),
      predict('/v1/models/m/versions/7:predict', 404, { instances: PODS }),
      predict('/v1/models/m/labels/stable:predict', 200, { inputs: { input: PODS } }),
      predict('/v1/models/m/labels/canary:predict', 404, { instances: PODS }),
    ];
    expect(await conformance.run(app, cases)).toEqual([]);
    const kepler: Case[] = [
      predict(`/v1/models/${KEPLER}:predict`, 200, { instances: [{ bpf_cpu_time_ms: 50000, bpf_page_cache_hit: 12 }] }),
      predict(`/v1/models/${KEPLER}:predict`, 200, {
        inputs: Object.fromEntries(KEPLER_FEATURES.map((name) => [name, [50000, 0]])),
      }),
      predict(`/v1/models/${KEPLER}:predict`, 400, { instances: [{ bpf_cpu_time_ms: 1, heat: 2 }] }),
      { route: 'GET /v1/models/{name}/metadata', url: `/v1/models/${KEPLER}/metadata`, status: 200 },
    ];
    expect(await conformance.run(keplerApp, kepler)).toEqual([]);
  });

  it('admin routes, through a whole hot swap', async () => {
    const repository = await makeRepository({
      ...versionedEntries('m', [1, 2]),
      'm/6/model.onnx': 'not an onnx model',
      'm/6/metadata.json': JSON.stringify({ features: ['a', 'b'] }),
    });
    const app = await startApp({ MODEL_REPOSITORY: repository, ADMIN_JWT_SECRET: SECRET });
    const broken = await tarGz({ 'model.onnx': 'not an onnx model', 'metadata.json': '{"features": ["a", "b"]}' });
    const cases: Case[] = [
      { route: 'GET /admin/models', url: '/admin/models', status: 200 },
      { route: 'GET /admin/models/{name}', url: '/admin/models/m', status: 200 },
      { route: 'GET /admin/models/{name}', url: '/admin/models/nope', status: 404 },
      { route: 'GET /admin/models/{name}', url: '/admin/models/-m', status: 400 },
      { route: 'GET /admin/models/{name}', url: '/admin/models/m', status: 403, auth: 'other-scope' },
      { route: 'GET /admin/models/{name}/drift', url: '/admin/models/m/drift', status: 200 },
      { route: 'GET /admin/models/{name}/drift', url: '/admin/models/nope/drift', status: 404 },
      { route: 'GET /admin/models/{name}/drift', url: '/admin/models/-m/drift', status: 400 },
      { route: 'GET /admin/models/{name}/drift', url: '/admin/models/m/drift', status: 403, auth: 'other-scope' },

      {
        route: 'PUT /admin/models/{name}/versions/{version}',
        url: '/admin/models/m/versions/3?promote=false',
        status: 201,
        headers: { 'content-type': 'application/gzip' },
        payload: await tarGz(versionedModel(3)),
      },
      {
        route: 'PUT /admin/models/{name}/versions/{version}',
        url: '/admin/models/m/versions/3',
        status: 409,
        headers: { 'content-type': 'application/gzip' },
        payload: await tarGz(versionedModel(3)),
      },
      {
        route: 'PUT /admin/models/{name}/versions/{version}',
        url: '/admin/models/m/versions/4',
        status: 422,
        headers: { 'content-type': 'application/zip' },
        payload: Buffer.from('not an archive'),
      },
      {
        route: 'PUT /admin/models/{name}/versions/{version}',
        url: '/admin/models/m/versions/5',
        status: 422,
        headers: { 'content-type': 'application/octet-stream' },
        payload: broken,
      },
      {
        route: 'PUT /admin/models/{name}/versions/{version}',
        url: '/admin/models/m/versions/1.0',
        status: 400,
        headers: { 'content-type': 'application/gzip' },
        payload: broken,
      },
      {
        route: 'PUT /admin/models/{name}/versions/{version}',
        url: '/admin/models/m/versions/5',
        status: 401,
        auth: 'none',
        headers: { 'content-type': 'application/gzip' },
        payload: broken,
      },
      {
        route: 'PUT /admin/models/{name}/versions/{version}',
        url: '/admin/models/other/versions/1?promote=true',
        status: 201,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: await tarGz(versionedModel(1)),
      },

      {
        route: 'POST /admin/models/{name}/promote',
        url: '/admin/models/m/promote',
        status: 200,
        payload: { version: 3 },
      },
      {
        route: 'POST /admin/models/{name}/promote',
        url: '/admin/models/m/promote',
        status: 404,
        payload: { version: 9 },
      },
      {
        route: 'POST /admin/models/{name}/promote',
        url: '/admin/models/m/promote',
        status: 400,
        payload: { version: '3' },
      },
      {
        route: 'POST /admin/models/{name}/promote',
        url: '/admin/models/m/promote',
        status: 415,
        headers: { 'content-type': 'application/xml' },
        payload: '<version>3</version>',
      },
      {
        route: 'POST /admin/models/{name}/promote',
        url: '/admin/models/m/promote',
        status: 403,
        auth: 'other-scope',
        payload: { version: 3 },
      },

      {
        route: 'PUT /admin/models/{name}/labels/{label}',
        url: '/admin/models/m/labels/stable',
        status: 200,
        payload: { version: 3 },
      },
      {
        route: 'PUT /admin/models/{name}/labels/{label}',
        url: '/admin/models/m/labels/1st',
        status: 400,
        payload: { version: 3 },
      },
      {
        route: 'PUT /admin/models/{name}/labels/{label}',
        url: '/admin/models/m/labels/canary',
        status: 404,
        payload: { version: 9 },
      },
      {
        route: 'PUT /admin/models/{name}/traffic',
        url: '/admin/models/m/traffic',
        status: 200,
        payload: { split: { stable: 0.1 }, shadow: 'stable' },
      },
      {
        route: 'PUT /admin/models/{name}/traffic',
        url: '/admin/models/m/traffic',
        status: 400,
        payload: { split: { stable: 1.5 } },
      },
      {
        route: 'PUT /admin/models/{name}/traffic',
        url: '/admin/models/m/traffic',
        status: 404,
        payload: { split: { canary: 0.1 } },
      },
      {
        route: 'PUT /admin/models/{name}/traffic',
        url: '/admin/models/m/traffic',
        status: 403,
        auth: 'other-scope',
        payload: { split: { stable: 0.2 } },
      },
      { route: 'DELETE /admin/models/{name}/labels/{label}', url: '/admin/models/m/labels/stable', status: 409 },
      {
        route: 'DELETE /admin/models/{name}/traffic',
        url: '/admin/models/m/traffic',
        status: 403,
        auth: 'other-scope',
      },
      { route: 'DELETE /admin/models/{name}/traffic', url: '/admin/models/nope/traffic', status: 404 },
      { route: 'DELETE /admin/models/{name}/traffic', url: '/admin/models/m/traffic', status: 200 },
      { route: 'DELETE /admin/models/{name}/labels/{label}', url: '/admin/models/m/labels/stable', status: 200 },
      { route: 'DELETE /admin/models/{name}/labels/{label}', url: '/admin/models/m/labels/stable', status: 404 },

      { route: 'DELETE /admin/models/{name}/versions/{version}', url: '/admin/models/m/versions/1', status: 200 },
      {
        route: 'PUT /admin/models/{name}/labels/{label}',
        url: '/admin/models/m/labels/old',
        status: 409,
        payload: { version: 1 },
      },
      { route: 'DELETE /admin/models/{name}/versions/{version}', url: '/admin/models/m/versions/3', status: 409 },
      {
        route: 'DELETE /admin/models/{name}/versions/{version}',
        url: '/admin/models/m/versions/3?force=true',
        status: 200,
      },
      { route: 'DELETE /admin/models/{name}/versions/{version}', url: '/admin/models/m/versions/8', status: 404 },

      {
        route: 'POST /admin/models/{name}/versions/{version}/load',
        url: '/admin/models/m/versions/1/load?promote=true',
        status: 200,
      },
      {
        route: 'POST /admin/models/{name}/versions/{version}/load',
        url: '/admin/models/m/versions/1/load',
        status: 409,
      },
      {
        route: 'POST /admin/models/{name}/versions/{version}/load',
        url: '/admin/models/m/versions/7/load',
        status: 404,
      },
      {
        route: 'POST /admin/models/{name}/versions/{version}/load',
        url: '/admin/models/m/versions/6/load',
        status: 422,
      },

      { route: 'POST /admin/models/{name}/reload', url: '/admin/models/m/reload', status: 200 },
      { route: 'POST /admin/models/{name}/reload', url: '/admin/models/nope/reload', status: 404 },
      { route: 'POST /admin/models/{name}/reload', url: '/admin/models/m/reload', status: 403, auth: 'other-scope' },
    ];
    expect(await conformance.run(app, cases)).toEqual([]);
  });

  it('Open Inference Protocol model repository extension (/v2/repository), behind the admin token', async () => {
    const repository = await makeRepository({
      ...versionedEntries('m', [1, 2]),
      'bad/1/model.onnx': 'not an onnx model',
    });
    const app = await startApp({ MODEL_REPOSITORY: repository, ADMIN_JWT_SECRET: SECRET });
    const cases: Case[] = [
      { route: 'POST /v2/repository/index', url: '/v2/repository/index', status: 200 },
      { route: 'POST /v2/repository/index', url: '/v2/repository/index', status: 200, payload: { ready: true } },
      { route: 'POST /v2/repository/index', url: '/v2/repository/index', status: 400, payload: { ready: 'yes' } },
      { route: 'POST /v2/repository/index', url: '/v2/repository/index', status: 401, auth: 'none', payload: {} },
      { route: 'POST /v2/repository/index', url: '/v2/repository/index', status: 403, auth: 'other-scope' },
      {
        route: 'POST /v2/repository/index',
        url: '/v2/repository/index',
        status: 415,
        headers: { 'content-type': 'application/xml' },
        payload: '<ready/>',
      },

      { route: 'POST /v2/repository/models/{name}/unload', url: '/v2/repository/models/m/unload', status: 200 },
      {
        route: 'POST /v2/repository/models/{name}/unload',
        url: '/v2/repository/models/m/unload',
        status: 200,
        payload: { parameters: { unload_dependents: true } },
      },
      {
        route: 'POST /v2/repository/models/{name}/unload',
        url: '/v2/repository/models/m/unload',
        status: 400,
        payload: { parameters: { unload_dependents: 'x' } },
      },
      { route: 'POST /v2/repository/models/{name}/unload', url: '/v2/repository/models/nope/unload', status: 404 },
      {
        route: 'POST /v2/repository/models/{name}/unload',
        url: '/v2/repository/models/m/unload',
        status: 403,
        auth: 'other-scope',
      },
      {
        route: 'POST /v2/repository/models/{name}/unload',
        url: '/v2/repository/models/m/unload',
        status: 401,
        auth: 'none',
      },

      { route: 'POST /v2/repository/models/{name}/load', url: '/v2/repository/models/m/load', status: 200 },
      {
        route: 'POST /v2/repository/models/{name}/load',
        url: '/v2/repository/models/m/load',
        status: 200,
        payload: { parameters: {} },
      },
      {
        route: 'POST /v2/repository/models/{name}/load',
        url: '/v2/repository/models/m/load',
        status: 400,
        payload: { parameters: { config: '{}' } },
      },
      { route: 'POST /v2/repository/models/{name}/load', url: '/v2/repository/models/nope/load', status: 404 },
      { route: 'POST /v2/repository/models/{name}/load', url: '/v2/repository/models/bad/load', status: 422 },
      {
        route: 'POST /v2/repository/models/{name}/load',
        url: '/v2/repository/models/m/load',
        status: 403,
        auth: 'other-scope',
      },
    ];
    expect(await conformance.run(app, cases)).toEqual([]);
  });

  it('SageMaker multi-model routes, successes and errors', async () => {
    // Folders holding a model's files directly, as SageMaker lays them out.
    const inFolder = (folder: string, files: Record<string, Uint8Array | string>) =>
      Object.fromEntries(Object.entries(files).map(([file, content]) => [`${folder}/${file}`, content]));
    const repository = await makeRepository({
      ...inFolder('a', versionedModel(1)),
      ...inFolder('b', versionedModel(2)),
      ...inFolder('broken', { 'model.onnx': 'not an onnx model', 'metadata.json': '{"features": ["a", "b"]}' }),
    });
    const app = await startApp({ SAGEMAKER_MULTI_MODEL: 'true', MODEL_REPOSITORY: repository, MAX_LOADED_MODELS: '1' });
    const attributes = { 'x-amzn-sagemaker-custom-attributes': 'trace=1' };
    const rows = '1,2\n3,4\n';
    const invoke = (name: string, status: number, headers: Record<string, string>, payload: unknown = rows): Case => ({
      route: 'POST /models/{name}/invoke',
      url: `/models/${name}/invoke`,
      status,
      headers,
      payload,
    });
    const cases: Case[] = [
      { route: 'GET /models', url: '/models', status: 200, headers: attributes },
      { route: 'POST /models', url: '/models', status: 422, payload: { model_name: 'alpha', url: 'broken' } },
      { route: 'POST /models', url: '/models', status: 404, payload: { model_name: 'alpha', url: 'nowhere' } },
      { route: 'POST /models', url: '/models', status: 400, payload: { model_name: 'alpha', url: '../elsewhere' } },
      { route: 'POST /models', url: '/models', status: 400, payload: { model_name: '../alpha', url: 'a' } },
      {
        route: 'POST /models',
        url: '/models',
        status: 415,
        headers: { 'content-type': 'application/xml' },
        payload: '<model/>',
      },
      {
        route: 'POST /models',
        url: '/models',
        status: 200,
        headers: attributes,
        payload: { model_name: 'alpha', url: 'a' },
      },
      { route: 'POST /models', url: '/models', status: 409, payload: { model_name: 'alpha', url: 'b' } },
      { route: 'POST /models', url: '/models', status: 507, payload: { model_name: 'beta', url: 'b' } },

      { route: 'GET /models', url: '/models', status: 200 },
      { route: 'GET /models', url: '/models?page_size=1', status: 200 },
      { route: 'GET /models', url: '/models?page_size=0', status: 400 },
      { route: 'GET /models', url: '/models?next_page_token=not-a-token!', status: 400, headers: attributes },
      { route: 'GET /models/{name}', url: '/models/alpha', status: 200, headers: attributes },
      { route: 'GET /models/{name}', url: '/models/beta', status: 404 },

      invoke('alpha', 200, { 'content-type': 'text/csv', accept: 'text/csv', ...attributes }),
      invoke('alpha', 200, { 'content-type': 'application/json', 'x-amzn-sagemaker-target-model': 'models/a.tar.gz' }, [
        [1, 2],
      ]),
      invoke('alpha', 200, { 'content-type': 'application/jsonlines', accept: 'application/jsonlines' }, '[1, 2]\n'),
      invoke('alpha', 400, { 'content-type': 'application/json' }, { model: 'beta', instances: [[1, 2]] }),
      invoke('alpha', 406, { 'content-type': 'text/csv', accept: 'text/html' }),
      invoke('alpha', 415, { 'content-type': 'application/x-protobuf' }, 'x'),
      invoke('beta', 404, { 'content-type': 'text/csv' }),

      { route: 'DELETE /models/{name}', url: '/models/alpha', status: 200, headers: attributes },
      { route: 'DELETE /models/{name}', url: '/models/alpha', status: 404 },
      { route: 'POST /models', url: '/models', status: 200, payload: { model_name: 'beta', url: `${repository}/b` } },
    ];
    expect(await conformance.run(app, cases)).toEqual([]);
  });

  it('the drift report of a model with feature_stats, after predictions', async () => {
    const app = await startApp({ ADMIN_JWT_SECRET: SECRET });
    for (const model of [LINEAR, MLP]) {
      const predicted = await app.inject({ method: 'POST', url: '/predict', payload: { model, instances: PODS } });
      expect(predicted.statusCode).toBe(200);
    }
    const cases: Case[] = [
      { route: 'GET /admin/models/{name}/drift', url: `/admin/models/${LINEAR}/drift`, status: 200 },
      { route: 'GET /admin/models/{name}/drift', url: `/admin/models/${MLP}/drift`, status: 200 },
      { route: 'GET /admin/models/{name}/drift', url: `/admin/models/${KEPLER}/drift`, status: 200 },
    ];
    expect(await conformance.run(app, cases)).toEqual([]);
  });

  it('exercised every operation with a success the document describes', () => {
    const missed = operations.map((op) => op.key).filter((key) => !conformance.succeeded.has(key));
    expect(missed).toEqual([]);
  });
});

describe('/docs', () => {
  it('serves the Swagger UI and this very document', async () => {
    const app = await startApp();
    const ui = await app.inject({ url: '/docs' });
    expect(ui.statusCode).toBe(200);
    expect(ui.headers['content-type']).toMatch(/^text\/html/);
    expect(ui.body).toContain('swagger-ui');

    const asJson = await app.inject({ url: '/docs/json' });
    expect(asJson.statusCode).toBe(200);
    expect(asJson.json()).toEqual(spec);
    const asYaml = await app.inject({ url: '/docs/yaml' });
    expect(parse(asYaml.body)).toEqual(spec);
  });

  it('serves nothing else from the repository', async () => {
    const app = await startApp();
    for (const url of ['/docs/package.json', '/docs/openapi.yaml', '/docs/static/../../package.json']) {
      expect((await app.inject({ url })).statusCode, url).toBe(404);
    }
  });
});
