import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { READ_SCOPE, requireAdminScope, WRITE_SCOPE } from '../admin/auth.js';
import { ApiError } from '../errors.js';
import type { VersionState } from '../registry/registry.js';
import { scanRepository } from '../registry/repository.js';
import { parseRequestPart } from '../zod-problems.js';

/** The name GET /v2 lists in `extensions` when these routes exist. */
export const REPOSITORY_EXTENSION = 'model_repository';

/** One entry of the index: a model version, as Triton's model repository extension shows it. */
export interface RepositoryIndexEntry {
  name: string;
  version: string;
  state: 'READY' | 'UNAVAILABLE' | 'LOADING' | 'UNLOADING';
  reason: string;
}

const TRITON_STATES: Record<VersionState, RepositoryIndexEntry['state']> = {
  available: 'READY',
  loading: 'LOADING',
  unloading: 'UNLOADING',
  unloaded: 'UNAVAILABLE',
  failed: 'UNAVAILABLE',
};

const indexBody = z.object({ ready: z.boolean().optional() });
const parameters = z.record(z.string(), z.unknown()).optional();
const loadBody = z.object({ parameters });
const unloadBody = z.object({
  parameters: z.object({ unload_dependents: z.boolean().optional() }).catchall(z.unknown()).optional(),
});

type NameParams = { Params: { name: string } };

/**
 * The KServe V2 / Triton model repository extension (POST /v2/repository/index,
 * /v2/repository/models/{name}/load and /unload), registered inside the /v2 plugin so that its
 * errors are `{"error": "…"}` too. Behind the admin token: models:read for the index, models:write
 * for load and unload. Only call it when the admin API is configured.
 */
export default async function openInferenceRepository(app: FastifyInstance) {
  const read = { onRequest: requireAdminScope(READ_SCOPE) };
  const write = { onRequest: requireAdminScope(WRITE_SCOPE) };

  app.post('/repository/index', read, async (request) => {
    const { ready } = parseRequestPart(indexBody, request.body, 'body');
    const entries = await repositoryIndex(request);
    return ready === true ? entries.filter((entry) => entry.state === 'READY') : entries;
  });

  app.post<NameParams>('/repository/models/:name/load', write, async (request) => {
    const { parameters: given = {} } = parseRequestPart(loadBody, request.body, 'body');
    const unsupported = Object.keys(given).find((key) => key === 'config' || key.startsWith('file:'));
    if (unsupported !== undefined) {
      throw new ApiError(
        'invalid_body',
        'wattserve loads models only as they are in the repository (no config override, no file upload)',
        `parameters.${unsupported}`,
      );
    }
    const { name } = request.params;
    await audited(request, 'v2_load', name, () => loadModel(name));
    return {};
  });

  app.post<NameParams>('/repository/models/:name/unload', write, async (request) => {
    // unload_dependents is accepted and has nothing to do: wattserve has no ensembles.
    parseRequestPart(unloadBody, request.body, 'body');
    const { name } = request.params;
    await audited(request, 'v2_unload', name, () => unloadModel(name));
    return {};
  });

  /** Logs and counts the action as the admin API does: who asked, the serving version before and after, the outcome. */
  async function audited(request: FastifyRequest, action: string, model: string, change: () => Promise<void>) {
    const who = { sub: request.user?.sub ?? '(no sub)', action, model };
    const before = app.models.get(model)?.serving.version;
    try {
      await change();
      app.metrics?.adminAction(action, 'done');
      const after = app.models.get(model)?.serving.version;
      request.log.info({ ...who, before, after, outcome: 'done' }, 'admin action');
    } catch (error) {
      const outcome = error instanceof ApiError ? error.code : 'internal_error';
      app.metrics?.adminAction(action, outcome);
      const after = app.models.get(model)?.serving.version;
      request.log.warn({ ...who, before, after, outcome }, 'admin action refused');
      throw error;
    }
  }

  /** Every version the registry knows, in its state, and every version folder it has never loaded. */
  async function repositoryIndex(request: FastifyRequest): Promise<RepositoryIndexEntry[]> {
    const entries: RepositoryIndexEntry[] = [];
    const known = new Set<string>();
    for (const model of app.models.status().models) {
      for (const version of model.versions) {
        known.add(`${model.name}/${version.version}`);
        entries.push({
          name: model.name,
          version: String(version.version),
          state: TRITON_STATES[version.state],
          reason:
            version.state === 'failed'
              ? (version.reason ?? 'failed to load')
              : version.state === 'unloaded'
                ? 'unloaded'
                : '',
        });
      }
    }
    const contents = await scanRepository(app.config.modelRepository, app.config.modelName).catch((error: Error) => {
      // What the registry knows is still worth answering with.
      request.log.warn({ reason: error.message }, 'the model repository could not be read for the index');
      return { versions: [] };
    });
    for (const source of contents.versions) {
      if (known.has(`${source.name}/${source.version}`)) continue;
      entries.push({ name: source.name, version: String(source.version), state: 'UNAVAILABLE', reason: 'not loaded' });
    }
    return entries.sort((a, b) => a.name.localeCompare(b.name) || Number(a.version) - Number(b.version));
  }

  /**
   * Loads the model as the repository holds it: a rescan (new and changed versions load, removed
   * ones unload), then every version left unloaded or failed is loaded again; the highest available
   * version serves. Any version that still fails makes the answer 422, naming it.
   */
  async function loadModel(name: string): Promise<void> {
    const report = await app.models.reload(name);
    const failures = new Map(report.failed.map(({ version, reason }) => [version, reason]));
    const versions = versionsOf(name);
    if (versions === undefined) {
      // Its folder is gone: the rescan unloaded and forgot it.
      throw new ApiError('unknown_model', `the repository has no versions of "${name}" any more`, 'name');
    }
    const idle = versions
      .filter(({ version, state }) => (state === 'unloaded' || state === 'failed') && !failures.has(version))
      .map(({ version }) => version)
      .sort((a, b) => b - a);
    // Highest first: with nothing serving, the first to load serves.
    for (const version of idle) {
      try {
        await app.models.load(name, version, false);
      } catch (error) {
        // Loaded meanwhile (conflict), or its folder went away (unknown_version): nothing to do.
        if (error instanceof ApiError && (error.code === 'conflict' || error.code === 'unknown_version')) continue;
        failures.set(version, error instanceof Error ? error.message : String(error));
      }
    }
    const available = (versionsOf(name) ?? []).filter(({ state }) => state === 'available').map((v) => v.version);
    const highest = available.length === 0 ? undefined : Math.max(...available);
    if (highest !== undefined && app.models.get(name)?.serving.version !== highest) {
      await app.models.promote(name, highest).catch((error: unknown) => {
        if (!(error instanceof ApiError && error.code === 'conflict')) throw error;
      });
    }
    if (failures.size > 0 || highest === undefined) {
      const failed = [...failures].map(([version, reason]) => `version ${version}: ${reason}`).join('; ');
      const serving = app.models.get(name)?.serving.version;
      throw new ApiError(
        'invalid_model',
        `${name} did not load entirely (${failed || 'no version is available'}); ${
          serving === undefined ? 'no version serves' : `version ${serving} serves`
        }`,
        'name',
      );
    }
  }

  /** Unloads every version; a model only in the repository, never loaded, is unloaded already. */
  async function unloadModel(name: string): Promise<void> {
    try {
      await app.models.unloadModel(name, false);
    } catch (error) {
      if (!(error instanceof ApiError && error.code === 'unknown_model')) throw error;
      const contents = await scanRepository(app.config.modelRepository, app.config.modelName).catch(() => undefined);
      if (!contents?.versions.some((source) => source.name === name)) {
        throw new ApiError('unknown_model', `neither the registry nor the repository has a model "${name}"`, 'name');
      }
    }
  }

  function versionsOf(name: string) {
    return app.models.status().models.find((model) => model.name === name)?.versions;
  }
}
