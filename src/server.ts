import closeWithGrace from 'close-with-grace';
import { buildApp } from './app.js';
import { ConfigError, loadConfig } from './config.js';
import { RepositoryError } from './registry/repository.js';

async function main(): Promise<void> {
  const config = loadConfig();
  const app = await buildApp(config, { waitForModels: false });
  // On SIGTERM: /ping turns 503, the listener stops taking connections, requests in flight finish,
  // models are freed, exit 0; after SHUTDOWN_TIMEOUT_MS close-with-grace exits 1 regardless.
  closeWithGrace({ delay: config.shutdownTimeoutMs }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'shutting down after an uncaught error');
    else app.log.info({ signal }, 'shutting down');
    await app.close();
    app.log.info('stopped');
  });
  await app.listen({ port: config.port, host: config.host });
}

main().catch((error: unknown) => {
  if (error instanceof ConfigError || error instanceof RepositoryError) {
    console.error(`wattserve: ${error.message}`);
  } else {
    console.error('wattserve failed to start:', error);
  }
  process.exit(1);
});
