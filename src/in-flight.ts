import { ApiError } from './errors.js';

/**
 * Caps the requests one model may have in flight. A model that stops answering (a hung backend, a
 * flood of large requests) then costs its own clients a quick 429, not every model's memory.
 */
export class InFlightLimit {
  readonly #counts = new Map<string, number>();

  constructor(
    readonly max: number,
    readonly retryAfterSeconds: number,
  ) {}

  /** Takes a place for a request to the model, or throws 429 model_busy; call the result to give it back. */
  enter(model: string): () => void {
    const count = this.#counts.get(model) ?? 0;
    if (count >= this.max) {
      throw new ApiError(
        'model_busy',
        `model "${model}" already has ${this.max} requests in flight (MAX_CONCURRENT_PER_MODEL)`,
        'model',
        this.retryAfterSeconds,
      );
    }
    this.#counts.set(model, count + 1);
    let left = false;
    return () => {
      if (left) return;
      left = true;
      const remaining = (this.#counts.get(model) ?? 1) - 1;
      if (remaining === 0) this.#counts.delete(model);
      else this.#counts.set(model, remaining);
    };
  }

  inFlight(model: string): number {
    return this.#counts.get(model) ?? 0;
  }
}
