import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
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

  it('serves metrics and logs no request lines unless told otherwise', () => {
    expect(loadConfig({})).toMatchObject({ metricsEnabled: true, metricsPort: undefined, logRequests: false });
    expect(loadConfig({ METRICS_ENABLED: 'false', LOG_REQUESTS: 'true', METRICS_PORT: '9464' })).toMatchObject({
      metricsEnabled: false,
      metricsPort: 9464,
      logRequests: true,
    });
  });

  it('refuses METRICS_PORT equal to the app’s port', () => {
    expect(() => loadConfig({ PORT: '9000', METRICS_PORT: '9000' })).toThrow(/METRICS_PORT/);
    expect(() => loadConfig({ METRICS_PORT: '8080' })).toThrow(/METRICS_PORT/);
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
    ['DRAIN_TIMEOUT_MS', '0'],
    ['SHUTDOWN_TIMEOUT_MS', '25s'],
    ['LOG_REQUESTS', 'yes'],
    ['METRICS_ENABLED', '1'],
    ['METRICS_PORT', '99999'],
    ['MAX_MODEL_BYTES', 'lots'],
    ['MODEL_POLL_INTERVAL_MS', '-1'],
    ['ADMIN_JWT_SECRET', 'too-short'],
    ['ADMIN_JWT_PUBLIC_KEY', 'not a key'],
    ['ADMIN_JWT_PUBLIC_KEY_FILE', '/no/such/key.pem'],
  ])('refuses %s=%s, naming the variable', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(name);
  });

  describe('SageMaker multi-model mode', () => {
    it('is off by default, with no limit on loaded models', () => {
      expect(loadConfig({})).toMatchObject({
        sagemakerMultiModel: false,
        maxLoadedModels: undefined,
        modelMemoryBudgetBytes: undefined,
      });
    });

    it('serves /opt/ml/models unless MODEL_REPOSITORY says otherwise, and takes its limits', () => {
      const on = { SAGEMAKER_MULTI_MODEL: 'true' };
      expect(loadConfig(on)).toMatchObject({ sagemakerMultiModel: true, modelRepository: '/opt/ml/models' });
      expect(loadConfig({ ...on, MODEL_REPOSITORY: '/models' }).modelRepository).toBe('/models');
      expect(loadConfig({ ...on, MAX_LOADED_MODELS: '20', MODEL_MEMORY_BUDGET_MB: '512' })).toMatchObject({
        maxLoadedModels: 20,
        modelMemoryBudgetBytes: 512 * 1024 * 1024,
      });
    });

    it.each([
      ['SAGEMAKER_MULTI_MODEL', 'yes'],
      ['MAX_LOADED_MODELS', '0'],
      ['MODEL_MEMORY_BUDGET_MB', '1.5'],
    ])('refuses %s=%s, naming the variable', (name, value) => {
      expect(() => loadConfig({ SAGEMAKER_MULTI_MODEL: 'true', [name]: value })).toThrow(name);
    });

    it('refuses MODEL_POLL_INTERVAL_MS with it: only SageMaker says what loads', () => {
      expect(() => loadConfig({ SAGEMAKER_MULTI_MODEL: 'true', MODEL_POLL_INTERVAL_MS: '1000' })).toThrow(
        /MODEL_POLL_INTERVAL_MS.*SAGEMAKER_MULTI_MODEL/,
      );
    });

    it.each(['MAX_LOADED_MODELS', 'MODEL_MEMORY_BUDGET_MB'])('refuses %s without it rather than ignore it', (name) => {
      expect(() => loadConfig({ [name]: '10' })).toThrow(new RegExp(`${name}.*SAGEMAKER_MULTI_MODEL=true`));
    });
  });

  describe('model monitoring', () => {
    it('captures nothing unless both CAPTURE_DIR and a CAPTURE_SAMPLE above 0 are set', () => {
      expect(loadConfig({}).capture).toBeUndefined();
      expect(loadConfig({ CAPTURE_DIR: '/var/capture' }).capture).toBeUndefined();
      expect(loadConfig({ CAPTURE_SAMPLE: '1' }).capture).toBeUndefined();
      expect(loadConfig({ CAPTURE_DIR: '/var/capture', CAPTURE_SAMPLE: '0.1' }).capture).toEqual({
        dir: '/var/capture',
        sample: 0.1,
        maxFileBytes: 64 * 1024 * 1024,
        maxFiles: 10,
        bufferBytes: 8 * 1024 * 1024,
      });
    });

    it.each([
      ['CAPTURE_SAMPLE', '1.5'],
      ['CAPTURE_SAMPLE', '-0.1'],
      ['CAPTURE_MAX_FILES', '0'],
      ['DRIFT_WINDOW_ROWS', '0'],
      ['DRIFT_WINDOW_ROWS', '2000000000'],
    ])('refuses %s=%s, naming the variable', (name, value) => {
      expect(() => loadConfig({ CAPTURE_DIR: '/var/capture', [name]: value })).toThrow(name);
    });
  });

  describe('the admin API key', () => {
    const publicKey = (type: 'rsa' | 'ec' | 'ed25519', curve?: string) =>
      generateKeyPairSync(type as 'rsa', {
        modulusLength: 2048,
        ...(curve && { namedCurve: curve }),
        publicKeyEncoding: { type: 'spki', format: 'pem' },
        privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
      }).publicKey;

    it('leaves the admin API off when no key is set', () => {
      expect(loadConfig({}).admin).toBeUndefined();
    });

    it('pins the algorithm to the kind of key: HS256 for a secret, RS256 for RSA, ES256/ES384 by EC curve', () => {
      const secret = 'x'.repeat(32);
      expect(loadConfig({ ADMIN_JWT_SECRET: secret }).admin).toMatchObject({ key: secret, algorithm: 'HS256' });
      expect(loadConfig({ ADMIN_JWT_PUBLIC_KEY: publicKey('rsa') }).admin?.algorithm).toBe('RS256');
      expect(loadConfig({ ADMIN_JWT_PUBLIC_KEY: publicKey('ec', 'P-256') }).admin?.algorithm).toBe('ES256');
      expect(loadConfig({ ADMIN_JWT_PUBLIC_KEY: publicKey('ec', 'P-384') }).admin?.algorithm).toBe('ES384');
    });

    it('refuses a key type it cannot pin an algorithm for', () => {
      expect(() => loadConfig({ ADMIN_JWT_PUBLIC_KEY: publicKey('ed25519') })).toThrow(/RSA or EC/);
    });

    it('reads the public key from ADMIN_JWT_PUBLIC_KEY_FILE', async () => {
      const file = path.join(await mkdtemp(path.join(tmpdir(), 'wattserve-key-')), 'admin.pem');
      const pem = publicKey('rsa');
      await writeFile(file, pem);
      expect(loadConfig({ ADMIN_JWT_PUBLIC_KEY_FILE: file, ADMIN_JWT_AUDIENCE: 'wattserve' }).admin).toEqual({
        key: pem,
        algorithm: 'RS256',
        issuer: undefined,
        audience: 'wattserve',
      });
    });

    it('refuses two keys at once rather than guess which one is meant', () => {
      expect(() => loadConfig({ ADMIN_JWT_SECRET: 'x'.repeat(32), ADMIN_JWT_PUBLIC_KEY: publicKey('rsa') })).toThrow(
        /only one of/,
      );
    });
  });
});
