import type { FastifyReply, FastifyRequest } from 'fastify'
import { HEARTBEAT_FRAME, encodeItem, frameOf, retryFrame, type Frame } from './encode.js'
import { onConnectionClose } from './fastify-internals.js'
import { holdsHead, sendHead, takeBackHeaders, watchResponse, type ResponseWatcher } from './head.js'
import { clock, joinHeartbeats, leaveHeartbeats, type HeartbeatMember } from './heartbeat.js'
import type { StreamRegistry } from './metrics.js'
import { abortStreamSignal, isStreamSignal, streamSignalAborted, streamStarted } from './signal.js'
import { endOrReset, resetWhenStuck } from './slow-client.js'
import {
  attach, openSource, stopIterator, WAIT, type EndReason, type StreamLink, type SyncSource
} from './source.js'
import type { SseErrorMapper, SseItem, SseSerializer, SseSource } from './types.js'

// One SSE response, from its first byte to its last. It never formats a field (lib/encode does), it pulls one
// item at a time from the source and only when the socket takes more, writes a heartbeat when idle, and stops
// the source when the client leaves or the server closes. Headers and limits are lib/reply's.

/** Stream options with the plugin's defaults filled in and validated. */
export interface ResolvedStreamOptions {
  heartbeat: number | false
  retry: number | undefined
  serialize: SseSerializer
  /** Longest wait for the first item before the headers go out without one; 0: at once. */
  headersDelay: number
  /** Maps a failure after the stream opened to a last item for the client. */
  onError: SseErrorMapper | undefined
}

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

/**
 * String frames that a source yields in one burst (without waiting on I/O in between) are gathered and
 * pushed as one chunk when the burst ends, or at this many characters: one socket write instead of many,
 * and no later than the frames would have left anyway (the response corks the socket until next tick).
 */
const BATCH_CHARS = 16 * 1024

/** The response closed before its stream existed (see the constructor). */
function closeLater (stream: EventStream): void {
  stream.responseClosed()
}

/** `process.nextTick` calls it with the stream as argument: no closure per burst or per stream. */
function flushBurst (stream: EventStream): void {
  stream.flushBurst()
}

/** What only some streams need, kept apart so that an idle subscriber's stream holds one empty field for it all. */
interface StreamExtras {
  /** The wait for the first item before the headers go out (see `#openHeld`). */
  holdTimer: NodeJS.Timeout | undefined
  /** Settles once the response has closed; made only when `close()` waits for it. */
  responseClosed: Promise<void> | undefined
  resolveResponseClosed: (() => void) | undefined
  /** Stops watching the connection of a response queued behind another (see the constructor). */
  unwatch: (() => void) | undefined
  /** `#onStep` and `#onError` as callbacks of an asynchronous source's promises (see `#pull`). */
  stepped: ((step: IteratorResult<SseItem<unknown>>) => void) | undefined
  failed: ((err: unknown) => void) | undefined
}

function newExtras (): StreamExtras {
  return {
    holdTimer: undefined,
    responseClosed: undefined,
    resolveResponseClosed: undefined,
    unwatch: undefined,
    stepped: undefined,
    failed: undefined
  }
}

/** Whether a response closed already (HTTP/1: `destroyed`; HTTP/2: its stream's). */
function responseGone (res: FastifyReply['raw']): boolean {
  const raw = res as { destroyed?: boolean, stream?: { destroyed?: boolean } }
  return raw.destroyed === true || raw.stream?.destroyed === true
}

/** Where the frames go: the response itself, or whatever an onSend hook put in front of it. */
export interface Destination {
  write: (chunk: Frame) => boolean
  end: () => unknown
  once: (event: 'drain', listener: () => void) => unknown
}

/** Who is told of the writer's end: Fastify's send path, through the body it pipes (lib/fastify-body). */
export interface BodyEvents {
  /** The body is complete (`close` follows). */
  ended: () => void
  closed: () => void
  /** Whether a failure before the head went can be handed to Fastify (it listens once it piped the body). */
  takesErrors: () => boolean
  /** That failure, for Fastify's error handling. */
  failed: (err: unknown) => void
}

/**
 * One SSE response's writer. Not a `Readable`: `pipe()` writes whole frames straight to the destination (the
 * response, or what an onSend hook put in front of it), pulling the next item only when the destination takes
 * more. That skips the Readable buffer, the pipe's closures and one copy of every chunk (the cost of an idle
 * stream was mostly that machinery). Written directly (`pipeDirect()`) it tells nobody of its end; on Fastify's
 * send path the body Fastify watches is told (`reportTo`).
 */
export class EventStream implements StreamLink, HeartbeatMember, ResponseWatcher {
  readonly #reply: FastifyReply
  readonly #iterator: AsyncIterator<SseItem<unknown>>
  /** Set when the source is read synchronously (see `SyncSource`). */
  readonly #sync: SyncSource | undefined
  /** Shared by the streams of a route (or of the plugin): serializer, `onError`, heartbeat interval. */
  readonly #options: ResolvedStreamOptions
  /** A typed route's item check and serializer choice (lib/typed/items); unset on untyped streams. */
  readonly #itemHook: ItemHook | undefined
  readonly #registry: StreamRegistry
  readonly #route: string
  readonly #startedAt = clock()
  #dest: Destination | undefined
  /** The destination is ended with the body (`pipe()`'s `end` option). */
  #endDest = true
  /** A pull is under way: the source is working on the next item (or, read synchronously, will deliver it). */
  #pulling = false
  /** The destination takes more (it has not answered a write with false since its last `drain`). */
  #takesMore = true
  /** A burst's frames are batched, to be flushed on the next tick. */
  #flushQueued = false
  /** No more items: the source ended, failed or was stopped. */
  #finished = false
  /** Destroyed: out of the registry, the heartbeats and the response's close watch. */
  #closed = false
  /** Piped by `pipeDirect()`: the stream writes the head itself when it opens. */
  #direct = false
  /** The head waits for the first item, or `headersDelay` ms (see `#openHeld`); cleared once it may go. */
  #held = false
  /** @internal Where the heartbeat wheel keeps this stream. */
  heartbeatSlot = -1
  #lastWrite = this.#startedAt
  #batch = ''
  #reason: EndReason = 'client closed'
  #items = 0
  #bytes = 0
  #extras: StreamExtras | undefined
  /** Set on Fastify's send path: the body Fastify watches. */
  #body: BodyEvents | undefined

  constructor (
    reply: FastifyReply,
    source: SseSource<unknown>,
    options: ResolvedStreamOptions,
    registry: StreamRegistry,
    itemHook?: ItemHook
  ) {
    this.#reply = reply
    streamStarted(reply.request, reply)
    this.#options = options
    this.#itemHook = itemHook
    this.#registry = registry
    this.#route = reply.request.routeOptions.url ?? NOT_FOUND_ROUTE
    this.#iterator = openSource(source)
    this.#sync = attach(source, this)
    registry.add(this)
    const res = reply.raw
    watchResponse(res, this)
    // Queued behind another response on a pipelining connection: no socket yet, and no 'close' if the client
    // leaves before it gets one. The connection's own close tells.
    if (res.socket === null) this.#more().unwatch = onConnectionClose(reply.request, () => { this.responseClosed() })
    // The client left before the stream existed (a hook or the handler awaited first): that 'close' was before
    // the listener, and none will follow. Closed on the next tick, once the body is piped.
    else if (responseGone(res)) process.nextTick(closeLater, this)
    if (options.retry !== undefined) this.#batch = retryFrame(options.retry)
    if (options.heartbeat !== false) joinHeartbeats(this, options.heartbeat)
    this.#held = holdsHead(source, options.headersDelay)
  }

  #more (): StreamExtras {
    this.#extras ??= newExtras()
    return this.#extras
  }

  /**
   * Called through the body by Fastify once every onSend hook has run and the headers are set (or by a hook that
   * wraps the body), or by `pipeDirect()`. The headers go out with the first item, or once `headersDelay` passed
   * without one; never earlier: that would send them without what an async onSend hook adds.
   */
  pipe<T extends Destination> (dest: T, options?: { end?: boolean }): T {
    this.#dest = dest
    this.#endDest = options?.end !== false
    if (this.#finished) this.#end()
    else {
      if (!this.#held) this.#open()
      else this.#more().holdTimer = setTimeout(EventStream.#openHeld, this.#options.headersDelay, this).unref()
      if (this.#takesMore) this.#pull()
    }
    return dest
  }

  /** Fastify's send path will pipe the writer through `body`, and watch it. */
  reportTo (body: BodyEvents): void {
    this.#body = body
  }

  /**
   * Pipes into the response itself, bypassing Fastify's stream path (lib/reply takes it when that path has
   * nothing to do): the stream writes the head when it opens, and takes the reply over (`reply.hijack()`) only
   * then, so a failure before that is still answered by Fastify's error handler.
   */
  pipeDirect (): void {
    this.#direct = true
    this.pipe(this.#reply.raw)
  }

  /**
   * The headers wait for the first item, or `headersDelay` ms of silence: until then a failure can still be
   * answered with a status (`#failEarly`), and a client whose first item is slow still sees the stream open
   * soon. Static, so that a stream holds no closure for it.
   */
  static #openHeld (stream: EventStream): void {
    if (!stream.#closed) stream.#open()
  }

  #release (): void {
    this.#held = false
    const extras = this.#extras
    if (extras === undefined) return
    clearTimeout(extras.holdTimer)
    extras.holdTimer = undefined
  }

  /** The headers, and what was batched before them (a `retry:` line), go out now. */
  #open (): void {
    this.#release()
    sendHead(this.#reply, this.#direct, this.#dest)
    this.#flush()
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
      ? encodeItem(item, this.#options.serialize)
      : encodeItem(item, typed.serialize ?? this.#options.serialize, typed.text)
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
    else if (this.#writeItem(step.value) && this.#takesMore) this.#pull()
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
      if (!this.#writeItem(item) || !this.#takesMore) return
    }
  }

  /**
   * The client left before the stream existed (its `request.signal`, read then, aborted), and the source ended or
   * failed on that signal: the stream closes as the client's, not as the source's end or failure.
   */
  #clientLeft (): boolean {
    if (!streamSignalAborted(this.#reply.request)) return false
    this.destroy()
    return true
  }

  /** `StreamLink`: see there. */
  stopsWith (signal: AbortSignal): boolean {
    return isStreamSignal(this.#reply.request, signal)
  }

  /** `StreamLink`: a `SyncSource`'s item, or word that it ended or failed, after a `take()` that answered `WAIT`. */
  deliver (item?: SseItem<unknown>): void {
    this.#pulling = false
    if (this.#finished) return
    if (item === undefined || (this.#writeItem(item) && this.#takesMore)) this.#takeSync(this.#sync as SyncSource)
  }

  /** Encodes and writes one item (the first opens the stream); false when the stream ended on it. */
  #writeItem (item: SseItem<unknown>): boolean {
    let frame: Frame
    try {
      frame = this.encode(item)
    } catch (err) {
      if (this.#failEarly(err, 'item refused')) return false
      this.#reply.log.error({ err }, 'SSE item refused; stream ended')
      this.#registry.itemRefused(this, err as Error)
      this.#lastWord(err)
      this.#finish('item refused')
      return false
    }
    // the first item opens the stream: headers first, on their own, as a stream opened by the wait sends them
    if (this.#held) this.#open()
    this.#items++
    this.#registry.items++
    if (typeof frame === 'string') {
      this.#batch += frame
      if (this.#batch.length >= BATCH_CHARS) this.#flush()
      else if (!this.#flushQueued) {
        this.#flushQueued = true
        process.nextTick(flushBurst, this)
      }
    } else {
      this.#flush()
      this.#write(frame)
    }
    return true
  }

  /** @internal The end of a burst of string frames (see `flushBurst`). */
  flushBurst (): void {
    this.#flushQueued = false
    if (!this.#closed) this.#flush()
  }

  #flush (): void {
    if (this.#batch === '' || this.#dest === undefined) return
    const batch = this.#batch
    this.#batch = ''
    this.#write(batch)
  }

  /** Writes whole frames; a full destination stops the pulling until it drains. */
  #write (frame: Frame): void {
    this.#lastWrite = clock()
    const bytes = typeof frame === 'string' ? Buffer.byteLength(frame) : frame.byteLength
    this.#bytes += bytes
    this.#registry.bytes += bytes
    let taken: boolean
    try {
      taken = (this.#dest as Destination).write(frame)
    } catch (err) {
      this.#writeFailed(err)
      return
    }
    if (!taken && this.#takesMore) {
      this.#takesMore = false
      // a closure made only when the socket is full, not one held by every stream
      ;(this.#dest as Destination).once('drain', () => { this.#onDrain() })
    }
  }

  /**
   * What an `onSend` hook put in front of the response threw on a write. Caught here, not left to the caller: the
   * caller may be a channel's fan-out loop, whose other subscribers must still get the item. The connection is
   * closed; the client reconnects as from any dropped stream.
   */
  #writeFailed (err: unknown): void {
    this.#reply.log.error({ err }, 'SSE stream write failed; connection closed')
    this.#takesMore = false
    this.#reply.raw.destroy()
    this.destroy()
  }

  #onDrain (): void {
    this.#takesMore = true
    if (!this.#pulling && !this.#finished) this.#pull()
  }

  #onError (err: unknown): void {
    this.#pulling = false
    if (this.#finished) {
      // the usual way a generator waiting on request.signal ends once the stream is closed: not an error
      this.#reply.log.debug({ err }, 'SSE source stopped after the stream closed')
      return
    }
    if (this.#failEarly(err, 'source failed')) return
    this.#reply.log.error({ err }, 'SSE source failed; stream ended')
    this.#lastWord(err)
    this.#finish('source failed')
  }

  /**
   * A failure before anything was sent is the route's ordinary error: the SSE headers are taken back and the
   * error is handed to Fastify (as a file stream's missing file is, see lib/fastify-body), which runs the error
   * handler and onError hooks and answers with the error's status. False once the response has started.
   */
  #failEarly (err: unknown, reason: EndReason): boolean {
    const res = this.#reply.raw
    if (!this.#held || res.headersSent || (!this.#direct && this.#body?.takesErrors() !== true)) return false
    this.#release()
    this.#finished = true
    this.#reason = reason
    // still a stream that opened and closed, for app.sse.stats() and the diagnostics channels
    if (reason === 'item refused') this.#registry.itemRefused(this, err as Error)
    if (reason !== 'source failed') this.#stopSource()
    takeBackHeaders(this.#reply)
    this.#reply.log.debug('SSE stream failed before its first item; answered by the error handler')
    // Fastify's path listens for the body's error; on the direct path the reply is not taken over yet
    if (this.#direct) this.#reply.send(err as Error)
    else (this.#body as BodyEvents).failed(err)
    this.destroy()
    return true
  }

  /**
   * The item `onError` maps a failure to, written as the stream's last, so the client learns why it ended (and
   * can decide not to reconnect). A mapper that throws, or returns a bad item, is logged; the stream just ends.
   */
  #lastWord (err: unknown): void {
    if (this.#options.onError === undefined) return
    try {
      const item = this.#options.onError(err, this.#reply.request)
      // encoded with the stream's serializer: a last word is not held to the route's schema
      if (item !== undefined) this.#batch += encodeItem(item, this.#options.serialize)
    } catch (mapErr) {
      this.#reply.log.error({ err: mapErr }, 'SSE onError failed; stream ended without a last item')
    }
  }

  /** @internal Called by the heartbeat wheel when the stream is due: ms until it is due again. */
  heartbeat (now: number): number {
    const hb = this.#options.heartbeat as number
    const idle = now - this.#lastWrite
    if (idle < hb) return hb - idle
    // a stream not yet piped or opened, or whose destination is full, is not idle: it is waiting
    if (this.#dest !== undefined && this.#takesMore && !this.#held) {
      this.#write(HEARTBEAT_FRAME)
      this.#registry.heartbeats++
    }
    return hb
  }

  /** No more pulls; end the body cleanly once piped; stop the source unless it stopped by itself. */
  #finish (reason: EndReason): void {
    this.#finished = true
    this.#reason = reason
    if (reason !== 'source ended') this.#stopSource()
    if (this.#dest !== undefined) this.#end()
  }

  #end (): void {
    // a source that ended before its first item: the head goes out with the end
    if (this.#held) this.#open()
    this.#flush() // the whole frames that came before the end
    if (this.#endDest) (this.#dest as Destination).end()
    this.#body?.ended()
    this.destroy()
  }

  /**
   * The source gave up on a client that reads too slowly (`StreamLink`). A stream whose socket still takes more
   * reads the source's end by itself, after what is in flight; one whose socket is full is reset now, so a
   * stuck client holds nothing on the server, in the kernel neither (it resumes with Last-Event-ID when it
   * comes back).
   */
  disconnect (): boolean {
    if (this.#closed || !resetWhenStuck(this.#reply, this.#takesMore)) return false
    this.#reason = 'too slow'
    return true
  }

  #stopSource (): void {
    abortStreamSignal(this.#reply.request)
    stopIterator(this.#iterator, this.#reply)
  }

  /**
   * Ends the stream because the server is closing: the source is stopped and the body ended cleanly, or
   * the connection reset when the client is not reading (its socket is full). Resolves once the
   * response has closed.
   */
  close (): Promise<void> {
    // made first: resetting the connection may close the response at once
    const responseClosed = this.#whenResponseClosed()
    if (!this.#finished) this.#reason = 'server closing'
    endOrReset(this.#reply, this.#takesMore, () => {
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
    return this.#reply.request
  }

  /** The route's URL pattern (`/rooms/:room`). */
  get route (): string {
    return this.#route
  }

  get reason (): EndReason {
    return this.#reason
  }

  /** Items written so far. */
  get items (): number {
    return this.#items
  }

  /** Bytes of frames written so far. */
  get bytes (): number {
    return this.#bytes
  }

  get durationMs (): number {
    return clock() - this.#startedAt
  }

  /** @internal `ResponseWatcher`: the response closed. */
  responseClosed (): void {
    this.#extras?.resolveResponseClosed?.()
    this.destroy()
  }

  /** Stops everything at once (Fastify calls it when the response closes before the body ended). */
  destroy (): void {
    if (this.#closed) return
    this.#closed = true
    const { heartbeat } = this.#options
    if (heartbeat !== false) leaveHeartbeats(this, heartbeat)
    clearTimeout(this.#extras?.holdTimer)
    this.#registry.delete(this)
    this.#extras?.unwatch?.()
    if (!this.#finished) {
      this.#finished = true
      this.#stopSource()
    }
    this.#reply.log.debug({ items: this.#items, durationMs: this.durationMs, reason: this.#reason }, 'SSE stream closed')
    this.#body?.closed()
  }
}
