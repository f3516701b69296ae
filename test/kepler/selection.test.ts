import { describe, expect, it } from 'vitest';
import type { KeplerModelInfo } from '../../src/backends/kepler.js';
import { parseFilter, selectModel } from '../../src/kepler/selection.js';
import { apiErrorOf } from '../helpers.js';

function candidate(name: string, info: Partial<KeplerModelInfo>, features = ['bpf_cpu_time_ms']) {
  const kepler: KeplerModelInfo = {
    modelName: name,
    outputType: 'AbsPower',
    energySource: 'rapl-sysfs',
    attributes: {},
    weights: {},
    archive: async () => new Uint8Array(),
    ...info,
  };
  return { name, version: 1, features, outputs: ['package'], kepler };
}

const request = {
  outputType: 'AbsPower',
  source: 'intel_rapl',
  metrics: ['bpf_cpu_time_ms', 'bpf_page_cache_hit'],
  trainerName: undefined,
  filter: undefined,
};

describe('choosing the Kepler model for a request', () => {
  const sgd = candidate('SGDRegressorTrainer_0', { attributes: { mae: 60, abs_max_corr: 0.9 } });
  const log = candidate('LogarithmicRegressionTrainer_0', { attributes: { mae: 40, abs_max_corr: 0.5 } });
  const dyn = candidate('SGDRegressorTrainer_1', { outputType: 'DynPower', attributes: { mae: 1 } });
  const acpi = candidate('SGDRegressorTrainer_2', { energySource: 'acpi', attributes: { mae: 2 } });
  const wide = candidate('SGDRegressorTrainer_3', { attributes: { mae: 3 } }, ['bpf_cpu_time_ms', 'cpu_cycles']);
  const all = [sgd, log, dyn, acpi, wide];

  it('takes the lowest mae among those of the same output type and source whose features are all given', () => {
    expect(selectModel(all, request).name).toBe(log.name);
    expect(selectModel(all, { ...request, outputType: 'DynPower' }).name).toBe(dyn.name);
    expect(selectModel(all, { ...request, source: 'acpi' }).name).toBe(acpi.name);
    expect(selectModel(all, { ...request, metrics: [...request.metrics, 'cpu_cycles'] }).name).toBe(wide.name);
  });

  it('reads intel_rapl, rapl and rapl-sysfs as one source', () => {
    for (const source of ['intel_rapl', 'rapl', 'rapl-sysfs']) {
      expect(selectModel(all, { ...request, source }).name).toBe(log.name);
    }
  });

  it('keeps only the trainer named by trainer_name', () => {
    expect(selectModel(all, { ...request, trainerName: 'SGDRegressorTrainer' }).name).toBe(sgd.name);
  });

  it('filters on metadata: lower is better, except abs_max_corr; a missing attribute fails', () => {
    expect(selectModel(all, { ...request, filter: 'mae:70;abs_max_corr:0.8' }).name).toBe(sgd.name);
    expect(apiErrorOf(() => selectModel(all, { ...request, filter: 'mae:30' }))).toMatchObject({
      code: 'no_matching_model',
      status: 400,
    });
    expect(apiErrorOf(() => selectModel(all, { ...request, filter: 'r2:0.1' })).code).toBe('no_matching_model');
  });

  it('says which condition matched nothing', () => {
    expect(() => selectModel(all, { ...request, outputType: 'Other' })).toThrow('output type Other');
    expect(() => selectModel(all, { ...request, metrics: ['cpu_cycles'] })).toThrow('the given metrics');
    expect(() => selectModel([], request)).toThrow('no Kepler model is loaded');
  });

  it('reads filters and refuses malformed ones', () => {
    expect(parseFilter('mae:50; abs_max_corr:0.5;')).toEqual([
      { attribute: 'mae', value: 50 },
      { attribute: 'abs_max_corr', value: 0.5 },
    ]);
    expect(parseFilter('')).toEqual([]);
    for (const bad of ['mae', 'mae:', 'mae:x', ':5', 'a:1:2']) {
      expect(apiErrorOf(() => parseFilter(bad))).toMatchObject({ code: 'invalid_body', field: 'filter' });
    }
  });
});
