import type { FastifyReply, FastifyRequest } from 'fastify'
import type { AdmissionGate } from './admission.js'
import { alreadySent, invalidSource, notAcceptable, routeName, sourceTaken } from './errors.js'
import { clearHandlerTimeout, sendPathIdle, sendPipedBody } from './fastify-internals.js'
import { FastifyBody } from './fastify-body.js'
import { answeredBySse, answeredHead, setStreamHeaders } from './head.js'
import type { RejectReason, StreamRegistry } from './metrics.js'
import { resolveOptions, routeStreamOptions, type Limits, type ResolvedOptions } from './options.js'
import { countOnSession, queueFull, sessionFull, waitForTurn, waitsForTurn } from './per-connection.js'
import { feeding } from './queue.js'
import { dropSource, isSource } from './source.js'
import { EventStream, type ItemHook } from './stream.js'
import { typedItemHook } from './typed/items.js'
import { abortStreamSignal, bindStreamSignal } from './signal.js'
import type { SseSource, SseStreamOptions } from './types.js'

// `reply.sse(source, options)`: the checks and limits before a stream opens, the response headers of an event
// stream (lib/head), and the hand-over of the stream to Fastify as the reply's body (so onSend hooks run as for
// any body), or to the stream itself when Fastify's send path has nothing to do.

/** What every stream of one plugin instance shares. */
export interface StreamHost {
  readonly defaults: ResolvedOptions
  readonly limits: Limits
  /** The open streams: counted against `maxConnections`, ended on close. */
  readonly open: StreamRegistry
  /** Set once the app is closing: new streams are refused. */
  closing: boolean
  /** The rate new streams are admitted at (`admission`); undefined: no limit. */
  readonly admission: AdmissionGate | undefined
}

function describe (value: unknown): string {
  if (typeof (value as PromiseLike<unknown> | null)?.then === 'function') return 'a Promise (did you forget `await`?)'
  return value === null ? 'null' : typeof value
}

/** Set on the config of every route the plugin saw (Fastify copies a route's config, symbol keys included). */
export const kSeenRoute = Symbol('fastify-typed-sse.route')

/** Whether the plugin's onRoute hook saw (and wrapped) the route of this config. */
export function isSeenRoute (config: object): boolean {
  return (config as { [kSeenRoute]?: true })[kSeenRoute] === true
}

/** Responses whose stream waits for its turn on a pipelining connection (see `waitInLine`). */
const waitingReplies = new WeakSet<object>()

/** Whether `reply.sse()` started a stream on this reply, or one waits to start. */
export function isStreaming (reply: FastifyReply): boolean {
  return answeredBySse(reply.raw) || waitingReplies.has(reply.raw)
}

/** Why a new stream is refused with a 503: the reason counted, the `code` of the answer, and why in words. */
interface Refusal {
  reason: Exclude<RejectReason, 'not acceptable'>
  code: string
  why: string
  /** Seconds in `Retry-After`. */
  retryAfter: number
  /** What the warning logs beside the message. */
  context?: object
}

/** No stream now (a limit reached, or the server closing): 503 with Retry-After, and the source stopped. */
function refuseStream (host: StreamHost, reply: FastifyReply, source: unknown, refusal: Refusal): FastifyReply {
  dropSource(reply, source)
  host.open.reject(refusal.reason)
  reply.log.warn(refusal.context ?? {}, `SSE stream refused: ${refusal.why}`)
  // as Fastify answers a request that arrives while closing: the requests pipelined behind go with the connection
  if (refusal.reason === 'server closing' && reply.request.raw.httpVersionMajor !== 2) reply.header('connection', 'close')
  return reply.code(503).header('retry-after', String(refusal.retryAfter)).send({
    statusCode: 503, code: refusal.code, error: 'Service Unavailable', message: `No event stream now (${refusal.why}); retry later`
  })
}

/** The refusal of a new stream by the first limit it meets now, or undefined: it may start. */
function limitMet (host: StreamHost, request: FastifyRequest): Refusal | undefined {
  const { maxConnections, maxStreamsPerConnection, retryAfter } = host.limits
  // a request that reached its handler while app.close() ran: its stream would be left open
  if (host.closing) return { reason: 'server closing', code: 'FST_SSE_SERVER_CLOSING', why: 'the server is closing', retryAfter }
  if (sessionFull(request, maxStreamsPerConnection)) return perConnection(maxStreamsPerConnection, retryAfter)
  if (host.open.size >= maxConnections) {
    const why = `the limit of ${maxConnections} open streams (maxConnections) is reached`
    return { reason: 'max connections', code: 'FST_SSE_MAX_CONNECTIONS', why, retryAfter, context: { maxConnections } }
  }
  // last: a token is spent only on a stream that starts (a HEAD request is answered without one)
  if (host.admission !== undefined && request.method !== 'HEAD' && !host.admission.admit()) {
    const why = 'new streams come faster than the admission rate'
    return { reason: 'admission', code: 'FST_SSE_ADMISSION', why, retryAfter: host.admission.retryAfter(), context: { admission: host.limits.admission } }
  }
  return undefined
}

function perConnection (maxStreamsPerConnection: number, retryAfter: number): Refusal {
  const why = `the limit of ${maxStreamsPerConnection} streams on one connection (maxStreamsPerConnection) is reached`
  return {
    reason: 'max streams per connection', code: 'FST_SSE_MAX_STREAMS_PER_CONNECTION', why, retryAfter, context: { maxStreamsPerConnection }
  }
}

/**
 * Whether a request's `Accept` header lets it take `text/event-stream` (RFC 9110 §12.5.1): no header, or the most
 * specific range that covers it (`text/event-stream`, then `text/*`, then `*\/*`) has a q above 0.
 */
export function acceptsEventStream (accept: string | undefined): boolean {
  return accepts(accept, 'text/event-stream', 'text/*')
}

/** Whether a request's `Accept` header lets it take `application/json`, by the same rule. */
export function acceptsJson (accept: string | undefined): boolean {
  return accepts(accept, 'application/json', 'application/*')
}

function accepts (accept: string | undefined, media: string, family: string): boolean {
  if (accept === undefined || accept.trim() === '') return true
  let specificity = -1
  let q = 0
  for (const range of accept.split(',')) {
    const params = range.split(';')
    const type = (params[0] as string).trim().toLowerCase()
    const level = type === media ? 2 : type === family ? 1 : type === '*/*' ? 0 : -1
    if (level < 0 || level < specificity) continue
    const weight = qOf(params)
    q = level > specificity ? weight : Math.max(q, weight)
    specificity = level
  }
  return q > 0
}

/** A range's `q`: 1 when absent, and when unreadable (a typo does not refuse the stream). */
function qOf (params: string[]): number {
  for (let i = 1; i < params.length; i++) {
    const [name, value] = (params[i] as string).split('=')
    if ((name as string).trim().toLowerCase() === 'q') {
      const q = Number(value)
      return Number.isNaN(q) ? 1 : q
    }
  }
  return 1
}

/** The `reply.sse` decorator of a plugin instance. */
export function sseDecorator (host: StreamHost) {
  return function sse (this: FastifyReply, source: unknown, streamOptions?: SseStreamOptions): FastifyReply {
    // before anything would stop it: it is the other stream's source
    const taken = feeding(source)
    if (taken !== undefined) throw sourceTaken(`${this.request.method} ${this.request.url}`, taken)
    let options: ResolvedOptions
    try {
      const base = routeStreamOptions(this.routeOptions.config) ?? host.defaults
      options = streamOptions === undefined ? base : resolveOptions(streamOptions, base)
    } catch (err) {
      dropSource(this, source)
      throw err
    }
    if (!acceptsEventStream(this.request.headers.accept)) {
      dropSource(this, source)
      host.open.reject('not acceptable')
      return this.code(406).send(notAcceptable(routeName(this.request)))
    }
    const route = `${this.request.method} ${this.request.url}`
    if (!isSource(source)) throw invalidSource(route, describe(source))
    if (this.sent || this.raw.headersSent || isStreaming(this)) {
      // As Fastify does for a second reply.send(): a warning, and the response under way is left alone.
      this.log.warn({ err: alreadySent(route) }, 'reply.sse() called on a reply already sent')
      dropSource(this, source)
      return this
    }
    // on a route with an sseSchema() response: compiled serializers, and checks with `validate`
    const compileSerializers = streamOptions?.serialize === undefined
    const item = typedItemHook(this, { validate: options.validate, compileSerializers })
    if (waitsForTurn(this)) return waitInLine(host, this, source, options, item)
    return admit(host, this, source, options, item)
  }
}

/**
 * A request pipelined behind another response on its HTTP/1.1 connection (see lib/per-connection): nothing
 * starts until its response can be written, and it is let go if the connection closes first. Past
 * `maxStreamsPerConnection` the connection is closed: HTTP/1.1 cannot answer a request before those ahead of
 * it, and a 503 queued behind an endless stream would never be read, while its bytes make Node stop reading the
 * connection, and so stop noticing that the client left.
 */
function waitInLine (
  host: StreamHost, reply: FastifyReply, source: SseSource<unknown>, options: ResolvedOptions,
  item: ItemHook | undefined
): FastifyReply {
  // the handler has answered: Fastify must not answer for it, and a handlerTimeout must not destroy the response
  waitingReplies.add(reply.raw)
  clearHandlerTimeout(reply.request)
  // on any route (not only those known to stream): the waiting request's signal aborts when it is let go
  bindStreamSignal(reply.request, reply)
  const { maxStreamsPerConnection } = host.limits
  if (queueFull(reply.request, maxStreamsPerConnection)) {
    dropSource(reply, source)
    host.open.reject('max streams per connection')
    const why = `the limit of ${maxStreamsPerConnection} streams on one connection (maxStreamsPerConnection) is reached`
    reply.log.warn({ maxStreamsPerConnection }, `SSE connection closed: ${why} by pipelined requests`)
    // let go as the ones waiting are when the connection closes (see below)
    abortStreamSignal(reply.request)
    reply.request.raw.socket.destroy()
    return reply
  }
  waitForTurn(reply, () => { takeTurn(host, reply, source, options, item) }, () => {
    reply.log.debug('SSE stream dropped: its connection closed while it waited behind another response')
    abortStreamSignal(reply.request)
    dropSource(reply, source)
  })
  return reply
}

/**
 * The turn of a waiting request: it runs in Node's 'socket' event, where nothing would catch a throw (a source
 * whose iterator cannot be made), so a throw is answered by Fastify's error handling, as it is when `reply.sse()`
 * throws in a handler. A reply Fastify answered meanwhile (the handler threw after `reply.sse()`) starts nothing.
 */
function takeTurn (
  host: StreamHost, reply: FastifyReply, source: SseSource<unknown>, options: ResolvedOptions,
  item: ItemHook | undefined
): void {
  waitingReplies.delete(reply.raw)
  if (reply.sent || reply.raw.headersSent || reply.raw.writableEnded) {
    abortStreamSignal(reply.request)
    stopQuietly(reply, source)
    return
  }
  try {
    admit(host, reply, source, options, item)
  } catch (err) {
    stopQuietly(reply, source)
    reply.send(err)
  }
}

/** Stops a source that may not even give an iterator (the reason its stream failed): nothing else to stop then. */
function stopQuietly (reply: FastifyReply, source: SseSource<unknown>): void {
  try {
    dropSource(reply, source)
  } catch {}
}

/** The limits checked, then the stream started (or a 503). */
function admit (
  host: StreamHost, reply: FastifyReply, source: SseSource<unknown>, options: ResolvedOptions,
  item: ItemHook | undefined
): FastifyReply {
  const refusal = limitMet(host, reply.request)
  if (refusal !== undefined) return refuseStream(host, reply, source, refusal)
  return startStream(reply, source, options, host, item)
}

/** Headers, then the stream handed to Fastify as the body. */
function startStream (
  reply: FastifyReply, source: SseSource<unknown>, options: ResolvedOptions, host: StreamHost,
  item: ItemHook | undefined
): FastifyReply {
  setStreamHeaders(reply)
  if (reply.request.method === 'HEAD') {
    // A HEAD response has no body: an endless source would be pulled forever into nothing.
    answeredHead(reply.raw)
    dropSource(reply, source)
    return reply.send()
  }
  clearHandlerTimeout(reply.request)
  countOnSession(reply, host.limits.maxStreamsPerConnection)
  const stream = new EventStream(reply, source, options, host.open, item)
  // Nothing for Fastify's stream path to do (no onSend hook, no trailer): the same head, written by the stream
  // when it opens. Only on a route the plugin wrapped: there a handler's promise that resolves with nothing is
  // not answered by Fastify while the head waits for the first item (see lib/route's settleLater).
  if (isSeenRoute(reply.request.routeOptions.config) && sendPathIdle(reply)) {
    reply.log.debug({ direct: true }, 'SSE stream opened')
    stream.pipeDirect()
    return reply
  }
  reply.log.debug({ direct: false }, 'SSE stream opened')
  return sendPipedBody(reply, new FastifyBody(stream))
}
