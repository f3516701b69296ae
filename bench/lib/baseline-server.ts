/**
 * The throughput benchmark's baseline (bench/throughput.ts): a bare Fastify 5 app with one POST
 * route, `POST /score`, that does what any model server must at the least — parse the body and
 * compute one number per row — and nothing else: no logging, no validation beyond "is there a
 * list of rows", no schemas, no hooks, no plugins.
 *
 * - JSON bodies go through Fastify's default JSON parser. The rows are the body itself (a bare
 *   array), its `instances` (the /predict shape) or its `values` (Kepler's estimator shape).
 * - CSV bodies (`text/csv`) are read as a string and split on '\n' and ',' with Number() per cell:
 *   the least a CSV route can do. This is the one thing registered besides the route.
 * - Each row's prediction is a JS dot product with fixed weights (WEIGHTS, cycled when a row is
 *   wider) plus a bias; the answer is `{"predictions": […]}`, serialised by Fastify's default
 *   JSON.stringify.
 *
 * Run: `node --import tsx bench/lib/baseline-server.ts`; it listens on 127.0.0.1 and a port the
 * system picks, and prints `listening <port>` once it does.
 */
import Fastify from 'fastify';

const WEIGHTS = [3.1e-4, 2.2e-10, -4.7e-11, 9.3e-9, 1.2e-7, -3.3e-8, 1.9e-11, 4.1e-4];
const BIAS = 0.15;

function dot(row: readonly unknown[]): number {
  let sum = BIAS;
  for (let i = 0; i < row.length; i++) sum += (WEIGHTS[i % WEIGHTS.length] ?? 0) * (row[i] as number);
  return sum;
}

function rowsOf(body: unknown): unknown[] | undefined {
  if (Array.isArray(body)) return body;
  if (typeof body !== 'object' || body === null) return undefined;
  const { instances, values } = body as { instances?: unknown; values?: unknown };
  const rows = instances ?? values;
  return Array.isArray(rows) ? rows : undefined;
}

function csvRows(text: string): number[][] {
  const rows: number[][] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    rows.push(line.split(',').map(Number));
  }
  return rows;
}

const app = Fastify({ logger: false });

app.addContentTypeParser('text/csv', { parseAs: 'string' }, (_request, body, done) => {
  done(null, csvRows(body as string));
});

app.post('/score', async (request, reply) => {
  const rows = rowsOf(request.body);
  if (rows === undefined) return reply.code(400).send({ error: 'no rows' });
  const predictions = new Array<number>(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i];
    predictions[i] = Array.isArray(row) ? dot(row) : Number.NaN;
  }
  return { predictions };
});

const address = await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 0) });
process.stdout.write(`listening ${new URL(address).port}\n`);

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
