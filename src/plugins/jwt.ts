import fastifyJwt from '@fastify/jwt';
import fp from 'fastify-plugin';
import type { AdminConfig } from '../config.js';

/** The claims an admin token carries that wattserve reads. */
export interface AdminClaims {
  sub?: string;
  exp: number;
  /** Space-separated scopes (OAuth 2.0 style) … */
  scope?: string;
  /** … or a list of them. */
  scopes?: string[];
}

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: AdminClaims;
    user: AdminClaims;
  }
}

/**
 * Token verification for the admin API. Only the configured key's algorithm is accepted (so a
 * token cannot choose `none`, or HS256 keyed with the public key); `exp` is required; issuer and
 * audience are checked when configured. Verification only: this service never signs.
 */
export default fp<AdminConfig>(
  async function adminJwt(app, admin) {
    await app.register(fastifyJwt, {
      secret: admin.algorithm === 'HS256' ? admin.key : { public: admin.key },
      verify: {
        algorithms: [admin.algorithm],
        // fast-jwt checks iss and aud only when a token has them: configured means required.
        requiredClaims: [
          'exp',
          ...(admin.issuer !== undefined ? ['iss'] : []),
          ...(admin.audience !== undefined ? ['aud'] : []),
        ],
        ...(admin.issuer !== undefined && { allowedIss: admin.issuer }),
        ...(admin.audience !== undefined && { allowedAud: admin.audience }),
      },
    });
  },
  { name: 'admin-jwt' },
);
