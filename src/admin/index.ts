import type { FastifyInstance } from 'fastify';
import { requireAdminToken } from './auth.js';
import adminRoutes from './routes.js';

/** Everything under /admin: one token check guards the whole subtree, then the routes. */
export default async function admin(app: FastifyInstance) {
  app.addHook('onRequest', requireAdminToken);
  await app.register(adminRoutes);
}
