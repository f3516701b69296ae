import { z } from 'zod';
import { zodProblems } from '../zod-problems.js';

/**
 * Kepler's weights file (`<Trainer>_<n>.json`, or `weight.json` once unpacked) and the formulas
 * that turn a row of counters into watts with it: ../shared/kepler.md, section 2. Everything is
 * computed in float64, as Kepler's Python estimator does.
 */

export type CurveKind = 'linear' | 'exponential' | 'logarithmic' | 'logistic';

/**
 * The curve-fit trainers, whose weights file holds CurveFit_Weights. Any other weights file is a
 * linear model (SGDRegressorTrainer, or another scikit-learn linear regressor Kepler exported).
 */
const CURVE_TRAINERS: Record<string, Exclude<CurveKind, 'linear'>> = {
  ExponentialRegressionTrainer: 'exponential',
  LogarithmicRegressionTrainer: 'logarithmic',
  LogisticRegressionTrainer: 'logistic',
};

const CURVE_WEIGHT_COUNT: Record<Exclude<CurveKind, 'linear'>, number> = {
  exponential: 3,
  logarithmic: 3,
  logistic: 4,
};

const componentSchema = z.object({
  All_Weights: z.object({
    Bias_Weight: z.number().optional(),
    Categorical_Variables: z.record(z.string(), z.record(z.string(), z.object({ weight: z.number() }))).default({}),
    Numerical_Variables: z.record(z.string(), z.object({ scale: z.number(), weight: z.number().optional() })),
    CurveFit_Weights: z.array(z.number()).optional(),
  }),
});
const weightsSchema = z.record(z.string(), componentSchema);

/** Feature groups Kepler trains on, recognised from a model's feature set, with their main features. */
const FEATURE_GROUPS: Array<{ name: string; features: string[]; main: string; dramMain: string }> = [
  {
    name: 'CounterOnly',
    features: ['cache_miss', 'cpu_cycles', 'cpu_instructions'],
    main: 'cpu_instructions',
    dramMain: 'cache_miss',
  },
  {
    name: 'BPFOnly',
    features: ['bpf_cpu_time_ms', 'bpf_page_cache_hit'],
    main: 'bpf_cpu_time_ms',
    dramMain: 'bpf_page_cache_hit',
  },
  {
    name: 'BPFIRQ',
    features: ['bpf_cpu_time_ms', 'bpf_page_cache_hit', 'bpf_block_irq', 'bpf_net_rx_irq', 'bpf_net_tx_irq'],
    main: 'bpf_cpu_time_ms',
    dramMain: 'bpf_page_cache_hit',
  },
  {
    name: 'CounterIRQCombined',
    features: ['cache_miss', 'cpu_cycles', 'cpu_instructions', 'bpf_block_irq', 'bpf_net_rx_irq', 'bpf_net_tx_irq'],
    main: 'cpu_instructions',
    dramMain: 'cache_miss',
  },
  {
    name: 'Basic',
    features: ['cache_miss', 'cpu_cycles', 'cpu_instructions', 'bpf_cpu_time_ms', 'bpf_page_cache_hit'],
    main: 'cpu_instructions',
    dramMain: 'cache_miss',
  },
];

/** `SGDRegressorTrainer_0` → `SGDRegressorTrainer`. */
export function trainerOf(modelName: string): string {
  return modelName.replace(/_\d+$/, '');
}

/** One component's formula, with its features resolved to column indices of the model's input. */
interface ComponentFormula {
  name: string;
  categorical: ReadonlyMap<string, ReadonlyMap<string, number>>;
  evaluate(row: Float64Array | Float32Array, offset: number): number;
}

export interface KeplerFormula {
  kind: CurveKind;
  /** Component names (package, core, uncore, dram; or platform), in the weights file's order. */
  components: string[];
  /**
   * Watts for every row and component, row-major, clamped at 0. `system` holds the node's
   * categorical features (node_info, cpu_architecture, …); their weights add to every row.
   */
  predict(
    data: Float64Array | Float32Array,
    rows: number,
    cols: number,
    system: ReadonlyMap<string, string>,
  ): Float64Array;
}

/**
 * Builds the formula of a weights file for a model taking `features` in that order. Throws with
 * a reason when the file does not fit the trainer or the features.
 */
export function buildFormula(
  weightsJson: unknown,
  options: { modelName: string; features: readonly string[]; mainFeature?: string | undefined },
): KeplerFormula {
  const trainer = trainerOf(options.modelName);
  const parsed = weightsSchema.safeParse(weightsJson);
  if (!parsed.success) {
    throw new Error(`the weights file is invalid: ${zodProblems(parsed.error).join('; ')}`);
  }
  const entries = Object.entries(parsed.data);
  if (entries.length === 0) throw new Error('the weights file has no component');
  const curves = entries.filter(([, component]) => component.All_Weights.CurveFit_Weights !== undefined).length;
  if (curves !== 0 && curves !== entries.length) throw new Error('some components have CurveFit_Weights and some not');
  const curveKind = CURVE_TRAINERS[trainer];
  if (curves !== 0 && curveKind === undefined) {
    throw new Error(`${trainer} has CurveFit_Weights but is not a curve-fit trainer wattserve knows`);
  }
  const kind: CurveKind = curves === 0 || curveKind === undefined ? 'linear' : curveKind;
  const column = new Map(options.features.map((feature, index) => [feature, index]));
  const formulas = entries.map(([name, { All_Weights: weights }]) => {
    const numerical = Object.entries(weights.Numerical_Variables).map(([feature, { scale, weight }]) => {
      const index = column.get(feature);
      if (index === undefined) throw new Error(`component ${name} uses "${feature}", which the model's features lack`);
      return { feature, index, scale, weight };
    });
    const categorical = new Map(
      Object.entries(weights.Categorical_Variables).map(([feature, values]) => [
        feature,
        new Map(Object.entries(values).map(([value, { weight }]) => [value, weight])),
      ]),
    );
    const x = (row: Float64Array | Float32Array, offset: number, input: (typeof numerical)[number]) =>
      input.scale === 0 ? 0 : (row[offset + input.index] as number) / input.scale;

    if (kind === 'linear') {
      const bias = weights.Bias_Weight ?? 0;
      for (const input of numerical) {
        if (input.weight === undefined) throw new Error(`component ${name}: "${input.feature}" has no weight`);
      }
      return {
        name,
        categorical,
        evaluate: (row: Float64Array | Float32Array, offset: number) =>
          numerical.reduce((sum, input) => sum + (input.weight as number) * x(row, offset, input), bias),
      };
    }
    const curve = weights.CurveFit_Weights;
    if (curve?.length !== CURVE_WEIGHT_COUNT[kind]) {
      throw new Error(`component ${name}: a ${kind} curve needs ${CURVE_WEIGHT_COUNT[kind]} CurveFit_Weights`);
    }
    const mainName = options.mainFeature ?? mainFeatureOf(options.features, name);
    const main = numerical.find((input) => input.feature === mainName);
    if (main === undefined) throw new Error(`component ${name}: the main feature "${mainName}" has no scale`);
    const curveAt = curveFunction(kind, curve);
    return {
      name,
      categorical,
      evaluate: (row: Float64Array | Float32Array, offset: number) => curveAt(x(row, offset, main)),
    };
  });

  return {
    kind,
    components: formulas.map((formula) => formula.name),
    predict(data, rows, cols, system) {
      const out = new Float64Array(rows * formulas.length);
      const bases = formulas.map((formula) => categoricalBase(formula.categorical, system));
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < formulas.length; c++) {
          const watts = (bases[c] as number) + (formulas[c] as ComponentFormula).evaluate(data, r * cols);
          // Negative watts are clamped, as Kepler's Python estimator does.
          out[r * formulas.length + c] = watts > 0 ? watts : 0;
        }
      }
      return out;
    },
  };
}

function curveFunction(kind: Exclude<CurveKind, 'linear'>, w: number[]): (x: number) => number {
  const [a = 0, b = 0, c = 0, d = 0] = w;
  switch (kind) {
    case 'exponential':
      return (x) => a * Math.exp(b * x) + c;
    case 'logarithmic':
      return (x) => a * Math.log(b * x + 1) + c;
    case 'logistic':
      // [A, x0, k, off]
      return (x) => a / (1 + Math.exp(-c * (x - b))) + d;
  }
}

/** The feature a curve was fitted on: from the feature group, with dram's own choice. */
export function mainFeatureOf(features: readonly string[], component: string): string {
  const set = new Set(features);
  const group = FEATURE_GROUPS.find((g) => g.features.length === set.size && g.features.every((f) => set.has(f)));
  if (group === undefined) {
    throw new Error(
      `the features (${features.join(', ')}) form no known Kepler feature group; set main_feature in metadata`,
    );
  }
  return component === 'dram' ? group.dramMain : group.main;
}

function categoricalBase(
  categorical: ReadonlyMap<string, ReadonlyMap<string, number>>,
  system: ReadonlyMap<string, string>,
): number {
  let base = 0;
  for (const [feature, values] of categorical) {
    const value = system.get(feature);
    if (value !== undefined) base += values.get(value) ?? 0;
  }
  return base;
}
