import { generateKeyPairSync } from 'node:crypto';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { captureLogs, makeRepository, startApp, versionedEntries } from '../helpers.js';
import { bearer, handmadeToken, inAMinute, SECRET, tampered, token } from './helpers.js';

async function appWithSecret(env: Record<string, string> = {}) {
  const repository = await makeRepository(versionedEntries('m', [1, 2]));
  return startApp({ MODEL_REPOSITORY: repository, ADMIN_JWT_SECRET: SECRET, ...env });
}

const rsa = generateKeyPairSync('rsa', {
  modulusLength: 2048,
  publicKeyEncoding: { type: 'spki', format: 'pem' },
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
});
const ec = generateKeyPairSync('ec', {
  namedCurve: 'P-256',
  publicKeyEncoding: { type: 'spki', format: 'pem' },
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
});

describe('admin API access', () => {
  it('is off unless a verification key is configured', async () => {
    const app = await startApp();
    const { body } = await request(app.server).get('/admin/models').set(bearer()).expect(404);
    expect(body.error.code).toBe('not_found');
  });

  it('lets a valid token with the right scope through', async () => {
    const app = await appWithSecret();
    const { body } = await request(app.server).get('/admin/models').set(bearer()).expect(200);
    expect(body.models.map((m: { name: string }) => m.name)).toEqual(['m']);
  });

  const attacks: Record<string, () => Record<string, string>> = {
    'no Authorization header': () => ({}),
    'a Basic credential': () => ({ authorization: 'Basic YWRtaW46YWRtaW4=' }),
    'a Bearer with nothing after it': () => ({ authorization: 'Bearer ' }),
    'a Bearer that is not a JWT': () => bearer('not.a.jwt'),
    'alg: none': () => bearer(handmadeToken({ alg: 'none', typ: 'JWT' }, { scope: 'models:read', exp: inAMinute() })),
    'an expired token': () => bearer(token({ exp: Math.floor(Date.now() / 1000) - 5 }, { expiresIn: 0 })),
    'a token without exp': () => bearer(token({}, { expiresIn: 0 })),
    'a token signed with another secret': () => bearer(token({}, { key: 'another-secret-another-secret-another' })),
    'a tampered payload': () =>
      bearer(
        tampered(token({ scope: 'models:read' }), {
          sub: 'tester',
          scope: 'models:read models:write',
          exp: inAMinute(),
        }),
      ),
  };

  for (const [attack, headers] of Object.entries(attacks)) {
    it(`refuses ${attack} with 401 and a JSON error`, async () => {
      const app = await appWithSecret();
      const response = await request(app.server).get('/admin/models').set(headers()).expect(401);
      expect(response.body.error).toMatchObject({ code: 'unauthorized', field: 'authorization' });
      expect(response.headers['www-authenticate']).toMatch(/^Bearer /);
      expect(JSON.stringify(response.body)).not.toMatch(/at \w+ \(|node_modules/);
    });
  }

  it('says which check an expired token failed', async () => {
    const app = await appWithSecret();
    const expired = token({ exp: Math.floor(Date.now() / 1000) - 5 }, { expiresIn: 0 });
    const { body } = await request(app.server).get('/admin/models').set(bearer(expired)).expect(401);
    expect(body.error.message).toMatch(/expired/);
  });

  it('needs models:read to read and models:write to change anything (403 otherwise)', async () => {
    const app = await appWithSecret();
    const reader = bearer(token({ scope: 'models:read' }));
    const writer = bearer(token({ scope: 'models:write' }));
    await request(app.server).get('/admin/models').set(reader).expect(200);
    const refused = await request(app.server).post('/admin/models/m/promote').set(reader).send({ version: 1 });
    expect(refused.status).toBe(403);
    expect(refused.body.error).toMatchObject({ code: 'forbidden', message: expect.stringContaining('models:write') });
    expect((await request(app.server).get('/admin/models').set(writer)).status).toBe(403);
    await request(app.server).post('/admin/models/m/promote').set(writer).send({ version: 1 }).expect(200);
  });

  it('takes scopes as a list in `scopes` too', async () => {
    const app = await appWithSecret();
    const listed = token({ scope: undefined, scopes: ['models:read'] });
    await request(app.server).get('/admin/models').set(bearer(listed)).expect(200);
  });

  it('checks issuer and audience when they are configured', async () => {
    const app = await appWithSecret({ ADMIN_JWT_ISSUER: 'https://auth.example', ADMIN_JWT_AUDIENCE: 'wattserve' });
    const good = token({ iss: 'https://auth.example', aud: 'wattserve' });
    await request(app.server).get('/admin/models').set(bearer(good)).expect(200);
    for (const claims of [
      { iss: 'https://auth.example', aud: 'another-service' },
      { iss: 'https://evil.example', aud: 'wattserve' },
      { aud: 'wattserve' },
      { iss: 'https://auth.example' },
    ]) {
      const { body } = await request(app.server)
        .get('/admin/models')
        .set(bearer(token(claims)))
        .expect(401);
      expect(body.error.code).toBe('unauthorized');
    }
  });

  describe('with an RS256 public key', () => {
    const env = () => ({ ADMIN_JWT_PUBLIC_KEY: rsa.publicKey });

    it('accepts a token signed with the private key', async () => {
      const app = await appWithSecret({ ADMIN_JWT_SECRET: '', ...env() });
      const signed = token({}, { key: rsa.privateKey, algorithm: 'RS256' });
      await request(app.server).get('/admin/models').set(bearer(signed)).expect(200);
    });

    it('refuses an HS256 token keyed with the public key itself (algorithm confusion)', async () => {
      const app = await appWithSecret({ ADMIN_JWT_SECRET: '', ...env() });
      const forged = handmadeToken(
        { alg: 'HS256', typ: 'JWT' },
        { sub: 'mallory', scope: 'models:read models:write', exp: inAMinute() },
        rsa.publicKey,
      );
      const { body } = await request(app.server).get('/admin/models').set(bearer(forged)).expect(401);
      expect(body.error.code).toBe('unauthorized');
    });

    it('refuses a token signed with another RSA key', async () => {
      const app = await appWithSecret({ ADMIN_JWT_SECRET: '', ...env() });
      const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
        type: 'pkcs8',
        format: 'pem',
      });
      const signed = token({}, { key: other.toString(), algorithm: 'RS256' });
      await request(app.server).get('/admin/models').set(bearer(signed)).expect(401);
    });
  });

  it('verifies ES256 tokens against an EC P-256 public key', async () => {
    const app = await appWithSecret({ ADMIN_JWT_SECRET: '', ADMIN_JWT_PUBLIC_KEY: ec.publicKey });
    const signed = token({}, { key: ec.privateKey, algorithm: 'ES256' });
    await request(app.server).get('/admin/models').set(bearer(signed)).expect(200);
    await request(app.server).get('/admin/models').set(bearer(token())).expect(401);
  });

  it('logs each action with who did it, never the token', async () => {
    const { lines, logStream } = captureLogs();
    const repository = await makeRepository(versionedEntries('m', [1, 2]));
    const app = await startApp(
      { MODEL_REPOSITORY: repository, ADMIN_JWT_SECRET: SECRET, LOG_LEVEL: 'trace' },
      { logStream },
    );
    const jwt = token({ sub: 'alice' });
    await request(app.server).post('/admin/models/m/promote').set(bearer(jwt)).send({ version: 1 }).expect(200);
    await request(app.server).delete('/admin/models/m/versions/1').set(bearer(jwt)).expect(409);
    await request(app.server)
      .get('/admin/models')
      .set(bearer(`${jwt}x`))
      .expect(401);

    expect(lines.filter((r) => r.action !== undefined)).toEqual([
      expect.objectContaining({ sub: 'alice', action: 'promote', model: 'm', before: 2, after: 1, outcome: 'done' }),
      expect.objectContaining({ sub: 'alice', action: 'unload', model: 'm', before: 1, after: 1, outcome: 'conflict' }),
    ]);
    expect(JSON.stringify(lines)).not.toContain(jwt.split('.')[2]);
  });

  it('refuses to start with an HMAC secret short enough to brute-force', async () => {
    await expect(startApp({ ADMIN_JWT_SECRET: 'short' })).rejects.toThrow(/ADMIN_JWT_SECRET.*32/);
  });
});
