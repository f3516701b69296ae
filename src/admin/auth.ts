import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../errors.js';
import type { AdminClaims } from '../plugins/jwt.js';

export const READ_SCOPE = 'models:read';
export const WRITE_SCOPE = 'models:write';

/** The scopes a token grants: `scope` as a space-separated string, `scopes` as a list, or both. */
export function scopesOf(claims: AdminClaims): Set<string> {
  const fromString = typeof claims.scope === 'string' ? claims.scope.split(' ') : [];
  const fromList = Array.isArray(claims.scopes) ? claims.scopes.filter((s) => typeof s === 'string') : [];
  return new Set([...fromString, ...fromList].filter((scope) => scope !== ''));
}

/** Reading needs models:read; anything that changes state needs models:write. */
export function scopeFor(method: string): string {
  return method === 'GET' || method === 'HEAD' ? READ_SCOPE : WRITE_SCOPE;
}

/** What went wrong with a token, in words safe to return: never the token, never a stack. */
export function tokenProblem(code: string | undefined, message: string): string {
  switch (code) {
    case 'FST_JWT_AUTHORIZATION_TOKEN_INVALID':
      // fast-jwt's own words ("The aud claim value is not allowed."): they name the failed check only.
      return `the token is not valid: ${message.replace(/^Authorization token is invalid: /, '')}`;
    case 'FST_JWT_NO_AUTHORIZATION_IN_HEADER':
      return 'send a token in the header Authorization: Bearer <token>';
    case 'FST_JWT_BAD_REQUEST':
      return 'the Authorization header must be "Bearer <token>"';
    case 'FST_JWT_AUTHORIZATION_TOKEN_EXPIRED':
      return 'the token has expired';
    case 'FAST_JWT_MISSING_SIGNATURE':
      return 'the token is not signed';
    case 'FAST_JWT_INVALID_ALGORITHM':
      return "the token's algorithm is not the one the configured key is for";
    case 'FAST_JWT_MALFORMED':
    case 'FAST_JWT_INVALID_PAYLOAD':
      return 'the token is malformed';
    case 'FAST_JWT_INACTIVE':
      return 'the token is not valid yet (nbf)';
    default:
      return 'the token cannot be verified';
  }
}

/**
 * Guards every admin route: a valid token (401 otherwise, with WWW-Authenticate as RFC 6750 asks)
 * holding the scope the method needs (403 otherwise).
 */
export async function requireAdminToken(request: FastifyRequest, reply: FastifyReply): Promise<void> {
  await checkAdminToken(request, reply, scopeFor(request.method));
}

/**
 * The same check with a fixed scope, for routes whose method does not say whether they change
 * anything (the V2 repository index is a POST that only reads).
 */
export function requireAdminScope(needed: string): (request: FastifyRequest, reply: FastifyReply) => Promise<void> {
  return (request, reply) => checkAdminToken(request, reply, needed);
}

async function checkAdminToken(request: FastifyRequest, reply: FastifyReply, needed: string): Promise<void> {
  let claims: AdminClaims;
  try {
    claims = await request.jwtVerify<AdminClaims>();
  } catch (error) {
    reply.header('www-authenticate', 'Bearer realm="wattserve-admin", error="invalid_token"');
    const { code, message } = error as { code?: string; message: string };
    request.server.metrics?.authFailed(
      code === 'FST_JWT_NO_AUTHORIZATION_IN_HEADER'
        ? 'missing'
        : code === 'FST_JWT_AUTHORIZATION_TOKEN_EXPIRED'
          ? 'expired'
          : 'invalid',
    );
    throw new ApiError('unauthorized', tokenProblem(code, message), 'authorization');
  }
  if (!scopesOf(claims).has(needed)) {
    request.server.metrics?.authFailed('forbidden');
    reply.header('www-authenticate', `Bearer realm="wattserve-admin", error="insufficient_scope", scope="${needed}"`);
    throw new ApiError('forbidden', `the token lacks the scope ${needed}`, 'authorization');
  }
}
