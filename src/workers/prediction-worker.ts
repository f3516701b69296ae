import type { LoadedModel } from '../backends/backend.js';
import { BACKENDS } from '../backends/index.js';
import { decodePrediction, encodePrediction } from '../codecs/prediction.js';
import { ApiError } from '../errors.js';
import { folderSignature } from '../registry/repository.js';
import { moving, ownBuffer, type WorkerModel, type WorkerReply, type WorkerTask } from './tasks.js';

/** Models this thread has loaded, most recently used last; a few versions are plenty (old ones retire). */
const models = new Map<string, Promise<LoadedModel>>();
const MAX_MODELS = 8;

/** A worker thread's task: decode a large body, run a model on a large input, or encode a large answer. */
export default async function handle(task: WorkerTask): Promise<WorkerReply> {
  // The client has had its 504: work no one waits for would only delay the tasks queued behind.
  if (Date.now() > task.deadline) return { kind: 'expired' };
  try {
    switch (task.kind) {
      case 'decode': {
        const text = Buffer.from(task.body.buffer, task.body.byteOffset, task.body.byteLength).toString('utf8');
        const request = decodePrediction(task.media, text, task.limits);
        const data = ownBuffer(request.matrix.data);
        return moving({ kind: 'decoded', request: { ...request, matrix: { ...request.matrix, data } } }, [data]);
      }
      case 'predict': {
        let model: LoadedModel;
        try {
          model = await modelFor(task.model);
        } catch (error) {
          return { kind: 'unavailable', reason: (error as Error).message };
        }
        const result = await model.predict(task.input);
        // A backend's output may live in memory it owns: send a copy of our own.
        const data = result.data.slice();
        return moving({ kind: 'predicted', result: { ...result, data } }, [data]);
      }
      case 'encode': {
        const encoded = encodePrediction(task.model, task.result, task.type);
        const payload = Buffer.from(typeof encoded === 'string' ? encoded : JSON.stringify(encoded));
        const bytes = ownBuffer(new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength));
        return moving({ kind: 'encoded', payload: bytes }, [bytes]);
      }
    }
  } catch (error) {
    if (error instanceof ApiError) return { kind: 'refused', error: error.toBody().error };
    throw error;
  }
}

/**
 * The model, loaded once per thread. Its files must still be the ones the event loop loaded (same
 * names, sizes and times): a version rewritten on disk is the registry's to reload, not ours.
 */
async function modelFor(source: WorkerModel): Promise<LoadedModel> {
  const key = `${source.dir}\n${source.signature}`;
  let loading = models.get(key);
  if (loading === undefined) {
    loading = load(source);
    loading.catch(() => models.delete(key));
  }
  models.delete(key);
  models.set(key, loading);
  for (const [oldKey, old] of models) {
    if (models.size <= MAX_MODELS) break;
    models.delete(oldKey);
    void old.then((model) => model.dispose()).catch(() => {});
  }
  return loading;
}

async function load(source: WorkerModel): Promise<LoadedModel> {
  if ((await folderSignature(source.dir, source.files)) !== source.signature) {
    throw new Error('its files changed on disk since the version was loaded');
  }
  const backend = BACKENDS.find((candidate) => candidate.name === source.backend);
  if (backend === undefined) throw new Error(`no backend ${source.backend}`);
  return backend.load(source.dir, source.files);
}
