import type { FastifyBaseLogger } from 'fastify';
import type { BackendName } from '../backends/backend.js';
import { ApiError, type ErrorCode } from '../errors.js';
import {
  checkPolicy,
  NO_TRAFFIC_POLICY,
  type RoutedTraffic,
  routeTraffic,
  shareOf,
  type TrafficPolicy,
  versionForShare,
} from '../traffic.js';
import { memoryRefusal, slotRefusal } from './admission.js';
import {
  InstallConflictError,
  type InstallOptions,
  installVersion,
  OutOfSpaceError,
  UnwritableFileError,
  type VersionFile,
} from './install.js';
import {
  LoadFailure,
  type LoadFailureReason,
  type LoadOptions,
  loadVersion,
  type ModelVersion,
  publicMessage,
} from './loader.js';
import {
  isSingleModelRoot,
  type RepositoryContents,
  readModelFolder,
  readVersionFolder,
  scanRepository,
  sourceBytes,
  type UnreadableFolder,
  type VersionSource,
} from './repository.js';

/**
 * What requests see of one model. Never mutated: a change builds a new snapshot and replaces the
 * old one in a single assignment, so a request sees either the old or the new one, never half of each.
 */
export interface ModelSnapshot {
  readonly name: string;
  /** The version requests get when they name none. */
  readonly serving: ModelVersion;
  /** Every available version, by number. */
  readonly versions: ReadonlyMap<number, ModelVersion>;
  /** Named pointers at available versions (`stable`, `canary`, …). */
  readonly labels: ReadonlyMap<string, number>;
  /** Where requests naming no version go besides `serving`, and which version gets their copies. */
  readonly traffic: RoutedTraffic<ModelVersion>;
}

/** loading → available → unloading → unloaded, or failed (with a reason). */
export type VersionState = 'loading' | 'available' | 'unloading' | 'unloaded' | 'failed';

/** A load of a version that failed: the step (as in wattserve_model_load_failures_total), why, and when. */
export interface LoadFailureStatus {
  reason: LoadFailureReason;
  message: string;
  at: string;
}

/** One version as the admin listing shows it. */
export interface VersionStatus {
  version: number;
  state: VersionState;
  location: string;
  backend?: BackendName;
  loadedAt?: string;
  loadSeconds?: number;
  inFlight: number;
  /** Why a failed version failed. */
  reason?: string;
  /**
   * The last load of this version that failed, until one succeeds. On an available version: its
   * files changed on disk and no longer load (deleted, truncated, a hung read), and the copy loaded
   * before keeps serving.
   */
  lastLoadFailure?: LoadFailureStatus;
  /** Predictions of the loaded copy that failed in the backend (answered 500), once there is one. */
  predictionFailures?: number;
  lastPredictionFailure?: { message: string; at: string };
}

export interface ModelStatus {
  name: string;
  serving: number | undefined;
  labels: Record<string, number>;
  /** Shares of unpinned requests sent to labels, and the label that gets their copies, when set. */
  traffic?: { split: Record<string, number>; shadow?: string; shadowShare?: number };
  versions: VersionStatus[];
  /**
   * The last upload of a version of this model that failed once its archive was read (it left
   * nothing behind), until an upload succeeds.
   */
  lastUploadFailure?: { version: number; code: ErrorCode; message: string; at: string };
}

export interface FailedVersion {
  readonly name: string;
  readonly version: number;
  readonly location: string;
  readonly reason: string;
}

/** What an admin action did to the version a model serves. */
export interface ServingChange {
  model: string;
  before: number | undefined;
  after: number | undefined;
}

/** What a rescan of one model's folder did. */
export interface SyncReport extends ServingChange {
  loaded: number[];
  failed: Array<{ version: number; reason: string }>;
  removed: number[];
}

/** A counted hold on a model version; release it in a `finally`. */
export interface ModelHandle {
  readonly model: ModelVersion;
  release(): void;
}

/** What the registry tells the outside (metrics) about models as it works. */
export interface RegistryEvents {
  versionLoaded(model: ModelVersion, seconds: number): void;
  versionFailed(reason: LoadFailureReason): void;
  /** The version serving a model was replaced by another (not the first one to serve). */
  servingReplaced(model: string): void;
  /** A prediction failed in the model's backend (the request was answered 500 prediction_failed). */
  predictionFailed(model: ModelVersion): void;
}

export interface RegistryOptions {
  /** Model used when a request names none and several are loaded. */
  defaultModel: string | undefined;
  /** The model repository's root, and the name of the model when the root holds just one. */
  repository: string;
  singleModelName: string;
  /** How long a retired version may keep serving the requests that hold it before it is freed. */
  drainTimeoutMs: number;
  /**
   * MODEL_LOAD_TIMEOUT_MS: a version still loading after this long fails (reason `timeout`) and
   * what served keeps serving; what the load produces later is freed. No limit when unset.
   */
  loadTimeoutMs?: number;
  log: FastifyBaseLogger;
  events?: RegistryEvents;
  /** Test seam for fault injection: picks the backend for a version's files (one that hangs or throws). */
  backendFor?: LoadOptions['backendFor'];
  /** Test seam for fault injection: writes an uploaded file (a disk that fills up). */
  writeFile?: InstallOptions['writeFile'];
  /**
   * SageMaker multi-model mode: models load through loadFolder alone (never by scanning
   * `<name>/<version>` folders), and the service is ready with none loaded.
   */
  multiModel?: boolean;
  /** Multi-model mode: most models loaded or loading at once (MAX_LOADED_MODELS). */
  maxLoadedModels?: number;
  /** Multi-model mode: the process's RSS a load may not take it past (MODEL_MEMORY_BUDGET_MB). */
  memoryBudgetBytes?: number;
  /** What the process holds in memory now; process.memoryUsage.rss by default (a test seam). */
  residentBytes?: () => number;
}

/**
 * When a newly available version takes over: `latest` if it is newer than the one serving (start-up,
 * polling, reload), `always` (an explicit promote), `if-none` (only when nothing serves yet).
 */
type ServePolicy = 'latest' | 'always' | 'if-none';

interface VersionRecord {
  readonly version: number;
  state: VersionState;
  location: string;
  /** The files last tried; a rescan reloads a version only when they change. */
  signature: string | undefined;
  instance: ModelVersion | undefined;
  reason: string | undefined;
  loadedAt: Date | undefined;
  loadMs: number | undefined;
  lastLoadFailure: { reason: LoadFailureReason; message: string; at: Date } | undefined;
  /** Predictions of `instance` that failed in its backend. */
  predictionFailures: number;
  lastPredictionFailure: { message: string; at: Date } | undefined;
}

interface ModelRecord {
  readonly name: string;
  readonly versions: Map<number, VersionRecord>;
  serving: number | undefined;
  readonly labels: Map<string, number>;
  /** Its labels always exist: a label is not removed while the policy names it. */
  traffic: TrafficPolicy;
  /**
   * Found at start-up or has served since: readiness waits for it. A model that first appears
   * broken later (an upload, a poll) does not take the whole service out of rotation.
   */
  expected: boolean;
  lastUploadFailure: { version: number; code: ErrorCode; message: string; at: Date } | undefined;
}

const LABEL_PATTERN = /^[A-Za-z][A-Za-z0-9_-]*$/;

/**
 * Every model and version, their lifecycle, and the snapshots requests read. Changes to one model
 * run one at a time, in order; requests never wait for them: they read the current snapshot.
 * A version is swapped the TF Serving way: load and warm the new one, move the pointer, wait for
 * requests holding the old one to finish (up to the drain timeout), then free it.
 */
/** Timed-out loads still running past which no new load starts (Node has four file-system threads). */
const MAX_HUNG_LOADS = 2;

export class ModelRegistry {
  #snapshots = new Map<string, ModelSnapshot>();
  readonly #models = new Map<string, ModelRecord>();
  readonly #inFlight = new Map<ModelVersion, number>();
  readonly #drainWaiters = new Map<ModelVersion, () => void>();
  readonly #queues = new Map<string, Promise<unknown>>();
  #unreadable: readonly UnreadableFolder[] = [];
  #loading = true;
  #shuttingDown = false;
  /** Version folders whose load timed out and has not ended yet. */
  readonly #hung = new Set<string>();
  /** Multi-model loads in progress and the bytes of their files, for the memory budget. */
  readonly #reservedBytes = new Map<string, number>();
  readonly #options: RegistryOptions;
  readonly #log: FastifyBaseLogger;

  constructor(options: RegistryOptions) {
    this.#options = options;
    this.#log = options.log;
  }

  /**
   * True once start-up loading is over and every model that should serve does: each model found
   * at start-up or that has served since has an available version, and the default model serves.
   */
  get ready(): boolean {
    return this.notReadyReason === undefined;
  }

  /** Why the service is not ready, for /ping's 503; undefined when it is. */
  get notReadyReason(): string | undefined {
    if (this.#shuttingDown) return 'shutting down';
    if (this.#loading) return 'models are still loading';
    // SageMaker loads models on demand, once the container answers /ping.
    if (this.#options.multiModel === true) return undefined;
    if (this.#snapshots.size === 0) return 'no model is serving';
    const idle = [...this.#models.values()].filter((m) => m.expected && !this.#snapshots.has(m.name));
    if (idle.length > 0) return `no version of ${idle.map((m) => m.name).join(', ')} is available`;
    const defaultModel = this.#options.defaultModel;
    if (defaultModel !== undefined && !this.#snapshots.has(defaultModel)) {
      return `the default model ${defaultModel} is not serving`;
    }
    return undefined;
  }

  /** True while start-up loading runs. */
  get loading(): boolean {
    return this.#loading;
  }

  /** Versions that could not be loaded, with why. */
  get failures(): FailedVersion[] {
    return [...this.#models.values()].flatMap((model) =>
      [...model.versions.values()]
        .filter((record) => record.state === 'failed')
        .map((record) => ({
          name: model.name,
          version: record.version,
          location: record.location,
          reason: record.reason ?? '',
        })),
    );
  }

  /** Every serving model, by name. */
  list(): ModelSnapshot[] {
    return [...this.#snapshots.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): ModelSnapshot | undefined {
    return this.#snapshots.get(name);
  }

  /**
   * The snapshot requests for this model are served from; 503 not_ready while models load or while
   * the model is known but has no available version (a retry may succeed); undefined when no such
   * model exists, for the caller to refuse in its protocol's words.
   */
  servingSnapshot(name: string): ModelSnapshot | undefined {
    const snapshot = this.#snapshots.get(name);
    if (snapshot !== undefined) return snapshot;
    if (this.#loading) throw new ApiError('not_ready', 'models are still loading');
    if (this.#models.has(name)) throw new ApiError('not_ready', `model "${name}" has no available version`);
    return undefined;
  }

  /** Every model and version the registry knows, in any state, and the folders it could not read. */
  status(): { models: ModelStatus[]; unreadable: readonly UnreadableFolder[] } {
    const models = [...this.#models.values()]
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((model) => {
        const upload = model.lastUploadFailure;
        return {
          name: model.name,
          serving: this.#snapshots.get(model.name)?.serving.version,
          labels: Object.fromEntries(model.labels),
          ...(hasPolicy(model.traffic) && { traffic: describePolicy(model.traffic) }),
          versions: [...model.versions.values()].sort((a, b) => a.version - b.version).map((r) => this.#describe(r)),
          ...(upload && { lastUploadFailure: { ...upload, at: upload.at.toISOString() } }),
        };
      });
    return { models, unreadable: this.#unreadable };
  }

  #describe(record: VersionRecord): VersionStatus {
    return {
      version: record.version,
      state: record.state,
      location: record.location,
      ...(record.instance && { backend: record.instance.backend }),
      ...(record.loadedAt && { loadedAt: record.loadedAt.toISOString() }),
      ...(record.loadMs !== undefined && { loadSeconds: Math.round(record.loadMs) / 1000 }),
      inFlight: record.instance === undefined ? 0 : this.inFlight(record.instance),
      ...(record.reason !== undefined && { reason: record.reason }),
      ...(record.lastLoadFailure && {
        lastLoadFailure: { ...record.lastLoadFailure, at: record.lastLoadFailure.at.toISOString() },
      }),
      ...(record.predictionFailures > 0 && { predictionFailures: record.predictionFailures }),
      ...(record.lastPredictionFailure && {
        lastPredictionFailure: { ...record.lastPredictionFailure, at: record.lastPredictionFailure.at.toISOString() },
      }),
    };
  }

  /**
   * A prediction of this version failed in its backend (the request was answered 500
   * prediction_failed): counted in the metrics and the listing; the version keeps serving. Whatever
   * computed it (the event loop or a worker thread), call this once per failed prediction.
   */
  predictionFailed(model: ModelVersion, error: unknown): void {
    this.#options.events?.predictionFailed(model);
    const record = this.#models.get(model.name)?.versions.get(model.version);
    // A copy replaced in place and still draining: its failures are not the new copy's.
    if (record === undefined || record.instance !== model) return;
    record.predictionFailures += 1;
    record.lastPredictionFailure = { message: publicMessage(messageOf(error)), at: new Date() };
  }

  /**
   * Loads every version found in the repository at start-up, one at a time (loading is CPU-bound
   * and the machine small). A version that fails is recorded and skipped; the others still serve.
   */
  async loadAll(contents: RepositoryContents): Promise<void> {
    this.#loading = true;
    this.#unreadable = contents.unreadable;
    for (const { location, reason } of contents.unreadable) {
      this.#log.error({ location, reason }, 'model repository folder skipped');
    }
    try {
      for (const source of contents.versions) {
        if (this.#shuttingDown) break;
        this.#modelRecord(source.name).expected = true;
        await this.#exclusive(source.name, () => this.#loadSource(source, 'latest').catch(() => undefined));
      }
    } finally {
      this.#loading = false;
    }
    const reason = this.notReadyReason;
    if (reason !== undefined) this.#log.error({ reason }, 'the service is not ready');
  }

  /** Loads a version that is in the repository; it serves when `promote` is set or nothing else does. */
  load(name: string, version: number, promote: boolean): Promise<ServingChange> {
    return this.#change(name, async () => {
      this.#refuseRepositoryScan();
      const record = this.#models.get(name)?.versions.get(version);
      if (record?.state === 'available') {
        throw new ApiError(
          'conflict',
          `version ${version} of ${name} is loaded already; POST /admin/models/${name}/reload picks up changed files`,
          'version',
        );
      }
      const contents = await this.#scan();
      const source = contents.versions.find((v) => v.name === name && v.version === version);
      if (source === undefined) {
        throw new ApiError('unknown_version', `the repository has no folder ${name}/${version}`, 'version');
      }
      try {
        await this.#loadSource(source, promote ? 'always' : 'if-none');
      } catch (error) {
        throw new ApiError('invalid_model', `${name}/${version} cannot serve: ${messageOf(error)}`);
      }
    });
  }

  /**
   * Writes an uploaded version into the repository and loads it, all or nothing: a version that
   * fails its checks leaves no folder and no record behind, and what served keeps serving.
   */
  upload(name: string, version: number, files: readonly VersionFile[], promote: boolean): Promise<ServingChange> {
    return this.#change(name, async () => {
      this.#refuseRepositoryScan();
      if (await isSingleModelRoot(this.#options.repository)) {
        throw new ApiError(
          'conflict',
          'the repository root holds a single model (the SageMaker layout); uploads need <name>/<version> folders',
        );
      }
      const known = this.#models.get(name)?.versions.has(version);
      if (known || (await readVersionFolder(this.#options.repository, name, version)) !== undefined) {
        throw versionExists(name, version);
      }
      const isNew = !this.#models.has(name);
      const model = this.#modelRecord(name);
      const record = newRecord(version, `${name}/${version}`);
      model.versions.set(version, record);
      const started = performance.now();
      try {
        const { loaded, source } = await installVersion(
          this.#options.repository,
          name,
          version,
          files,
          (source) =>
            this.#loadVersion(source).catch((error: unknown) => {
              this.#failed(error);
              throw new ApiError('invalid_model', `the uploaded model cannot serve: ${messageOf(error)}`);
            }),
          { writeFile: this.#options.writeFile },
        );
        // Loaded from the temporary folder; worker threads load it again from where it now lies.
        this.#available(
          model,
          record,
          { ...loaded, source },
          source.signature,
          started,
          promote ? 'always' : 'if-none',
        );
        model.lastUploadFailure = undefined;
      } catch (error) {
        model.versions.delete(version);
        if (isNew) this.#models.delete(name);
        if (error instanceof InstallConflictError) {
          throw error.kind === 'exists'
            ? versionExists(name, version)
            : new ApiError('conflict', error.message, 'name');
        }
        const refusal = uploadRefusal(error, name, version);
        model.lastUploadFailure = { version, code: refusal.code, message: refusal.message, at: new Date() };
        const details = { model: name, version, code: refusal.code, reason: refusal.message };
        if (refusal.statusCode >= 500) {
          this.#log.error({ ...details, err: error }, 'model upload failed; nothing was installed');
        } else {
          this.#log.warn(details, 'model upload refused; nothing was installed');
        }
        throw refusal;
      }
    });
  }

  /** Makes an available version the one that serves: the swap, and, to an older version, the rollback. */
  promote(name: string, version: number): Promise<ServingChange> {
    return this.#change(name, async () => {
      const { model, record } = this.#versionRecord(name, version);
      if (record.state !== 'available') {
        throw new ApiError(
          'conflict',
          `version ${version} of ${name} is ${record.state}; only an available version can serve`,
          'version',
        );
      }
      model.serving = version;
      this.#publish(model);
    });
  }

  /**
   * Unloads a version once the requests holding it finish. The serving version only with `force`
   * and when another version is available to take over (the highest does).
   */
  unload(name: string, version: number, force: boolean): Promise<ServingChange> {
    return this.#change(name, async () => {
      const { model, record } = this.#versionRecord(name, version);
      if (record.state === 'failed' || record.state === 'unloaded') {
        record.state = 'unloaded';
        record.reason = undefined;
        record.lastLoadFailure = undefined;
        return;
      }
      if (model.serving === version) {
        const successor = highestAvailable(model, version);
        if (!force || successor === undefined) {
          throw new ApiError(
            'conflict',
            successor === undefined
              ? `version ${version} is the only available version of ${name}`
              : `version ${version} serves ${name}; promote another version first, or unload with ?force=true`,
            'version',
          );
        }
        model.serving = successor;
      }
      await this.#retire(model, record);
    });
  }

  /**
   * Takes every version of a model out of service at once, waits for the requests holding them and
   * frees them before resolving. The model no longer counts for readiness. `forget` drops its
   * records too (SageMaker multi-model DELETE: the name is unknown afterwards and may be loaded
   * again); without it the versions stay listed as unloaded, and polling does not bring them back.
   */
  unloadModel(name: string, forget: boolean): Promise<ServingChange> {
    return this.#change(name, async () => {
      // Records kept as unloaded would hold a name SageMaker's DELETE has no more to free.
      if (!forget) this.#refuseRepositoryScan();
      const model = this.#modelOrThrow(name);
      model.serving = undefined;
      model.expected = false;
      model.labels.clear();
      model.traffic = NO_TRAFFIC_POLICY;
      // Out of every snapshot first: no new request reaches any version while they drain.
      this.#publish(model);
      const available = [...model.versions.values()].filter((record) => record.state === 'available');
      for (const record of model.versions.values()) {
        if (record.state === 'failed') {
          record.state = 'unloaded';
          record.reason = undefined;
          record.lastLoadFailure = undefined;
        }
      }
      await Promise.all(available.map((record) => this.#retire(model, record)));
      if (forget && this.#models.get(name) === model) this.#models.delete(name);
    });
  }

  /**
   * SageMaker multi-model LoadModel: loads the model files in `dir` as version 1 of `name`, which
   * serves once loaded; `location` is the URL listings show for it. Refused with 409 conflict while
   * the name is loaded, loading or unloading, and with 507 insufficient_storage past
   * MAX_LOADED_MODELS (loads in progress count) or when the process's RSS plus the model's files
   * (and those of loads in progress) would pass the memory budget. A load that fails leaves no
   * record: the name can be loaded again.
   */
  async loadFolder(name: string, dir: string, location: string): Promise<ServingChange> {
    const existing = this.#models.get(name);
    if (existing !== undefined && holdsResources(existing)) {
      throw new ApiError('conflict', `model "${name}" is loaded already; DELETE /models/${name} first`, 'model_name');
    }
    // A load that timed out may still be reading its model into memory: it keeps its slot until it ends.
    const slots = [...this.#models.values()].filter(holdsResources).length + this.#hung.size;
    const refusal = slotRefusal(slots, this.#options.maxLoadedModels);
    if (refusal !== undefined) throw new ApiError('insufficient_storage', refusal);
    // The slot is taken before the first await: a load arriving meanwhile counts it.
    if (existing !== undefined) this.#models.delete(name);
    const model = this.#modelRecord(name);
    model.versions.set(1, newRecord(1, location));
    try {
      return await this.#change(name, async () => {
        const source = await readModelFolder(dir, name, 1, location).catch((error: NodeJS.ErrnoException) => {
          throw new ApiError('invalid_model', `cannot read the model folder: ${error.code ?? error.message}`, 'url');
        });
        const modelBytes = await sourceBytes(source);
        const residentBytes = (this.#options.residentBytes ?? process.memoryUsage.rss)();
        const reservedBytes = [...this.#reservedBytes.values()].reduce((total, bytes) => total + bytes, 0);
        const budgetBytes = this.#options.memoryBudgetBytes;
        const tooBig = memoryRefusal({ residentBytes, reservedBytes, modelBytes, budgetBytes });
        if (tooBig !== undefined) throw new ApiError('insufficient_storage', `${name} was not loaded: ${tooBig}`);
        this.#reservedBytes.set(name, modelBytes);
        try {
          await this.#loadSource(source, 'always');
        } catch (error) {
          // A timeout is the server's (slow storage, a busy machine), not the model's: try again later.
          if (error instanceof LoadFailure && error.reason === 'timeout') {
            throw new ApiError('not_ready', `${name} was not loaded: ${error.message}`, undefined, 5);
          }
          throw new ApiError('invalid_model', `${name} cannot serve: ${messageOf(error)}`, 'url');
        } finally {
          this.#reservedBytes.delete(name);
        }
      });
    } catch (error) {
      if (this.#models.get(name) === model) this.#models.delete(name);
      throw error;
    }
  }

  /**
   * In multi-model mode only SageMaker says what is loaded (POST /models): scanning
   * `<name>/<version>` folders would load what it never asked for, or misread its folders.
   */
  #refuseRepositoryScan(): void {
    if (this.#options.multiModel === true) {
      throw new ApiError(
        'conflict',
        'in SageMaker multi-model mode (SAGEMAKER_MULTI_MODEL=true) models are loaded and unloaded through /models only',
      );
    }
  }

  /** Points a label at an available version. */
  setLabel(name: string, label: string, version: number): Promise<ServingChange> {
    return this.#change(name, async () => {
      if (!LABEL_PATTERN.test(label)) {
        throw new ApiError('bad_request', 'a label is a letter followed by letters, digits, "_" or "-"', 'label');
      }
      const { model, record } = this.#versionRecord(name, version);
      if (record.state !== 'available') {
        throw new ApiError(
          'conflict',
          `version ${version} of ${name} is ${record.state}; labels point at available versions`,
          'version',
        );
      }
      model.labels.set(label, version);
      this.#publish(model);
    });
  }

  removeLabel(name: string, label: string): Promise<ServingChange> {
    return this.#change(name, async () => {
      const model = this.#modelOrThrow(name);
      if (!model.labels.has(label)) throw new ApiError('unknown_label', `${name} has no label "${label}"`, 'label');
      if (model.traffic.split.has(label) || model.traffic.shadow === label) {
        throw new ApiError(
          'conflict',
          `the traffic policy of ${name} sends requests to "${label}"; change or clear it first`,
          'label',
        );
      }
      model.labels.delete(label);
      this.#publish(model);
    });
  }

  /**
   * Sets how requests naming no version are spread: `split` sends each label its share (the rest
   * goes to the serving version), `shadow` gives a label's version a copy of every one. Both name
   * labels the model has; an empty split and no shadow clear the policy.
   */
  setTraffic(name: string, policy: TrafficPolicy): Promise<ServingChange> {
    return this.#change(name, async () => {
      const model = this.#modelOrThrow(name);
      checkPolicy(policy);
      for (const label of policy.split.keys()) {
        if (!model.labels.has(label)) {
          throw new ApiError('unknown_label', `${name} has no label "${label}"; set it first`, `split.${label}`);
        }
      }
      if (policy.shadow !== undefined && !model.labels.has(policy.shadow)) {
        throw new ApiError('unknown_label', `${name} has no label "${policy.shadow}"; set it first`, 'shadow');
      }
      model.traffic = hasPolicy(policy) ? policy : NO_TRAFFIC_POLICY;
      this.#publish(model);
    });
  }

  /**
   * Rescans one model's folder: new versions load (and serve when newer), versions whose files
   * changed or that failed with other files load again, versions whose folder is gone unload.
   */
  reload(name: string): Promise<SyncReport> {
    return this.#exclusive(name, async () => {
      this.#refuseRepositoryScan();
      const contents = await this.#scan();
      if (!this.#models.has(name) && !contents.versions.some((v) => v.name === name)) {
        throw new ApiError('unknown_model', `neither the registry nor the repository has a model "${name}"`, 'name');
      }
      return this.#sync(name, contents);
    });
  }

  /**
   * Rescans the whole repository (MODEL_POLL_INTERVAL_MS) and syncs every model in it or in the
   * registry, one model at a time like start-up loading. Skipped while start-up loading runs.
   */
  async poll(): Promise<SyncReport[]> {
    this.#refuseRepositoryScan();
    if (this.#loading) return [];
    const contents = await this.#scan();
    this.#unreadable = contents.unreadable;
    const names = new Set([...this.#models.keys(), ...contents.versions.map((v) => v.name)]);
    const reports: SyncReport[] = [];
    for (const name of names) {
      if (this.#shuttingDown) break;
      const report = await this.#exclusive(name, () => this.#sync(name, contents));
      if (report.loaded.length + report.failed.length + report.removed.length > 0) reports.push(report);
    }
    return reports;
  }

  async #sync(name: string, contents: RepositoryContents): Promise<SyncReport> {
    const before = this.#snapshots.get(name)?.serving.version;
    const report: SyncReport = { model: name, before, after: before, loaded: [], failed: [], removed: [] };
    const onDisk = contents.versions.filter((source) => source.name === name);
    for (const scanned of onDisk) {
      const record = this.#models.get(name)?.versions.get(scanned.version);
      const changed = record?.signature !== scanned.signature;
      if (record === undefined || (changed && (record.state === 'failed' || record.state === 'available'))) {
        // A poll scanned before its turn: the folder may have been rewritten or removed meanwhile.
        const source = await this.#current(scanned);
        if (source === undefined) continue;
        try {
          // New versions serve when newest; a rewritten one keeps its place (a rollback stays rolled back).
          await this.#loadSource(source, record?.state === 'available' ? 'if-none' : 'latest');
          report.loaded.push(source.version);
        } catch (error) {
          report.failed.push({ version: source.version, reason: messageOf(error) });
        }
      }
    }
    const model = this.#models.get(name);
    if (model !== undefined && this.#gone(model, contents).length > 0) {
      // The scan may predate a change queued before this one (an upload, a load): look again.
      const fresh = await this.#scan().catch(() => undefined);
      for (const record of fresh === undefined ? [] : this.#gone(model, fresh)) {
        if (model.serving === record.version) model.serving = highestAvailable(model, record.version);
        if (record.state === 'available') await this.#retire(model, record);
        model.versions.delete(record.version);
        report.removed.push(record.version);
      }
      if (model.versions.size === 0) this.#models.delete(name);
    }
    report.after = this.#snapshots.get(name)?.serving.version;
    return report;
  }

  /** The version folder as it is now; undefined when it is gone (a single-model root is taken as scanned). */
  async #current(scanned: VersionSource): Promise<VersionSource | undefined> {
    if (scanned.location === '.') return scanned;
    return readVersionFolder(this.#options.repository, scanned.name, scanned.version).catch(() => scanned);
  }

  /**
   * The model's versions whose folder the scan surely did not find. A folder that could not be
   * read may still be there: then nothing of that model counts as gone.
   */
  #gone(model: ModelRecord, contents: RepositoryContents): VersionRecord[] {
    const { name } = model;
    if (contents.unreadable.some((u) => u.location === name || u.location.startsWith(`${name}/`))) return [];
    const present = new Set(contents.versions.filter((v) => v.name === name).map((v) => v.version));
    return [...model.versions.values()].filter((record) => !present.has(record.version));
  }

  /**
   * Finds the model a request asks for and holds it until release(). With no name: the configured
   * default model, else the only model. With no version: the serving one.
   */
  acquire(name: string | undefined, version?: number, routingKey?: string): ModelHandle {
    const snapshot = this.#resolve(name);
    const model = version === undefined ? routed(snapshot, routingKey) : snapshot.versions.get(version);
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
        if (count > 0) {
          this.#inFlight.set(model, count);
          return;
        }
        this.#inFlight.delete(model);
        this.#drainWaiters.get(model)?.();
      },
    };
  }

  /**
   * The model's shadow (its label, version and share of copies) when `answered` is the version
   * serving it: copies are compared with the serving version's answers only, so that the error
   * histogram measures one pair of versions. Undefined otherwise, or when the shadow is `answered`.
   */
  shadowOf(answered: ModelVersion): { label: string; version: number; share: number } | undefined {
    const snapshot = this.#snapshots.get(answered.name);
    const shadow = snapshot?.traffic.shadow;
    if (shadow === undefined || snapshot?.serving !== answered || shadow.version === answered) return undefined;
    return { label: shadow.label, version: shadow.version.version, share: shadow.share };
  }

  /** Requests currently holding this version. */
  inFlight(model: ModelVersion): number {
    return this.#inFlight.get(model) ?? 0;
  }

  #resolve(name: string | undefined): ModelSnapshot {
    if (name !== undefined) {
      const snapshot = this.servingSnapshot(name);
      if (snapshot === undefined) {
        throw new ApiError('unknown_model', `no model named "${name}" is loaded; loaded: ${this.#names()}`, 'model');
      }
      return snapshot;
    }
    if (this.#snapshots.size === 0) {
      throw new ApiError('not_ready', this.#loading ? 'models are still loading' : 'no model is loaded');
    }
    const defaultModel = this.#options.defaultModel;
    if (defaultModel !== undefined) {
      const snapshot = this.#snapshots.get(defaultModel);
      if (snapshot === undefined) throw new ApiError('not_ready', `the default model ${defaultModel} is not serving`);
      return snapshot;
    }
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

  /** Readiness turns false for good: the service is going away (requests still in flight are served). */
  shutDown(): void {
    this.#shuttingDown = true;
  }

  /** Frees every loaded model, after any change in progress. Called once no request can arrive. */
  async close(): Promise<void> {
    // No request is left to wait for: end drains now rather than after DRAIN_TIMEOUT_MS.
    for (const resolve of this.#drainWaiters.values()) resolve();
    await Promise.allSettled([...this.#queues.values()]);
    const instances = [...this.#models.values()].flatMap((model) =>
      [...model.versions.values()].flatMap((record) => record.instance ?? []),
    );
    this.#snapshots = new Map();
    this.#models.clear();
    await Promise.allSettled(instances.map((instance) => instance.model.dispose()));
  }

  /** Runs changes to one model one at a time, in the order asked; a failed change does not block the next. */
  #exclusive<T>(name: string, change: () => Promise<T>): Promise<T> {
    const previous = this.#queues.get(name) ?? Promise.resolve();
    const result = previous.then(change);
    const settled = result.catch(() => undefined);
    this.#queues.set(name, settled);
    void settled.then(() => {
      if (this.#queues.get(name) === settled) this.#queues.delete(name);
    });
    return result;
  }

  /** An exclusive change, reporting the serving version before and after it. */
  #change(name: string, change: () => Promise<void>): Promise<ServingChange> {
    return this.#exclusive(name, async () => {
      const before = this.#snapshots.get(name)?.serving.version;
      await change();
      return { model: name, before, after: this.#snapshots.get(name)?.serving.version };
    });
  }

  #scan(): Promise<RepositoryContents> {
    return scanRepository(this.#options.repository, this.#options.singleModelName);
  }

  /**
   * Loads and checks a version, then makes it available. A version that was available already
   * (its files changed) keeps serving until the new load succeeds, and is freed after draining;
   * if the new load fails, the old one simply stays.
   */
  async #loadSource(source: VersionSource, policy: ServePolicy): Promise<void> {
    const model = this.#modelRecord(source.name);
    const record = model.versions.get(source.version) ?? newRecord(source.version, source.location);
    model.versions.set(source.version, record);
    const previous = record.state === 'available' ? record.instance : undefined;
    if (previous === undefined) {
      record.state = 'loading';
      record.reason = undefined;
    }
    record.signature = source.signature;
    const started = performance.now();
    let loaded: ModelVersion;
    try {
      loaded = await this.#loadVersion(source);
    } catch (error) {
      this.#failed(error);
      const failure = error instanceof LoadFailure ? error : new LoadFailure('backend_error', error);
      record.lastLoadFailure = { reason: failure.reason, message: failure.message, at: new Date() };
      // A hang may be the storage's, not the files': the next poll or reload tries again.
      if (failure.reason === 'timeout') record.signature = undefined;
      if (previous === undefined) {
        record.state = 'failed';
        record.reason = failure.message;
      }
      this.#log.error(
        {
          model: source.name,
          version: source.version,
          failure: failure.reason,
          reason: failure.message,
          stillServing: previous !== undefined,
          err: failure.cause,
        },
        previous === undefined
          ? 'model version failed to load'
          : 'model version failed to load again; the copy loaded before keeps serving',
      );
      throw failure;
    }
    this.#available(model, record, loaded, source.signature, started, policy);
    if (previous !== undefined) await this.#drainAndDispose(previous);
  }

  /**
   * loadVersion, bounded by MODEL_LOAD_TIMEOUT_MS; a load that ends after it is logged when it does.
   * A hung load keeps one of Node's four file-system threads: a version is not loaded again while
   * its last load hangs, and no load starts while MAX_HUNG_LOADS hang, so that file access for
   * everything else (scans, uploads, other models) goes on.
   */
  async #loadVersion(source: VersionSource): Promise<ModelVersion> {
    const { loadTimeoutMs, backendFor } = this.#options;
    if (this.#hung.has(source.dir) || this.#hung.size >= MAX_HUNG_LOADS) {
      const why = this.#hung.has(source.dir)
        ? 'its previous load still hangs'
        : `${this.#hung.size} model loads still hang, each holding one of Node's file-system threads`;
      throw new LoadFailure('timeout', new Error(`not loaded: ${why} (MODEL_LOAD_TIMEOUT_MS); try again later`));
    }
    const loading = loadVersion(source, {
      timeoutMs: loadTimeoutMs,
      backendFor,
      onLateEnd: (outcome, error) => {
        this.#hung.delete(source.dir);
        this.#log.warn(
          {
            model: source.name,
            version: source.version,
            outcome,
            ...(error !== undefined && { reason: messageOf(error) }),
          },
          outcome === 'freed'
            ? 'a model load that timed out finished after all; its model was freed, it does not serve'
            : 'a model load that timed out failed after all',
        );
      },
    });
    return loading.catch((error: unknown) => {
      if (error instanceof LoadFailure && error.reason === 'timeout') this.#hung.add(source.dir);
      throw error;
    });
  }

  #available(
    model: ModelRecord,
    record: VersionRecord,
    loaded: ModelVersion,
    signature: string,
    started: number,
    policy: ServePolicy,
  ): void {
    Object.assign(record, {
      state: 'available',
      instance: loaded,
      signature,
      reason: undefined,
      loadedAt: new Date(),
      loadMs: performance.now() - started,
      lastLoadFailure: undefined,
      predictionFailures: 0,
      lastPredictionFailure: undefined,
    } satisfies Partial<VersionRecord>);
    model.expected = true;
    const serving = model.serving;
    if (serving === undefined || policy === 'always' || (policy === 'latest' && loaded.version > serving)) {
      model.serving = loaded.version;
    }
    this.#publish(model);
    this.#options.events?.versionLoaded(loaded, (record.loadMs ?? 0) / 1000);
    this.#log.info(
      {
        model: model.name,
        version: loaded.version,
        backend: loaded.backend,
        runtime: loaded.model.runtime,
        ms: Math.round(record.loadMs ?? 0),
        serving: model.serving,
      },
      'model version loaded',
    );
  }

  /** Takes a version out of every snapshot, waits for the requests holding it, then frees it. */
  async #retire(model: ModelRecord, record: VersionRecord): Promise<void> {
    const instance = record.instance;
    record.state = 'unloading';
    const dropped = [...model.labels].filter(([, version]) => version === record.version).map(([label]) => label);
    for (const label of dropped) model.labels.delete(label);
    const traffic = withoutLabels(model.traffic, dropped);
    if (traffic !== model.traffic) {
      model.traffic = traffic;
      this.#log.warn(
        { model: model.name, version: record.version, labels: dropped },
        'an unloaded version took labels the traffic policy used: their share goes to the serving version',
      );
    }
    this.#publish(model);
    if (instance !== undefined) await this.#drainAndDispose(instance);
    record.instance = undefined;
    record.state = 'unloaded';
    this.#log.info({ model: model.name, version: record.version }, 'model version unloaded');
  }

  async #drainAndDispose(instance: ModelVersion): Promise<void> {
    if (this.inFlight(instance) > 0) {
      const timeoutMs = this.#options.drainTimeoutMs;
      const timedOut = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(true), timeoutMs);
        this.#drainWaiters.set(instance, () => {
          clearTimeout(timer);
          resolve(false);
        });
      });
      this.#drainWaiters.delete(instance);
      if (timedOut) {
        this.#log.warn(
          { model: instance.name, version: instance.version, inFlight: this.inFlight(instance), timeoutMs },
          'requests still held a retired version after DRAIN_TIMEOUT_MS; freeing it anyway',
        );
      }
    }
    await instance.model.dispose();
  }

  /** Rebuilds the model's snapshot from its records and swaps it in with one assignment. */
  #publish(model: ModelRecord): void {
    const versions = new Map<number, ModelVersion>();
    for (const record of model.versions.values()) {
      if (record.state === 'available' && record.instance !== undefined) versions.set(record.version, record.instance);
    }
    const serving = model.serving === undefined ? undefined : versions.get(model.serving);
    const before = this.#snapshots.get(model.name)?.serving;
    if (serving === undefined) this.#snapshots.delete(model.name);
    else {
      const labels = new Map(model.labels);
      const traffic = routeTraffic(model.traffic, (label) => {
        const version = labels.get(label);
        return version === undefined ? undefined : versions.get(version);
      });
      this.#snapshots.set(model.name, { name: model.name, serving, versions, labels, traffic });
    }
    // Start-up serving each newer version as it loads is not a swap anyone made.
    if (!this.#loading && before !== undefined && serving !== undefined && before !== serving) {
      this.#options.events?.servingReplaced(model.name);
    }
  }

  #failed(error: unknown): void {
    this.#options.events?.versionFailed(error instanceof LoadFailure ? error.reason : 'backend_error');
  }

  #modelRecord(name: string): ModelRecord {
    let model = this.#models.get(name);
    if (model === undefined) {
      model = {
        name,
        versions: new Map(),
        serving: undefined,
        labels: new Map(),
        traffic: NO_TRAFFIC_POLICY,
        expected: false,
        lastUploadFailure: undefined,
      };
      this.#models.set(name, model);
    }
    return model;
  }

  #modelOrThrow(name: string): ModelRecord {
    const model = this.#models.get(name);
    if (model === undefined) throw new ApiError('unknown_model', `no model named "${name}" is known`, 'name');
    return model;
  }

  #versionRecord(name: string, version: number): { model: ModelRecord; record: VersionRecord } {
    const model = this.#modelOrThrow(name);
    const record = model.versions.get(version);
    if (record === undefined) {
      throw new ApiError('unknown_version', `${name} has no version ${version} in the registry`, 'version');
    }
    return { model, record };
  }
}

/** Whether a model holds (or is about to hold) memory: a version loading, available or draining. */
function holdsResources(model: ModelRecord): boolean {
  return [...model.versions.values()].some((record) => ['loading', 'available', 'unloading'].includes(record.state));
}

function versionExists(name: string, version: number): ApiError {
  return new ApiError('version_exists', `version ${version} of ${name} exists already`, 'version');
}

function newRecord(version: number, location: string): VersionRecord {
  return {
    version,
    state: 'loading',
    location,
    signature: undefined,
    instance: undefined,
    reason: undefined,
    loadedAt: undefined,
    loadMs: undefined,
    lastLoadFailure: undefined,
    predictionFailures: 0,
    lastPredictionFailure: undefined,
  };
}

/** The answer to an upload that failed after its archive was read (a conflict aside). */
function uploadRefusal(error: unknown, name: string, version: number): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof UnwritableFileError) return new ApiError('invalid_archive', error.message, 'body');
  if (error instanceof OutOfSpaceError) {
    return new ApiError(
      'insufficient_storage',
      `${name}/${version} was not installed: ${error.message}; nothing was left behind and what served still serves`,
    );
  }
  return new ApiError('internal_error', 'internal error');
}

/** The highest available version other than `except`, to serve in its place. */
function highestAvailable(model: ModelRecord, except: number): number | undefined {
  const candidates = [...model.versions.values()]
    .filter((record) => record.state === 'available' && record.version !== except)
    .map((record) => record.version);
  return candidates.length === 0 ? undefined : Math.max(...candidates);
}

/**
 * The version a request naming none goes to: by its share of the model's traffic split, from its
 * request id when the client sent one (the same id, the same version), else at random.
 */
function routed(snapshot: ModelSnapshot, routingKey: string | undefined): ModelVersion {
  const { traffic } = snapshot;
  if (traffic.split.length === 0) return snapshot.serving;
  const share = routingKey === undefined ? Math.random() : shareOf(routingKey);
  return versionForShare(traffic, share) ?? snapshot.serving;
}

function hasPolicy(policy: TrafficPolicy): boolean {
  return policy.split.size > 0 || policy.shadow !== undefined;
}

function describePolicy(policy: TrafficPolicy): {
  split: Record<string, number>;
  shadow?: string;
  shadowShare?: number;
} {
  return {
    split: Object.fromEntries(policy.split),
    ...(policy.shadow !== undefined && { shadow: policy.shadow, shadowShare: policy.shadowShare }),
  };
}

/** The policy without these labels (the same object when it names none of them). */
function withoutLabels(policy: TrafficPolicy, labels: readonly string[]): TrafficPolicy {
  const named = labels.filter((label) => policy.split.has(label) || policy.shadow === label);
  if (named.length === 0) return policy;
  const split = new Map([...policy.split].filter(([label]) => !named.includes(label)));
  const shadow = policy.shadow !== undefined && named.includes(policy.shadow) ? undefined : policy.shadow;
  const kept = { split, shadow, shadowShare: policy.shadowShare };
  return hasPolicy(kept) ? kept : NO_TRAFFIC_POLICY;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
