import { execFile } from 'node:child_process';
import { chmod } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { type RepositoryContents, RepositoryError, scanRepository } from '../../src/registry/repository.js';
import { LINEAR, makeRepository } from '../helpers.js';

describe('reading the model repository', () => {
  it('finds models/<name>/<version>/ folders, ignoring other names', async () => {
    const root = await makeRepository({
      'alpha/1/model.onnx': '',
      'alpha/10/model.onnx': '',
      'alpha/2/model.onnx': '',
      'alpha/0/model.onnx': '',
      'alpha/latest/model.onnx': '',
      'alpha/01/model.onnx': '',
      'beta/3/model.json': '',
      '.cache/1/model.onnx': '',
      'README.md': 'not a model',
    });
    const found = (await scanRepository(root, 'model')).versions.map((s) => `${s.name}/${s.version}:${s.location}`);
    expect(found).toEqual(['alpha/1:alpha/1', 'alpha/2:alpha/2', 'alpha/10:alpha/10', 'beta/3:beta/3']);
  });

  it('takes a root that itself holds a model file as one model named MODEL_NAME (SageMaker /opt/ml/model)', async () => {
    const root = await makeRepository({ '.': { model: LINEAR } });
    const {
      versions: [only, ...others],
    } = await scanRepository(root, 'watts');
    expect(others).toEqual([]);
    expect(only).toMatchObject({ name: 'watts', version: 1, dir: root, location: '.' });
    expect(only?.files).toContain('model.onnx');
  });

  it('skips model and version folders it cannot read, reporting them, and reads the rest', async () => {
    const root = await makeRepository({
      'good/1/model.onnx': '',
      'half/1/model.onnx': '',
      'half/2/model.onnx': '',
      'locked/1/model.onnx': '',
    });
    await chmod(root, 0o755);
    await chmod(path.join(root, 'locked'), 0o000);
    await chmod(path.join(root, 'half/2'), 0o000);
    const { versions, unreadable } = await scanAsUnprivileged(root);
    expect(versions.map((v) => v.location)).toEqual(['good/1', 'half/1']);
    expect(unreadable).toEqual([
      { location: 'half/2', reason: expect.stringContaining('EACCES') },
      { location: 'locked', reason: expect.stringContaining('EACCES') },
    ]);
  });

  it('stops with a clear error when the repository cannot be read', async () => {
    await expect(scanRepository('/nonexistent/models', 'model')).rejects.toThrow(RepositoryError);
    await expect(scanRepository('/nonexistent/models', 'model')).rejects.toThrow('/nonexistent/models');
  });
});

/**
 * Scans as a user that file permissions apply to. CI runs as root, which reads any folder, so
 * there the scan runs in a child process as `nobody`.
 */
async function scanAsUnprivileged(root: string): Promise<RepositoryContents> {
  if (process.getuid?.() !== 0) return scanRepository(root, 'model');
  const module = fileURLToPath(new URL('../../src/registry/repository.ts', import.meta.url));
  const script = `const { scanRepository } = await import(${JSON.stringify(module)});
    process.stdout.write(JSON.stringify(await scanRepository(process.argv[1], 'model')));`;
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '-e', script, root],
    { uid: 65534, gid: 65534, cwd: fileURLToPath(new URL('../..', import.meta.url)) },
  );
  return JSON.parse(stdout) as RepositoryContents;
}
