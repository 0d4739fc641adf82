import type { FastifyBaseLogger } from 'fastify'
import { encodeAhead, frameSize, type EncodedItem } from '../encode.js'
import { channelUnavailable } from '../errors.js'
import { BoundedQueue, type QueueKind } from '../queue.js'
import type { QueueLimits } from '../slow-client.js'
import { kOpensAtOnce, type StreamLink } from '../source.js'
import type { SseItem } from '../types.js'
import type { ChannelBackend, ChannelItem, Replay, ReplayPage, ResetReason } from './backend.js'
import { NO_TAGS, reachable, type Tags } from './target.js'

// A subscription: what one consumer of a channel (usually one stream) has still to receive. Live items are
// pushed into a bounded queue (lib/queue) and pulled one at a time; a subscriber that falls too far behind is cut
// off (lib/slow-client). When a stream writes it (the attach handshake of lib/source), the stream reads it
// synchronously: a live item goes straight into the waiting stream's socket, and a client that is stuck is
// dropped at once.

/** A `Last-Event-ID` longer than this is refused without a lookup (reset `invalid`). */
export const MAX_LAST_EVENT_ID = 256

/** Items one page of a replay holds at most (fewer when half the subscriber's `queueItems` is fewer). */
export const REPLAY_PAGE_ITEMS = 256

/**
 * The page a channel with these queue bounds reads its replays in: at most `REPLAY_PAGE_ITEMS` items and half of
 * each bound, so that a subscriber holding a whole page still has room for half its bounds of live items.
 */
export function replayPage (limits: QueueLimits): ReplayPage {
  return {
    items: Math.max(1, Math.min(REPLAY_PAGE_ITEMS, Math.floor(limits.queueItems / 2))),
    bytes: Math.max(1, Math.floor(limits.queueBytes / 2))
  }
}

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
  /** A subscriber with a Last-Event-ID got its replay (every page of it), or a reset. */
  resumed: (served: ReplayServed) => void
}

/** What a subscriber was replayed: `items` in all (those it may see), up to `position`; or its reset. */
export interface ReplayServed {
  readonly reset?: ResetReason | undefined
  readonly items: number
  readonly position: string
}

/** The replay a subscriber is handing out: a page, then the next (read once this one is handed out). */
interface Replaying {
  /** The page (those of its items the subscriber may see). */
  items: readonly ChannelItem[]
  at: number
  /** Bytes of the page's items not handed out yet: they count against the queue bounds. */
  bytes: number
  /** Reads the next page; live items queued meanwhile are dropped then (the pages to come hold them). */
  next: Replay['next']
  /** Items handed out so far, over every page. */
  count: number
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
  /** The replay, handed out before the queue. */
  #replay: Replaying | undefined
  /** Waits for a page of its replay: live items are queued behind it. */
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

  /** The channel's bounds, less what the subscriber holds of its replay. */
  protected limits (): QueueLimits {
    const limits = this.#channel.limits
    const replay = this.#replay
    if (replay === undefined) return limits
    return {
      queueItems: limits.queueItems - (replay.items.length - replay.at),
      queueBytes: limits.queueBytes - replay.bytes
    }
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
      ? invalid(backend)
      : backend.replay(lastEventId, replayPage(this.#channel.limits))
    if (this.#await(replay)) this.release()
  }

  /** A page answered now is taken now (true); one on its way holds the live items back until it comes. */
  #await (replay: Replay | Promise<Replay>): boolean {
    if (!(replay instanceof Promise)) {
      this.#take(replay, true)
      return true
    }
    this.#replaying = true
    // closures made for an asynchronous read only, not held by every subscriber
    replay.then(replay => { this.#onPage(replay) }, (err: unknown) => { this.#onReplayFailed(err) })
    return false
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

  /** Told by the queue before it cuts the subscriber off: the channel counts and logs it (its replay's page too). */
  protected overflowed (queued: number, bytes: number): undefined {
    const replay = this.#replay
    if (replay === undefined) this.#channel.overflowed(queued, bytes)
    else this.#channel.overflowed(queued + replay.items.length - replay.at, bytes + replay.bytes)
    return undefined
  }

  /** Cut off: it leaves the fan-out, unless a page of its replay is on its way (see `#take`). */
  protected onClose (): void {
    // a backend drops the replays of a channel that has no subscriber left
    if (!this.#replaying) this.#channel.detach(this)
  }

  protected override onEnd (): void {
    this.#channel.detach(this)
    this.#signal?.removeEventListener('abort', this)
    this.#replay = undefined
  }

  /** Ends the subscription: releases the queue and the listener; a waiting `next()` gets done. */
  end (): void {
    this.stop()
  }

  /** Its replay's page first, then its next page (read now), then the queue. */
  protected override shift (): SseItem<unknown> | undefined {
    for (;;) {
      const replay = this.#replay
      if (replay === undefined) return super.shift()
      if (replay.at < replay.items.length) {
        const item = replay.items[replay.at++] as ChannelItem
        replay.bytes -= frameSize(item)
        replay.count++
        return item
      }
      const next = replay.next
      if (next === undefined) {
        this.#replay = undefined
        continue
      }
      replay.next = undefined
      // cut off in the middle of its replay: it ends after the page it had (what is queued came later, past a gap)
      if (this.closed) {
        this.dropFirst(this.queued)
        return undefined
      }
      if (!this.#await(next())) return undefined
    }
  }

  /**
   * A page of its replay, or a reset: the page's items first, then (on the last page) the live items after it. `now`:
   * answered within the call that asked for it.
   */
  #take (page: Replay, now: boolean): void {
    this.#replaying = false
    if (this.closed) this.#channel.detach(this)
    // what was queued meanwhile: the pages to come hold it; a page answered now covers everything published so far
    // (ids are matched only after an asynchronous read: publishers may give the same id twice)
    if (now || page.next !== undefined) this.dropFirst(this.queued)
    else this.#dropReplayed(page.position)
    const count = this.#replay?.count ?? 0
    if (page.reset !== undefined) {
      this.#channel.resumed({ reset: page.reset, items: 0, position: page.position })
      this.#hold([resetItem(page.reset, page.position)], undefined, count)
      return
    }
    const items = reachable(page.items, this.tags)
    if (page.next === undefined) this.#channel.resumed({ items: count + items.length, position: page.position })
    this.#hold(items, page.next, count)
  }

  #hold (items: readonly ChannelItem[], next: Replay['next'], count: number): void {
    if (items.length === 0 && next === undefined) {
      this.#replay = undefined
      return
    }
    let bytes = 0
    for (const item of items) bytes += frameSize(item)
    this.#replay = { items, at: 0, bytes, next, count }
  }

  /**
   * Drops the queued live items up to `position`, which the last page holds already (an asynchronous read raced
   * them). When `position` is not queued, it came before the subscriber joined (what is queued is newer), or the
   * subscriber was cut off before it came. The page cannot hold the head of the queue then: it would hold that head,
   * what was queued after it and the item that cut the subscriber off, more than the queue bounds (no page is held
   * while a read is in flight), whereas a page holds at most half of them.
   */
  #dropReplayed (position: string): void {
    const queued = this.queued
    for (let i = 0; i < queued; i++) {
      if (this.itemAt(i).id !== position) continue
      this.dropFirst(i + 1)
      return
    }
  }

  #onPage (replay: Replay): void {
    if (this.ended) return
    this.#take(replay, false)
    this.release()
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

/** The reset of a `lastEventId` refused before any lookup, at the backend's reset id (once it knows it). */
function invalid (backend: ChannelBackend): Replay | Promise<Replay> {
  const position = backend.resetId?.() ?? backend.position()
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
