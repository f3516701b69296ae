import closeWithGrace from 'close-with-grace';
import { buildApp } from './app.js';
import { ConfigError, loadConfig } from './config.js';
import { RepositoryError } from './registry/repository.js';

// SageMaker gives a container 30 s between SIGTERM and SIGKILL; finish well inside that.
const SHUTDOWN_GRACE_MS = 25_000;

async function main(): Promise<void> {
  const config = loadConfig();
  const app = await buildApp(config, { waitForModels: false });
  closeWithGrace({ delay: SHUTDOWN_GRACE_MS }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'shutting down after an uncaught error');
    else app.log.info({ signal }, 'shutting down');
    await app.close();
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
