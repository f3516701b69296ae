import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { LINEAR, PODS, startApp } from '../helpers.js';

describe('the registry plugin at shutdown', () => {
  it('turns /ping 503 as soon as closing starts, serves the requests already sent, then frees the models', async () => {
    const app = await startApp();
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    const body = JSON.stringify({ instances: PODS });
    // A client mid-request: headers and part of the body sent on an open connection.
    const socket = connect(port, '127.0.0.1');
    let received = '';
    socket.on('data', (chunk) => (received += chunk));
    const ended = new Promise((resolve) => socket.once('close', resolve));
    socket.write(
      `POST /predict/${LINEAR} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`,
    );
    await expect.poll(() => app.metrics?.text().then((text) => /in_flight 1\b/.test(text))).toBe(true);

    const closing = app.close();
    await expect.poll(() => app.models.notReadyReason).toBe('shutting down');
    // The rest of the body, and a /ping sent behind it on the same connection.
    socket.write(`${body.slice(10)}GET /ping HTTP/1.1\r\nHost: x\r\n\r\n`);
    await ended;
    await closing;
    const answers = received.split(/(?=HTTP\/1\.1 )/);
    expect(answers.map((answer) => answer.slice(0, 12))).toEqual(['HTTP/1.1 200', 'HTTP/1.1 503']);
    expect(answers[1]).toContain('"message":"shutting down"');
    expect(app.models.status().models).toEqual([]);
  });
});
