import type { FastifyReply, FastifyRequest } from 'fastify'
import { replaceRequestSignal, takeRequestSignal } from './fastify-internals.js'

// The stream's life as an AbortSignal. On an SSE response `request.signal` is this signal, however early it was
// read: it aborts when the client goes away (the response closes before it was ended), when the server closes,
// and when the stream ends before its source did (lib/stream aborts it) — never merely because a body was read.

const controllers = new WeakMap<FastifyRequest, AbortController>()

/**
 * The abort controller behind `request.signal` for an SSE response, made on first use. Lib/route calls it in
 * the first hook of a route known to stream; lib/stream when a stream starts. A Fastify signal that was read
 * before then is taken over (the same signal, now the stream's life); one that already aborted cannot be, and
 * the stream gets a new one, with a warning that names the route.
 */
export function streamController (request: FastifyRequest, reply: FastifyReply): AbortController {
  let controller = controllers.get(request)
  if (controller !== undefined) return controller
  const early = takeRequestSignal(request)
  if (early?.signal.aborted === true) {
    reply.log.warn(`${request.method} ${request.url}: request.signal was read before the stream started and had ` +
      'already aborted (Fastify aborts it once a request body is read); the stream has a new one. Read ' +
      'request.signal after reply.sse(), or give the route an async function* handler or an sseSchema() response')
  }
  const created = early === undefined || early.signal.aborted ? new AbortController() : early
  controller = created
  controllers.set(request, created)
  const res = reply.raw
  res.once('close', () => {
    if (!res.writableEnded) created.abort()
  })
  if (created !== early) replaceRequestSignal(request, created.signal)
  return created
}
