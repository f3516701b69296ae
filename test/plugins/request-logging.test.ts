import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { captureLogs, LINEAR, PODS, startApp } from '../helpers.js';

describe('request ids', () => {
  it('honours an incoming X-Request-Id and returns it, on errors too', async () => {
    const app = await startApp();
    const ok = await request(app.server)
      .post(`/predict/${LINEAR}`)
      .set('x-request-id', 'kepler-node-7.42')
      .send({ instances: PODS });
    expect(ok.headers['x-request-id']).toBe('kepler-node-7.42');
    const refused = await request(app.server).post('/predict').set('x-request-id', 'abc-123').type('json').send('{');
    expect(refused.status).toBe(400);
    expect(refused.headers['x-request-id']).toBe('abc-123');
  });

  it('makes up a UUID when there is none, or when the given one is not safe to log', async () => {
    const app = await startApp();
    const none = await request(app.server).get('/ping');
    const hostile = await request(app.server)
      .get('/ping')
      .set('x-request-id', `x"} {${'y'.repeat(300)}`);
    for (const response of [none, hostile]) {
      expect(response.headers['x-request-id']).toMatch(
        /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
      );
    }
    expect(none.headers['x-request-id']).not.toBe(hostile.headers['x-request-id']);
  });
});

describe('request logs', () => {
  it('logs no line per request by default, and one per request and answer with LOG_REQUESTS=true', async () => {
    const quiet = captureLogs();
    const app = await startApp({ LOG_LEVEL: 'info' }, { logStream: quiet.logStream });
    const before = quiet.lines.length;
    await request(app.server).post(`/predict/${LINEAR}`).send({ instances: PODS }).expect(200);
    expect(quiet.lines.slice(before)).toEqual([]);

    const chatty = captureLogs();
    const verbose = await startApp({ LOG_LEVEL: 'info', LOG_REQUESTS: 'true' }, { logStream: chatty.logStream });
    const start = chatty.lines.length;
    await request(verbose.server).post(`/predict/${LINEAR}`).set('x-request-id', 'trace-me').send({ instances: PODS });
    const lines = chatty.lines.slice(start);
    expect(lines.map((line) => line.msg)).toEqual(['incoming request', 'request completed']);
    expect(lines.every((line) => line.reqId === 'trace-me')).toBe(true);
  });

  it('logs a request slower than SLOW_REQUEST_MS at warn, with its id', async () => {
    const { lines, logStream } = captureLogs();
    const app = await startApp({ LOG_LEVEL: 'warn', SLOW_REQUEST_MS: '1' }, { logStream });
    const many = Array.from({ length: 20_000 }, (_, i) => PODS[i % PODS.length]);
    await request(app.server).post(`/predict/${LINEAR}`).set('x-request-id', 'slow-one').send({ instances: many });
    expect(lines).toContainEqual(expect.objectContaining({ level: 40, msg: 'slow request', reqId: 'slow-one' }));
  });
});
