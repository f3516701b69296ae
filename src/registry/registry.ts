import type { FastifyBaseLogger } from 'fastify';
import { ApiError } from '../errors.js';
import { loadVersion, type ModelVersion } from './loader.js';
import type { RepositoryContents } from './repository.js';

/**
 * One model's state. Never mutated: a change builds a new snapshot and replaces the old one in a
 * single assignment, so a request sees either the old or the new one, never half of each.
 */
export interface ModelSnapshot {
  readonly name: string;
  /** The version requests get when they name none: the highest available one. */
  readonly serving: ModelVersion;
  readonly versions: ReadonlyMap<number, ModelVersion>;
}

export interface FailedVersion {
  readonly name: string;
  readonly version: number;
  readonly location: string;
  readonly reason: string;
}

/** A counted hold on a model version; release it in a `finally`. */
export interface ModelHandle {
  readonly model: ModelVersion;
  release(): void;
}

export interface RegistryOptions {
  /** Model used when a request names none and several are loaded. */
  defaultModel: string | undefined;
  log: FastifyBaseLogger;
}

/** Name → versions of every model that serves, and the counts of requests using each version. */
export class ModelRegistry {
  #snapshots = new Map<string, ModelSnapshot>();
  #inFlight = new Map<ModelVersion, number>();
  #failures: FailedVersion[] = [];
  #loading = true;
  readonly #defaultModel: string | undefined;
  readonly #log: FastifyBaseLogger;

  constructor(options: RegistryOptions) {
    this.#defaultModel = options.defaultModel;
    this.#log = options.log;
  }

  /**
   * True once start-up loading is over and models serve: at least one, and the configured default
   * model among them (else every request that names no model would fail).
   */
  get ready(): boolean {
    if (this.#loading || this.#snapshots.size === 0) return false;
    return this.#defaultModel === undefined || this.#snapshots.has(this.#defaultModel);
  }

  /** True while start-up loading runs. */
  get loading(): boolean {
    return this.#loading;
  }

  get failures(): readonly FailedVersion[] {
    return this.#failures;
  }

  /** Every serving model, by name. */
  list(): ModelSnapshot[] {
    return [...this.#snapshots.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): ModelSnapshot | undefined {
    return this.#snapshots.get(name);
  }

  /**
   * Loads every version found in the repository, one at a time (loading is CPU-bound and the
   * machine small). A version that fails is logged and skipped; the others still serve.
   */
  async loadAll(contents: RepositoryContents): Promise<void> {
    this.#loading = true;
    for (const { location, reason } of contents.unreadable) {
      this.#log.error({ location, reason }, 'model repository folder skipped');
    }
    try {
      for (const source of contents.versions) {
        const started = performance.now();
        try {
          const loaded = await loadVersion(source);
          this.#add(loaded);
          this.#log.info(
            {
              model: source.name,
              version: source.version,
              backend: loaded.backend,
              runtime: loaded.model.runtime,
              ms: Math.round(performance.now() - started),
            },
            'model version loaded',
          );
        } catch (error) {
          const reason = error instanceof Error ? error.message : String(error);
          this.#failures = [
            ...this.#failures,
            { name: source.name, version: source.version, location: source.location, reason },
          ];
          this.#log.error(
            { model: source.name, version: source.version, reason },
            'model version failed to load; skipped',
          );
        }
      }
    } finally {
      this.#loading = false;
    }
    if (this.#snapshots.size === 0) this.#log.error('no model could be loaded: the service is not ready');
    else if (this.#defaultModel !== undefined && !this.#snapshots.has(this.#defaultModel)) {
      this.#log.error({ defaultModel: this.#defaultModel }, 'DEFAULT_MODEL is not loaded: the service is not ready');
    }
  }

  #add(loaded: ModelVersion): void {
    const previous = this.#snapshots.get(loaded.name);
    const versions = new Map(previous?.versions);
    versions.set(loaded.version, loaded);
    const serving = previous === undefined || loaded.version > previous.serving.version ? loaded : previous.serving;
    this.#snapshots.set(loaded.name, { name: loaded.name, serving, versions });
  }

  /**
   * Finds the model a request asks for and holds it until release(). With no name: the configured
   * default model, else the only model. With no version: the serving one.
   */
  acquire(name: string | undefined, version: number | undefined): ModelHandle {
    const snapshot = this.#resolve(name);
    const model = version === undefined ? snapshot.serving : snapshot.versions.get(version);
    if (model === undefined) {
      const loaded = [...snapshot.versions.keys()].sort((a, b) => a - b).join(', ');
      throw new ApiError(
        'unknown_version',
        `model "${snapshot.name}" has no version ${version}; loaded: ${loaded}`,
        'version',
      );
    }
    this.#inFlight.set(model, (this.#inFlight.get(model) ?? 0) + 1);
    let released = false;
    return {
      model,
      release: () => {
        if (released) return;
        released = true;
        const count = (this.#inFlight.get(model) ?? 1) - 1;
        if (count === 0) this.#inFlight.delete(model);
        else this.#inFlight.set(model, count);
      },
    };
  }

  /** Requests currently holding this version. */
  inFlight(model: ModelVersion): number {
    return this.#inFlight.get(model) ?? 0;
  }

  #resolve(name: string | undefined): ModelSnapshot {
    if (name !== undefined) {
      const snapshot = this.#snapshots.get(name);
      if (snapshot === undefined && this.#loading) throw new ApiError('not_ready', 'models are still loading');
      if (snapshot === undefined) {
        throw new ApiError('unknown_model', `no model named "${name}" is loaded; loaded: ${this.#names()}`, 'model');
      }
      return snapshot;
    }
    if (this.#snapshots.size === 0) {
      throw new ApiError('not_ready', this.#loading ? 'models are still loading' : 'no model is loaded');
    }
    if (this.#defaultModel !== undefined) return this.#resolve(this.#defaultModel);
    const [only, ...others] = this.#snapshots.values();
    if (only === undefined || others.length > 0) {
      throw new ApiError('model_required', `several models are loaded; name one of: ${this.#names()}`, 'model');
    }
    return only;
  }

  #names(): string {
    return (
      this.list()
        .map((snapshot) => snapshot.name)
        .join(', ') || '(none)'
    );
  }

  /** Frees every loaded model. Called once the server has stopped taking requests. */
  async close(): Promise<void> {
    const versions = this.list().flatMap((snapshot) => [...snapshot.versions.values()]);
    this.#snapshots = new Map();
    await Promise.allSettled(versions.map((version) => version.model.dispose()));
  }
}
