import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';

describe('configuration from the environment', () => {
  it('has defaults that serve ./models on port 8080 with a 6 MiB body limit', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      port: 8080,
      host: '0.0.0.0',
      modelRepository: './models',
      modelName: 'model',
      defaultModel: undefined,
      maxBodyBytes: 6 * 1024 * 1024,
      logLevel: 'info',
      defaultAccept: 'application/json',
    });
  });

  it('takes PORT first, then SageMaker’s SAGEMAKER_BIND_TO_PORT', () => {
    expect(loadConfig({ SAGEMAKER_BIND_TO_PORT: '9090' }).port).toBe(9090);
    expect(loadConfig({ PORT: '3000', SAGEMAKER_BIND_TO_PORT: '9090' }).port).toBe(3000);
  });

  it('takes MAX_BODY_BYTES first, then SAGEMAKER_MAX_PAYLOAD_IN_MB', () => {
    expect(loadConfig({ SAGEMAKER_MAX_PAYLOAD_IN_MB: '20' }).maxBodyBytes).toBe(20 * 1024 * 1024);
    expect(loadConfig({ MAX_BODY_BYTES: '1000', SAGEMAKER_MAX_PAYLOAD_IN_MB: '20' }).maxBodyBytes).toBe(1000);
  });

  it('treats an empty variable as unset', () => {
    expect(loadConfig({ PORT: '', DEFAULT_MODEL: '' })).toMatchObject({ port: 8080, defaultModel: undefined });
  });

  it.each([
    ['PORT', 'eighty'],
    ['PORT', '70000'],
    ['MAX_ROWS', '0'],
    ['MAX_BODY_BYTES', '-5'],
    ['LOG_LEVEL', 'loud'],
    ['MODEL_NAME', '../escape'],
    ['SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT', 'text/html'],
  ])('refuses %s=%s, naming the variable', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(name);
  });
});
