/**
 * Mints an admin token from the configured HMAC secret, for operators and scripts:
 *   ADMIN_JWT_SECRET=… npm run --silent token -- --scope models:write --ttl 1h [--sub alice]
 * Prints the token alone on stdout. --scope may repeat or hold several space-separated scopes;
 * --ttl takes 90s, 15m, 1h, 7d, or a bare number of seconds (as JWT times are);
 * ADMIN_JWT_ISSUER and ADMIN_JWT_AUDIENCE, when set, go into the token as the server checks them.
 * With a public key configured (RS256/ES256), tokens come from whoever holds the private key.
 */
import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import { createSigner } from 'fast-jwt';
import { ConfigError, loadConfig } from '../src/config.js';

function fail(message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(2);
}

const { values } = parseArgs({
  options: {
    scope: { type: 'string', multiple: true },
    ttl: { type: 'string', default: '1h' },
    sub: { type: 'string' },
  },
});

/** Who the token is for, by default the login running this (containers may have no name for it). */
function defaultSubject(): string {
  try {
    return userInfo().username;
  } catch {
    return 'operator';
  }
}

let admin: ReturnType<typeof loadConfig>['admin'];
try {
  admin = loadConfig().admin;
} catch (error) {
  fail(error instanceof ConfigError ? error.message : String(error));
}
if (admin?.algorithm !== 'HS256') {
  fail('set ADMIN_JWT_SECRET (the secret the server verifies with) to mint a token');
}
// fast-jwt reads a bare number as milliseconds; people mean seconds. A zero or fractional TTL
// would mint a token that is dead on arrival.
const ttl = /^\d+$/.test(values.ttl) ? Number(values.ttl) * 1000 : values.ttl;
if (ttl === 0 || /^[\d.]+$/.test(values.ttl) !== /^\d+$/.test(values.ttl)) {
  fail('--ttl takes a whole number of seconds above zero, or 90s, 15m, 1h, 7d');
}
const scopes = (values.scope ?? []).flatMap((scope) => scope.split(' ')).filter(Boolean);
if (scopes.length === 0) fail('name at least one --scope: models:read, models:write');

let sign: (payload: Record<string, unknown>) => string;
try {
  sign = createSigner({
    key: admin.key,
    algorithm: 'HS256',
    expiresIn: ttl,
    ...(admin.issuer !== undefined && { iss: admin.issuer }),
    ...(admin.audience !== undefined && { aud: admin.audience }),
    sub: values.sub ?? defaultSubject(),
  });
} catch (error) {
  fail(`cannot mint a token: ${(error as Error).message} (--ttl takes e.g. 90s, 15m, 1h, 7d)`);
}
process.stdout.write(`${sign({ scope: scopes.join(' ') })}\n`);
