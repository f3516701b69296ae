import path from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { EstimateReply } from '../../src/kepler/estimator.js';
import { type EstimatorSocket, listenEstimatorSocket } from '../../src/kepler/socket.js';
import { makeRepository } from '../helpers.js';
import { wholeReply } from './clients.js';

const open: EstimatorSocket[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((socket) => socket.close()));
});

/** A socket whose answer echoes the request's `pods` as that many watts, with a log to read. */
async function echoSocket(limits: { maxBytes?: number; deadlineMs?: number } = {}) {
  const socketPath = path.join(await makeRepository({}), 'estimator.sock');
  const lines: string[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => lines.push(line) });
  const options = {
    path: socketPath,
    maxBytes: limits.maxBytes ?? 1024 * 1024,
    deadlineMs: limits.deadlineMs ?? 10_000,
    maxConnections: 8,
    maxJsonDepth: 32,
    log,
    answer: async (body: unknown): Promise<EstimateReply> => {
      const pods = (body as { pods?: number }).pods ?? 1;
      return { powers: { package: Array.from({ length: pods }, (_, i) => 100 + i / 7) }, msg: '', core_ratio: 1 };
    },
  };
  const socket = await listenEstimatorSocket(options);
  open.push(socket);
  return { socketPath, lines, options };
}

describe('the estimator socket’s limits', () => {
  it('refuses a request over the size limit with a reply saying so', async () => {
    const { socketPath } = await echoSocket({ maxBytes: 1000 });
    const reply = await wholeReply(socketPath, (s) => s.write(`{"pad":"${'x'.repeat(5000)}"}`));
    expect(JSON.parse(reply)).toEqual({ powers: {}, msg: 'the request is larger than 1000 bytes' });
  });

  it('refuses a request nested deeper than MAX_JSON_DEPTH, as over HTTP', async () => {
    const { socketPath } = await echoSocket();
    const deep = `{"pods": 1, "x": ${'['.repeat(40)}${']'.repeat(40)}}`;
    const reply = await wholeReply(socketPath, (s) => s.write(deep));
    expect(JSON.parse(reply)).toEqual({ powers: {}, msg: expect.stringContaining('MAX_JSON_DEPTH') });
  });

  it('closes a connection still open at its deadline, even one that trickles bytes', async () => {
    const { socketPath } = await echoSocket({ deadlineMs: 300 });
    const started = Date.now();
    const reply = await wholeReply(socketPath, (s) => {
      s.write('{"po');
      const trickle = setInterval(() => s.write(' '), 50);
      s.on('close', () => clearInterval(trickle));
    });
    expect(reply).toBe('');
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('tells a client that hangs up mid-request that its request was incomplete', async () => {
    const { socketPath } = await echoSocket();
    const reply = await wholeReply(socketPath, (s) => s.end('{"pods": 2, "metr'));
    expect(JSON.parse(reply)).toEqual({ powers: {}, msg: 'the request ended before its JSON object was complete' });
  });

  it('writes the whole reply even past Kepler’s 4096-byte read, and logs a warning', async () => {
    const { socketPath, lines } = await echoSocket();
    const reply = await wholeReply(socketPath, (s) => s.write('{"pods": 600}'));
    expect(Buffer.byteLength(reply)).toBeGreaterThan(4096);
    expect((JSON.parse(reply) as EstimateReply).powers.package).toHaveLength(600);
    expect(lines.join('')).toContain('Kepler cannot parse it');
    const small = await wholeReply(socketPath, (s) => s.write('{"pods": 3}'));
    expect(Buffer.byteLength(small)).toBeLessThanOrEqual(4096);
  });

  it('refuses to take over a socket another process still serves', async () => {
    const { options } = await echoSocket();
    await expect(listenEstimatorSocket(options)).rejects.toThrow('another process is serving');
    const reply = await wholeReply(options.path, (s) => s.write('{"pods": 1}'));
    expect(JSON.parse(reply).powers.package).toHaveLength(1);
  });
});
