/**
 * Promote/rollback while predictions flow, for the throughput benchmark: a model repository with
 * two versions of pod-power-linear (the shipped version 1, copied as version 2), an admin token,
 * and a loop that promotes the version not serving, once a second, until stopped.
 */
import { randomBytes } from 'node:crypto';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSigner } from 'fast-jwt';
import { loopbackRequest } from '../../scripts/lib/loopback.js';

const SHIPPED = fileURLToPath(new URL('../../models', import.meta.url));

export interface SwapSetup {
  repository: string;
  /** Environment for the server: the repository and the admin API's secret. */
  env: Record<string, string>;
  /** A bearer token allowed to promote. */
  token: string;
  remove(): Promise<void>;
}

/** The shipped models, with `model`'s version 1 also as version 2, in a temporary folder. */
export async function swapRepository(model: string): Promise<SwapSetup> {
  const repository = await mkdtemp(path.join(tmpdir(), 'wattserve-bench-swaps-'));
  await cp(SHIPPED, repository, { recursive: true });
  await cp(path.join(repository, model, '1'), path.join(repository, model, '2'), { recursive: true });
  const secret = randomBytes(32).toString('hex');
  const token = createSigner({ key: secret, algorithm: 'HS256', expiresIn: 3_600_000 })({
    sub: 'bench',
    scope: 'models:read models:write',
  });
  return {
    repository,
    env: { MODEL_REPOSITORY: repository, ADMIN_JWT_SECRET: secret },
    token,
    remove: () => rm(repository, { recursive: true, force: true }),
  };
}

export interface Swaps {
  done: number;
  /** Promotions that did not answer 200, with what they answered. */
  failures: string[];
}

/**
 * Promotes versions 2 and 1 of `model` in turn, one every intervalMs, until the returned function
 * is called; that function resolves with what happened.
 */
export function startSwapping(port: number, token: string, model: string, intervalMs: number): () => Promise<Swaps> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const swaps: Swaps = { done: 0, failures: [] };
  let running = true;
  const loop = (async () => {
    for (let version = 2; running; version = version === 2 ? 1 : 2) {
      const started = performance.now();
      const answer = await loopbackRequest({
        port,
        method: 'POST',
        path: `/admin/models/${model}/promote`,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: Buffer.from(JSON.stringify({ version })),
        agent,
      }).catch((error: Error) => error);
      if (answer instanceof Error) swaps.failures.push(answer.message);
      else if (answer.status !== 200)
        swaps.failures.push(`${answer.status} ${answer.body.toString('utf8').slice(0, 200)}`);
      else swaps.done++;
      const wait = intervalMs - (performance.now() - started);
      if (wait > 0 && running) await new Promise((resolve) => setTimeout(resolve, wait));
    }
  })();
  return async () => {
    running = false;
    await loop;
    agent.destroy();
    return swaps;
  };
}
