import type { FastifyBaseLogger } from 'fastify'
import type { EncodedItem, FrameParts } from '../encode.js'
import type { SseItem } from '../types.js'

// What a channel needs from the place its history lives: the in-memory ring (./memory), or a Redis stream
// (./redis: one XADD per publish; one XREAD BLOCK reader per backend per process, over the channels that have
// local subscribers). The replay rules (reset, the merge of live items with a replay that is still being read,
// the queue bounds) live in ./subscription, once.

/** A published item as every subscriber receives it: its fields with its final id, and its frame encoded once. */
export type ChannelItem = EncodedItem<SseItem<unknown> & { id: string }>

/**
 * How a backend encodes what it stores, with the channel's serializer. Both throw an `SseError` for a bad item,
 * and then nothing must have been stored or delivered.
 */
export interface ChannelEncoder {
  /** The item with its final id, encoded once: what every subscriber is handed. */
  item: (item: SseItem<unknown> & { id: string }) => ChannelItem
  /** The item (without an id), encoded around its id line, for a store that gives the id: see `joinFrame`. */
  parts: (item: SseItem<unknown>) => FrameParts
}

/**
 * Why a subscriber cannot resume where its `lastEventId` says:
 * - `expired`: an id this channel issued, older than the history it still keeps;
 * - `unknown`: not an id this channel issued (another process, another channel, a restarted server, garbage);
 * - `invalid`: refused before any lookup (not a string, or longer than the bound).
 */
export type ResetReason = 'expired' | 'unknown' | 'invalid'

/**
 * How much one page of a replay holds at most: `items`, and `bytes` of encoded frames (a page holds at least one item,
 * however big). A subscriber reads its replay one page at a time, the next once it has handed this one out, and what
 * it holds of it counts against its queue bounds (see ./subscription's `replayPage`).
 */
export interface ReplayPage {
  readonly items: number
  readonly bytes: number
}

/** The answer to "what did I miss after this id?": one page of it. */
export interface Replay {
  /** Set when the subscriber cannot resume: it then gets one `sse-reset` item instead of `items`. */
  readonly reset?: ResetReason
  /**
   * What was published after the id, oldest first, at most one page (`ReplayPage`); empty on reset. Never changed
   * once answered: subscribers that resume from the same place may be handed the same array.
   */
  readonly items: readonly ChannelItem[]
  /**
   * Where the subscriber is once it has `items`. On the last page: the newest id at the time of the read; live
   * items delivered up to and including it while an asynchronous read was in flight are dropped (no duplicate). On
   * a page that `next` follows: the id of the page's last item. On a reset: the id the `sse-reset` item carries (an
   * id that names no item the subscriber may not see, from which a client resumes without loss).
   */
  readonly position: string
  /**
   * Set when more items follow this page: reads the next page, after `position`. Live items delivered meanwhile are
   * dropped by the subscriber: the next pages hold them (or a reset, when they were removed before they were read).
   */
  readonly next?: () => Replay | Promise<Replay>
}

/** Options of a shared channel's `publish(item, options)`. */
export interface PublishOptions {
  /**
   * Makes a retry safe: a publish with the key of one stored within the backend's idempotency window stores
   * nothing more and resolves to that one's id. Give one key per item (e.g. the id of the message in your
   * database) and publish again with it after a rejection that says the item may or may not have been published.
   * A non-empty string of at most 256 characters.
   */
  idempotencyKey?: string
}

/** Hands a stored item to the channel for fan-out to this process's subscribers. */
export type Deliver = (item: ChannelItem) => void

/**
 * Tells the channel that its history lost items its live subscribers may not have had (a Redis that restarted
 * without its data): each of this process's subscribers gets one `sse-reset` item with `position` as its `id`,
 * then the items delivered after it.
 */
export type Reset = (reason: ResetReason, position: string) => void

/**
 * One channel's storage. `append` stores an item and, once it is stored, hands it to `deliver` (the in-memory
 * backend does both synchronously; a Redis backend delivers what its reader sees, from every process).
 * `replay` may answer asynchronously: each subscription then buffers live items and merges them by `position`.
 */
export interface ChannelBackend<Id extends string | Promise<string> = string | Promise<string>> {
  /**
   * Stores the item with its id (`item.id`, or a fresh monotonic one when absent) and returns the id, encoding
   * it with `encode` (a refusal then stores and delivers nothing). A backend that stores elsewhere (Redis)
   * returns a promise of the id, and says so with `asynchronous`.
   */
  append: (item: SseItem<unknown>, encode: ChannelEncoder, options?: PublishOptions) => Id
  /**
   * `append` returns a promise: the channel then turns its refusals (a bad item, a closed channel) into a
   * rejection of that promise instead of throwing them.
   */
  readonly asynchronous?: boolean
  /**
   * `deliver` and `replay` hand out the very objects `encode.item` made, so what the channel keeps with them (a
   * publish's `to`/`exclude`) holds for live items and replays alike. A publish that targets is refused on a
   * backend without it (one that rebuilds items from a store, as Redis does). Such a backend answers `replay`
   * synchronously: an asynchronous replay is merged with live items by `position`, which a subscriber the item
   * at `position` did not target never received live.
   */
  readonly targeting?: boolean
  /**
   * What was published after `lastEventId` (a string of bounded length), one page (at most `page`) at a time. Never
   * throws for an unknown id.
   */
  replay: (lastEventId: string, page: ReplayPage) => Replay | Promise<Replay>
  /**
   * The newest id: the `id` the newest item was delivered with (so an asynchronous replay's `position` can be
   * matched against live items), or any id `replay` accepts as "nothing missed" when there is no such item. A
   * promise while the backend does not know it yet (a Redis reader that has not found where its stream is).
   */
  position: () => string | Promise<string>
  /**
   * The id a reset carries when `position()` may name an item some subscriber may not see (a targeting backend's
   * newest item): one that names no item and resumes without loss. Default: `position()`.
   */
  resetId?: () => string
  /**
   * Called with `true` when the channel gets its first local subscriber and with `false` when it loses its last:
   * a backend that reads a shared store reads this channel only in between.
   */
  subscribed?: (active: boolean) => void
  /**
   * The channel is idle (it has no subscriber) and its registry lets go of it: the backend lets go of what it holds
   * for it, so that nothing shared (its backend's names, readers, page reads) keeps the channel reachable. The
   * in-memory one drops its history and keeps the ids going (the next item continues from the last); a shared one
   * loses nothing, its history is in the store. A channel whose backend has none is kept until `close()`.
   */
  forget?: () => void
  /**
   * A forgotten channel the app still held is taken back: the backend serves it again as before it was forgotten.
   * Throws (and the channel stays forgotten) when its backend serves another channel of its name by then.
   */
  rejoined?: () => void
  /** Releases what the backend holds (history, connections); a promise when that takes a while (a connection). */
  close: () => void | Promise<void>
  /**
   * What `app.sse.stats()` shows of this backend: its history length, a shared one's connection state. Never
   * waits: a backend whose `position()` may answer a promise gives here the newest id it knows now.
   */
  stats?: () => BackendStats
}

/** A backend's part of a channel's `app.sse.stats()` entry. */
export interface BackendStats {
  /** The newest id known now, when `position()` may have to wait for it. */
  position?: string
  /** Items kept for replay now, when the backend knows it without asking elsewhere. */
  history?: number
  /** A backend with a connection (Redis): whether it is up. */
  connected?: boolean
  /** A backend that stores elsewhere: publishes that were not stored. */
  publishFailures?: number
}

/** The history bounds of a channel, validated. */
export interface HistoryOptions {
  /** Items kept for replay (0: none; a client can still resume from the newest id without loss). */
  history: number
  /** Milliseconds an item is kept for replay; `Infinity`: no age limit. */
  historyMaxAge: number
}

/**
 * Creates the backend of one channel. `Id` is what `append` (and so the channel's `publish`) returns: `string`
 * for a backend that stores in this process, `Promise<string>` for one that stores elsewhere (Redis). `reset`
 * is for a backend whose store can lose items after it delivered what came before them (the in-memory one cannot).
 */
export type ChannelBackendFactory<Id extends string | Promise<string> = string | Promise<string>> =
  (name: string, options: HistoryOptions, deliver: Deliver, log: FastifyBaseLogger, reset: Reset) =>
  ChannelBackend<Id>
