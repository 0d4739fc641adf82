import type { FastifyRequest } from 'fastify'
import type { ResetReason } from './channel/backend.js'
import { itemRefused, streamClose, streamOpen } from './diagnostics.js'
import type { EndReason } from './source.js'

// The open streams of one plugin instance and what they have done: plain counters that streams add to as they
// write, so a snapshot costs the same with ten streams open or a hundred thousand. It knows a stream only by what
// the stream reports (`OpenStream`), never the writer itself.

/**
 * Why a request got an answer instead of a stream: `maxConnections` or `maxStreamsPerConnection` reached, new
 * streams coming faster than `admission` lets in, the server closing (all 503), or an `Accept` header that rules
 * out `text/event-stream` (406).
 */
export type RejectReason =
  'max connections' | 'max streams per connection' | 'admission' | 'server closing' | 'not acceptable'

/** A channel as `app.sse.stats()` shows it. */
export interface SseChannelStats {
  name: string
  /** Subscribers in this process now. */
  subscribers: number
  /** Items kept for replay now (in-memory channels); undefined where the history lives elsewhere (Redis). */
  history: number | undefined
  /** The id of the newest item this process knows of (a Redis channel: the newest its reader handed on). */
  position: string
  /** Items handed to this process's subscribers (on Redis: published by any process). */
  items: number
  /** Subscribers cut off as too slow. */
  cutOffs: number
  /** Subscribers that resumed from their Last-Event-ID with an exact replay. */
  replays: number
  /** Subscribers that could not resume (or, on Redis, were told the stream lost items) and got an `sse-reset` item. */
  resets: number
  /** Redis channels: whether the reader is connected (false while it reconnects). */
  connected?: boolean
  /** Redis channels: publishes Redis did not store (the promise rejected). */
  publishFailures?: number
}

/** What `app.sse.stats()` returns: streams open now, and counters since the plugin was registered. */
export interface SseStats {
  /** Streams open now. */
  open: number
  /** Streams open now, by route URL pattern (`/rooms/:room`); routes with none open are left out. */
  openByRoute: Record<string, number>
  /** Streams opened. */
  opened: number
  /** Streams closed, by why. */
  closed: Record<EndReason, number>
  /** Requests answered instead of streamed: 503 (a limit reached, or the server closing) and 406. */
  rejected: number
  /** The same requests, by why. */
  rejectedByReason: Record<RejectReason, number>
  /** Items written (heartbeats and the `retry:` line are not items). */
  items: number
  /** Bytes of frames written: items, heartbeats and `retry:` lines, before compression, TLS and HTTP framing. */
  bytes: number
  /** Items refused by the encoder or the route's schema (each ended its stream). */
  refused: number
  /** Heartbeat comments written. */
  heartbeats: number
  /** Channel subscribers cut off as too slow (every channel, closed ones included). */
  cutOffs: number
  /** Subscribers that resumed with an exact replay. */
  replays: number
  /** Subscribers that got an `sse-reset` item (on reconnecting, or on Redis when the stream lost items), by reason. */
  resets: Record<ResetReason, number>
  /** Channels held now: with subscribers, history, or used within their `idleTimeout` (forgotten ones are not). */
  channelCount: number
  /** The busiest of them (most subscribers first), as many as `stats({ channels })` asks: 100 by default. */
  channels: SseChannelStats[]
}

/** Options of `app.sse.stats()`. */
export interface SseStatsOptions {
  /** How many channel entries to list, busiest first: 0 for none, `Infinity` for all. Default 100. */
  channels?: number
}

/** What the registry reads of an open stream, and how it closes it with the app. */
export interface OpenStream {
  readonly request: FastifyRequest
  /** The route's URL pattern (`/rooms/:room`). */
  readonly route: string
  readonly reason: EndReason
  readonly items: number
  readonly bytes: number
  readonly durationMs: number
  /** Ends the stream because the server is closing; resolves once its response has closed. */
  close: () => Promise<void>
}

/** The open streams of one plugin instance, and the counters of those that closed. */
export class StreamRegistry {
  readonly #open = new Set<OpenStream>()
  readonly #byRoute = new Map<string, number>()
  opened = 0
  rejected = 0
  readonly rejectedByReason: Record<RejectReason, number> = {
    'max connections': 0, 'max streams per connection': 0, admission: 0, 'server closing': 0, 'not acceptable': 0
  }

  items = 0
  bytes = 0
  refused = 0
  heartbeats = 0
  readonly closed: Record<EndReason, number> = {
    'source ended': 0, 'source failed': 0, 'item refused': 0, 'client closed': 0, 'server closing': 0, 'too slow': 0
  }

  get size (): number {
    return this.#open.size
  }

  [Symbol.iterator] (): IterableIterator<OpenStream> {
    return this.#open.values()
  }

  add (stream: OpenStream): void {
    this.#open.add(stream)
    this.opened++
    this.#byRoute.set(stream.route, (this.#byRoute.get(stream.route) ?? 0) + 1)
    if (streamOpen.hasSubscribers) streamOpen.publish({ request: stream.request, route: stream.route })
  }

  delete (stream: OpenStream): void {
    this.#open.delete(stream)
    const left = (this.#byRoute.get(stream.route) as number) - 1
    if (left === 0) this.#byRoute.delete(stream.route)
    else this.#byRoute.set(stream.route, left)
    this.closed[stream.reason]++
    if (streamClose.hasSubscribers) {
      streamClose.publish({
        request: stream.request,
        route: stream.route,
        reason: stream.reason,
        items: stream.items,
        bytes: stream.bytes,
        durationMs: stream.durationMs
      })
    }
  }

  /** A request answered instead of streamed. */
  reject (reason: RejectReason): void {
    this.rejected++
    this.rejectedByReason[reason]++
  }

  /** An item the stream could not encode; it ends with reason 'item refused'. */
  itemRefused (stream: OpenStream, error: Error): void {
    this.refused++
    if (itemRefused.hasSubscribers) itemRefused.publish({ request: stream.request, route: stream.route, error })
  }

  /** The stream counters of a snapshot. */
  snapshot (): Omit<SseStats, 'cutOffs' | 'replays' | 'resets' | 'channelCount' | 'channels'> {
    return {
      open: this.#open.size,
      openByRoute: Object.fromEntries(this.#byRoute),
      opened: this.opened,
      closed: { ...this.closed },
      rejected: this.rejected,
      rejectedByReason: { ...this.rejectedByReason },
      items: this.items,
      bytes: this.bytes,
      refused: this.refused,
      heartbeats: this.heartbeats
    }
  }
}

/** The channel counters of one plugin instance (closed channels included). */
export interface ChannelCounters {
  cutOffs: number
  replays: number
  resets: Record<ResetReason, number>
}
