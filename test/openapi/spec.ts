import { readFileSync } from 'node:fs';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { parse } from 'yaml';
import { OPENAPI_PATH } from '../../src/plugins/docs.js';

/** The parts of an OpenAPI 3.1 document the tests read. */
export interface Reference {
  $ref: string;
}
export interface Parameter {
  name: string;
  in: 'query' | 'header' | 'path' | 'cookie';
  required?: boolean;
  schema?: Schema;
}
export interface MediaType {
  schema?: Schema;
}
export interface Header {
  required?: boolean;
  schema?: Schema;
}
export interface Response {
  description: string;
  headers?: Record<string, Header | Reference>;
  content?: Record<string, MediaType>;
}
export interface RequestBody {
  required?: boolean;
  content: Record<string, MediaType>;
}
export interface Operation {
  operationId?: string;
  tags?: string[];
  parameters?: Array<Parameter | Reference>;
  requestBody?: RequestBody | Reference;
  responses?: Record<string, Response | Reference>;
  security?: Array<Record<string, string[]>>;
}
export type PathItem = { parameters?: Array<Parameter | Reference> } & Partial<Record<HttpMethod, Operation>>;
export type Schema = Record<string, unknown> | boolean;
export interface OpenApiDocument {
  openapi: string;
  info: { title: string; version: string };
  tags?: Array<{ name: string }>;
  paths: Record<string, PathItem>;
  components: {
    schemas: Record<string, Schema>;
    responses: Record<string, Response>;
    parameters: Record<string, Parameter>;
    headers: Record<string, Header>;
    requestBodies: Record<string, RequestBody>;
    securitySchemes: Record<string, Record<string, unknown>>;
  };
}

export const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];

export { OPENAPI_PATH };

/** openapi.yaml as the docs plugin serves it. */
export function loadSpec(): OpenApiDocument {
  return parse(readFileSync(OPENAPI_PATH, 'utf8')) as OpenApiDocument;
}

/** The value a local reference (`#/components/...`) points at, or undefined when it points nowhere. */
export function lookUp(spec: OpenApiDocument, ref: string): unknown {
  if (!ref.startsWith('#/')) return undefined;
  let node: unknown = spec;
  for (const raw of ref.slice(2).split('/')) {
    const key = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, key)) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

/** A reference object replaced by what it points at (followed through chains); throws on a dangling one. */
export function deref<T>(spec: OpenApiDocument, value: T | Reference): T {
  let current: unknown = value;
  for (let hops = 0; hops < 10; hops++) {
    if (current === null || typeof current !== 'object' || !('$ref' in current)) return current as T;
    const { $ref } = current as Reference;
    const target = lookUp(spec, $ref);
    if (target === undefined) throw new Error(`${$ref} points at nothing`);
    current = target;
  }
  throw new Error('reference chain too long');
}

/** Every `$ref` in a document, with where it sits. */
export function allRefs(node: unknown, at = '#'): Array<{ at: string; ref: string }> {
  if (node === null || typeof node !== 'object') return [];
  const found: Array<{ at: string; ref: string }> = [];
  for (const [key, value] of Object.entries(node)) {
    if (key === '$ref' && typeof value === 'string') found.push({ at, ref: value });
    else found.push(...allRefs(value, `${at}/${key}`));
  }
  return found;
}

export interface SpecOperation {
  /** `POST /predict/{model}`. */
  key: string;
  method: Uppercase<HttpMethod>;
  path: string;
  operation: Operation;
  /** Path-level and operation-level parameters, resolved (the operation's win). */
  parameters: Parameter[];
}

export function operationsOf(spec: OpenApiDocument): SpecOperation[] {
  return Object.entries(spec.paths).flatMap(([path, item]) =>
    HTTP_METHODS.flatMap((method) => {
      const operation = item[method];
      if (operation === undefined) return [];
      const byName = new Map<string, Parameter>();
      for (const p of [...(item.parameters ?? []), ...(operation.parameters ?? [])]) {
        const parameter = deref(spec, p);
        byName.set(`${parameter.in}:${parameter.name.toLowerCase()}`, parameter);
      }
      const upper = method.toUpperCase() as Uppercase<HttpMethod>;
      return [{ key: `${upper} ${path}`, method: upper, path, operation, parameters: [...byName.values()] }];
    }),
  );
}

const SCHEMAS_ID = 'openapi.yaml';
const COMPONENT_SCHEMA = /^#\/components\/schemas\//;

/** The schema with `#/components/schemas/X` references pointing into the schema set Ajv holds. */
function retarget(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(retarget);
  if (schema === null || typeof schema !== 'object') return schema;
  return Object.fromEntries(
    Object.entries(schema).map(([key, value]) => [
      key,
      key === '$ref' && typeof value === 'string'
        ? value.replace(COMPONENT_SCHEMA, `${SCHEMAS_ID}#/$defs/`)
        : retarget(value),
    ]),
  );
}

/**
 * JSON Schema 2020-12 validation (OpenAPI 3.1's dialect) of values against the document's schemas.
 * Strict: a schema with an unknown keyword or format does not compile.
 */
export class SchemaValidator {
  readonly #ajv = new Ajv2020({ allErrors: true, strict: true, strictTypes: false });
  readonly #compiled = new Map<Schema, ValidateFunction>();

  constructor(spec: OpenApiDocument) {
    addFormats.default(this.#ajv);
    this.#ajv.addSchema({ $id: SCHEMAS_ID, $defs: retarget(spec.components.schemas) as object });
  }

  /** Compiles every component schema now, so that a broken one fails by name. */
  compileAll(spec: OpenApiDocument): string[] {
    const problems: string[] = [];
    for (const name of Object.keys(spec.components.schemas)) {
      try {
        this.#ajv.getSchema(`${SCHEMAS_ID}#/$defs/${name}`);
      } catch (error) {
        problems.push(`components.schemas.${name}: ${(error as Error).message}`);
      }
    }
    return problems;
  }

  /** The validation errors of value against schema, as lines; empty when it conforms. */
  errors(schema: Schema, value: unknown): string[] {
    let validate = this.#compiled.get(schema);
    if (validate === undefined) {
      validate = this.#ajv.compile(retarget(schema) as object);
      this.#compiled.set(schema, validate);
    }
    if (validate(value)) return [];
    return (validate.errors ?? []).map((e) => `${e.instancePath || '(root)'} ${e.message} ${JSON.stringify(e.params)}`);
  }
}
