import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { token } from '../admin/helpers.js';
import {
  deref,
  type Header,
  type OpenApiDocument,
  operationsOf,
  type Response,
  type Schema,
  type SchemaValidator,
  type SpecOperation,
} from './spec.js';

/** One real request and the status it must get; the answer is then checked against the document. */
export interface Case {
  /** The operation, as `METHOD /path/{param}` in openapi.yaml. */
  route: string;
  url: string;
  status: number;
  headers?: Record<string, string>;
  /** An object or array is sent as JSON; a string or Buffer as is, with the content-type in headers. */
  payload?: unknown;
  /** Admin routes: the token to send. By default one holding just the scope the document lists. */
  auth?: 'none' | 'other-scope';
}

/** The media type without parameters, lower-cased: `text/plain; version=0.0.4` → `text/plain`. */
export function mediaType(header: string | undefined): string {
  return (header ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

/**
 * A query, path or header value (always text on the wire) as the type its schema declares: an
 * `integer` or `number` parameter is checked as the number it spells, when it spells one.
 */
function asSchemaType(schema: Schema, value: string): unknown {
  const type = typeof schema === 'object' ? schema.type : undefined;
  if ((type === 'integer' || type === 'number') && value.trim() !== '' && Number.isFinite(Number(value))) {
    return Number(value);
  }
  return value;
}

/**
 * Checks real answers against openapi.yaml: the status is documented for the operation, required
 * headers are there, the content type is documented and the body validates against its schema;
 * for a success, the request itself validates against the documented parameters and body.
 */
export class Conformance {
  readonly #operations: Map<string, SpecOperation>;
  /** Operations that answered a case with a 2xx. */
  readonly succeeded = new Set<string>();

  constructor(
    readonly spec: OpenApiDocument,
    readonly validator: SchemaValidator,
  ) {
    this.#operations = new Map(operationsOf(spec).map((op) => [op.key, op]));
  }

  /** Sends every case in order and returns each way an answer or request departs from the document. */
  async run(app: FastifyInstance, cases: readonly Case[]): Promise<string[]> {
    const problems: string[] = [];
    for (const c of cases) {
      const op = this.#operations.get(c.route);
      if (op === undefined) {
        problems.push(`${c.route}: no such operation in openapi.yaml`);
        continue;
      }
      const response = await app.inject({
        method: op.method,
        url: c.url,
        headers: { ...this.#authorization(op, c), ...c.headers },
        ...(c.payload !== undefined && { payload: c.payload as string }),
      });
      const where = `${op.method} ${c.url} → ${response.statusCode}`;
      const found = [
        ...(response.statusCode === c.status ? [] : [`expected status ${c.status}: ${response.body.slice(0, 300)}`]),
        ...this.#checkAnswer(op, response),
        ...(response.statusCode < 300 ? this.#checkRequest(op, c) : []),
      ];
      problems.push(...found.map((problem) => `${where}: ${problem}`));
      if (response.statusCode >= 200 && response.statusCode < 300 && found.length === 0) this.succeeded.add(op.key);
    }
    return problems;
  }

  /** A token with exactly the scope the operation's security requirement lists (or the other one). */
  #authorization(op: SpecOperation, c: Case): Record<string, string> {
    const scope = op.operation.security?.[0]?.bearerAuth?.[0];
    if (scope === undefined || c.auth === 'none') return {};
    const granted = c.auth === 'other-scope' ? (scope === 'models:read' ? 'models:write' : 'models:read') : scope;
    return { authorization: `Bearer ${token({ scope: granted })}` };
  }

  #checkAnswer(op: SpecOperation, response: LightMyRequestResponse): string[] {
    const documented = op.operation.responses?.[String(response.statusCode)];
    if (documented === undefined) {
      return [`status ${response.statusCode} is not documented: ${response.body.slice(0, 300)}`];
    }
    const answer = deref<Response>(this.spec, documented);
    const problems: string[] = [];
    for (const [name, headerOrRef] of Object.entries(answer.headers ?? {})) {
      const header = deref<Header>(this.spec, headerOrRef);
      const value = response.headers[name.toLowerCase()];
      if (value === undefined) {
        if (header.required) problems.push(`header ${name} is required but missing`);
      } else if (header.schema !== undefined) {
        problems.push(...this.validator.errors(header.schema, String(value)).map((e) => `header ${name}: ${e}`));
      }
    }
    if (answer.content === undefined) {
      if (response.body !== '') problems.push(`no body is documented, got ${response.body.slice(0, 100)}`);
      return problems;
    }
    const type = mediaType(response.headers['content-type'] as string | undefined);
    const media = answer.content[type];
    if (media === undefined) {
      return [...problems, `content type ${type} is not documented (${Object.keys(answer.content).join(', ')})`];
    }
    if (media.schema === undefined) return problems;
    let body: unknown = response.body;
    if (type === 'application/json') {
      try {
        body = response.json();
      } catch {
        return [...problems, `the body is not JSON: ${response.body.slice(0, 100)}`];
      }
    }
    const errors = this.validator.errors(media.schema, body);
    if (errors.length > 0) problems.push(`body does not match (${errors.join('; ')}): ${response.body.slice(0, 300)}`);
    return problems;
  }

  /** A request the service accepted must be one the document describes. */
  #checkRequest(op: SpecOperation, c: Case): string[] {
    const problems: string[] = [];
    const url = new URL(c.url, 'http://localhost');
    const names = [...op.path.matchAll(/\{(\w+)\}/g)].map((match) => match[1] as string);
    const pattern = new RegExp(`^${op.path.replace(/\{\w+\}/g, '([^/]+)')}$`);
    const values = url.pathname.match(pattern)?.slice(1) ?? [];
    const given = new Map<string, string>([
      ...names.map((name, i): [string, string] => [`path:${name}`, decodeURIComponent(values[i] ?? '')]),
      ...[...url.searchParams].map(([name, value]): [string, string] => [`query:${name}`, value]),
      ...Object.entries(c.headers ?? {}).map(([name, value]): [string, string] => [
        `header:${name.toLowerCase()}`,
        value,
      ]),
    ]);
    for (const parameter of op.parameters) {
      const key = `${parameter.in}:${parameter.in === 'header' ? parameter.name.toLowerCase() : parameter.name}`;
      const value = given.get(key);
      if (value === undefined) {
        if (parameter.required) problems.push(`required parameter ${key} was not sent`);
        continue;
      }
      given.delete(key);
      if (parameter.schema !== undefined) {
        const typed = asSchemaType(parameter.schema, value);
        problems.push(...this.validator.errors(parameter.schema, typed).map((e) => `parameter ${key}: ${e}`));
      }
    }
    for (const key of given.keys()) {
      if (!key.startsWith('header:')) problems.push(`parameter ${key} is not documented`);
    }

    const body = op.operation.requestBody && deref(this.spec, op.operation.requestBody);
    if (c.payload === undefined) {
      if (body?.required) problems.push('the request body is required but none was sent');
      return problems;
    }
    if (body === undefined) return [...problems, 'a body was sent but none is documented'];
    const isJson = typeof c.payload === 'object' && !Buffer.isBuffer(c.payload);
    const type = mediaType(c.headers?.['content-type'] ?? (isJson ? 'application/json' : 'application/octet-stream'));
    const media = body.content[type] ?? body.content['*/*'];
    if (media === undefined) return [...problems, `request content type ${type} is not documented`];
    if (media.schema !== undefined && !Buffer.isBuffer(c.payload)) {
      const errors = this.validator.errors(media.schema, c.payload);
      problems.push(...errors.map((e) => `request body: ${e}`));
    }
    return problems;
  }
}
