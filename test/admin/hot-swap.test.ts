import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { makeRepository, startApp, versionedEntries, versionedModel, versionedPredictions } from '../helpers.js';
import { bearer, SECRET, tarGz } from './helpers.js';

const ROWS = [
  [1, 2],
  [3, 4],
  [0.5, 7],
];
const CONCURRENCY = 20;
const TRAFFIC_MS = 2000;

interface Outcome {
  status: number;
  version?: number;
  correct: boolean;
}

describe('swapping models under traffic', () => {
  it(`answers every one of ${CONCURRENCY} concurrent streams with one version's predictions, and /ping with 200, through promote, rollback, upload and unload`, async () => {
    const repository = await makeRepository(versionedEntries('m', [1, 2]));
    const app = await startApp({ MODEL_REPOSITORY: repository, ADMIN_JWT_SECRET: SECRET, DRAIN_TIMEOUT_MS: '5000' });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;

    const outcomes: Outcome[] = [];
    let running = true;
    const client = async () => {
      while (running) {
        const response = await fetch(`${base}/predict`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'm', instances: ROWS }),
        });
        const body = (await response.json()) as { version?: number; predictions?: number[] };
        const version = body.version;
        const correct =
          version !== undefined &&
          JSON.stringify(body.predictions) === JSON.stringify(versionedPredictions(version, ROWS));
        outcomes.push({ status: response.status, version, correct });
      }
    };
    const admin = async (method: string, url: string, body?: string | Buffer, type = 'application/json') => {
      const response = await fetch(`${base}/admin${url}`, {
        method,
        headers: { ...bearer(), ...(body !== undefined && { 'content-type': type }) },
        ...(body !== undefined && { body }),
      });
      return response.status;
    };
    const json = (value: unknown) => JSON.stringify(value);
    const pause = () => new Promise((resolve) => setTimeout(resolve, 100));

    const pings: number[] = [];
    const pinger = async () => {
      while (running) {
        pings.push((await fetch(`${base}/ping`)).status);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };
    const clients = [...Array.from({ length: CONCURRENCY }, client), pinger()];
    const started = Date.now();
    const actions: Array<[string, number]> = [];
    const act = async (what: string, status: Promise<number>) => {
      actions.push([what, await status]);
      await pause();
    };
    let next = 3;
    while (Date.now() - started < TRAFFIC_MS) {
      await act('rollback to 1', admin('POST', '/models/m/promote', json({ version: 1 })));
      await act('promote 2', admin('POST', '/models/m/promote', json({ version: 2 })));
      const uploaded = next++;
      await act(
        `upload ${uploaded}`,
        admin(
          'PUT',
          `/models/m/versions/${uploaded}?promote=true`,
          await tarGz(versionedModel(uploaded)),
          'application/gzip',
        ),
      );
      await act(
        'corrupt upload',
        admin('PUT', `/models/m/versions/${next}`, await tarGz({ 'model.onnx': 'junk' }), 'application/gzip'),
      );
      await act(`unload ${uploaded}`, admin('DELETE', `/models/m/versions/${uploaded}?force=true`));
    }
    running = false;
    await Promise.all(clients);

    expect(actions.filter(([what]) => what === 'corrupt upload').every(([, status]) => status === 422)).toBe(true);
    expect(actions.filter(([what]) => what !== 'corrupt upload')).toEqual(
      actions
        .filter(([what]) => what !== 'corrupt upload')
        .map(([what]) => [what, what.startsWith('upload') ? 201 : 200]),
    );
    expect(outcomes.length).toBeGreaterThan(CONCURRENCY * 10);
    expect(pings.length).toBeGreaterThan(10);
    expect(pings.filter((status) => status !== 200)).toEqual([]);
    expect(outcomes.filter((o) => o.status !== 200 || !o.correct)).toEqual([]);
    const versionsSeen = new Set(outcomes.map((o) => o.version));
    expect(versionsSeen).toContain(1);
    expect(versionsSeen).toContain(2);
    expect(versionsSeen).toContain(3);
  });
});
