import { afterEach, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { captureLogs, testConfig } from '../helpers.js';

const closing: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  await Promise.all(closing.splice(0).map((close) => close()));
});

/** The whole app, plus routes that fail the ways a bug would. */
async function appWithFaults() {
  const logs = captureLogs();
  const app = await buildApp(testConfig({ LOG_LEVEL: 'error' }), { logStream: logs.logStream });
  closing.push(() => app.close());
  app.get('/fault/thrown', async () => {
    throw new Error('secret detail: /srv/models/key.pem');
  });
  app.get('/fault/not-an-error', async () => {
    throw { detail: 'secret detail' };
  });
  app.get('/fault/rejected-late', async () => {
    await new Promise((resolve) => setTimeout(resolve, 1));
    throw new TypeError("Cannot read properties of undefined (reading 'secret detail')");
  });
  await app.ready();
  return { app, logs };
}

describe('server faults', () => {
  it.each(['/fault/thrown', '/fault/not-an-error', '/fault/rejected-late'])(
    '%s: a generic 500, no message or stack in the answer, the cause in the log',
    async (url) => {
      const { app, logs } = await appWithFaults();
      const answer = await app.inject({ url });
      expect(answer.statusCode).toBe(500);
      expect(answer.json()).toEqual({ error: { code: 'internal_error', message: 'internal error' } });
      expect(answer.body).not.toMatch(/secret|\bat \S+ \(|\.ts:\d+/);
      const logged = logs.lines.find((line) => line.url === url);
      expect(logged?.level).toBe(50);
      expect(JSON.stringify(logged?.err)).toContain('secret detail');
    },
  );
});
