import { Readable } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { HEARTBEAT_FRAME, frameOf, retryFrame, type Frame } from './encode.js'
import type { SseItem, SseSerializer, SseSource } from './types.js'

// One SSE response, from headers to the last byte. It never formats a field (lib/encode does), it pulls one
// item at a time from the source and only when the socket takes more, and it owns the abort wiring.

/** Stream options with the plugin's defaults filled in and validated. */
export interface ResolvedStreamOptions {
  heartbeat: number | false
  retry: number | undefined
  serialize: SseSerializer
}

/** Why a stream ended, as logged and as seen by `close()` callers. */
export type EndReason = 'source ended' | 'source failed' | 'item refused' | 'client closed' | 'server closing'

const controllers = new WeakMap<FastifyRequest, AbortController>()

/**
 * The abort controller behind `request.signal` for an SSE response. It aborts when the client goes away
 * (the response closes before it was ended), when the server closes, and when the stream ends before its
 * source did. It replaces Fastify's `request.signal` on this request: that one aborts as soon as a request
 * body has been read (fastify#6725), and not at all on `app.close()` once a logger or onResponse hook exists.
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
  Object.defineProperty(request, 'signal', { value: created.signal, configurable: true, enumerable: true })
  return created
}

async function * fromSync<T> (iterable: Iterable<SseItem<T>>): AsyncGenerator<SseItem<T>, void, undefined> {
  yield * iterable
}

function noop (): void {}

/**
 * Asks a source to stop (a generator runs its `finally`). Not awaited: a generator busy in an await that
 * ignores the signal stops when it next yields, and nobody (least of all app.close) waits for that.
 */
export function stopIterator (iterator: AsyncIterator<unknown> | Iterator<unknown>, reply: FastifyReply): void {
  try {
    Promise.resolve(iterator.return?.()).then(noop, (err: unknown) => reply.log.error({ err }, 'SSE source failed while stopping'))
  } catch (err) {
    reply.log.error({ err }, 'SSE source failed while stopping')
  }
}

function flushHeaders (this: FastifyReply['raw']): void {
  // Fired when Fastify pipes the body into the response: after every onSend hook, with all headers set.
  // Flushing earlier would send a response without them (an async onSend hook delays them).
  this.flushHeaders()
}

/** The body of one SSE response: a readable of whole frames that Fastify pipes into the socket. */
export class EventStream extends Readable {
  readonly #reply: FastifyReply
  readonly #iterator: AsyncIterator<SseItem<unknown>>
  readonly #controller: AbortController
  readonly #serialize: SseSerializer
  readonly #heartbeat: number | false
  readonly #registry: Set<EventStream>
  readonly #startedAt = Date.now()
  #timer: NodeJS.Timeout | undefined
  #lastWrite = this.#startedAt
  #pulling = false
  #finished = false
  #reason: EndReason = 'client closed'
  #items = 0
  readonly #responseClosed: Promise<void>

  constructor (reply: FastifyReply, source: SseSource<unknown>, options: ResolvedStreamOptions, registry: Set<EventStream>) {
    // One item at most waits here: the rest of the buffering is the socket's, bounded by its high-water mark.
    super({ objectMode: true, highWaterMark: 1 })
    this.#reply = reply
    this.#controller = streamController(reply.request, reply)
    this.#serialize = options.serialize
    this.#heartbeat = options.heartbeat
    this.#registry = registry
    this.#iterator = Symbol.asyncIterator in source
      ? source[Symbol.asyncIterator]()
      : fromSync(source)[Symbol.asyncIterator]()
    registry.add(this)
    this.#responseClosed = new Promise(resolve => reply.raw.once('close', () => {
      resolve()
      this.destroy()
    }))
    if (options.retry !== undefined) this.#write(retryFrame(options.retry))
    if (this.#heartbeat !== false) this.#timer = setTimeout(this.#onIdle, this.#heartbeat).unref()
  }

  /** Items written so far. */
  get items (): number {
    return this.#items
  }

  override _read (): void {
    if (!this.#pulling && !this.#finished) this.#pull()
  }

  #pull (): void {
    this.#pulling = true
    let next: Promise<IteratorResult<SseItem<unknown>>>
    try {
      next = this.#iterator.next()
    } catch (err) {
      // a hand-written iterator may throw instead of rejecting
      this.#onError(err)
      return
    }
    next.then(this.#onStep, this.#onError)
  }

  #onStep = (step: IteratorResult<SseItem<unknown>>): void => {
    this.#pulling = false
    if (this.#finished) return // closed while the source was working: its item has nowhere to go
    if (step.done === true) {
      this.#finish('source ended')
      return
    }
    let frame: Frame
    try {
      frame = frameOf(step.value, this.#serialize)
    } catch (err) {
      this.#reply.log.error({ err }, 'SSE item refused; stream ended')
      this.#finish('item refused')
      return
    }
    this.#items++
    if (frame.length === 0 || this.#write(frame)) this.#pull()
  }

  #onError = (err: unknown): void => {
    this.#pulling = false
    if (this.#finished || this.#controller.signal.aborted) {
      // the usual way a generator waiting on request.signal ends once the stream is closed: not an error
      this.#reply.log.debug({ err }, 'SSE source stopped after the stream closed')
      return
    }
    this.#reply.log.error({ err }, 'SSE source failed; stream ended')
    this.#finish('source failed')
  }

  #write (frame: Frame): boolean {
    this.#lastWrite = Date.now()
    return this.push(frame)
  }

  #onIdle = (): void => {
    const hb = this.#heartbeat as number
    const idle = Date.now() - this.#lastWrite
    // a stream whose last frame still waits for the socket is congested, not idle
    if (idle >= hb && this.readableLength === 0) this.#write(HEARTBEAT_FRAME)
    this.#timer = setTimeout(this.#onIdle, idle >= hb ? hb : hb - idle).unref()
  }

  /** No more pulls; end the body cleanly; stop the source unless it stopped by itself. */
  #finish (reason: EndReason): void {
    this.#finished = true
    this.#reason = reason
    if (reason !== 'source ended') this.#stopSource()
    this.push(null)
  }

  #stopSource (): void {
    if (!this.#controller.signal.aborted) this.#controller.abort()
    stopIterator(this.#iterator, this.#reply)
  }

  /**
   * Ends the stream because the server is closing: the source is stopped and the body ended cleanly, or
   * the response destroyed when the client is not reading (its socket is full). Resolves once the
   * response has closed.
   */
  close (): Promise<void> {
    if (!this.#finished) this.#finish('server closing')
    const res = this.#reply.raw
    if (res.writableNeedDrain || this.readableLength > 0) res.destroy()
    return this.#responseClosed
  }

  override _destroy (err: Error | null, callback: (error?: Error | null) => void): void {
    clearTimeout(this.#timer)
    this.#registry.delete(this)
    if (!this.#finished) {
      this.#finished = true
      this.#stopSource()
    }
    this.#reply.log.debug({ items: this.#items, durationMs: Date.now() - this.#startedAt, reason: this.#reason }, 'SSE stream closed')
    callback(err)
  }
}

/** What `reply.sse()` does: headers, then the stream handed to Fastify as the body. */
export function startStream (reply: FastifyReply, source: unknown, options: ResolvedStreamOptions, registry: Set<EventStream>): FastifyReply {
  if (!isSource(source)) {
    throw new TypeError(`reply.sse() on ${reply.request.method} ${reply.request.url} needs an async or sync iterable of SSE items, got ${source === null ? 'null' : typeof source}`)
  }
  if (reply.sent || reply.raw.headersSent || streaming.has(reply)) {
    throw new Error(`reply.sse() on ${reply.request.method} ${reply.request.url}: the reply was already sent`)
  }
  streaming.add(reply)
  reply.header('content-type', 'text/event-stream; charset=utf-8')
  if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-cache, no-transform')
  reply.header('x-accel-buffering', 'no')
  // HTTP/2 forbids connection-specific headers (RFC 9113 §8.2.2); Node warns about them.
  if (reply.request.raw.httpVersionMajor === 1) reply.header('connection', 'keep-alive')
  else reply.removeHeader('connection')

  if (reply.request.method === 'HEAD') {
    // A HEAD response has no body: an endless source would be pulled forever into nothing.
    stopIterator(Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : source[Symbol.iterator](), reply)
    return reply.send()
  }
  const stream = new EventStream(reply, source, options, registry)
  reply.raw.once('pipe', flushHeaders)
  reply.log.debug('SSE stream opened')
  return reply.send(stream)
}

const streaming = new WeakSet<FastifyReply>()

function isSource (value: unknown): value is SseSource<unknown> {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return false
  const candidate = value as Partial<Record<symbol, unknown>>
  return typeof candidate[Symbol.asyncIterator] === 'function' || typeof candidate[Symbol.iterator] === 'function'
}
