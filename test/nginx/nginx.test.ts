import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { bearer, SECRET } from '../admin/helpers.js';
import { freePort, LINEAR, startApp } from '../helpers.js';
import { checkConfig, NGINX, type NginxProxy, SHIPPED_NGINX, startProxy } from './proxy.js';

// CI installs nginx, so there a missing nginx fails instead of skipping.
const withNginx = it.skipIf(NGINX === undefined && process.env.CI === undefined);

const POD = [3600, 1.1e10, 1.9e10, 2.1e8, 3.5e6, 4e5, 2.5e9, 900];
const MEBIBYTE = 1024 * 1024;

/** The shipped models served by the app on a loopback port, and the shipped nginx in front of it. */
async function appBehindNginx(
  env: Record<string, string> = {},
  files: Record<string, string> = {},
): Promise<{ proxy: NginxProxy; direct: string }> {
  const app = await startApp(env);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  return { proxy: await startProxy(`server 127.0.0.1:${port};\n`, files), direct: `http://127.0.0.1:${port}` };
}

function predict(base: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`${base}/predict/${LINEAR}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ instances: [POD] }),
    ...init,
  });
}

/** An error answer in the app's shape, as a client sees it. */
async function errorOf(response: Response) {
  return {
    status: response.status,
    type: response.headers.get('content-type'),
    code: ((await response.json()) as { error: { code: string } }).error.code,
  };
}

describe('the shipped nginx configuration', () => {
  withNginx('passes `nginx -t`, includes resolved relative to nginx.conf', async () => {
    const shipped = await readFile(path.join(SHIPPED_NGINX, 'wattserve', 'upstream.conf'), 'utf8');
    // `wattserve` resolves only inside compose or the cluster, and nginx resolves it at start.
    const resolvable = shipped.replace(/^server wattserve:8080;$/m, 'server 127.0.0.1:8080;');
    expect(resolvable).not.toBe(shipped);

    const { ok, output } = await checkConfig({ 'upstream.conf': resolvable });
    expect(output).toContain('test is successful');
    expect(ok).toBe(true);
  });

  withNginx('refuses an upstream it cannot resolve, so the check above means something', async () => {
    const { ok, output } = await checkConfig({ 'upstream.conf': 'server wattserve.invalid:8080;\n' });
    expect(ok).toBe(false);
    expect(output).toContain('host not found in upstream');
  });
});

describe('wattserve behind nginx', () => {
  withNginx('answers health checks and predictions as the app does', async () => {
    const { proxy, direct } = await appBehindNginx();
    expect((await fetch(`${proxy.url}/ping`)).status).toBe(200);

    const response = await predict(proxy.url);
    expect(response.status).toBe(200);
    const body = (await response.json()) as { model: string; predictions: number[] };
    expect(body.model).toBe(LINEAR);
    expect(body.predictions).toHaveLength(1);
    expect(body).toEqual(await (await predict(direct)).json());

    const invocation = await fetch(`${proxy.url}/invocations`, {
      method: 'POST',
      headers: { 'content-type': 'text/csv', 'x-amzn-sagemaker-target-model': LINEAR },
      body: `${POD.join(',')}\n`,
    });
    expect(invocation.status).toBe(200);
    expect(await invocation.text()).toContain(String(body.predictions[0]));
  });

  withNginx('never compresses prediction answers, latency first', async () => {
    const { proxy } = await appBehindNginx();
    // Enough pods for an answer well over gzip_min_length.
    const response = await predict(proxy.url, {
      headers: { 'content-type': 'application/json', 'accept-encoding': 'gzip' },
      body: JSON.stringify({ instances: Array.from({ length: 200 }, () => POD) }),
    });
    expect(response.status).toBe(200);
    expect(Number(response.headers.get('content-length'))).toBeGreaterThan(2048);
    expect(response.headers.get('content-encoding')).toBeNull();
  });

  withNginx("returns the caller's X-Request-Id, and logs it with the status and the app's time", async () => {
    const { proxy } = await appBehindNginx();
    const response = await predict(proxy.url, {
      headers: { 'content-type': 'application/json', 'x-request-id': 'trace-42.a:b' },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('x-request-id')).toBe('trace-42.a:b');

    const line = await proxy.logLine('trace-42.a:b');
    expect(line).toMatchObject({ method: 'POST', uri: `/predict/${LINEAR}`, status: 200, upstream_status: '200' });
    expect(Number(line.upstream_response_time)).toBeGreaterThanOrEqual(0);
    expect(line.upstream_response_time).not.toBe('');
  });

  withNginx('gives a request without a usable X-Request-Id its own, shared by the app and the log', async () => {
    const { proxy } = await appBehindNginx();
    for (const given of [undefined, 'not a usable id!']) {
      const response = await fetch(`${proxy.url}/ping`, {
        headers: given === undefined ? {} : { 'x-request-id': given },
      });
      const id = response.headers.get('x-request-id') ?? '';
      expect(id).toMatch(/^[0-9a-f]{32}$/);
      expect(await proxy.logLine(id)).toMatchObject({ uri: '/ping', status: 200 });
    }
  });

  withNginx('answers 429 in JSON once a client goes past the rate limit', async () => {
    const { proxy } = await appBehindNginx();
    // The shipped limit (50/s per address, burst 100, nodelay): 300 requests at once go past it
    // unless their arrival spreads over 4 s, so the shipped file is tested rather than a lower limit.
    const answers = await Promise.all(
      Array.from({ length: 300 }, async () => {
        const response = await predict(proxy.url);
        return { status: response.status, headers: response.headers, body: await response.text() };
      }),
    );
    const statuses = answers.map((answer) => answer.status);
    expect(new Set(statuses)).toEqual(new Set([200, 429]));
    // The burst is served whole before any refusal.
    expect(statuses.filter((status) => status === 200).length).toBeGreaterThanOrEqual(101);

    const refused = answers.find((answer) => answer.status === 429);
    expect(refused?.headers.get('content-type')).toBe('application/json');
    expect(refused?.headers.get('retry-after')).toBe('1');
    expect(refused?.headers.get('x-request-id')).toMatch(/^[0-9a-f]{32}$/);
    expect(JSON.parse(refused?.body ?? '')).toEqual({
      error: { code: 'rate_limited', message: expect.any(String) },
    });

    // Health checks are not rate limited.
    expect((await fetch(`${proxy.url}/ping`)).status).toBe(200);
  });

  withNginx('refuses /admin and /metrics from outside the private ranges with 403 JSON', async () => {
    const { proxy, direct } = await appBehindNginx({ ADMIN_JWT_SECRET: SECRET });
    // The app serves both to the same client; nginx refuses them, however the path is spelled.
    expect((await fetch(`${direct}/admin/models`, { headers: bearer() })).status).toBe(200);
    expect((await fetch(`${direct}/metrics`)).status).toBe(200);
    for (const url of ['/admin/models', '/%61dmin/models', '//admin/models', '/metrics', '/metrics/']) {
      const response = await fetch(`${proxy.url}${url}`, { headers: bearer() });
      expect(await errorOf(response), url).toEqual({ status: 403, type: 'application/json', code: 'forbidden' });
    }
    // Encoded slashes would make nginx and the app see different paths: /predict to one, /admin to the other.
    for (const url of ['/admin/models/x%2F..%2F..%2F..%2Fpredict', '/admin/models/x%2f..%2f..%2fping']) {
      const response = await fetch(`${proxy.url}${url}`, { headers: bearer() });
      expect(await errorOf(response), url).toEqual({ status: 400, type: 'application/json', code: 'bad_request' });
    }
  });

  withNginx('lets allow-listed addresses reach /admin, with uploads up to MAX_MODEL_BYTES', async () => {
    // How an operator edits the allow-list: the test client is on loopback, which ships denied.
    const { proxy } = await appBehindNginx(
      { ADMIN_JWT_SECRET: SECRET },
      { 'private.conf': 'allow 127.0.0.1;\ndeny all;\n' },
    );
    expect((await fetch(`${proxy.url}/admin/models`, { headers: bearer() })).status).toBe(200);

    // Over the 6 MiB prediction limit: the app, not nginx, answers (it is no archive).
    const upload = await fetch(`${proxy.url}/admin/models/big/versions/1`, {
      method: 'PUT',
      headers: { ...bearer(), 'content-type': 'application/gzip' },
      body: new Uint8Array(7 * MEBIBYTE),
    });
    expect(await errorOf(upload)).toEqual({
      status: 422,
      type: 'application/json; charset=utf-8',
      code: 'invalid_archive',
    });
  });

  withNginx('refuses a prediction body over 6 MiB with 413 JSON', async () => {
    const { proxy } = await appBehindNginx();
    // Just over 6 MiB: nginx refuses it (its errors carry no charset) before it reaches the app.
    const response = await predict(proxy.url, { body: `{"instances":[[${'1,'.repeat(3 * MEBIBYTE)}1]]}` });
    expect(await errorOf(response)).toEqual({ status: 413, type: 'application/json', code: 'body_too_large' });
  });

  withNginx("passes the app's own errors through unchanged", async () => {
    const { proxy, direct } = await appBehindNginx();
    for (const [url, body] of [
      [`/predict/no-such-model`, JSON.stringify({ instances: [POD] })],
      [`/predict/${LINEAR}`, '{"instances": [[1, 2'],
      [`/predict/${LINEAR}`, JSON.stringify({ instances: [[1, 2]] })],
    ] as const) {
      const init = { method: 'POST', headers: { 'content-type': 'application/json' }, body };
      const [viaNginx, fromApp] = [await fetch(`${proxy.url}${url}`, init), await fetch(`${direct}${url}`, init)];
      expect(viaNginx.status).toBeGreaterThanOrEqual(400);
      expect(viaNginx.status).toBe(fromApp.status);
      expect(viaNginx.headers.get('content-type')).toBe(fromApp.headers.get('content-type'));
      expect(await viaNginx.text()).toBe(await fromApp.text());
    }
  });

  withNginx('answers 502 in JSON when the app is down', async () => {
    const proxy = await startProxy(`server 127.0.0.1:${await freePort()};\n`);
    const response = await fetch(`${proxy.url}/ping`, { headers: { 'x-request-id': 'while-down' } });
    expect(response.headers.get('x-request-id')).toBe('while-down');
    expect(await errorOf(response)).toEqual({ status: 502, type: 'application/json', code: 'upstream_unavailable' });
  });

  withNginx('answers URLs and headers over its limits in JSON too', async () => {
    const { proxy } = await appBehindNginx();
    // Past nginx's 8 KiB header buffers, below the app's own limit: nginx is the one refusing.
    const longUrl = await fetch(`${proxy.url}/ping?${'x'.repeat(10_000)}`);
    expect(await errorOf(longUrl)).toEqual({ status: 414, type: 'application/json', code: 'uri_too_long' });
    const bigHeader = await fetch(`${proxy.url}/ping`, { headers: { 'x-padding': 'x'.repeat(10_000) } });
    expect(await errorOf(bigHeader)).toEqual({ status: 431, type: 'application/json', code: 'headers_too_large' });
  });
});
