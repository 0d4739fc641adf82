import type { FastifyReply, FastifyRequest } from 'fastify'
import { replaceRequestSignal } from './fastify-internals.js'

// The stream's life as an AbortSignal. On an SSE response `request.signal` is this signal, not Fastify's: it
// aborts when the client goes away (the response closes before it was ended), when the server closes, and
// when the stream ends before its source did (lib/stream aborts it) — never merely because a body was read.

const controllers = new WeakMap<FastifyRequest, AbortController>()

/**
 * The abort controller behind `request.signal` for an SSE response, created on first use; the route wrapper
 * calls it before the handler runs, so whatever the handler reads is already the stream's signal.
 */
export function streamController (request: FastifyRequest, reply: FastifyReply): AbortController {
  let controller = controllers.get(request)
  if (controller !== undefined) return controller
  const created = new AbortController()
  controller = created
  controllers.set(request, created)
  const res = reply.raw
  res.once('close', () => {
    if (!res.writableEnded) created.abort()
  })
  replaceRequestSignal(request, created.signal)
  return created
}
