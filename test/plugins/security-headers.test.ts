import type { LightMyRequestResponse } from 'fastify';
import { describe, expect, it } from 'vitest';
import { DOCS_PREFIX } from '../../src/plugins/docs.js';
import { RAW_REPLY_SECURITY_HEADERS } from '../../src/plugins/security-headers.js';
import { LINEAR, PODS, startApp } from '../helpers.js';

/** What every API answer carries, success or error. */
const API_HEADERS = {
  'content-security-policy': "default-src 'none';frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-resource-policy': 'same-origin',
  'cross-origin-opener-policy': 'same-origin',
};

function expectApiHeaders(answer: LightMyRequestResponse) {
  expect(answer.headers).toMatchObject(API_HEADERS);
  // TLS ends before the app: HSTS is the edge's to send. Fastify never says what it is.
  expect(answer.headers['strict-transport-security']).toBeUndefined();
  expect(answer.headers['x-powered-by']).toBeUndefined();
}

describe('security headers', () => {
  it('are on prediction answers, on errors, and on answers refused before routing', async () => {
    const app = await startApp();
    const ok = await app.inject({ method: 'POST', url: `/predict/${LINEAR}`, payload: { instances: PODS } });
    expect(ok.statusCode).toBe(200);
    expectApiHeaders(ok);
    const csv = await app.inject({
      method: 'POST',
      url: '/invocations',
      headers: { 'content-type': 'text/csv', accept: 'text/csv', 'x-amzn-sagemaker-target-model': LINEAR },
      payload: PODS.map((row) => row.join(',')).join('\n'),
    });
    expect(csv.statusCode).toBe(200);
    expectApiHeaders(csv);

    const invalid = await app.inject({
      method: 'POST',
      url: '/predict',
      headers: { 'content-type': 'application/json' },
      payload: '{',
    });
    expect(invalid.statusCode).toBe(400);
    expectApiHeaders(invalid);
    const missing = await app.inject({ url: '/nowhere' });
    expect(missing.statusCode).toBe(404);
    expectApiHeaders(missing);

    // A URL that does not decode is answered before any hook: the same core headers, set by hand.
    const badUrl = await app.inject({ url: '/predict/%E0%A4%A' });
    expect(badUrl.statusCode).toBe(400);
    expect(badUrl.headers).toMatchObject(RAW_REPLY_SECURITY_HEADERS);
  });

  it('sends, on answers written past the hooks, the same values helmet sends', async () => {
    const app = await startApp();
    const { headers } = await app.inject({ url: '/live' });
    const sent = Object.fromEntries(Object.keys(RAW_REPLY_SECURITY_HEADERS).map((name) => [name, headers[name]]));
    expect(sent).toEqual(RAW_REPLY_SECURITY_HEADERS);
  });

  it('relax the CSP for /docs only, enough for Swagger UI to load its own assets', async () => {
    const app = await startApp();
    const page = await app.inject({ url: DOCS_PREFIX });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    const csp = String(page.headers['content-security-policy']);
    expect(csp.split(';')).toEqual(
      expect.arrayContaining([
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "frame-ancestors 'none'",
        "object-src 'none'",
      ]),
    );
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    expect(page.headers['x-frame-options']).toBe('DENY');

    // Scripts only from files (script-src 'self' allows no inline script), and every asset loads.
    expect(page.body).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    const assets = [...page.body.matchAll(/(?:src|href)="([^"]+)"/g)].map((match) => match[1] as string);
    expect(assets.length).toBeGreaterThanOrEqual(4);
    for (const asset of assets) {
      const answer = await app.inject({ url: asset });
      expect({ asset, status: answer.statusCode }).toEqual({ asset, status: 200 });
      const type = asset.endsWith('.js') ? /javascript/ : asset.endsWith('.css') ? /text\/css/ : /image\/png/;
      expect(answer.headers['content-type']).toMatch(type);
    }
    // What Swagger UI fetches once loaded: the document, from the same origin.
    const document = await app.inject({ url: `${DOCS_PREFIX}/json` });
    expect(document.statusCode).toBe(200);
    expect(document.json().openapi).toMatch(/^3\./);

    // The API keeps its strict policy.
    expect((await app.inject({ url: '/live' })).headers['content-security-policy']).toBe(
      "default-src 'none';frame-ancestors 'none'",
    );
  });
});

describe('CORS', () => {
  const origin = 'https://elsewhere.example';

  it('is off: a cross-origin preflight is not granted', async () => {
    const app = await startApp();
    for (const url of [`/predict/${LINEAR}`, '/invocations', '/admin/models']) {
      const preflight = await app.inject({
        method: 'OPTIONS',
        url,
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
      });
      expect(preflight.statusCode).toBe(404);
      expect(Object.keys(preflight.headers).filter((name) => name.startsWith('access-control-'))).toEqual([]);
    }
  });

  it('is off: a cross-origin request, simple or not, gets no Access-Control-Allow-Origin', async () => {
    const app = await startApp();
    const simple = await app.inject({
      method: 'POST',
      url: `/predict/${LINEAR}`,
      headers: { origin, 'content-type': 'text/plain' },
      payload: JSON.stringify({ instances: PODS }),
    });
    expect(simple.statusCode).toBe(415);
    const json = await app.inject({
      method: 'POST',
      url: `/predict/${LINEAR}`,
      headers: { origin },
      payload: { instances: PODS },
    });
    expect(json.statusCode).toBe(200);
    for (const answer of [simple, json]) {
      expect(Object.keys(answer.headers).filter((name) => name.startsWith('access-control-'))).toEqual([]);
    }
  });
});
