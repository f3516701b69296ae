/**
 * Fuzz of the admin API with a valid token (and now and then a bad one): sequences of list, load,
 * promote, unload, reload and label requests with fuzzed names, versions, labels, query strings
 * and JSON bodies, against a throwaway repository. Invariants: no 5xx, the catalogue's error body,
 * nothing leaked (the repository's path included), Object.prototype untouched; and after every
 * sequence each model still serves, with the predictions of the version it says serves.
 */
import { rm } from 'node:fs/promises';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, SECRET, token } from '../admin/helpers.js';
import { versionedEntries, versionedPredictions } from '../helpers.js';
import { fuzzApp, listing, throwawayRepository } from './apps.js';
import {
  fuzzString,
  headerValue,
  jsonObject,
  jsonText,
  keyText,
  mangled,
  pollutionEntry,
  shuffled,
  versionText,
} from './arbitraries.js';
import {
  describeExchange,
  expectJsonVerdict,
  expectPrototypesUntouched,
  expectWellFormed,
  fuzzParams,
  fuzzTimeout,
  type Sent,
  send,
  Tally,
} from './support.js';

const MODELS = { m: [1, 2, 3], n: [1] } as const;
const ROWS = [
  [2, 3],
  [0.5, 7],
];

const encoded = fuzzString.map(encodeURIComponent);

const nameSegment = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom('m', 'n') },
  { weight: 1, arbitrary: fc.constantFrom('nope', '..', '%2e%2e', '%', '.hidden', '-x', 'a%2Fb', 'm%00', 'M') },
  { weight: 1, arbitrary: encoded },
);

const versionSegment = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom('1', '2', '3') },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '4',
      '0',
      '01',
      '1.0',
      '1e3',
      '-1',
      '0x1',
      '99999999999999999999',
      '9007199254740993',
      '1%00',
      '%20',
    ),
  },
  { weight: 1, arbitrary: encoded },
);

const labelSegment = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('stable', 'canary') },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '__proto__',
      'constructor',
      'toString',
      'hasOwnProperty',
      'prototype',
      'valueOf',
      '%F0%9F%99%82',
    ),
  },
  { weight: 1, arbitrary: encoded },
);

const flagQuery = (flag: string) =>
  fc.oneof(
    { weight: 6, arbitrary: fc.constant('') },
    { weight: 3, arbitrary: fc.constantFrom(`?${flag}=true`, `?${flag}=false`) },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        `?${flag}=yes`,
        `?${flag}=true&${flag}=false`,
        `?${flag}=`,
        `?${flag}[]=true`,
        '?__proto__[polluted]=1',
        '?constructor[prototype][polluted]=1',
        `?${flag}=TRUE`,
        '?x=1',
      ),
    },
  );

/** `{"version": n}` mostly; else the wrong type, extra keys, pollution keys, anything, or broken JSON. */
const versionBody = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(1, 2, 3).map((version) => JSON.stringify({ version })) },
  {
    weight: 3,
    arbitrary: fc
      .tuple(versionText, fc.array(fc.oneof(fc.tuple(keyText, jsonText), pollutionEntry), { maxLength: 2 }))
      .chain(([version, extra]) => shuffled([['version', version] as [string, string], ...extra]))
      .map(jsonObject),
  },
  { weight: 1, arbitrary: jsonText },
  { weight: 1, arbitrary: mangled(fc.constant('{"version":2}')) },
);

const bodyType = fc.oneof(
  { weight: 10, arbitrary: fc.constant('application/json') },
  { weight: 1, arbitrary: fc.constantFrom('text/plain', 'text/csv', 'application/x-www-form-urlencoded', '') },
);

/** A valid token nearly always; a bad or weaker one at times (401/403, never more). */
const authorization = fc.oneof(
  { weight: 16, arbitrary: fc.constant('valid') },
  { weight: 1, arbitrary: fc.constantFrom('read-only', 'write-only', 'expired', 'none') },
  { weight: 1, arbitrary: headerValue.map((value) => `Bearer ${value}`) },
);

function authHeaders(kind: string): Record<string, string> {
  switch (kind) {
    case 'valid':
      return bearer();
    case 'read-only':
      return bearer(token({ scope: 'models:read' }));
    case 'write-only':
      return bearer(token({ scope: 'models:write' }));
    case 'expired':
      return bearer(token({ exp: Math.floor(Date.now() / 1000) - 5 }, { expiresIn: 0 }));
    case 'none':
      return {};
    default:
      return { authorization: kind };
  }
}

/**
 * What a request with a weaker token may get: refused at the token check (an unknown route or a URL
 * that does not decode is refused before it); undefined when the token allows the request.
 */
function allowedFor(auth: string, method: string): string[] | undefined {
  const beforeTheCheck = ['not_found', 'bad_request'];
  if (auth === 'valid') return undefined;
  if (auth === 'read-only') return method === 'GET' ? undefined : ['forbidden', ...beforeTheCheck];
  if (auth === 'write-only') return method === 'GET' ? ['forbidden', ...beforeTheCheck] : undefined;
  return ['unauthorized', ...beforeTheCheck];
}

interface Action {
  method: string;
  url: string;
  body?: string;
  type?: string;
}

const action: fc.Arbitrary<Action> = fc.oneof(
  fc.constant({ method: 'GET', url: '/admin/models' }),
  nameSegment.map((name) => ({ method: 'GET', url: `/admin/models/${name}` })),
  fc.tuple(nameSegment, versionSegment, flagQuery('promote')).map(([name, version, query]) => ({
    method: 'POST',
    url: `/admin/models/${name}/versions/${version}/load${query}`,
  })),
  fc
    .tuple(nameSegment, versionBody, bodyType)
    .map(([name, body, type]) => ({ method: 'POST', url: `/admin/models/${name}/promote`, body, type })),
  fc
    .tuple(nameSegment, versionSegment, flagQuery('force'))
    .map(([name, version, query]) => ({ method: 'DELETE', url: `/admin/models/${name}/versions/${version}${query}` })),
  nameSegment.map((name) => ({ method: 'POST', url: `/admin/models/${name}/reload` })),
  fc
    .tuple(nameSegment, labelSegment, versionBody, bodyType)
    .map(([name, label, body, type]) => ({ method: 'PUT', url: `/admin/models/${name}/labels/${label}`, body, type })),
  fc
    .tuple(nameSegment, labelSegment)
    .map(([name, label]) => ({ method: 'DELETE', url: `/admin/models/${name}/labels/${label}` })),
  fc
    .tuple(
      fc.constantFrom('GET', 'POST', 'PATCH', 'PUT', 'DELETE'),
      fc.array(fc.oneof(nameSegment, encoded), { maxLength: 5 }),
    )
    .map(([method, parts]) => ({ method, url: `/admin/${parts.join('/')}` })),
);

describe('fuzz: admin API', () => {
  let app: FastifyInstance;
  let parent: string;
  let repository: string;

  beforeAll(async () => {
    ({ parent, repository } = await throwawayRepository({
      ...versionedEntries('m', [...MODELS.m]),
      ...versionedEntries('n', [...MODELS.n]),
    }));
    app = await fuzzApp({ MODEL_REPOSITORY: repository, ADMIN_JWT_SECRET: SECRET });
  });

  afterAll(async () => {
    await app.close();
    await rm(parent, { recursive: true, force: true });
  });

  /** Each model serves one of its versions, whose own predictions it gives. */
  async function expectModelsServe(): Promise<void> {
    const listed = await app.inject({ method: 'GET', url: '/models' });
    expect(listed.statusCode, listed.body).toBe(200);
    const models = (JSON.parse(listed.body) as { models: Array<{ name: string; version: number }> }).models;
    expect(models.map((model) => model.name).sort()).toEqual(Object.keys(MODELS));
    for (const { name, version } of models) {
      expect(MODELS[name as keyof typeof MODELS], `${name} serves version ${version}`).toContain(version);
      const answer = await app.inject({
        method: 'POST',
        url: `/predict/${name}`,
        headers: { 'content-type': 'application/json' },
        payload: JSON.stringify({ instances: ROWS }),
      });
      expect(answer.statusCode, answer.body).toBe(200);
      const body = JSON.parse(answer.body) as { version: number; predictions: number[] };
      expect(body.version).toBe(version);
      expect(body.predictions).toEqual(versionedPredictions(version, ROWS));
    }
    expect((await app.inject({ method: 'GET', url: '/admin/models', headers: bearer() })).statusCode).toBe(200);
  }

  it(
    'any sequence of admin requests: 2xx or a catalogue 4xx, and every model still serves afterwards',
    async () => {
      const tally = new Tally();
      const before = await listing(parent);
      await fc.assert(
        fc.asyncProperty(fc.array(fc.tuple(action, authorization), { minLength: 1, maxLength: 4 }), async (actions) => {
          for (const [{ method, url, body, type }, auth] of actions) {
            const headers: Record<string, string> = authHeaders(auth);
            if (type !== undefined && type !== '') headers['content-type'] = type;
            const sent: Sent = { method, url, headers, ...(body !== undefined && { payload: body }) };
            const answer = await send(app, sent);
            const outcome = expectWellFormed(sent, answer, [repository, parent]);
            tally.add(outcome);
            const allowed = allowedFor(auth, method);
            if (allowed !== undefined) expect(allowed, describeExchange(sent, answer)).toContain(outcome);
            if (body !== undefined && type === 'application/json' && auth === 'valid')
              expectJsonVerdict(sent, answer, outcome);
            expectPrototypesUntouched();
          }
          await expectModelsServe();
        }),
        fuzzParams(0.5, { stateful: true }),
      );
      tally.expectVariety({ distinct: 6, parserCodes: ['bad_request', 'invalid_json'] });
      // Admin actions change what is loaded, never the files.
      expect(await listing(parent)).toEqual(before);
    },
    fuzzTimeout(0.5, 200),
  );
});
