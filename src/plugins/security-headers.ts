import helmet from '@fastify/helmet';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

/**
 * The Content-Security-Policy of every API answer: JSON, CSV and error bodies are never meant to be
 * rendered, so a browser that is tricked into rendering one may run, load or frame nothing.
 */
export const API_CSP_DIRECTIVES = {
  'default-src': ["'none'"],
  'frame-ancestors': ["'none'"],
};

/**
 * The headers sent on answers written straight to the socket, past Fastify's hooks (a URL that does
 * not decode, a request Node's parser refuses or times out): the part of the set below that matters
 * for a JSON body. A test keeps them in step with what helmet sends.
 */
export const RAW_REPLY_SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none';frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
} as const;

/**
 * Security headers on every answer (errors and 404s included, as they are set in onRequest),
 * chosen for a JSON API: nosniff, no framing, no referrer, a CSP that allows nothing, and helmet's
 * cross-origin isolation defaults. /docs relaxes the CSP for its own pages (src/plugins/docs.ts).
 *
 * No Strict-Transport-Security: the app speaks plain HTTP behind whatever terminates TLS (nginx,
 * an ingress, SageMaker's front end), browsers ignore HSTS over HTTP, and whether a whole host (and
 * with includeSubDomains, its subdomains) is HTTPS-only for a year is that edge's decision.
 *
 * No CORS: nothing here registers @fastify/cors, so no answer carries Access-Control-Allow-Origin
 * and browsers on other origins cannot read any of them. The clients (Kepler, SageMaker, services)
 * are not browsers.
 */
export default fp(
  async function securityHeaders(app: FastifyInstance) {
    await app.register(helmet, {
      contentSecurityPolicy: { useDefaults: false, directives: API_CSP_DIRECTIVES },
      frameguard: { action: 'deny' },
      referrerPolicy: { policy: 'no-referrer' },
      strictTransportSecurity: false,
    });
  },
  { name: 'security-headers' },
);
