import path from 'node:path';
import { fileURLToPath } from 'node:url';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { contentSecurityPolicy } from './security-headers.js';

/**
 * The OpenAPI document at the repository root: ../../openapi.yaml from src/plugins/ (tsx) and from
 * dist/plugins/ (built) alike. A built image must ship it beside dist/.
 */
export const OPENAPI_PATH = fileURLToPath(new URL('../../openapi.yaml', import.meta.url));

/** Where the Swagger UI is served; it also serves the document at /docs/json and /docs/yaml. */
export const DOCS_PREFIX = '/docs';

/**
 * The Content-Security-Policy of the /docs pages: Swagger UI's own scripts, styles, its data:
 * images and its fetch of /docs/json, from this origin only; no inline script, no plug-ins, no
 * framing. Inline styles are allowed: Swagger UI's bundle injects a <style> element (in headless
 * Chromium that is the one violation without 'unsafe-inline'; with it, none). The other headers
 * under /docs are the API's.
 */
export const DOCS_CSP_DIRECTIVES = {
  'default-src': ["'none'"],
  'base-uri': ["'none'"],
  'connect-src': ["'self'"],
  'form-action': ["'self'"],
  'frame-ancestors': ["'none'"],
  'img-src': ["'self'", 'data:'],
  'object-src': ["'none'"],
  'script-src': ["'self'"],
  'style-src': ["'self'", "'unsafe-inline'"],
};

/**
 * openapi.yaml, as written (static mode: nothing is generated from the routes), and the Swagger UI
 * over it. Read once at start-up; encapsulated, so it adds no hook to any other route. Needs the
 * security-headers plugin registered first.
 */
export default async function docs(app: FastifyInstance) {
  const csp = contentSecurityPolicy({ useDefaults: false, directives: DOCS_CSP_DIRECTIVES });
  // Runs after the app-wide security-headers hook, replacing only the CSP it set, for every route
  // in here (the UI's own routes and the static files it serves alike).
  app.addHook('onRequest', (_request, reply, done) => {
    reply.header('content-security-policy', csp);
    done();
  });
  await app.register(swagger, {
    mode: 'static',
    specification: { path: OPENAPI_PATH, baseDir: path.dirname(OPENAPI_PATH) },
  });
  // No baseDir for the UI: with one, it would serve every file in that folder under /docs/.
  await app.register(swaggerUi, { routePrefix: DOCS_PREFIX });
}
