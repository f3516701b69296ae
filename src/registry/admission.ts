const MEBIBYTE = 1024 * 1024;

/**
 * Why one more model may not load under MAX_LOADED_MODELS, or undefined when it may. Loads in
 * progress count as loaded: two loads at once must not both take the last slot.
 */
export function slotRefusal(loadedOrLoading: number, maxLoadedModels: number | undefined): string | undefined {
  if (maxLoadedModels === undefined || loadedOrLoading < maxLoadedModels) return undefined;
  return `${loadedOrLoading} models are loaded or loading, the most MAX_LOADED_MODELS allows (${maxLoadedModels}); unload one first`;
}

export interface MemoryNeed {
  /** What the process holds now (its resident set). */
  residentBytes: number;
  /** Files of loads still in progress: not in the resident set yet, but on their way. */
  reservedBytes: number;
  /** The files of the model to load. */
  modelBytes: number;
  /** MODEL_MEMORY_BUDGET_MB, in bytes; undefined: no budget. */
  budgetBytes: number | undefined;
}

/** Why a model may not load under the memory budget, or undefined when it may. */
export function memoryRefusal(need: MemoryNeed): string | undefined {
  const { residentBytes, reservedBytes, modelBytes, budgetBytes } = need;
  if (budgetBytes === undefined || residentBytes + reservedBytes + modelBytes <= budgetBytes) return undefined;
  const inProgress = reservedBytes > 0 ? ` and ${megabytes(reservedBytes)} for loads in progress` : '';
  return (
    `the model's files take ${megabytes(modelBytes)}, on top of ${megabytes(residentBytes)} in use${inProgress}: ` +
    `over MODEL_MEMORY_BUDGET_MB (${megabytes(budgetBytes)}); unload a model first`
  );
}

function megabytes(bytes: number): string {
  return `${(bytes / MEBIBYTE).toFixed(1)} MB`;
}
