import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ArchiveError, unpackArchive } from '../codecs/archive.js';
import { MODEL_NAME_PATTERN, MODEL_NAME_RULE } from '../config.js';
import { ApiError } from '../errors.js';
import type { ServingChange } from '../registry/registry.js';
import { MAX_SPLIT_LABELS, NO_TRAFFIC_POLICY } from '../traffic.js';
import { parseRequestPart } from '../zod-problems.js';

const name = z.string().regex(MODEL_NAME_PATTERN, MODEL_NAME_RULE);
// Exactly as a version folder is named: `1.0`, `0x10` or `1e3` must not quietly mean another version.
const version = z
  .string()
  .regex(/^[1-9]\d{0,14}$/, 'a positive integer of at most 15 digits, as the version folder is named')
  .transform(Number);
const flag = z.enum(['true', 'false']).optional();

const modelParams = z.object({ name });
const versionParams = z.object({ name, version });
const labelParams = z.object({ name, label: z.string() });
const promoteQuery = z.object({ promote: flag });
const forceQuery = z.object({ force: flag });
const versionBody = z.strictObject({ version: z.number().int().positive() });
const trafficBody = z.strictObject({
  // Shares and labels are checked by the registry (each share from 0 to 1, at most 1 in all).
  split: z
    .record(z.string().max(128), z.number())
    .refine((split) => Object.keys(split).length <= MAX_SPLIT_LABELS, `at most ${MAX_SPLIT_LABELS} labels`)
    .default({}),
  shadow: z.string().max(128).optional(),
  shadowShare: z.number().default(1),
});

/**
 * The admin API (under /admin, behind the token check): list, load, upload, promote, label,
 * unload and reload model versions. Each action is logged with who asked (the token's `sub`), the
 * model, the serving version before and after, and the outcome.
 */
export default async function adminRoutes(app: FastifyInstance) {
  const { maxModelBytes } = app.config;
  const archiveLimits = { maxBytes: maxModelBytes, maxEntries: app.config.limits.maxUploadEntries };

  async function audited<T extends ServingChange>(
    request: FastifyRequest,
    action: string,
    details: Record<string, unknown>,
    change: () => Promise<T>,
  ): Promise<T & { status: ReturnType<typeof modelStatus> }> {
    const who = { sub: request.user?.sub ?? '(no sub)', action, ...details };
    try {
      const result = await change();
      app.metrics?.adminAction(action, 'done');
      request.log.info({ ...who, before: result.before, after: result.after, outcome: 'done' }, 'admin action');
      return { ...result, status: modelStatus(result.model) };
    } catch (error) {
      const serving = typeof details.model === 'string' ? app.models.get(details.model)?.serving.version : undefined;
      const outcome = error instanceof ApiError ? error.code : 'internal_error';
      app.metrics?.adminAction(action, outcome);
      request.log.warn({ ...who, before: serving, after: serving, outcome }, 'admin action refused');
      throw error;
    }
  }

  function modelStatus(model: string) {
    return app.models.status().models.find((status) => status.name === model);
  }

  app.get('/models', async () => app.models.status());

  app.get('/models/:name', async (request) => {
    const { name: model } = parseRequestPart(modelParams, request.params, 'name');
    const status = modelStatus(model);
    if (status === undefined) throw new ApiError('unknown_model', `no model named "${model}" is known`, 'name');
    return status;
  });

  // Drift signals of every loaded version (src/drift.ts); 404 for a model the registry does not know.
  app.get('/models/:name/drift', async (request) => {
    const { name: model } = parseRequestPart(modelParams, request.params, 'name');
    const loaded = app.models.get(model);
    if (loaded === undefined && modelStatus(model) === undefined) {
      throw new ApiError('unknown_model', `no model named "${model}" is known`, 'name');
    }
    return app.drift.report(model, loaded);
  });

  app.post('/models/:name/versions/:version/load', async (request) => {
    const { name: model, version: v } = parseRequestPart(versionParams, request.params, 'version');
    const promote = parseRequestPart(promoteQuery, request.query, 'promote').promote === 'true';
    return audited(request, 'load', { model, version: v, promote }, () => app.models.load(model, v, promote));
  });

  await app.register(async function upload(scope) {
    // An upload is an archive whatever the client calls it (curl --data-binary says
    // form-urlencoded, some say application/json): every type reaches the route as bytes.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: maxModelBytes }, (_request, body, done) =>
      done(null, body),
    );
    const upload = { bodyLimit: maxModelBytes, config: { modelUpload: true } };
    scope.put('/models/:name/versions/:version', upload, async (request, reply) => {
      const { name: model, version: v } = parseRequestPart(versionParams, request.params, 'version');
      const promote = parseRequestPart(promoteQuery, request.query, 'promote').promote === 'true';
      const result = await audited(request, 'upload', { model, version: v, promote }, async () => {
        const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
        const files = await unpackArchive(body, archiveLimits).catch((error: unknown) => {
          if (error instanceof ArchiveError) throw new ApiError(error.code, error.message, 'body');
          throw error;
        });
        return app.models.upload(model, v, files, promote);
      });
      return reply.code(201).header('location', `/admin/models/${model}`).send(result);
    });
  });

  app.post('/models/:name/promote', async (request) => {
    const { name: model } = parseRequestPart(modelParams, request.params, 'name');
    const { version: v } = parseRequestPart(versionBody, request.body, 'body');
    return audited(request, 'promote', { model, version: v }, () => app.models.promote(model, v));
  });

  app.delete('/models/:name/versions/:version', async (request) => {
    const { name: model, version: v } = parseRequestPart(versionParams, request.params, 'version');
    const force = parseRequestPart(forceQuery, request.query, 'force').force === 'true';
    return audited(request, 'unload', { model, version: v, force }, () => app.models.unload(model, v, force));
  });

  app.post('/models/:name/reload', async (request) => {
    const { name: model } = parseRequestPart(modelParams, request.params, 'name');
    return audited(request, 'reload', { model }, () => app.models.reload(model));
  });

  app.put('/models/:name/labels/:label', async (request) => {
    const { name: model, label } = parseRequestPart(labelParams, request.params, 'label');
    const { version: v } = parseRequestPart(versionBody, request.body, 'body');
    return audited(request, 'label', { model, label, version: v }, () => app.models.setLabel(model, label, v));
  });

  app.put('/models/:name/traffic', async (request) => {
    const { name: model } = parseRequestPart(modelParams, request.params, 'name');
    // No body is not "clear the policy": DELETE says that.
    if (request.body === undefined || request.body === null) {
      throw new ApiError(
        'invalid_body',
        'send {"split"?: {label: share}, "shadow"?: label, "shadowShare"?: share}',
        'body',
      );
    }
    const { split, shadow, shadowShare } = parseRequestPart(trafficBody, request.body, 'body');
    const policy = { split: new Map(Object.entries(split)), shadow, shadowShare };
    return audited(request, 'traffic', { model, split, shadow, shadowShare }, () =>
      app.models.setTraffic(model, policy),
    );
  });

  app.delete('/models/:name/traffic', async (request) => {
    const { name: model } = parseRequestPart(modelParams, request.params, 'name');
    return audited(request, 'traffic', { model, cleared: true }, () => app.models.setTraffic(model, NO_TRAFFIC_POLICY));
  });

  app.delete('/models/:name/labels/:label', async (request) => {
    const { name: model, label } = parseRequestPart(labelParams, request.params, 'label');
    return audited(request, 'unlabel', { model, label }, () => app.models.removeLabel(model, label));
  });
}
