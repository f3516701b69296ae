import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Does what Kepler's Go sidecar client does: dial, write the JSON with no newline, then a single
 * read of at most 4096 bytes, and close. `pieces` writes the request in that many parts.
 */
export async function keplerClient(socketPath: string, body: string, pieces = 1): Promise<string> {
  const socket = connect(socketPath);
  await once(socket, 'connect');
  const size = Math.ceil(body.length / pieces);
  for (let i = 0; i < body.length; i += size) {
    socket.write(body.slice(i, i + size));
    if (pieces > 1) await sleep(5);
  }
  const [chunk] = (await once(socket, 'data')) as [Buffer];
  socket.destroy();
  return chunk.subarray(0, 4096).toString('utf8');
}

/** Everything the server writes before it closes the connection, after `send` has run. */
export async function wholeReply(socketPath: string, send: (socket: Socket) => void): Promise<string> {
  const socket = connect(socketPath);
  await once(socket, 'connect');
  let reply = '';
  socket.on('data', (chunk) => (reply += chunk));
  // A write racing the server's hang-up fails with EPIPE (or ECONNRESET): that is the hang-up the
  // tests wait for, not a fault. Anything else is.
  let failure: NodeJS.ErrnoException | undefined;
  socket.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE' && error.code !== 'ECONNRESET') failure = error;
  });
  send(socket);
  await new Promise((resolve) => socket.once('close', resolve));
  if (failure !== undefined) throw failure;
  return reply;
}
