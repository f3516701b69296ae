import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Config } from '../config.js';
import { ModelRegistry } from '../registry/registry.js';
import { type RepositoryContents, scanRepository } from '../registry/repository.js';

declare module 'fastify' {
  interface FastifyInstance {
    models: ModelRegistry;
    config: Config;
  }
}

const NOTHING_TO_LOAD: RepositoryContents = { versions: [], unreadable: [], singleModel: false };

export interface RegistryPluginOptions {
  config: Config;
  /** Finish loading models before the app is ready (tests), or load them behind a live server. */
  waitForModels: boolean;
}

/**
 * The model registry, shared by every protocol. The repository is read before the app starts (an
 * unreadable one stops start-up); models load either before it is ready or in the background,
 * while /ping answers 503.
 */
export default fp<RegistryPluginOptions>(
  async function modelRegistry(app, { config, waitForModels }) {
    const registry = new ModelRegistry({
      defaultModel: config.defaultModel,
      repository: config.modelRepository,
      singleModelName: config.modelName,
      drainTimeoutMs: config.drainTimeoutMs,
      loadTimeoutMs: config.modelLoadTimeoutMs,
      multiModel: config.sagemakerMultiModel,
      maxLoadedModels: config.maxLoadedModels,
      memoryBudgetBytes: config.modelMemoryBudgetBytes,
      log: app.log,
      events: app.metrics,
    });
    app.decorate('models', registry);
    app.decorate('config', config);
    // In multi-model mode the repository holds what SageMaker put there: it loads on POST /models.
    const contents = config.sagemakerMultiModel
      ? NOTHING_TO_LOAD
      : await scanRepository(config.modelRepository, config.modelName);
    if (contents.versions.length === 0 && !config.sagemakerMultiModel) {
      app.log.warn({ repository: config.modelRepository }, 'the model repository holds no model');
    }
    const loading = registry.loadAll(contents);
    if (waitForModels) await loading;
    const polling =
      config.modelPollIntervalMs === undefined ? undefined : pollRepository(app, config.modelPollIntervalMs);
    // preClose runs before the listener closes: load balancers see /ping fail from the first moment.
    app.addHook('preClose', async () => registry.shutDown());
    app.addHook('onClose', async () => {
      await polling?.stop();
      await loading;
      await registry.close();
    });
  },
  { name: 'model-registry' },
);

/**
 * Rescans the repository every interval (after the previous scan finished, so slow storage never
 * piles scans up): how replicas sharing one model volume pick up a version written to it.
 */
function pollRepository(app: FastifyInstance, intervalMs: number): { stop(): Promise<void> } {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  let stopped = false;
  const scan = async () => {
    try {
      for (const report of await app.models.poll()) app.log.info(report, 'model repository change picked up');
    } catch (error) {
      app.log.warn({ reason: (error as Error).message }, 'model repository poll failed; retrying next interval');
    }
  };
  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      running = scan().finally(schedule);
    }, intervalMs);
    timer.unref();
  };
  schedule();
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
