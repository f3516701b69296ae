/**
 * Kepler's formulas written out plainly from ../shared/kepler.md, to check wattserve's answers
 * against: nothing here comes from src/.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { KEPLER_FIXTURES } from './helpers.js';

/** Every fixture pair that has a weights file, with what kepler.md says about it. */
export const KEPLER_MODELS = [
  { path: 'ec2-0.7.11/rapl-sysfs/AbsPower/BPFOnly/SGDRegressorTrainer_0', kind: 'linear', group: 'BPFOnly' },
  { path: 'ec2-0.7.11/rapl-sysfs/AbsPower/Basic/SGDRegressorTrainer_2', kind: 'linear', group: 'Basic' },
  {
    path: 'ec2-0.7.11/rapl-sysfs/AbsPower/BPFOnly/LogarithmicRegressionTrainer_0',
    kind: 'logarithmic',
    group: 'BPFOnly',
  },
  {
    path: 'ec2-0.7.11/rapl-sysfs/AbsPower/BPFIRQ/ExponentialRegressionTrainer_1',
    kind: 'exponential',
    group: 'BPFIRQ',
  },
  { path: 'specpower-0.7.11/acpi/AbsPower/BPFOnly/SGDRegressorTrainer_1', kind: 'linear', group: 'BPFOnly' },
] as const;

export const PICKLE_ONLY = 'ec2-0.7.11/rapl-sysfs/GradientBoostingRegressorTrainer_1-DynPower-BPFOnly';

const MAIN: Record<string, [main: string, dramMain: string]> = {
  BPFOnly: ['bpf_cpu_time_ms', 'bpf_page_cache_hit'],
  BPFIRQ: ['bpf_cpu_time_ms', 'bpf_page_cache_hit'],
  Basic: ['cpu_instructions', 'cache_miss'],
  CounterOnly: ['cpu_instructions', 'cache_miss'],
  CounterIRQCombined: ['cpu_instructions', 'cache_miss'],
};

interface Weights {
  [component: string]: {
    All_Weights: {
      Bias_Weight?: number;
      Categorical_Variables?: Record<string, Record<string, { weight: number }>>;
      Numerical_Variables: Record<string, { scale: number; weight?: number }>;
      CurveFit_Weights?: number[];
    };
  };
}

export function fixtureWeights(fixture: string): Weights {
  return JSON.parse(readFileSync(path.join(KEPLER_FIXTURES, `${fixture}.json`), 'utf8')) as Weights;
}

/** Watts per component for one pod, given by feature name, as kepler.md defines them. */
export function referenceWatts(
  weights: Weights,
  kind: string,
  group: string,
  pod: Record<string, number>,
  system: Record<string, string> = {},
): Record<string, number> {
  const watts: Record<string, number> = {};
  for (const [component, { All_Weights: w }] of Object.entries(weights)) {
    let base = 0;
    for (const [feature, values] of Object.entries(w.Categorical_Variables ?? {})) {
      const value = system[feature];
      if (value !== undefined && values[value] !== undefined) base += values[value].weight;
    }
    const x = (feature: string) => {
      const scale = w.Numerical_Variables[feature]?.scale ?? 0;
      return scale === 0 ? 0 : (pod[feature] ?? 0) / scale;
    };
    let result: number;
    if (kind === 'linear') {
      result = base + (w.Bias_Weight ?? 0);
      for (const [feature, { weight }] of Object.entries(w.Numerical_Variables)) result += (weight ?? 0) * x(feature);
    } else {
      const [main, dramMain] = MAIN[group] ?? ['', ''];
      const xm = x(component === 'dram' ? dramMain : main);
      const [a = 0, b = 0, c = 0, d = 0] = w.CurveFit_Weights ?? [];
      if (kind === 'exponential') result = base + a * Math.exp(b * xm) + c;
      else if (kind === 'logarithmic') result = base + a * Math.log(b * xm + 1) + c;
      else result = base + a / (1 + Math.exp(-c * (xm - b))) + d;
    }
    watts[component] = Math.max(0, result);
  }
  return watts;
}

/** Pods as Kepler reports them over one interval: busy, light, and idle (all zero). */
export const KEPLER_PODS: Array<Record<string, number>> = [
  {
    bpf_cpu_time_ms: 61234.5,
    bpf_page_cache_hit: 812,
    bpf_block_irq: 3,
    bpf_net_rx_irq: 2210,
    bpf_net_tx_irq: 4,
    cache_miss: 31_234_567_890,
    cpu_cycles: 210_987_654_321,
    cpu_instructions: 301_234_567_890,
  },
  {
    bpf_cpu_time_ms: 1520.25,
    bpf_page_cache_hit: 17,
    bpf_block_irq: 0,
    bpf_net_rx_irq: 40,
    bpf_net_tx_irq: 1,
    cache_miss: 412_345_678,
    cpu_cycles: 3_456_789_012,
    cpu_instructions: 4_567_890_123,
  },
  {
    bpf_cpu_time_ms: 0,
    bpf_page_cache_hit: 0,
    bpf_block_irq: 0,
    bpf_net_rx_irq: 0,
    bpf_net_tx_irq: 0,
    cache_miss: 0,
    cpu_cycles: 0,
    cpu_instructions: 0,
  },
];

/** Every metric Kepler may send, in an order unlike any model's, plus one no model uses. */
export const KEPLER_METRICS = [
  'cpu_instructions',
  'bpf_net_tx_irq',
  'cache_miss',
  'bpf_page_cache_hit',
  'task_clock_ms',
  'bpf_cpu_time_ms',
  'cpu_cycles',
  'bpf_block_irq',
  'bpf_net_rx_irq',
];

export function keplerValues(pods = KEPLER_PODS): number[][] {
  return pods.map((pod) => KEPLER_METRICS.map((metric) => pod[metric] ?? 12345));
}

/** Relative closeness, for watts that must match to 1e-6. */
/** A request as Kepler sends it: every field present, Go's nil slices as null. */
export function keplerRequest(overrides: Record<string, unknown> = {}) {
  return {
    metrics: KEPLER_METRICS,
    values: keplerValues(),
    output_type: 'AbsPower',
    source: 'intel_rapl',
    system_features: null,
    system_values: null,
    trainer_name: '',
    filter: '',
    ...overrides,
  };
}

export function closeTo(actual: number, expected: number, relative = 1e-6): boolean {
  return Math.abs(actual - expected) <= relative * Math.max(Math.abs(expected), 1e-9);
}

export type KeplerFixture = (typeof KEPLER_MODELS)[number];

/** Asserts that `powers` (component → watts per pod) are the fixture's watts for the pods, to 1e-6. */
export function expectFixtureWatts(powers: Record<string, number[]>, fixture: KeplerFixture, pods = KEPLER_PODS): void {
  const weights = fixtureWeights(fixture.path);
  expect(Object.keys(powers)).toEqual(Object.keys(weights));
  pods.forEach((pod, r) => {
    for (const [component, watts] of Object.entries(referenceWatts(weights, fixture.kind, fixture.group, pod))) {
      const got = powers[component]?.[r] as number;
      expect(closeTo(got, watts), `${component}[${r}]: ${got} vs ${watts}`).toBe(true);
    }
  });
}
