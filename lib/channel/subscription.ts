import type { FastifyBaseLogger } from 'fastify'
import { encodeAhead, frameSize, type EncodedItem } from '../encode.js'
import { channelUnavailable } from '../errors.js'
import { BoundedQueue, type QueueKind } from '../queue.js'
import type { QueueLimits } from '../slow-client.js'
import { kOpensAtOnce, type StreamLink } from '../source.js'
import type { SseItem } from '../types.js'
import type { ChannelBackend, ChannelItem, Replay, ResetReason } from './backend.js'
import { NO_TAGS, reachable, type Tags } from './target.js'

// A subscription: what one consumer of a channel (usually one stream) has still to receive. Live items are
// pushed into a bounded queue (lib/queue) and pulled one at a time; a subscriber that falls too far behind is cut
// off (lib/slow-client). When a stream writes it (the attach handshake of lib/source), the stream reads it
// synchronously: a live item goes straight into the waiting stream's socket, and a client that is stuck is
// dropped at once.

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

/** What a subscriber needs of its channel. */
export interface SubscriberHost {
  readonly name: string
  readonly log: FastifyBaseLogger
  readonly limits: QueueLimits
  /** Joins the fan-out. */
  attach: (subscriber: Subscriber) => void
  /** Leaves the fan-out. */
  detach: (subscriber: Subscriber) => void
  /** A subscriber's queue is full: it is about to be cut off. */
  overflowed: (items: number, bytes: number) => void
  /** A subscriber with a Last-Event-ID got its replay, or a reset. */
  resumed: (replay: Replay) => void
}

interface Backlog {
  readonly items: ReadonlyArray<SseItem<unknown>>
  at: number
}

/**
 * One subscriber: a replay backlog, then a bounded queue of live items (lib/queue), pulled one at a time. Cut off
 * when it falls too far behind: it takes no more items and ends once what it has is handed out. Internal.
 */
export class Subscriber extends BoundedQueue<ChannelItem> implements ChannelSubscription<unknown> {
  readonly #channel: SubscriberHost
  #signal: AbortSignal | undefined
  /** @internal Its `subscribe({ tags })`, checked. */
  readonly tags: Tags
  /** A replay's items, to hand out before the queue. */
  #backlog: Backlog | undefined
  /** Waits for its replay: live items are queued behind it. */
  #replaying = false

  constructor (channel: SubscriberHost, signal: AbortSignal | undefined, tags: Tags = NO_TAGS) {
    super()
    this.#channel = channel
    this.#signal = signal
    this.tags = tags
  }

  protected get kind (): QueueKind {
    return 'channel subscription'
  }

  protected limits (): QueueLimits {
    return this.#channel.limits
  }

  protected sizeOf (item: ChannelItem): number {
    return frameSize(item)
  }

  protected override held (): boolean {
    return this.#replaying
  }

  /** Joins the channel's fan-out, then asks the backend for what was missed since `lastEventId`. */
  start (lastEventId: SubscribeOptions['lastEventId'], backend: ChannelBackend): void {
    if (this.#signal?.aborted === true) {
      this.end()
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
    this.#replaying = true
    // closures made for an asynchronous replay only, not held by every subscriber
    replay.then(replay => { this.#onReplay(replay) }, (err: unknown) => { this.#onReplayFailed(err) })
  }

  protected override attached (stream: StreamLink): void {
    const signal = this.#signal
    if (signal !== undefined && stream.stopsWith(signal)) {
      // `subscribe({ signal: request.signal })` written by that request's stream: the stream ends it (return())
      // whenever that signal aborts, and an AbortSignal's listener costs an idle subscriber about 0.2 KB
      signal.removeEventListener('abort', this)
      this.#signal = undefined
    }
  }

  /** It runs no user code before its first item: its stream opens at once. */
  get [kOpensAtOnce] (): true {
    return true
  }

  /** A live item, from the channel's fan-out. Never waits. */
  push (item: ChannelItem): void {
    this.offer(item)
  }

  /** Told by the queue before it cuts the subscriber off: the channel counts and logs it. */
  protected overflowed (queued: number, bytes: number): undefined {
    this.#channel.overflowed(queued, bytes)
    return undefined
  }

  /** Cut off: it leaves the fan-out, unless its replay is on its way (see `#resume`). */
  protected onClose (): void {
    // a backend drops the replays of a channel that has no subscriber left
    if (!this.#replaying) this.#channel.detach(this)
  }

  protected override onEnd (): void {
    this.#channel.detach(this)
    this.#signal?.removeEventListener('abort', this)
    this.#backlog = undefined
  }

  /** Ends the subscription: releases the queue and the listener; a waiting `next()` gets done. */
  end (): void {
    this.stop()
  }

  /** Its replay's items first, then the queue. */
  protected override shift (): SseItem<unknown> | undefined {
    const backlog = this.#backlog
    if (backlog === undefined) return super.shift()
    const item = backlog.items[backlog.at++]
    if (backlog.at === backlog.items.length) this.#backlog = undefined
    return item
  }

  /** Replay answered: its items (or a reset) first, then the live items that came after `position`. */
  #resume (replay: Replay): void {
    this.#replaying = false
    if (this.closed) this.#channel.detach(this)
    this.#channel.resumed(replay)
    this.#dropReplayed(replay)
    const items = replay.reset === undefined
      ? reachable(replay.items, this.tags)
      : [resetItem(replay.reset, replay.position)]
    if (items.length > 0) this.#backlog = { items, at: 0 }
    this.release()
  }

  /** Drops the queued live items the replay holds already (an asynchronous read raced them). */
  #dropReplayed (replay: Replay): void {
    const queued = this.queued
    let end = 0
    // those up to `position`
    for (let i = 0; i < queued; i++) {
      if (this.itemAt(i).id !== replay.position) continue
      end = i + 1
      break
    }
    // `position` not queued: the subscriber was cut off before it came, and the replay holds what was queued
    if (end === 0 && queued > 0) {
      const replayed = new Set(replay.items.map(item => item.id))
      while (end < queued && replayed.has(this.itemAt(end).id)) end++
    }
    this.dropFirst(end)
  }

  #onReplay (replay: Replay): void {
    if (!this.ended) this.#resume(replay)
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
