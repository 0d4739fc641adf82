import type { FastifyReply, FastifyRequest } from 'fastify'
import { shadowRequestSignal } from './fastify-internals.js'

// The stream's life as an AbortSignal. On an SSE response `request.signal` is this signal, not Fastify's: it
// aborts when the client goes away (the response closes before it was ended), when the server closes, and
// when the stream ends before its source did (lib/stream aborts it) — never merely because a body was read.
// Its AbortController is made only when `request.signal` is read: most streams never read it, and it would be
// the largest thing an idle stream holds (about 1 KB with its signal and listener).

const kResponse = Symbol('fastify-typed-sse.response')
const kController = Symbol('fastify-typed-sse.controller')

/** A request whose `request.signal` is its stream's: its response, and the controller once the signal is read. */
interface StreamRequest {
  [kResponse]?: FastifyReply['raw']
  [kController]?: AbortController
}

/** Given to a request whose stream stopped before its signal was read: it reads as aborted. */
const ABORTED = new AbortController()
ABORTED.abort()

/** The getter of `request.signal` on a stream's request: one function for all, so requests share a shape. */
function streamSignal (this: StreamRequest): AbortSignal {
  let controller = this[kController]
  if (controller !== undefined) return controller.signal
  const created = new AbortController()
  controller = this[kController] = created
  // Read before the stream exists (a plain handler): the client may leave first. Once the stream exists it
  // aborts the signal itself, and Fastify destroys a stream whose response had closed before it was sent.
  const res = this[kResponse] as FastifyReply['raw']
  res.once('close', () => {
    if (!res.writableEnded) created.abort()
  })
  return created.signal
}

/**
 * Makes `request.signal` the stream's on this request, from now on. The route wrapper calls it before the
 * handler runs, so whatever the handler reads is already the stream's signal; `reply.sse()` calls it too.
 */
export function bindStreamSignal (request: FastifyRequest, reply: FastifyReply): void {
  const req = request as FastifyRequest & StreamRequest
  if (req[kResponse] !== undefined) return
  req[kResponse] = reply.raw
  shadowRequestSignal(request, streamSignal)
}

/** The stream stopped before its source did: its signal aborts now, or reads as aborted when first read. */
export function abortStreamSignal (request: FastifyRequest): void {
  const req = request as FastifyRequest & StreamRequest
  const controller = req[kController]
  if (controller === undefined) req[kController] = ABORTED
  else controller.abort() // a no-op when already aborted
}
