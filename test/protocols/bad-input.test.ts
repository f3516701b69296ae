import { type AddressInfo, connect } from 'node:net';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { FEATURES, LINEAR, PODS, startApp } from '../helpers.js';

interface BadRequest {
  path: string;
  type: string;
  body: string;
  status: number;
  code: string;
  field?: string;
}

const json = (value: unknown) => JSON.stringify(value);
const LIMITS = {
  DEFAULT_MODEL: LINEAR,
  MAX_ROWS: '10',
  MAX_BODY_BYTES: '4096',
  MAX_COLUMNS: '20',
  MAX_JSON_DEPTH: '8',
  MAX_CSV_LINE_BYTES: '200',
};
const good = PODS[0] as number[];

/** Every kind of bad input the serving core must refuse, and the answer each gets. */
const BAD: Record<string, BadRequest> = {
  'ragged rows': {
    path: '/predict',
    type: 'application/json',
    body: json({ instances: [good, [1, 2]] }),
    status: 400,
    code: 'ragged_rows',
    field: 'instances[1]',
  },
  'wrong width': {
    path: '/predict',
    type: 'application/json',
    body: json({ instances: [[1, 2, 3]] }),
    status: 400,
    code: 'wrong_width',
    field: 'instances',
  },
  'a string value': {
    path: '/predict',
    type: 'application/json',
    body: json({ instances: [[...good.slice(1), 'x']] }),
    status: 400,
    code: 'not_a_number',
    field: 'instances[0][7]',
  },
  'a boolean value': {
    path: '/predict',
    type: 'application/json',
    body: json({ instances: [[true, ...good.slice(1)]] }),
    status: 400,
    code: 'not_a_number',
    field: 'instances[0][0]',
  },
  'a number too large for JSON doubles': {
    path: '/predict',
    type: 'application/json',
    body: `{"instances":[[1e999${',1'.repeat(7)}]]}`,
    status: 400,
    code: 'non_finite_value',
    field: 'instances[0][0]',
  },
  'NaN in CSV': {
    path: '/invocations',
    type: 'text/csv',
    body: `NaN${',1'.repeat(7)}\n`,
    status: 400,
    code: 'non_finite_value',
    field: 'line 1, column 1',
  },
  'Infinity in CSV': {
    path: '/invocations',
    type: 'text/csv',
    body: `1,Infinity${',1'.repeat(6)}\n`,
    status: 400,
    code: 'non_finite_value',
    field: 'line 1, column 2',
  },
  'an empty matrix': {
    path: '/predict',
    type: 'application/json',
    body: json({ instances: [] }),
    status: 400,
    code: 'empty_matrix',
    field: 'instances',
  },
  'an empty CSV': { path: '/invocations', type: 'text/csv', body: '', status: 400, code: 'empty_matrix' },
  'a JSON string': {
    path: '/predict',
    type: 'application/json',
    body: '"hi"',
    status: 400,
    code: 'invalid_body',
    field: 'body',
  },
  'no instances': {
    path: '/predict',
    type: 'application/json',
    body: json({ rows: [good] }),
    status: 400,
    code: 'invalid_body',
    field: 'rows',
  },
  'malformed JSON': {
    path: '/predict',
    type: 'application/json',
    body: '{"instances": [[1,2]',
    status: 400,
    code: 'invalid_json',
  },
  'an empty JSON body': { path: '/predict', type: 'application/json', body: '', status: 400, code: 'invalid_json' },
  'a __proto__ key': {
    path: '/predict',
    type: 'application/json',
    body: '{"instances":[[1]],"__proto__":{"polluted":true}}',
    status: 400,
    code: 'invalid_json',
  },
  'malformed CSV': { path: '/invocations', type: 'text/csv', body: '1,"2\n', status: 400, code: 'invalid_csv' },
  'malformed JSON Lines': {
    path: '/invocations',
    type: 'application/jsonlines',
    body: `${json(good)}\n[1,\n`,
    status: 400,
    code: 'invalid_jsonlines',
    field: 'line 2',
  },
  'an unknown model': {
    path: '/predict/nope',
    type: 'application/json',
    body: json({ instances: [good] }),
    status: 404,
    code: 'unknown_model',
    field: 'model',
  },
  'an unknown version': {
    path: `/predict/${LINEAR}`,
    type: 'application/json',
    body: json({ version: 9, instances: [good] }),
    status: 404,
    code: 'unknown_version',
    field: 'version',
  },
  'an unsupported content type': {
    path: '/invocations',
    type: 'application/xml',
    body: '<x/>',
    status: 415,
    code: 'unsupported_media_type',
  },
  'rows over MAX_ROWS': {
    path: '/predict',
    type: 'application/json',
    body: json({ instances: Array(11).fill(good) }),
    status: 413,
    code: 'too_many_rows',
    field: 'instances',
  },
  'CSV rows over MAX_ROWS': {
    path: '/invocations',
    type: 'text/csv',
    body: `${good.join(',')}\n`.repeat(11),
    status: 413,
    code: 'too_many_rows',
  },
  'rows over MAX_COLUMNS': {
    path: '/predict',
    type: 'application/json',
    body: json({ instances: [Array(21).fill(1)] }),
    status: 413,
    code: 'too_many_columns',
    field: 'instances[0]',
  },
  'CSV rows over MAX_COLUMNS': {
    path: '/invocations',
    type: 'text/csv',
    body: `${Array(21).fill(1).join(',')}\n`,
    status: 413,
    code: 'too_many_columns',
    field: 'line 1',
  },
  'JSON nested deeper than MAX_JSON_DEPTH': {
    path: '/predict',
    type: 'application/json',
    body: `${'['.repeat(9)}${']'.repeat(9)}`,
    status: 400,
    code: 'json_too_deep',
    field: 'body',
  },
  'a CSV line over MAX_CSV_LINE_BYTES': {
    path: '/invocations',
    type: 'text/csv',
    body: `${good.join(',')}\n${'0,'.repeat(7)}${'0'.repeat(200)}\n`,
    status: 413,
    code: 'csv_line_too_long',
    field: 'line 2',
  },
  'a body to a route that does not exist (not parsed: answered 404)': {
    path: '/nowhere',
    type: 'application/json',
    body: '{"broken": ',
    status: 404,
    code: 'not_found',
  },
  'a body over MAX_BODY_BYTES': {
    path: '/predict',
    type: 'application/json',
    body: json({ instances: Array(200).fill(good) }),
    status: 413,
    code: 'body_too_large',
    field: 'body',
  },
};

describe('bad input', () => {
  it.each(Object.entries(BAD))('%s gets its 4xx with a JSON error naming the problem', async (_, bad) => {
    const app = await startApp(LIMITS);
    const response = await request(app.server).post(bad.path).set('content-type', bad.type).send(bad.body);
    expect(response.status).toBe(bad.status);
    expect(response.headers['content-type']).toMatch(/^application\/json/);
    expect(Object.keys(response.body)).toEqual(['error']);
    expect(response.body.error).toMatchObject({ code: bad.code, message: expect.any(String) });
    if (bad.field !== undefined) expect(response.body.error.field).toBe(bad.field);
    expect(JSON.stringify(response.body)).not.toMatch(/\n\s+at |node_modules|\.ts:\d/);
  });

  it('applies MAX_JSON_DEPTH to every JSON body, Kepler requests included (in their reply shape)', async () => {
    const app = await startApp(LIMITS);
    const response = await request(app.server)
      .post('/kepler/estimate')
      .send(json({ metrics: [[[[[[[[[1]]]]]]]]] }))
      .set('content-type', 'application/json');
    expect(response.status).toBe(400);
    expect(response.body).toEqual({ powers: {}, msg: expect.stringContaining('MAX_JSON_DEPTH') });
  });

  it('leaves the server serving every model afterwards', async () => {
    const app = await startApp(LIMITS);
    for (const bad of Object.values(BAD)) {
      const response = await request(app.server).post(bad.path).set('content-type', bad.type).send(bad.body);
      expect(response.status).toBeLessThan(500);
    }
    await request(app.server).get('/ping').expect(200);
    const { body } = await request(app.server)
      .post('/predict')
      .send({ features: FEATURES, instances: PODS })
      .expect(200);
    expect(body.predictions).toHaveLength(PODS.length);
    expect((await request(app.server).get('/models')).body.models).toHaveLength(3);
  });

  it('answers a URL that does not decode with a JSON 400', async () => {
    const app = await startApp();
    const { body } = await request(app.server).post('/predict/%E0%A4%A').send({ instances: PODS }).expect(400);
    expect(body.error).toMatchObject({ code: 'bad_request' });
  });

  it.each([
    ['a malformed request line', 'NOT HTTP AT ALL\r\n\r\n', 400, 'bad_request'],
    [
      'headers over the size limit',
      `GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
      431,
      'headers_too_large',
    ],
  ])('answers %s with a JSON error before Fastify sees it', async (_, raw, status, code) => {
    const app = await startApp();
    await app.listen({ port: 0, host: '127.0.0.1' });
    const address = app.server.address() as AddressInfo;
    const socket = connect(address.port, '127.0.0.1');
    socket.write(raw);
    let answer = '';
    for await (const chunk of socket) answer += chunk;
    expect(answer).toMatch(new RegExp(`^HTTP/1.1 ${status} `));
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)).error.code).toBe(code);
  });

  it('answers unknown routes with a JSON 404', async () => {
    const app = await startApp();
    const { body } = await request(app.server).get('/nowhere?x=1').expect(404);
    expect(body.error).toEqual({ code: 'not_found', message: 'no route GET /nowhere' });
  });
});
