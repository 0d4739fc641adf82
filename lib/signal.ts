import type { FastifyReply, FastifyRequest } from 'fastify'
import { shadowRequestSignal, takeRequestSignal } from './fastify-internals.js'

// The stream's life as an AbortSignal. On an SSE response `request.signal` is this signal, however early it was
// read (a Fastify signal read before is taken over): it aborts when the client goes away (the response closes
// before it was ended), when the server closes, and when the stream ends before its source did (lib/stream
// aborts it) — never merely because a body was read. Its AbortController is made only when `request.signal` is
// read: most streams never read it, and it would be the largest thing an idle stream holds (about 1 KB with its
// signal and listener).

const kResponse = Symbol('fastify-typed-sse.response')
const kController = Symbol('fastify-typed-sse.controller')

/**
 * A request whose `request.signal` is its stream's: its response until the stream exists (null from then on: the
 * stream aborts the signal itself), and the controller once the signal is read.
 */
interface StreamRequest {
  [kResponse]?: FastifyReply['raw'] | null
  [kController]?: AbortController
}

/** Given to a request whose stream stopped before its signal was read: it reads as aborted. */
const ABORTED = new AbortController()
ABORTED.abort()

/** The getter of `request.signal` on a stream's request: one function for all, so requests share a shape. */
function streamSignal (this: StreamRequest): AbortSignal {
  let controller = this[kController]
  if (controller !== undefined) return controller.signal
  controller = this[kController] = new AbortController()
  const res = this[kResponse]
  if (res != null) abortOnClientGone(controller, res)
  return controller.signal
}

/** The controllers of signals read before their stream exists, by response (see `abortOnClientGone`). */
const waitingForStream = new WeakMap<object, AbortController>()

// Read before the stream exists (a hook, or a handler that awaits before reply.sse()): the client may leave
// first. Watched with one listener shared by every response, and no more once the stream exists: it aborts the
// signal itself (and Fastify destroys a stream whose response had closed before it was sent).
function abortOnClientGone (controller: AbortController, res: FastifyReply['raw']): void {
  waitingForStream.set(res, controller)
  res.on('close', abortIfClientGone)
}

function abortIfClientGone (this: FastifyReply['raw']): void {
  if (!this.writableEnded) waitingForStream.get(this)?.abort()
}

/**
 * Makes `request.signal` the stream's on this request, from now on. Lib/route calls it in the first hook of a
 * route known to stream, before the body is read, so wherever it is read (a later hook, the handler, the
 * generator) it means the stream's life; `reply.sse()` calls it too. A Fastify signal that was read before
 * then is taken over (the same signal, now the stream's life); one that already aborted (Fastify aborts it
 * once a request body is read) cannot be, and the stream gets a new one, with a warning that names the route.
 */
export function bindStreamSignal (request: FastifyRequest, reply: FastifyReply): void {
  if ((request as FastifyRequest & StreamRequest)[kResponse] === undefined) bind(request, reply, reply.raw)
}

/**
 * The stream of this request exists (its constructor calls it): from now on it aborts the signal itself, when the
 * client leaves, the server closes or it stops its source, so nothing else watches the response for it.
 */
export function streamStarted (request: FastifyRequest, reply: FastifyReply): void {
  const req = request as FastifyRequest & StreamRequest
  if (req[kResponse] === undefined) {
    bind(request, reply, null)
    return
  }
  req[kResponse] = null
  const res = reply.raw
  if (req[kController] !== undefined && waitingForStream.delete(res)) res.removeListener('close', abortIfClientGone)
}

/** `bindStreamSignal`, with the response to watch for the client leaving (null: the stream exists and watches). */
function bind (request: FastifyRequest, reply: FastifyReply, res: FastifyReply['raw'] | null): void {
  const req = request as FastifyRequest & StreamRequest
  req[kResponse] = res
  const early = takeRequestSignal(request)
  if (early !== undefined) {
    if (!early.signal.aborted) {
      req[kController] = early
      if (res !== null) abortOnClientGone(early, res)
    } else {
      reply.log.warn(`${request.method} ${request.url}: request.signal was read before the stream started and ` +
        'had already aborted (Fastify aborts it once a request body is read); the stream has a new one. Read ' +
        'request.signal after reply.sse(), or give the route an async function* handler or an sseSchema() response')
    }
  }
  shadowRequestSignal(request, streamSignal)
}

/** Whether `signal` is this request's `request.signal` as its stream's (read so far). */
export function isStreamSignal (request: FastifyRequest, signal: AbortSignal): boolean {
  return (request as FastifyRequest & StreamRequest)[kController]?.signal === signal
}

/** The stream stopped before its source did: its signal aborts now, or reads as aborted when first read. */
export function abortStreamSignal (request: FastifyRequest): void {
  const req = request as FastifyRequest & StreamRequest
  const controller = req[kController]
  if (controller === undefined) req[kController] = ABORTED
  else controller.abort() // a no-op when already aborted
}

/**
 * Whether the stream's signal aborted. Before the stream stopped, only the client's leaving before the stream
 * existed aborts it: a source ended or failed by a listener of that (a subscription on `request.signal`, a push
 * source's code) hands its end to the stream as it first reads it.
 */
export function streamSignalAborted (request: FastifyRequest): boolean {
  return (request as FastifyRequest & StreamRequest)[kController]?.signal.aborted === true
}
