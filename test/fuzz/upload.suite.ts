/**
 * Fuzz of admin uploads, PUT /admin/models/:name/versions/:version: zips (written byte by byte,
 * deflated or stored, or by fflate), tars and tar.gz with fuzzed entry names (`..`, absolute,
 * backslashes, NUL, unicode, very long, deep, duplicates, one top folder), links and devices, and
 * fuzzed contents (a valid model, flipped or cut ONNX bytes, odd metadata.json, junk, more than
 * MAX_MODEL_BYTES of zeros), damaged or disguised. Invariants: 201 or a catalogue 4xx, never 5xx;
 * an unsafe entry is always refused; a refused upload leaves the repository as it was and an
 * accepted one adds only `<name>/<version>/`; nothing is ever written beside the repository or in
 * the temporary folder; an existing version is never replaced; nothing leaked; Object.prototype
 * untouched; every model still serves, with its own version's predictions.
 */
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, SECRET } from '../admin/helpers.js';
import { versionedEntries, versionedPredictions } from '../helpers.js';
import { fuzzApp, listing, throwawayRepository } from './apps.js';
import { archiveSpec, buildArchive, ESCAPE_IN_TMP, ESCAPE_MARKER, garbageBody, mustBeRefused } from './archives.js';
import {
  describeExchange,
  expectPrototypesUntouched,
  expectWellFormed,
  fuzzParams,
  fuzzTimeout,
  type Sent,
  send,
  Tally,
} from './support.js';

const MAX_MODEL_BYTES = 1024 * 1024;
const ROWS = [
  [2, 3],
  [0.5, 7],
];

/** Where a run uploads: model `m` (whose version 1 exists) or a new model; a new version mostly. */
const target = fc.record({
  name: fc.oneof(
    { weight: 6, arbitrary: fc.constant('m') },
    { weight: 2, arbitrary: fc.constant('new') },
    { weight: 1, arbitrary: fc.constantFrom('..', '%2e%2e', '.x', 'a%2Fb', '%00', 'm%2F..%2F..') },
  ),
  version: fc.oneof(
    { weight: 8, arbitrary: fc.constant('new') },
    { weight: 1, arbitrary: fc.constant('1') },
    { weight: 1, arbitrary: fc.constantFrom('0', '01', '1.0', '-1', '..', '%2e%2e', '1e3', '9999999999999999') },
  ),
  promote: fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom('', '?promote=true', '?promote=false') },
    { weight: 1, arbitrary: fc.constantFrom('?promote=1', '?promote=true&promote=true') },
  ),
  type: fc.constantFrom(
    'application/octet-stream',
    'application/gzip',
    'application/zip',
    'application/json',
    'text/csv',
    '',
  ),
});

describe('fuzz: admin uploads', () => {
  let app: FastifyInstance;
  let parent: string;
  let repository: string;
  let counter = 1;
  /**
   * The versions that may serve, per model: version 1 of m, and each accepted upload; `exact` when
   * its files are versionedModel's (a flipped byte in the ONNX weights may load, and predict otherwise).
   */
  const served = new Map<string, Map<number, { exact: boolean }>>([['m', new Map([[1, { exact: true }]])]]);

  beforeAll(async () => {
    ({ parent, repository } = await throwawayRepository(versionedEntries('m', [1])));
    app = await fuzzApp({
      MODEL_REPOSITORY: repository,
      ADMIN_JWT_SECRET: SECRET,
      MAX_MODEL_BYTES: String(MAX_MODEL_BYTES),
    });
  });

  afterAll(async () => {
    await app.close();
    await rm(parent, { recursive: true, force: true });
    await rm(ESCAPE_IN_TMP, { recursive: true, force: true });
  });

  /**
   * The models that serve are those uploaded; each serves a version it may serve, with that
   * version's own predictions (checked for `m` and the run's model, or for all at the end).
   */
  async function expectModelsServe(only?: readonly string[]): Promise<void> {
    const listed = await app.inject({ method: 'GET', url: '/models' });
    expect(listed.statusCode, listed.body).toBe(200);
    const models = (JSON.parse(listed.body) as { models: Array<{ name: string; version: number }> }).models;
    expect(models.map((model) => model.name).sort()).toEqual([...served.keys()].sort());
    for (const { name, version } of models.filter((model) => only === undefined || only.includes(model.name))) {
      const versions = served.get(name);
      expect([...(versions?.keys() ?? [])], `${name} serves version ${version}`).toContain(version);
      const answer = await app.inject({
        method: 'POST',
        url: `/predict/${name}`,
        headers: { 'content-type': 'application/json' },
        payload: JSON.stringify({ instances: ROWS }),
      });
      expect(answer.statusCode, answer.body).toBe(200);
      const { predictions } = JSON.parse(answer.body) as { predictions: number[] };
      if (versions?.get(version)?.exact) expect(predictions).toEqual(versionedPredictions(version, ROWS));
      else for (const value of predictions) expect(Number.isFinite(value)).toBe(true);
    }
  }

  it(
    'any archive: 201 or a catalogue 4xx, unsafe entries refused, and nothing written where it should not be',
    async () => {
      const tally = new Tally();
      await fc.assert(
        fc.asyncProperty(archiveSpec, garbageBody, target, async (spec, garbage, where) => {
          const run = counter++;
          const name = where.name === 'new' ? `u${run}` : where.name;
          // The archive's model is made for the version it goes to, so that its answers tell it apart.
          const version = where.version === '1' ? 1 : run;
          const versionSegment = where.version === 'new' ? String(version) : where.version;
          const built = await buildArchive(spec, version, parent);
          const body = garbage ?? built.bytes;
          const headers: Record<string, string> = bearer();
          if (where.type !== '') headers['content-type'] = where.type;
          const sent: Sent = {
            method: 'PUT',
            url: `/admin/models/${name}/versions/${versionSegment}${where.promote}`,
            headers,
            payload: body,
          };
          const beforeParent = (await listing(parent)).filter((entry) => !entry.startsWith('repo/'));
          const beforeRepository = await listing(repository);

          const answer = await send(app, sent);
          const outcome = expectWellFormed(sent, answer, [repository, parent], built.names.join('\n'));
          tally.add(outcome);
          const exchange = `${describeExchange(sent, answer)}\nentries: ${JSON.stringify(built.names).slice(0, 2000)}`;

          // Nothing beside the repository, nothing in the temporary folder.
          expect(
            (await listing(parent)).filter((entry) => !entry.startsWith('repo/')),
            exchange,
          ).toEqual(beforeParent);
          expect(existsSync(ESCAPE_IN_TMP), exchange).toBe(false);
          expect(existsSync(path.join(parent, ESCAPE_MARKER)), exchange).toBe(false);

          const afterRepository = await listing(repository);
          if (outcome === '2xx') {
            expect(answer.statusCode, exchange).toBe(201);
            expect(
              garbage === null && !mustBeRefused(spec, parent),
              `an unsafe archive was accepted:\n${exchange}`,
            ).toBe(true);
            const fresh = where.version === 'new' || (where.version === '1' && name !== 'm');
            expect(fresh, `an existing version was replaced, or an odd one written:\n${exchange}`).toBe(true);
            const added = afterRepository.filter((entry) => !beforeRepository.includes(entry));
            const removed = beforeRepository.filter((entry) => !afterRepository.includes(entry));
            expect(removed, exchange).toEqual([]);
            for (const entry of added) {
              expect(
                entry === `${name}/` || entry.startsWith(`${name}/${version}/`),
                `${entry} added:\n${exchange}`,
              ).toBe(true);
            }
            const versions = served.get(name) ?? new Map<number, { exact: boolean }>();
            const exact = spec.entries.every((entry) => ['model-onnx', 'model-metadata'].includes(entry.content.kind));
            versions.set(version, { exact });
            served.set(name, versions);
          } else {
            expect(afterRepository, `a refused upload left files behind:\n${exchange}`).toEqual(beforeRepository);
          }
          expectPrototypesUntouched();
          await expectModelsServe(['m', name]);
        }),
        fuzzParams(0.5, { stateful: true }),
      );
      await expectModelsServe();
      tally.expectVariety({ distinct: 3, parserCodes: ['bad_request'] });
    },
    fuzzTimeout(0.5, 300),
  );
});
