import { createHmac } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { createSigner } from 'fast-jwt';
import tar from 'tar-stream';

/** The HS256 secret the admin test apps verify with. */
export const SECRET = 'wattserve-test-secret-0123456789abcdef';
export const ALL_SCOPES = 'models:read models:write';

/** A token from SECRET (or the given key) with both scopes and a minute to live, unless claims say otherwise. */
export function token(
  claims: Record<string, unknown> = {},
  options: { key?: string; algorithm?: 'HS256' | 'RS256' | 'ES256'; expiresIn?: number } = {},
): string {
  const sign = createSigner({
    key: options.key ?? SECRET,
    algorithm: options.algorithm ?? 'HS256',
    ...(options.expiresIn !== 0 && { expiresIn: options.expiresIn ?? 60_000 }),
  });
  return sign({ sub: 'tester', scope: ALL_SCOPES, ...claims });
}

export function bearer(jwt: string = token()): { authorization: string } {
  return { authorization: `Bearer ${jwt}` };
}

const segment = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** A token signed by hand: HMAC-SHA256 with any secret (a public key, say), or unsigned for `alg: none`. */
export function handmadeToken(header: Record<string, unknown>, payload: Record<string, unknown>, hmacKey?: string) {
  const body = `${segment(header)}.${segment(payload)}`;
  const signature = hmacKey === undefined ? '' : createHmac('sha256', hmacKey).update(body).digest('base64url');
  return `${body}.${signature}`;
}

/** The token with its payload swapped for another, the signature kept: a tampered token. */
export function tampered(jwt: string, payload: Record<string, unknown>): string {
  const [header, , signature] = jwt.split('.');
  return `${header}.${segment(payload)}.${signature}`;
}

export const inAMinute = () => Math.floor(Date.now() / 1000) + 60;

/** A .tar.gz holding the given files (path → content), as an operator would upload a version. */
export async function tarGz(files: Record<string, Uint8Array | string>): Promise<Buffer> {
  const pack = tar.pack();
  for (const [name, content] of Object.entries(files)) pack.entry({ name }, Buffer.from(content));
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return gzipSync(Buffer.concat(chunks));
}
