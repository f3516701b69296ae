import path from 'node:path';
import { fileURLToPath } from 'node:url';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';

/**
 * The OpenAPI document at the repository root: ../../openapi.yaml from src/plugins/ (tsx) and from
 * dist/plugins/ (built) alike. A built image must ship it beside dist/.
 */
export const OPENAPI_PATH = fileURLToPath(new URL('../../openapi.yaml', import.meta.url));

/** Where the Swagger UI is served; it also serves the document at /docs/json and /docs/yaml. */
export const DOCS_PREFIX = '/docs';

/**
 * openapi.yaml, as written (static mode: nothing is generated from the routes), and the Swagger UI
 * over it. Read once at start-up; encapsulated, so it adds no hook to any other route.
 */
export default async function docs(app: FastifyInstance) {
  await app.register(swagger, {
    mode: 'static',
    specification: { path: OPENAPI_PATH, baseDir: path.dirname(OPENAPI_PATH) },
  });
  // No baseDir for the UI: with one, it would serve every file in that folder under /docs/.
  await app.register(swaggerUi, { routePrefix: DOCS_PREFIX });
}
