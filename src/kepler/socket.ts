import { lstat, unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { FastifyBaseLogger } from 'fastify';
import { parseJsonText } from '../codecs/json.js';
import { ApiError } from '../errors.js';
import type { EstimateReply } from './estimator.js';
import { estimateFailure } from './estimator.js';
import { JsonFrame } from './json-frame.js';

/** Kepler's Go client reads the reply in a single read of at most this many bytes. */
const KEPLER_READ_BYTES = 4096;

export interface EstimatorSocketOptions {
  path: string;
  /** Largest request accepted, in bytes. */
  maxBytes: number;
  /** MAX_JSON_DEPTH: deeper requests are refused before parsing, as over HTTP. */
  maxJsonDepth: number;
  /** A connection still open this long after it was accepted is closed, however it trickles. */
  deadlineMs: number;
  maxConnections: number;
  /** Answers one parsed request; failures are expected to come back as failure replies. */
  answer(body: unknown): Promise<EstimateReply>;
  log: FastifyBaseLogger;
}

export interface EstimatorSocket {
  close(): Promise<void>;
}

/**
 * Serves Kepler's estimator protocol on a unix socket with Kepler's framing: one JSON request per
 * connection, the reply written on the same connection, which is then closed.
 */
export async function listenEstimatorSocket(options: EstimatorSocketOptions): Promise<EstimatorSocket> {
  await removeStaleSocket(options.path);
  const connections = new Set<Socket>();
  const server = createServer((socket) => {
    connections.add(socket);
    socket.on('close', () => connections.delete(socket));
    serveConnection(socket, options);
  });
  server.maxConnections = options.maxConnections;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  options.log.info({ socket: options.path }, 'Kepler estimator listening on unix socket');
  return {
    async close() {
      await closeServer(server, connections);
      await unlink(options.path).catch(() => undefined);
    },
  };
}

function serveConnection(socket: Socket, options: EstimatorSocketOptions): void {
  const frame = new JsonFrame();
  const chunks: Buffer[] = [];
  let size = 0;
  // Set once the request is complete (or refused): later bytes and the hang-up are ignored.
  let handled = false;

  const reply = (body: EstimateReply) => {
    handled = true;
    const text = JSON.stringify(body);
    const bytes = Buffer.byteLength(text);
    if (bytes > KEPLER_READ_BYTES) {
      const pods = Object.values(body.powers)[0]?.length;
      options.log.warn(
        { bytes, pods },
        `reply over the ${KEPLER_READ_BYTES} bytes Kepler reads at once: Kepler cannot parse it`,
      );
    }
    if (!socket.destroyed) socket.end(text);
  };
  const answer = (request: Buffer) => {
    handled = true;
    let body: unknown;
    try {
      body = parseJsonText(request.toString('utf8'), options.maxJsonDepth);
    } catch (error) {
      const tooDeep = error instanceof ApiError && error.code === 'json_too_deep';
      reply(estimateFailure(tooDeep ? error.message : 'the request is not valid JSON'));
      return;
    }
    options.answer(body).then(reply, (error: unknown) => {
      options.log.error({ err: error }, 'Kepler estimate failed');
      reply(estimateFailure('internal error'));
    });
  };

  const deadline = setTimeout(() => socket.destroy(), options.deadlineMs);
  socket.on('close', () => clearTimeout(deadline));
  socket.on('error', (error) => options.log.debug({ err: error }, 'Kepler estimator connection error'));
  socket.on('data', (chunk: Buffer) => {
    if (handled) return;
    size += chunk.length;
    if (size > options.maxBytes) {
      reply(estimateFailure(`the request is larger than ${options.maxBytes} bytes`));
      return;
    }
    chunks.push(chunk);
    let end: number;
    try {
      end = frame.push(chunk);
    } catch (error) {
      reply(estimateFailure((error as Error).message));
      return;
    }
    if (end !== -1) answer(Buffer.concat(chunks).subarray(0, size - chunk.length + end));
  });
  // A client that closes its side before the object is complete is told so.
  socket.on('end', () => {
    if (!handled && size > 0) reply(estimateFailure('the request ended before its JSON object was complete'));
    else if (!handled) socket.end();
  });
}

/**
 * A socket file left by a process that died is removed; one a live process still answers on,
 * or a path that is not a socket, is refused rather than taken over.
 */
async function removeStaleSocket(path: string): Promise<void> {
  const existing = await lstat(path).catch(() => undefined);
  if (existing === undefined) return;
  if (!existing.isSocket()) throw new Error(`${path} exists and is not a socket; refusing to replace it`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new Error(`another process is serving on ${path}`);
  await unlink(path);
}

async function closeServer(server: Server, connections: Set<Socket>): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  // Connections are short (one request each); give the open ones a moment to be answered.
  const deadline = setTimeout(() => {
    for (const socket of connections) socket.destroy();
  }, 2000);
  await closed;
  clearTimeout(deadline);
}
