import fp from 'fastify-plugin';
import type { Config } from '../config.js';
import { ModelRegistry } from '../registry/registry.js';
import { scanRepository } from '../registry/repository.js';

declare module 'fastify' {
  interface FastifyInstance {
    models: ModelRegistry;
    config: Config;
  }
}

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
    const registry = new ModelRegistry({ defaultModel: config.defaultModel, log: app.log });
    app.decorate('models', registry);
    app.decorate('config', config);
    const contents = await scanRepository(config.modelRepository, config.modelName);
    if (contents.versions.length === 0) {
      app.log.warn({ repository: config.modelRepository }, 'the model repository holds no model');
    }
    const loading = registry.loadAll(contents);
    if (waitForModels) await loading;
    app.addHook('onClose', async () => {
      await loading;
      await registry.close();
    });
  },
  { name: 'model-registry' },
);
