import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { lstat, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { makeRepository, startApp, testConfig } from '../helpers.js';
import { expectFixtureWatts, KEPLER_MODELS, KEPLER_PODS, keplerRequest, keplerValues } from '../kepler-reference.js';
import { keplerClient, wholeReply } from './clients.js';

const FIXTURE = KEPLER_MODELS[1];

async function socketApp() {
  const root = await makeRepository({ 'basic/1': { kepler: FIXTURE.path } });
  const socketPath = path.join(root, 'estimator.sock');
  const app = await startApp({ MODEL_REPOSITORY: root, KEPLER_ESTIMATOR_SOCKET: socketPath });
  return { app, socketPath, root };
}

const socketRequest = (values = keplerValues(), source = 'intel_rapl') =>
  JSON.stringify(keplerRequest({ values, source }));

function expectBasicWatts(reply: string, pods = KEPLER_PODS) {
  const { powers, msg } = JSON.parse(reply) as { powers: Record<string, number[]>; msg: string };
  expect(msg).toBe('');
  expectFixtureWatts(powers, FIXTURE, pods);
}

describe('Kepler estimator on a unix socket', () => {
  it('answers a request the way Kepler reads it', async () => {
    const { socketPath } = await socketApp();
    expectBasicWatts(await keplerClient(socketPath, socketRequest()));
  });

  it.each(KEPLER_MODELS)('answers the watts of $path', async (fixture) => {
    const root = await makeRepository({ 'm/1': { kepler: fixture.path } });
    const socketPath = path.join(root, 'estimator.sock');
    await startApp({ MODEL_REPOSITORY: root, KEPLER_ESTIMATOR_SOCKET: socketPath });
    const source = fixture.path.includes('/acpi/') ? 'acpi' : 'intel_rapl';
    const reply = await keplerClient(socketPath, socketRequest(keplerValues(), source));
    expectFixtureWatts((JSON.parse(reply) as { powers: Record<string, number[]> }).powers, fixture);
  });

  it('reads a request that arrives in many pieces', async () => {
    const { socketPath } = await socketApp();
    const pods = Array.from({ length: 60 }, (_, i) => KEPLER_PODS[i % KEPLER_PODS.length] as Record<string, number>);
    expectBasicWatts(await keplerClient(socketPath, socketRequest(keplerValues(pods)), 7), pods);
  });

  it('answers concurrent connections each with its own reply', async () => {
    const { socketPath } = await socketApp();
    const replies = await Promise.all(
      Array.from({ length: 25 }, (_, i) => {
        const pods = [KEPLER_PODS[i % 3] as Record<string, number>];
        return keplerClient(socketPath, socketRequest(keplerValues(pods))).then((reply) => ({ reply, pods }));
      }),
    );
    for (const { reply, pods } of replies) expectBasicWatts(reply, pods);
  });

  it('fits 150 rapl pods in Kepler’s single 4096-byte read', async () => {
    const { socketPath } = await socketApp();
    const pods = Array.from({ length: 150 }, (_, i) => ({
      ...(KEPLER_PODS[0] as Record<string, number>),
      bpf_cpu_time_ms: 1000 + i * 37.3,
    }));
    const reply = await wholeReply(socketPath, (s) => s.write(socketRequest(keplerValues(pods))));
    expect(Buffer.byteLength(reply)).toBeLessThanOrEqual(4096);
    expectBasicWatts(reply, pods);
  });

  it('survives clients that hang up early or send garbage, and keeps answering', async () => {
    const { socketPath } = await socketApp();
    const quitter = connect(socketPath);
    await once(quitter, 'connect');
    quitter.write(socketRequest().slice(0, 50));
    quitter.destroy();
    // A client that connects and closes without a word is let go with no reply.
    expect(await wholeReply(socketPath, (s) => s.end())).toBe('');
    const garbage = JSON.parse(await keplerClient(socketPath, 'GET / HTTP/1.1\r\n\r\n'));
    expect(garbage).toEqual({ powers: {}, msg: expect.stringContaining('not a JSON object') });
    const wrong = JSON.parse(await keplerClient(socketPath, JSON.stringify({ metrics: ['x'], values: [[1]] })));
    expect(wrong).toEqual({ powers: {}, msg: expect.stringContaining('output_type') });
    expectBasicWatts(await keplerClient(socketPath, socketRequest()));
  });

  it('replaces a stale socket file left by a dead process', async () => {
    const root = await makeRepository({ 'basic/1': { kepler: FIXTURE.path } });
    const socketPath = path.join(root, 'estimator.sock');
    // A process that binds the socket and dies without cleaning up, as a crashed sidecar would.
    const dying = `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => process.kill(process.pid, 'SIGKILL'))`;
    expect(() => execFileSync(process.execPath, ['-e', dying], { stdio: 'ignore' })).toThrow();
    expect((await lstat(socketPath)).isSocket()).toBe(true);
    const app = await startApp({ MODEL_REPOSITORY: root, KEPLER_ESTIMATOR_SOCKET: socketPath });
    expect(app.config.keplerEstimatorSocket).toBe(socketPath);
    expectBasicWatts(await keplerClient(socketPath, socketRequest()));
  });

  it('refuses to take over a path that is not a socket', async () => {
    const root = await makeRepository({ 'basic/1': { kepler: FIXTURE.path } });
    const socketPath = path.join(root, 'estimator.sock');
    await writeFile(socketPath, 'precious');
    const app = await buildApp(testConfig({ MODEL_REPOSITORY: root, KEPLER_ESTIMATOR_SOCKET: socketPath }));
    await expect(app.ready()).rejects.toThrow('not a socket');
    await app.close();
  });
});
