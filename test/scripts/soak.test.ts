import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

interface SoakResult {
  ok: boolean;
  reasons: string[];
  requests: number;
  byRoute: Record<string, number>;
  statuses: Record<string, number>;
  good: { sent: number; ok: number; wrong: number; notOk: number; transport: number };
  bad: { sent: number; refused: number; accepted: number; serverError: number };
  fiveXX: number;
  swaps: { cycles: number; actions: Record<string, number> };
  versionsSeen: number;
  modelsAtStart: string[];
  modelsLost: string[];
  wrongAnswers: number;
  serverAlive: boolean;
}

describe('npm run soak', () => {
  it('drives good and bad traffic and swaps for a few seconds with no 5xx, no wrong answer and no model lost', async () => {
    // Run as `npm run soak` does (tsx), briefly; a failing soak exits 1 and execFile rejects with its output.
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'scripts/soak.ts'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', SOAK_SECONDS: '3', SOAK_CONCURRENCY: '4', SOAK_SWAP_PAUSE_MS: '20' },
      timeout: 90_000,
    });
    const lines = stdout.trim().split('\n');
    expect(lines).toContain('PASS');
    const result = JSON.parse(lines.at(-1) ?? '') as SoakResult;
    expect(result).toMatchObject({
      ok: true,
      reasons: [],
      fiveXX: 0,
      modelsLost: [],
      wrongAnswers: 0,
      serverAlive: true,
    });
    expect(result.statuses['5xx']).toBe(0);
    expect(result.modelsAtStart).toEqual(['kepler-ec2-rapl-bpfonly', 'pod-power-linear', 'pod-power-mlp', 'soak-vm']);
    // Both kinds of traffic flowed, on every protocol, and every good answer was checked right.
    expect(result.good.sent).toBeGreaterThan(20);
    expect(result.good.ok).toBe(result.good.sent);
    expect(result.bad.sent).toBeGreaterThan(5);
    expect(result.bad.accepted + result.bad.serverError).toBe(0);
    for (const route of ['POST /predict', 'POST /invocations', 'GET /ping'])
      expect(result.byRoute[route]).toBeGreaterThan(0);
    // The swapper swapped, and answers came from more than one version.
    expect(result.swaps.cycles).toBeGreaterThanOrEqual(1);
    expect(result.swaps.actions['upload and promote']).toBeGreaterThanOrEqual(1);
    expect(result.versionsSeen).toBeGreaterThanOrEqual(2);
  }, 120_000);
});
