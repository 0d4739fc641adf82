import type { FastifyReply } from 'fastify'
import { keepsConnection, omitKeepAliveHint, writeHeadDirectly } from './fastify-internals.js'
import { opensAtOnce } from './source.js'

// The head of an event stream's response: the headers `reply.sse()` sets, when they go out (with the first item,
// or after `headersDelay` without one, so that a failure before then can still be answered with a status), who
// writes them (the stream itself, or Fastify's send path), and taking them back when the stream fails before
// they went. Also which responses `reply.sse()` answered, watched by one 'close' listener shared by them all.

/** The headers of an event stream, as `setStreamHeaders` sets them; taken back when a stream fails before it opened. */
export const STREAM_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  'x-accel-buffering': 'no'
} as const

/** The headers of an event stream on the reply (a `cache-control` set before is kept). */
export function setStreamHeaders (reply: FastifyReply): void {
  reply.header('content-type', STREAM_HEADERS['content-type'])
  if (!reply.hasHeader('cache-control')) reply.header('cache-control', STREAM_HEADERS['cache-control'])
  reply.header('x-accel-buffering', STREAM_HEADERS['x-accel-buffering'])
  // No `connection` header of ours: Node writes the right one on HTTP/1 (`keep-alive` on a persistent connection;
  // `close` on HTTP/1.0, where a body with neither a length nor chunking ends with the connection, or when the
  // client asked to close), and HTTP/2 forbids it (RFC 9113 §8.2.2). One set before is made what Node would write.
  const raw = reply.request.raw
  if (raw.httpVersionMajor === 1) {
    omitKeepAliveHint(reply.raw)
    if (reply.hasHeader('connection')) {
      reply.header('connection', raw.httpVersionMinor !== 0 && keepsConnection(reply.raw) ? 'keep-alive' : 'close')
    }
  } else reply.removeHeader('connection')
}

/** Takes back the event-stream headers (with the value `setStreamHeaders` gave them) from a reply that will error. */
export function takeBackHeaders (reply: FastifyReply): void {
  for (const [name, value] of Object.entries(STREAM_HEADERS)) {
    if (reply.getHeader(name) !== value) continue
    reply.removeHeader(name)
    reply.raw.removeHeader(name)
  }
}

/**
 * Whether the head waits for the source's first item (at most `headersDelay` ms): until it goes, a failure is
 * still answered by the route's error handling. A source that runs no user code first (a channel subscription)
 * cannot fail so: its head goes at once.
 */
export function holdsHead (source: object, headersDelay: number): boolean {
  return headersDelay > 0 && !opensAtOnce(source)
}

/**
 * Sends the head now. `direct`: the stream writes it itself and takes the reply over (lib/reply chose so because
 * Fastify's send path had nothing to do); otherwise Fastify has set the headers on the response, and they are
 * flushed when the stream writes into the response itself (not into what an onSend hook put in front of it).
 */
export function sendHead (reply: FastifyReply, direct: boolean, dest: unknown): void {
  const res = reply.raw
  if (res.headersSent) return
  if (direct) writeHeadDirectly(reply)
  else if (dest === res) res.flushHeaders()
}

/** Told when the response it watches closes. */
export interface ResponseWatcher {
  /** @internal */
  responseClosed: () => void
}

/**
 * The watcher (its stream) of every response `reply.sse()` answered (undefined: a HEAD request's, which has none),
 * for the one 'close' listener all responses share (a closure per stream would cost more than the map's entry).
 */
const answered = new WeakMap<object, ResponseWatcher | undefined>()

/** Whether `reply.sse()` answered this response (with a stream, or a HEAD request's head). */
export function answeredBySse (res: object): boolean {
  return answered.has(res)
}

/** A HEAD request's response, answered by `reply.sse()` with a stream's head and no stream. */
export function answeredHead (res: object): void {
  answered.set(res, undefined)
}

/** Calls `watcher.responseClosed()` when the response closes. */
export function watchResponse (res: FastifyReply['raw'], watcher: ResponseWatcher): void {
  answered.set(res, watcher)
  // `on`, not `once`: a response closes once, and once's wrapper would cost a closure and a record per stream
  res.on('close', onResponseClose)
}

/** The one 'close' listener of every stream's response (`this` is the response). */
function onResponseClose (this: object): void {
  answered.get(this)?.responseClosed()
}
