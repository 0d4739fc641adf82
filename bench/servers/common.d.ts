// Types of the part of common.js the TypeScript benches use.
/** `{ retry: false }`, or nothing for a build from before `retry: false` (which sends no `retry:` line anyway). */
export function noRetry (Fastify: unknown, ssePlugin: unknown): Promise<{ retry?: false }>
