import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { RAW_REPLY_SECURITY_HEADERS } from '../src/plugins/security-headers.js';
import { captureLogs, LINEAR, startApp } from './helpers.js';

// The small timeouts below only bound how long these tests wait; nothing here measures time.

/** An app listening on a loopback port, with these settings. */
async function listening(env: Record<string, string>) {
  const logs = captureLogs();
  const app = await startApp({ LOG_LEVEL: 'warn', ...env }, { logStream: logs.logStream });
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { port: (app.server.address() as AddressInfo).port, logs };
}

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * Opens a connection, writes `raw` (and nothing more, ever), and reads until the server closes it:
 * the answer it gave, if any.
 */
async function exchange(port: number, raw: string): Promise<Answer | undefined> {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  if (raw !== '') socket.write(raw);
  let text = '';
  socket.on('data', (chunk) => (text += chunk));
  await once(socket, 'close');
  return text === '' ? undefined : parse(text);
}

function parse(text: string): Answer {
  const end = text.indexOf('\r\n\r\n');
  const [statusLine = '', ...lines] = text.slice(0, end).split('\r\n');
  const headers = Object.fromEntries(
    lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]),
  );
  return { status: Number(statusLine.split(' ')[1]), headers, body: text.slice(end + 4) };
}

const bodyOf = (answer: Answer | undefined) => JSON.parse(answer?.body ?? 'null');

describe('server timeouts and limits, over real connections', () => {
  it('answers a body that does not arrive within REQUEST_TIMEOUT_MS with a JSON 408 and closes', async () => {
    const { port, logs } = await listening({ REQUEST_TIMEOUT_MS: '300', HEADERS_TIMEOUT_MS: '300' });
    const head =
      `POST /predict/${LINEAR} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
      'Content-Length: 1000\r\n\r\n{"instances": [[1, 2,';
    const answer = await exchange(port, head);
    expect(answer?.status).toBe(408);
    expect(answer?.headers).toMatchObject({ 'content-type': 'application/json', connection: 'close' });
    expect(bodyOf(answer)).toEqual({ error: { code: 'request_timeout', message: expect.stringContaining('300 ms') } });
    expect(answer?.headers).toMatchObject(RAW_REPLY_SECURITY_HEADERS);
    // A client that went slow is not a fault of the server's.
    expect(logs.lines.filter((line) => (line.level as number) >= 50)).toEqual([]);
  });

  it('cuts off a client that never finishes its headers after HEADERS_TIMEOUT_MS, well before REQUEST_TIMEOUT_MS', async () => {
    // Were it the 10-minute request timeout that applied, this test would time out.
    const { port } = await listening({ REQUEST_TIMEOUT_MS: '600000', HEADERS_TIMEOUT_MS: '300' });
    const trickled = await exchange(port, `POST /predict/${LINEAR} HTTP/1.1\r\nHost: x\r\nContent-Type: applic`);
    expect(trickled?.status).toBe(408);
    expect(bodyOf(trickled).error.code).toBe('request_timeout');
    // A client that connects and sends nothing at all is cut off too.
    const silent = await exchange(port, '');
    expect(silent?.status).toBe(408);
  });

  it('answers headers over MAX_HEADER_BYTES with a JSON 431, and serves headers under it', async () => {
    const { port } = await listening({ MAX_HEADER_BYTES: '2048' });
    const big = await exchange(port, `GET /live HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(3000)}\r\n\r\n`);
    expect(big?.status).toBe(431);
    expect(bodyOf(big)).toEqual({ error: { code: 'headers_too_large', message: expect.stringContaining('2048') } });
    expect(big?.headers).toMatchObject(RAW_REPLY_SECURITY_HEADERS);

    const fits = await exchange(
      port,
      `GET /live HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(1500)}\r\nConnection: close\r\n\r\n`,
    );
    expect(fits?.status).toBe(200);
    expect(bodyOf(fits)).toEqual({ status: 'live' });
  });

  it('keeps idle connections open for KEEP_ALIVE_TIMEOUT_MS and says so, then closes them', async () => {
    const { port } = await listening({ KEEP_ALIVE_TIMEOUT_MS: '2000' });
    // The server closes this idle keep-alive connection itself, after answering.
    const answer = await exchange(port, 'GET /live HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(answer?.status).toBe(200);
    expect(answer?.headers).toMatchObject({ connection: 'keep-alive', 'keep-alive': 'timeout=2' });

    // The default: 65 s, longer than nginx's and AWS load balancers' 60 s.
    const defaults = await listening({});
    const response = await fetch(`http://127.0.0.1:${defaults.port}/live`);
    expect(response.headers.get('keep-alive')).toBe('timeout=65');
  });
});
