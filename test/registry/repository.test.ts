import { describe, expect, it } from 'vitest';
import { RepositoryError, scanRepository } from '../../src/registry/repository.js';
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
    const found = (await scanRepository(root, 'model')).map((s) => `${s.name}/${s.version}:${s.location}`);
    expect(found).toEqual(['alpha/1:alpha/1', 'alpha/2:alpha/2', 'alpha/10:alpha/10', 'beta/3:beta/3']);
  });

  it('takes a root that itself holds a model file as one model named MODEL_NAME (SageMaker /opt/ml/model)', async () => {
    const root = await makeRepository({ '.': { model: LINEAR } });
    const [only, ...others] = await scanRepository(root, 'watts');
    expect(others).toEqual([]);
    expect(only).toMatchObject({ name: 'watts', version: 1, dir: root, location: '.' });
    expect(only?.files).toContain('model.onnx');
  });

  it('stops with a clear error when the repository cannot be read', async () => {
    await expect(scanRepository('/nonexistent/models', 'model')).rejects.toThrow(RepositoryError);
    await expect(scanRepository('/nonexistent/models', 'model')).rejects.toThrow('/nonexistent/models');
  });
});
