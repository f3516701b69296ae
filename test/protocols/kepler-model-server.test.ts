import { strFromU8, unzipSync } from 'fflate';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { makeRepository, startApp } from '../helpers.js';
import { fixtureWeights, KEPLER_MODELS } from '../kepler-reference.js';

/** What Kepler's in-process regressor posts to its model server. */
const modelRequest = (overrides: Record<string, unknown> = {}) => ({
  metrics: ['bpf_cpu_time_ms', 'bpf_page_cache_hit', 'bpf_block_irq', 'bpf_net_rx_irq', 'bpf_net_tx_irq'],
  output_type: 'AbsPower',
  source: 'intel_rapl',
  node_type: 0,
  weight: true,
  trainer_name: '',
  filter: '',
  ...overrides,
});

async function appWithFixtures() {
  const root = await makeRepository({
    'sgd/1': { kepler: KEPLER_MODELS[0].path },
    'log/1': { kepler: KEPLER_MODELS[2].path },
    'exp/1': { kepler: KEPLER_MODELS[3].path },
  });
  return startApp({ MODEL_REPOSITORY: root });
}

/** Parses a binary supertest body. */
function binary(res: request.Response, callback: (error: Error | null, body: Buffer) => void) {
  const chunks: Buffer[] = [];
  res.on('data', (chunk: Buffer) => chunks.push(chunk));
  res.on('end', () => callback(null, Buffer.concat(chunks)));
}

describe('POST /model (Kepler model server)', () => {
  it('answers the selected model’s weights with its model_name', async () => {
    const app = await appWithFixtures();
    const { body } = await request(app.server).post('/model').send(modelRequest()).expect(200);
    // BPFIRQ exponential (mae 24.04) beats logarithmic (42.54) and SGD (60.78); all fit the metrics.
    expect(body).toEqual({ model_name: 'ExponentialRegressionTrainer_1', ...fixtureWeights(KEPLER_MODELS[3].path) });
    const sgd = await request(app.server)
      .post('/model')
      .send(modelRequest({ trainer_name: 'SGDRegressorTrainer' }))
      .expect(200);
    expect(sgd.body.model_name).toBe('SGDRegressorTrainer_0');
  });

  it('answers the zip archive, with weight.json inside, when weight is false', async () => {
    const app = await appWithFixtures();
    const response = await request(app.server)
      .post('/model')
      .send(modelRequest({ weight: false, trainer_name: 'LogarithmicRegressionTrainer' }))
      .buffer(true)
      .parse(binary)
      .expect(200);
    expect(response.headers['content-type']).toBe('application/zip');
    const files = unzipSync(new Uint8Array(response.body as Buffer));
    expect(Object.keys(files)).toEqual(expect.arrayContaining(['metadata.json', 'weight.json', 'package.pkl']));
    expect(JSON.parse(strFromU8(files['weight.json'] as Uint8Array))).toEqual(fixtureWeights(KEPLER_MODELS[2].path));
    expect(JSON.parse(strFromU8(files['metadata.json'] as Uint8Array)).model_name).toBe(
      'LogarithmicRegressionTrainer_0',
    );
  });

  it('answers 400 with the reason when nothing matches', async () => {
    const app = await appWithFixtures();
    const { body } = await request(app.server)
      .post('/model')
      .send(modelRequest({ source: 'acpi' }))
      .expect(400);
    expect(body.error).toMatchObject({
      code: 'no_matching_model',
      message: expect.stringContaining('energy source acpi'),
    });
    const bad = await request(app.server)
      .post('/model')
      .send(modelRequest({ weight: 'yes' }))
      .expect(400);
    expect(bad.body.error).toMatchObject({ code: 'invalid_body', field: 'weight' });
  });
});
