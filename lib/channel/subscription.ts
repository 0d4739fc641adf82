import type { FastifyBaseLogger } from 'fastify'
import { encodeAhead, frameSize, type EncodedItem } from '../encode.js'
import { channelUnavailable } from '../errors.js'
import { WAIT, kAttachStream, kOpensAtOnce, type AttachableSource, type StreamLink, type SyncSource } from '../source.js'
import type { SseItem } from '../types.js'
import type { ChannelBackend, ChannelItem, Replay, ResetReason } from './backend.js'
import { NO_TAGS, reachable, type Tags } from './target.js'

// A subscription: what one consumer of a channel (usually one stream) has still to receive. Live items are
// pushed into a bounded queue and pulled one at a time; a subscriber that falls too far behind is cut off.
// When a stream writes it (the attach handshake of lib/stream), the stream reads it synchronously: a live item
// goes straight into the waiting stream's socket, and a client that is stuck is dropped at once.

/** A `Last-Event-ID` longer than this is refused without a lookup (reset `invalid`). */
export const MAX_LAST_EVENT_ID = 256

/** Options of `channel.subscribe()`. */
export interface SubscribeOptions {
  /**
   * The client's `Last-Event-ID` (pass `request.headers['last-event-id']` as is): what it missed after that id
   * is replayed first. An id the channel cannot resume from gives one `sse-reset` item instead.
   */
  lastEventId?: string | readonly string[] | undefined
  /** Ends the subscription when aborted (pass `request.signal`). */
  signal?: AbortSignal | undefined
  /**
   * Who this subscriber is, for targeted publishes (`publish(item, { to, exclude })`): e.g. `user:42`,
   * `role:admin`, the connection's own id. Non-empty strings. Default: none (only untargeted items, and those
   * that only `exclude`, reach it).
   */
  tags?: string | readonly string[] | undefined
}

/**
 * The `data` of the one `event: 'sse-reset'` item a subscriber gets first when it cannot resume from its
 * `lastEventId`, or later on a Redis channel whose stream lost items (the client should reload its state). That
 * item's `id` is the channel's position.
 */
export interface SseResetData {
  reason: ResetReason
}

/**
 * What `subscribe()` returns: items published after the subscription (after a replay), until it ends. Its
 * items are `SseItem<T>`, except an `sse-reset` one (first, or on Redis after a loss) whose data is `SseResetData`.
 */
export type ChannelSubscription<T> = AsyncIterableIterator<SseItem<T | SseResetData>>

const ENDED: IteratorReturnResult<undefined> = Object.freeze({ value: undefined, done: true })

/** What a subscriber needs of its channel. */
export interface SubscriberHost {
  readonly name: string
  readonly log: FastifyBaseLogger
  readonly limits: { readonly queueItems: number, readonly queueBytes: number }
  /** Joins the fan-out. */
  attach: (subscriber: Subscriber) => void
  /** Leaves the fan-out. */
  detach: (subscriber: Subscriber) => void
  /** A subscriber's queue is full: it is about to be cut off. */
  overflowed: (items: number, bytes: number) => void
  /** A subscriber with a Last-Event-ID got its replay, or a reset. */
  resumed: (replay: Replay) => void
}

/** The empty queue, shared: a subscriber whose stream takes every item never has one. */
const NO_QUEUE: Array<ChannelItem | undefined> = Object.freeze([]) as unknown as Array<ChannelItem | undefined>

// A subscriber's state, as bits of one field (an idle server holds a subscriber per connection).
/** Waits for its replay: live items are queued behind it. */
const REPLAYING = 1
/** Fell too far behind: takes no more items, ends once the queue is delivered. */
const CUT_OFF = 2
/** Ended. */
const DONE = 4
/** The stream took everything and waits for `deliver()`: it holds no promise meanwhile. */
const STREAM_WAITS = 8

interface Backlog {
  readonly items: ReadonlyArray<SseItem<unknown>>
  at: number
}

/** A `next()` not answered yet, so a second call made before it settles queues behind it instead of replacing it. */
interface PendingNext {
  readonly promise: Promise<IteratorResult<SseItem<unknown>, undefined>>
  wake: (result: IteratorResult<SseItem<unknown>, undefined>) => void
}

/** One subscriber: a replay backlog, then a bounded queue of live items, pulled one at a time. Internal. */
export class Subscriber implements ChannelSubscription<unknown>, AttachableSource, SyncSource {
  readonly #channel: SubscriberHost
  #signal: AbortSignal | undefined
  /** @internal Its `subscribe({ tags })`, checked. */
  readonly tags: Tags
  /** A replay's items, to hand out before the queue. */
  #backlog: Backlog | undefined
  #queue = NO_QUEUE
  #head = 0
  #bytes = 0
  /** The bits above (`REPLAYING`, …). */
  #flags = 0
  /** Set when a stream writes this subscription: where live items go, and how to drop a client too far behind. */
  #stream: StreamLink | undefined
  /** The pending `next()`, when the subscription is iterated rather than read by its stream. */
  #pending: PendingNext | undefined

  constructor (channel: SubscriberHost, signal: AbortSignal | undefined, tags: Tags = NO_TAGS) {
    this.#channel = channel
    this.#signal = signal
    this.tags = tags
  }

  #has (flag: number): boolean {
    return (this.#flags & flag) !== 0
  }

  #set (flag: number, on: boolean): void {
    this.#flags = on ? this.#flags | flag : this.#flags & ~flag
  }

  /** Joins the channel's fan-out, then asks the backend for what was missed since `lastEventId`. */
  start (lastEventId: SubscribeOptions['lastEventId'], backend: ChannelBackend): void {
    if (this.#signal?.aborted === true) {
      this.#set(DONE, true)
      return
    }
    this.#signal?.addEventListener('abort', this)
    this.#channel.attach(this)
    if (lastEventId === undefined || lastEventId === '') return
    const replay = typeof lastEventId !== 'string' || lastEventId.length > MAX_LAST_EVENT_ID
      ? invalid(backend.position())
      : backend.replay(lastEventId)
    if (!(replay instanceof Promise)) {
      this.#resume(replay)
      return
    }
    this.#set(REPLAYING, true)
    // closures made for an asynchronous replay only, not held by every subscriber
    replay.then(replay => { this.#onReplay(replay) }, (err: unknown) => { this.#onReplayFailed(err) })
  }

  get queued (): number {
    return this.#queue.length - this.#head
  }

  [Symbol.asyncIterator] (): this {
    return this
  }

  next (): Promise<IteratorResult<SseItem<unknown>, undefined>> {
    const item = this.#ready()
    if (item !== undefined) return Promise.resolve({ value: item, done: false })
    if (this.#has(DONE)) return Promise.resolve(ENDED)
    if (this.#pending !== undefined) return this.#pending.promise.then(() => this.next())
    let wake!: PendingNext['wake']
    const promise = new Promise<IteratorResult<SseItem<unknown>, undefined>>(resolve => { wake = resolve })
    this.#pending = { promise, wake }
    return promise
  }

  return (): Promise<IteratorResult<SseItem<unknown>, undefined>> {
    this.end()
    return Promise.resolve(ENDED)
  }

  /** Whether a stream writes this subscription: it hands its items to that stream only (see `subscriptionTaken`). */
  static taken (subscriber: Subscriber): boolean {
    return subscriber.#stream !== undefined
  }

  [kAttachStream] (stream: StreamLink): SyncSource {
    this.#stream = stream
    const signal = this.#signal
    if (signal !== undefined && stream.stopsWith(signal)) {
      // `subscribe({ signal: request.signal })` written by that request's stream: the stream ends it (return())
      // whenever that signal aborts, and an AbortSignal's listener costs an idle subscriber about 0.2 KB
      signal.removeEventListener('abort', this)
      this.#signal = undefined
    }
    return this
  }

  /** @internal `SyncSource`: the stream that writes this subscription takes the next item, or waits. */
  take (): SseItem<unknown> | typeof WAIT | undefined {
    const item = this.#ready()
    if (item !== undefined) return item
    if (this.#has(DONE)) return undefined
    this.#set(STREAM_WAITS, true)
    return WAIT
  }

  /** It runs no user code before its first item: its stream opens at once. */
  get [kOpensAtOnce] (): true {
    return true
  }

  /** A live item, from the channel's fan-out. Never waits. */
  push (item: ChannelItem): void {
    if (this.#has(STREAM_WAITS) && !this.#has(REPLAYING)) {
      // the stream writes it within this call: nothing is queued, no promise is made
      this.#set(STREAM_WAITS, false)
      ;(this.#stream as StreamLink).deliver(item)
      return
    }
    if (this.#pending !== undefined && !this.#has(REPLAYING)) {
      this.#settle({ value: item, done: false })
      return
    }
    if (this.#has(CUT_OFF)) return // cut off while its replay is on its way: it takes nothing more (see #cut)
    const size = frameSize(item)
    const queued = this.queued
    const { queueItems, queueBytes } = this.#channel.limits
    if (queued >= queueItems || (queued > 0 && this.#bytes + size > queueBytes)) {
      this.#channel.overflowed(queued, this.#bytes)
      // A stream whose client is stuck drops it, and this queue, now. Otherwise what is queued is still
      // delivered, then the subscription ends: the client resumes from the history by Last-Event-ID.
      if (this.#stream?.disconnect() === true) this.end()
      else this.#cut()
      return
    }
    if (this.#queue === NO_QUEUE) this.#queue = [item]
    else this.#queue.push(item)
    this.#bytes += size
  }

  /**
   * The next item, if one is ready. A cut-off subscriber ends once it has handed out what it had (cut off during a
   * replay: the replay, then what is queued, still comes first).
   */
  #ready (): SseItem<unknown> | undefined {
    const item = this.#shift()
    if (item === undefined && this.#has(CUT_OFF) && !this.#has(REPLAYING)) this.end()
    return item
  }

  #cut (): void {
    this.#set(CUT_OFF, true)
    // while its replay is on its way it stays in the fan-out until the replay comes: a backend drops the replays
    // of a channel that has no subscriber left
    if (!this.#has(REPLAYING)) this.#channel.detach(this)
  }

  /** Ends the subscription: releases the queue and the listener; a waiting `next()` gets done. */
  end (): void {
    if (this.#has(DONE)) return
    this.#set(DONE, true)
    this.#channel.detach(this)
    this.#signal?.removeEventListener('abort', this)
    this.#queue = NO_QUEUE
    this.#head = 0
    this.#bytes = 0
    this.#backlog = undefined
    this.#settle(ENDED)
    if (this.#has(STREAM_WAITS)) {
      this.#set(STREAM_WAITS, false)
      ;(this.#stream as StreamLink).deliver()
    }
  }

  /** Resolves the pending `next()`, if any. */
  #settle (result: IteratorResult<SseItem<unknown>, undefined>): void {
    const pending = this.#pending
    this.#pending = undefined
    pending?.wake(result)
  }

  #shift (): SseItem<unknown> | undefined {
    if (this.#has(REPLAYING)) return undefined
    const backlog = this.#backlog
    if (backlog !== undefined) {
      const item = backlog.items[backlog.at++]
      if (backlog.at === backlog.items.length) this.#backlog = undefined
      return item
    }
    if (this.#head === this.#queue.length) return undefined
    const item = this.#queue[this.#head] as ChannelItem
    this.#queue[this.#head++] = undefined
    this.#bytes -= frameSize(item)
    if (this.#head === this.#queue.length) {
      this.#queue = NO_QUEUE
      this.#head = 0
    }
    return item
  }

  /** Replay answered: its items (or a reset) first, then the live items that came after `position`. */
  #resume (replay: Replay): void {
    this.#set(REPLAYING, false)
    if (this.#has(CUT_OFF)) this.#channel.detach(this)
    this.#channel.resumed(replay)
    this.#dropReplayed(replay)
    const items = replay.reset === undefined
      ? reachable(replay.items, this.tags)
      : [resetItem(replay.reset, replay.position)]
    if (items.length > 0) this.#backlog = { items, at: 0 }
    if (this.#has(STREAM_WAITS)) {
      const item = this.#shift()
      if (item === undefined) return
      this.#set(STREAM_WAITS, false)
      ;(this.#stream as StreamLink).deliver(item)
      return
    }
    const item = this.#pending === undefined ? undefined : this.#shift()
    if (item !== undefined) this.#settle({ value: item, done: false })
  }

  /** Drops the queued live items the replay holds already (an asynchronous read raced them). */
  #dropReplayed (replay: Replay): void {
    const queue = this.#queue
    let end = this.#head
    // those up to `position`
    for (let i = end; i < queue.length; i++) {
      if ((queue[i] as ChannelItem).id !== replay.position) continue
      end = i + 1
      break
    }
    // `position` not queued: the subscriber was cut off before it came, and the replay holds what was queued
    if (end === this.#head && end < queue.length) {
      const replayed = new Set(replay.items.map(item => item.id))
      while (end < queue.length && replayed.has((queue[end] as ChannelItem).id)) end++
    }
    for (let j = this.#head; j < end; j++) this.#bytes -= frameSize(queue[j] as ChannelItem)
    if (end === this.#head) return
    this.#queue = queue.slice(end)
    this.#head = 0
  }

  #onReplay (replay: Replay): void {
    if (!this.#has(DONE)) this.#resume(replay)
  }

  #onReplayFailed (err: unknown): void {
    // the backend's own error (Redis's, say) is the cause: what is logged carries the catalogue's code
    const failure = channelUnavailable(this.#channel.name, `the replay failed: ${(err as Error).message}`, err)
    this.#channel.log.error({ err: failure, channel: this.#channel.name }, 'SSE channel replay failed; subscription ended')
    this.end()
  }

  /** @internal The `signal` aborted: the subscriber is its own listener object, so it holds no closure for it. */
  handleEvent (): void {
    this.end()
  }
}

/** A subscription a stream writes already: a second stream would take its items from the first. */
export function subscriptionTaken (source: unknown): boolean {
  return source instanceof Subscriber && Subscriber.taken(source)
}

/** The reset of a `lastEventId` refused before any lookup, at the backend's position (once it knows it). */
function invalid (position: string | Promise<string>): Replay | Promise<Replay> {
  if (typeof position === 'string') return { reset: 'invalid', items: [], position }
  return position.then(at => ({ reset: 'invalid', items: [], position: at }))
}

/**
 * Encoded here with JSON, like a channel's items: a typed route's serializer or validator knows nothing of
 * `sse-reset`, and must not refuse it (the client would reconnect into the same refusal) or strip its reason.
 */
export function resetItem (reason: ResetReason, position: string): EncodedItem<SseItem<SseResetData> & { id: string }> {
  return encodeAhead({ id: position, event: 'sse-reset', data: { reason } })
}
