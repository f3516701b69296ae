import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { makeRepository, startApp, versionedEntries } from '../helpers.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SECRET = 'operator-secret-operator-secret-0123';

/** Runs `npm run token -- …` the way an operator would (without npm's banner). */
function mintToken(args: string[], env: Record<string, string>) {
  return promisify(execFile)(process.execPath, ['--import', 'tsx', 'scripts/mint-token.ts', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...env },
  });
}

describe('npm run token', () => {
  it('mints a token the server accepts, with exactly the scopes asked for', async () => {
    const { stdout } = await mintToken(['--scope', 'models:read', '--ttl', '5m', '--sub', 'ops'], {
      ADMIN_JWT_SECRET: SECRET,
      ADMIN_JWT_AUDIENCE: 'wattserve',
    });
    const token = stdout.trim();
    const repository = await makeRepository(versionedEntries('m', [1]));
    const app = await startApp({
      MODEL_REPOSITORY: repository,
      ADMIN_JWT_SECRET: SECRET,
      ADMIN_JWT_AUDIENCE: 'wattserve',
    });
    await request(app.server).get('/admin/models').set('authorization', `Bearer ${token}`).expect(200);
    await request(app.server).post('/admin/models/m/reload').set('authorization', `Bearer ${token}`).expect(403);
    const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString());
    expect(claims).toMatchObject({ sub: 'ops', scope: 'models:read', aud: 'wattserve' });
    expect(claims.exp - claims.iat).toBe(300);
  });

  it('reads a bare --ttl number as seconds', async () => {
    const { stdout } = await mintToken(['--scope', 'models:read', '--ttl', '90'], { ADMIN_JWT_SECRET: SECRET });
    const claims = JSON.parse(Buffer.from(stdout.trim().split('.')[1] ?? '', 'base64url').toString());
    expect(claims.exp - claims.iat).toBe(90);
  });

  it('refuses a TTL that would mint a token dead on arrival', async () => {
    for (const ttl of ['0', '1.5']) {
      await expect(
        mintToken(['--scope', 'models:read', '--ttl', ttl], { ADMIN_JWT_SECRET: SECRET }),
      ).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('--ttl') });
    }
  });

  it('refuses to run without the secret, or without a scope', async () => {
    await expect(mintToken(['--scope', 'models:read'], {})).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining('ADMIN_JWT_SECRET'),
    });
    await expect(mintToken([], { ADMIN_JWT_SECRET: SECRET })).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining('--scope'),
    });
  });
});
