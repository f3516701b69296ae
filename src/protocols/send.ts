import type { FastifyReply } from 'fastify';
import type { ResponseMediaType } from '../config.js';

/**
 * Sends an encoded prediction. Bytes a worker thread encoded get the Content-Type Fastify gives
 * the same answer as text (it adds a charset to JSON types), so both answers look alike.
 */
export function sendEncoded(reply: FastifyReply, type: ResponseMediaType, payload: string | object | Buffer) {
  const charset = Buffer.isBuffer(payload) && type.includes('json');
  return reply.type(charset ? `${type}; charset=utf-8` : type).send(payload);
}
