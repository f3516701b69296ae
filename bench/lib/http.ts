import http from 'node:http';

export interface Request {
  port: number;
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: Buffer;
  agent?: http.Agent;
  timeoutMs?: number;
}

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** From the request's start to the answer's last byte. */
  ms: number;
}

/** One HTTP request to 127.0.0.1, its answer read to the end. */
export function send(request: Request): Promise<Answer> {
  const { port, method, body, agent, timeoutMs = 60_000 } = request;
  const headers: Record<string, string> = { ...request.headers };
  if (body !== undefined) headers['content-length'] = String(body.byteLength);
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const outgoing = http.request(
      { host: '127.0.0.1', port, method, path: request.path, headers, agent: agent ?? false, timeout: timeoutMs },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', reject);
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            body: Buffer.concat(chunks),
            ms: performance.now() - started,
          }),
        );
      },
    );
    outgoing.on('timeout', () => outgoing.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    outgoing.on('error', reject);
    outgoing.end(body);
  });
}
