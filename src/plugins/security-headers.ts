import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import helmet, { type HelmetOptions } from 'helmet';

/**
 * The Content-Security-Policy of every API answer: JSON, CSV and error bodies are never meant to be
 * rendered, so a browser that is tricked into rendering one may run, load or frame nothing.
 */
export const API_CSP_DIRECTIVES = {
  'default-src': ["'none'"],
  'frame-ancestors': ["'none'"],
};

/**
 * helmet's choices for a JSON API: nosniff, no framing, no referrer, a CSP that allows nothing, and
 * its cross-origin isolation defaults.
 *
 * No Strict-Transport-Security: the app speaks plain HTTP behind whatever terminates TLS (nginx,
 * an ingress, SageMaker's front end), browsers ignore HSTS over HTTP, and whether a whole host (and
 * with includeSubDomains, its subdomains) is HTTPS-only for a year is that edge's decision.
 */
const API_HELMET_OPTIONS: HelmetOptions = {
  contentSecurityPolicy: { useDefaults: false, directives: API_CSP_DIRECTIVES },
  frameguard: { action: 'deny' },
  referrerPolicy: { policy: 'no-referrer' },
  strictTransportSecurity: false,
};

/**
 * The headers helmet sets with these options, computed once. With static options they are the same
 * on every answer, and running helmet's middleware chain per request cost about a sixth of the
 * throughput of a small prediction (bench/throughput.ts).
 */
export function helmetHeaders(options: HelmetOptions): Readonly<Record<string, string>> {
  const headers = new Map<string, string>();
  const response = {
    setHeader(name: string, value: unknown) {
      headers.set(name.toLowerCase(), String(value));
    },
    removeHeader(name: string) {
      headers.delete(name.toLowerCase());
    },
  };
  let failure: unknown;
  helmet(options)({} as IncomingMessage, response as unknown as ServerResponse, (error?: unknown) => {
    failure = error;
  });
  if (failure !== undefined) throw failure;
  return Object.freeze(Object.fromEntries(headers));
}

export const API_SECURITY_HEADERS = helmetHeaders(API_HELMET_OPTIONS);

/**
 * A CSP directive set written as helmet writes it (for pages that relax the API's, like /docs).
 */
export function contentSecurityPolicy(directives: HelmetOptions['contentSecurityPolicy']): string {
  const csp = helmetHeaders({ ...API_HELMET_OPTIONS, contentSecurityPolicy: directives })['content-security-policy'];
  if (csp === undefined) throw new Error('helmet set no Content-Security-Policy');
  return csp;
}

/**
 * The headers sent on answers written straight to the socket, past Fastify's hooks (a URL that does
 * not decode, a request Node's parser refuses or times out): the part of the set that matters for
 * a JSON body.
 */
export const RAW_REPLY_SECURITY_HEADERS = Object.freeze(
  Object.fromEntries(
    ['content-security-policy', 'x-content-type-options', 'x-frame-options', 'referrer-policy'].map((name) => [
      name,
      API_SECURITY_HEADERS[name] as string,
    ]),
  ),
);

/**
 * Security headers on every answer (errors and 404s included, as they are set in onRequest).
 * /docs relaxes the CSP for its own pages (src/plugins/docs.ts).
 *
 * No CORS: nothing here registers @fastify/cors, so no answer carries Access-Control-Allow-Origin
 * and browsers on other origins cannot read any of them. The clients (Kepler, SageMaker, services)
 * are not browsers.
 */
export default fp(
  async function securityHeaders(app: FastifyInstance) {
    app.addHook('onRequest', (_request, reply, done) => {
      reply.headers(API_SECURITY_HEADERS);
      done();
    });
  },
  { name: 'security-headers' },
);
