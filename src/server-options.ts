import type { Config } from './config.js';

/**
 * The Node HTTP server's limits and timeouts, from the configuration; the app's server and the
 * metrics port's share them.
 */
export function nodeServerOptions(config: Config) {
  // The whole request must arrive within requestTimeout, so a longer headersTimeout would never
  // fire first (and Node refuses to create such a server).
  const headersTimeout = Math.min(config.headersTimeoutMs, config.requestTimeoutMs);
  return {
    maxHeaderSize: config.limits.maxHeaderBytes,
    headersTimeout,
    requestTimeout: config.requestTimeoutMs,
    // Node checks the two timeouts above only this often (30 s by default, which would let a
    // slow-loris client hold a connection for 40 s with the default 10 s HEADERS_TIMEOUT_MS).
    connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(headersTimeout / 4))),
    keepAliveTimeout: config.keepAliveTimeoutMs,
  };
}
