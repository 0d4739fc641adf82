import type { FastifyReply, FastifyRequest } from 'fastify'
import { encodeItem, frameOf, type Frame } from './encode.js'
import { resetConnection } from './fastify-internals.js'
import { holdsHead, watchResponse, type ResponseWatcher } from './head.js'
import { clock } from './heartbeat.js'
import type { StreamRegistry } from './metrics.js'
import type { ResolvedStreamOptions } from './options.js'
import { abortStreamSignal, isStreamSignal, streamSignalAborted, streamStarted } from './signal.js'
import { endOrReset, resetWhenStuck } from './slow-client.js'
import {
  attach, openSource, stopIterator, WAIT, type EndReason, type StreamLink, type SyncSource
} from './source.js'
import type { SseItem, SseSerializer, SseSource } from './types.js'
import { ResponseWriter } from './writer.js'

// One SSE stream, from its first item to its end: it pulls one item at a time from the source, and only when the
// socket takes more (lib/writer writes them); reads a `SyncSource` synchronously; never formats a field (lib/encode
// does); and ends for one reason (`EndReason`): the source ended or failed, an item was refused, the client left,
// the server closed, or the client was too slow (its queue overflowed, or its output waited `writeTimeout` without
// the socket draining).
// Every end but the source's own stops the source.

/** How a typed route encodes an item's data: its serializer (undefined: the stream's own), and string data as text. */
export interface ItemEncoding {
  readonly serialize: SseSerializer | undefined
  /** `false` where the data schema admits more than strings: a string is then JSON like any value. */
  readonly text: boolean
}

/**
 * Checks an item before it is encoded and says how to encode it (undefined: as an untyped item); throws an
 * SseError to refuse it.
 */
export type ItemHook = (item: unknown) => ItemEncoding | undefined

/** The route of a stream opened by the not-found handler, which has no URL pattern (no route can be named so). */
export const NOT_FOUND_ROUTE = '(not found)'

/** The response closed before its stream existed (see the constructor). */
function closeLater (stream: EventStream): void {
  stream.responseClosed()
}

/** What only some streams need, kept apart so that an idle subscriber's stream holds one empty field for it all. */
interface StreamExtras {
  /** Settles once the response has closed; made only when `close()` waits for it. */
  responseClosed?: Promise<void>
  resolveResponseClosed?: () => void
  /** `#onStep` and `#onError` as callbacks of an asynchronous source's promises (see `#pull`). */
  stepped?: (step: IteratorResult<SseItem<unknown>>) => void
  failed?: (err: unknown) => void
}

/** Whether a response closed already (HTTP/1: `destroyed`; HTTP/2: its stream's). */
function responseGone (res: FastifyReply['raw']): boolean {
  const raw = res as { destroyed?: boolean, stream?: { destroyed?: boolean } }
  return raw.destroyed === true || raw.stream?.destroyed === true
}

/** The stream of one response `reply.sse()` answered. */
export class EventStream extends ResponseWriter implements StreamLink, ResponseWatcher {
  readonly #iterator: AsyncIterator<SseItem<unknown>>
  /** Set when the source is read synchronously (see `SyncSource`). */
  readonly #sync: SyncSource | undefined
  /** A typed route's item check and serializer choice (lib/typed/items); unset on untyped streams. */
  readonly #itemHook: ItemHook | undefined
  /** The route's URL pattern (`/rooms/:room`). */
  readonly route: string
  readonly #startedAt = clock()
  /** A pull is under way: the source is working on the next item (or, read synchronously, will deliver it). */
  #pulling = false
  /** No more items: the source ended, failed or was stopped. */
  #finished = false
  #reason: EndReason = 'client closed'
  #items = 0
  #extras: StreamExtras | undefined

  constructor (
    reply: FastifyReply,
    source: SseSource<unknown>,
    options: ResolvedStreamOptions,
    registry: StreamRegistry,
    itemHook?: ItemHook
  ) {
    super(reply, options, registry, holdsHead(source, options.headersDelay))
    streamStarted(reply.request, reply)
    this.#itemHook = itemHook
    this.route = reply.request.routeOptions.url ?? NOT_FOUND_ROUTE
    this.#iterator = openSource(source)
    this.#sync = attach(source, this)
    registry.add(this)
    const res = reply.raw
    watchResponse(res, this)
    // The client left before the stream existed (a hook or the handler awaited first): that 'close' was before
    // the listener, and none will follow. Closed on the next tick, once the body is piped. (A response queued
    // behind another on a pipelining connection never gets here before it has its socket: lib/reply waits.)
    if (responseGone(res)) process.nextTick(closeLater, this)
    this.startHeartbeats()
  }

  #more (): StreamExtras {
    this.#extras ??= {}
    return this.#extras
  }

  protected piped (): void {
    if (this.#finished) this.endBody()
    else {
      this.openOrHold()
      if (this.takesMore) this.#pull()
    }
  }

  protected drained (): void {
    if (!this.#pulling && !this.#finished) this.#pull()
  }

  #pull (): void {
    if (this.#sync !== undefined) {
      this.#takeSync(this.#sync)
      return
    }
    this.#pulling = true
    let next: Promise<IteratorResult<SseItem<unknown>>>
    try {
      next = this.#iterator.next()
    } catch (err) {
      // a hand-written iterator may throw instead of rejecting
      this.#onError(err)
      return
    }
    // a hand-written iterator may also answer with a plain result instead of a promise
    // made on the first asynchronous pull only: a stream reading a SyncSource never needs them
    const extras = this.#more()
    extras.stepped ??= (step) => { this.#onStep(step) }
    extras.failed ??= (err) => { this.#onError(err) }
    Promise.resolve(next).then(extras.stepped, extras.failed)
  }

  #encode (item: unknown): string {
    const typed = this.#itemHook?.(item)
    return typed === undefined
      ? encodeItem(item, this.options.serialize)
      : encodeItem(item, typed.serialize ?? this.options.serialize, typed.text)
  }

  /**
   * @internal The frame of an item: an item encoded ahead of time (a channel's when published, a push source's
   * when pushed) as it is, else encoded now. Also the `StreamLink` side, for a source that queues encoded frames.
   */
  encode (item: unknown): Frame {
    return frameOf(item) ?? this.#encode(item)
  }

  #onStep (step: IteratorResult<SseItem<unknown>>): void {
    this.#pulling = false
    if (this.#finished) return // closed while the source was working: its item has nowhere to go
    if (step.done === true) this.#finish('source ended')
    else if (this.#writeItem(step.value) && this.takesMore) this.#pull()
  }

  /** Reads a `SyncSource` until it has nothing ready, or the destination is full. */
  #takeSync (sync: SyncSource): void {
    // bounded: the source's queue is bounded, and a full destination stops the loop
    for (;;) {
      let item: SseItem<unknown> | typeof WAIT | undefined
      try {
        item = sync.take()
      } catch (err) {
        if (this.#clientLeft()) return
        this.#onError(err)
        return
      }
      if (item === WAIT) {
        this.#pulling = true
        return
      }
      if (item === undefined) {
        if (!this.#clientLeft()) this.#finish('source ended')
        return
      }
      if (!this.#writeItem(item) || !this.takesMore) return
    }
  }

  /**
   * The client left before the stream existed (its `request.signal`, read then, aborted), and the source ended or
   * failed on that signal: the stream closes as the client's, not as the source's end or failure.
   */
  #clientLeft (): boolean {
    if (!streamSignalAborted(this.reply.request)) return false
    this.destroy()
    return true
  }

  /** `StreamLink`: see there. */
  stopsWith (signal: AbortSignal): boolean {
    return isStreamSignal(this.reply.request, signal)
  }

  /** `StreamLink`: a `SyncSource`'s item, or word that it ended or failed, after a `take()` that answered `WAIT`. */
  deliver (item?: SseItem<unknown>): void {
    this.#pulling = false
    if (this.#finished) return
    if (item === undefined || (this.#writeItem(item) && this.takesMore)) this.#takeSync(this.#sync as SyncSource)
  }

  /** Encodes and writes one item (the first opens the stream); false when the stream ended on it. */
  #writeItem (item: SseItem<unknown>): boolean {
    let frame: Frame
    try {
      frame = this.encode(item)
    } catch (err) {
      if (this.#failEarly(err, 'item refused')) return false
      this.reply.log.error({ err }, 'SSE item refused; stream ended')
      this.registry.itemRefused(this, err as Error)
      this.#lastWord(err)
      this.#finish('item refused')
      return false
    }
    this.#items++
    this.registry.items++
    this.writeFrame(frame)
    return true
  }

  #onError (err: unknown): void {
    this.#pulling = false
    if (this.#finished) {
      // the usual way a generator waiting on request.signal ends once the stream is closed: not an error
      this.reply.log.debug({ err }, 'SSE source stopped after the stream closed')
      return
    }
    if (this.#failEarly(err, 'source failed')) return
    this.reply.log.error({ err }, 'SSE source failed; stream ended')
    this.#lastWord(err)
    this.#finish('source failed')
  }

  /**
   * A failure before anything was sent is the route's ordinary error (see `answerEarly`). False once the response
   * has started.
   */
  #failEarly (err: unknown, reason: EndReason): boolean {
    if (!this.canAnswerEarly()) return false
    this.#finished = true
    this.#reason = reason
    // still a stream that opened and closed, for app.sse.stats() and the diagnostics channels
    if (reason === 'item refused') this.registry.itemRefused(this, err as Error)
    if (reason !== 'source failed') this.#stopSource()
    this.answerEarly(err)
    return true
  }

  /**
   * The item `onError` maps a failure to, written as the stream's last, so the client learns why it ended (and
   * can decide not to reconnect). A mapper that throws, or returns a bad item, is logged; the stream just ends.
   */
  #lastWord (err: unknown): void {
    if (this.options.onError === undefined) return
    try {
      const item = this.options.onError(err, this.reply.request)
      // encoded with the stream's serializer: a last word is not held to the route's schema
      if (item !== undefined) this.addLast(encodeItem(item, this.options.serialize))
    } catch (mapErr) {
      this.reply.log.error({ err: mapErr }, 'SSE onError failed; stream ended without a last item')
    }
  }

  /** No more pulls; end the body cleanly once piped; stop the source unless it stopped by itself. */
  #finish (reason: EndReason): void {
    this.#finished = true
    this.#reason = reason
    if (reason !== 'source ended') this.#stopSource()
    if (this.piping) this.endBody()
  }

  /**
   * `StreamLink`: the source gave up on a client that reads too slowly; lib/slow-client decides whether its
   * connection is reset now (a stream whose socket still takes more reads the source's end by itself).
   */
  disconnect (): boolean {
    if (this.closed || !resetWhenStuck(this.reply, this.takesMore)) return false
    this.#reason = 'too slow'
    return true
  }

  /**
   * Output waited `writeTimeout` ms without the socket draining (lib/writer): the connection is reset, as a stuck
   * client cut off from its queue is (lib/slow-client), so that the kernel lets go of what it could not send; the
   * response's close then stops the source. A stream that had ended already (its last bytes still waiting) keeps
   * the reason it ended with, under which it was counted.
   */
  protected writeTimedOut (): void {
    if (!this.closed) this.#reason = 'too slow'
    this.reply.log.warn({ writeTimeout: this.options.writeTimeout },
      'SSE client did not drain within writeTimeout; connection reset')
    resetConnection(this.reply, false)
  }

  #stopSource (): void {
    abortStreamSignal(this.reply.request)
    stopIterator(this.#iterator, this.reply)
  }

  /**
   * Ends the stream because the server is closing: the source is stopped and the body ended cleanly, or the
   * connection reset when the client is not reading (lib/slow-client). Resolves once the response has closed.
   */
  close (): Promise<void> {
    // made first: resetting the connection may close the response at once
    const responseClosed = this.#whenResponseClosed()
    if (!this.#finished) this.#reason = 'server closing'
    endOrReset(this.reply, this.takesMore, () => {
      if (!this.#finished) this.#finish('server closing')
    }, responseClosed)
    return responseClosed
  }

  /**
   * Called by `close()` first, on an open stream only (a closed one has left the registry): its response has not
   * closed yet, and `responseClosed` settles the promise when it does.
   */
  #whenResponseClosed (): Promise<void> {
    const extras = this.#more()
    extras.responseClosed ??= new Promise(resolve => { extras.resolveResponseClosed = resolve })
    return extras.responseClosed
  }

  get request (): FastifyRequest {
    return this.reply.request
  }

  get reason (): EndReason {
    return this.#reason
  }

  /** Items written so far. */
  get items (): number {
    return this.#items
  }

  get durationMs (): number {
    return clock() - this.#startedAt
  }

  /** @internal `ResponseWatcher`: the response closed. */
  responseClosed (): void {
    this.#extras?.resolveResponseClosed?.()
    this.destroy()
  }

  protected destroyed (): void {
    this.registry.delete(this)
    if (!this.#finished) {
      this.#finished = true
      this.#stopSource()
    }
    // a client that left is worth a line at the level Fastify logs its requests at; every other end is routine
    const level = this.#reason === 'client closed' ? 'info' : 'debug'
    this.reply.log[level]({ items: this.#items, durationMs: this.durationMs, reason: this.#reason }, 'SSE stream closed')
  }
}
