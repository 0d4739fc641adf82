import type { FastifyBaseLogger } from 'fastify'
import type {
  ChannelBackend, ChannelBackendFactory, ChannelEncoder, ChannelItem, PublishOptions,
  ResetReason
} from './backend.js'
import { ForgottenChannels, IdleChannels, largest, type ChannelHome as Home, type IdleClock } from './lifecycle.js'
import { memoryBackend } from './memory.js'
import {
  Subscriber, resetItem, type ChannelSubscription, type ReplayServed, type SubscribeOptions, type SubscriberHost
} from './subscription.js'
import { TagIndex, resolveTags, resolveTarget, setTarget, targetOf, type Target, type TargetOptions } from './target.js'
import { encodeAhead, encodeItem, encodeParts, refuseFieldless } from '../encode.js'
import { cutOff, replayServed, resetServed } from '../diagnostics.js'
import { channelClosed, invalidOption, type SseError } from '../errors.js'
import {
  StreamRegistry, type ChannelCounters, type SseChannelStats, type SseStats, type SseStatsOptions
} from '../metrics.js'
import { refuseNonObject, refuseUnknown } from '../options.js'
import {
  DEFAULTS, OPTION_NAMES, SUBSCRIBE_OPTIONS, resolveChannelOptions, statsChannels, type ChannelOptions,
  type ResolvedChannelOptions, type SharedChannelOptions
} from './options.js'
import type { SseItem, SseSerializer } from '../types.js'

export { MAX_LAST_EVENT_ID, type ChannelSubscription, type SseResetData, type SubscribeOptions } from './subscription.js'
export type { TargetOptions } from './target.js'
export type { ChannelOptions, SharedChannelOptions } from './options.js'

// Broadcast: one writer, many listeners. Each published item is encoded once by the channel and the same
// frame is handed to every subscriber's bounded queue; the stream (lib/stream, lib/writer) writes those bytes as they
// are. Publishing never waits for anyone: a subscriber whose queue is full is cut off and resumes by
// Last-Event-ID when its client reconnects.

/**
 * A broadcast channel: `app.sse.channel<T>(name, options)`. `Published` is what `publish` returns: the id
 * (`string`) for an in-memory channel, a promise of it for a shared one (Redis), which stores it first.
 */
export interface Channel<T = unknown, Published extends string | Promise<string> = string> {
  readonly name: string
  /** Live subscribers. */
  readonly size: number
  /** Whether `close()` was called (or the app closed). */
  readonly closed: boolean
  /**
   * Encodes the item once, keeps it in the history and hands it to every subscriber; returns its id (a new
   * monotonic one when the item has none). Throws the encoder's `TypeError` for a bad item, which then reaches
   * no subscriber. Never waits for a subscriber. On a shared channel (Redis) it returns a promise of the id
   * (the stream's), resolved once the item is stored, and rejects instead of throwing. An in-memory channel
   * takes `{ to, exclude }`: only the subscribers whose `tags` match get the item, live and in replays.
   */
  publish: [Published] extends [Promise<string>]
    ? (item: SseItem<T>, options?: PublishOptions) => Published
    : (item: SseItem<T>, options?: TargetOptions) => Published
  /**
   * Items published from now on, after those missed since `lastEventId`. Ends when `signal` aborts. On a
   * forgotten shared channel whose name another app of the backend took meanwhile, throws `FST_SSE_INVALID_OPTION`
   * (`field: 'backend'`) until that channel is closed or forgotten.
   */
  subscribe: (options?: SubscribeOptions) => ChannelSubscription<T>
  /** Ends every subscription (their streams end) and forgets the history; the name can be used again. */
  close: () => void
}

type ChannelHome = Home<SseChannel<unknown>>

/** `app.sse`: the plugin's channels. */
export interface SseChannels {
  /**
   * The channel of that name, created on first use; the same object for the same name while it is in use or
   * held. With a shared `backend` (Redis), its items reach the subscribers of every process and `publish` returns
   * a promise.
   */
  channel<T = unknown>(name: string, options: SharedChannelOptions): Channel<T, Promise<string>>
  /** The channel of that name, created on first use; the same object for the same name while it is in use or held. */
  channel<T = unknown>(name: string, options?: ChannelOptions): Channel<T>
  /** Streams' counters, channels' totals, and the busiest channels (`channels`: how many; default 100). */
  stats: (options?: SseStatsOptions) => SseStats
}

function isItemObject (item: unknown): item is SseItem<unknown> {
  return item !== null && typeof item === 'object' && !Array.isArray(item)
}

export class SseChannel<T> implements Channel<T, string | Promise<string>>, SubscriberHost {
  readonly name: string
  readonly limits: ResolvedChannelOptions
  readonly log: FastifyBaseLogger
  /** The factory the backend came from: a second `channel(name, { backend })` must name the same one. */
  readonly backendFactory: ChannelBackendFactory
  /** Settles once the backend has released what it holds (after `close()`). */
  closing: Promise<void> = Promise.resolve()
  readonly #backend: ChannelBackend
  readonly #serialize: SseSerializer
  readonly #subscribers = new Set<Subscriber>()
  /** The tagged subscribers by tag: a targeted publish reaches those of its tags without looking at the others. */
  readonly #tags = new TagIndex<Subscriber>()
  readonly #home: ChannelHome
  readonly #counters: ChannelCounters
  #closed = false
  #registered = true
  /**
   * Whether a client may hold one of its ids (an item was published, or a subscriber was given a replay's or a reset's
   * position): then it is forgotten only once idle, so a client that comes back soon resumes instead of being reset.
   * Always on a shared channel (its `append` answers later): its ids are in its store, issued by every process.
   */
  #idsGiven: boolean
  /** Set by the first targeted publish: until then the fan-out checks no subscriber's tags, and no index is kept. */
  #targeted = false
  #items = 0
  #cutOffs = 0
  #replays = 0
  #resets = 0

  constructor (
    name: string, limits: ResolvedChannelOptions, context: ChannelContext, backend: ChannelBackendFactory,
    home: ChannelHome
  ) {
    this.name = name
    this.limits = limits
    this.log = context.log
    this.backendFactory = backend
    this.#serialize = context.serialize
    this.#home = home
    this.#counters = context.counters
    const history = { history: limits.history, historyMaxAge: limits.historyMaxAge }
    this.#backend = backend(name, history, this.#deliver, context.log, this.#reset)
    this.#idsGiven = this.#backend.asynchronous === true
  }

  get size (): number {
    return this.#subscribers.size
  }

  get closed (): boolean {
    return this.#closed
  }

  /** @internal Whether the registry holds this object: false once forgotten (idle) or closed. */
  get registered (): boolean {
    return this.#registered
  }

  /** @internal Forgotten once it has been idle that long; never when its backend has no forget. */
  get idleTimeout (): number {
    return this.#backend.forget === undefined ? Infinity : this.limits.idleTimeout
  }

  publish (item: SseItem<T>, options?: PublishOptions & TargetOptions): string | Promise<string> {
    if (this.#backend.asynchronous !== true) return this.#append(item, options)
    try {
      return this.#append(item, options)
    } catch (err) {
      return Promise.reject(err)
    }
  }

  subscribe (options: SubscribeOptions = {}): ChannelSubscription<T> {
    refuseNonObject(options, '{ lastEventId, signal, tags }', 'subscribe()')
    refuseUnknown(options, SUBSCRIBE_OPTIONS, 'subscribe()')
    if (!this.#registered && !this.#closed) this.#home.rejoin(this)
    const subscriber = new Subscriber(this, options.signal, resolveTags(options.tags))
    if (this.#closed) subscriber.end()
    else subscriber.start(options.lastEventId, this.#backend)
    return subscriber as ChannelSubscription<T>
  }

  close (): void {
    if (this.#closed) return
    this.#closed = true
    this.#registered = false
    for (const subscriber of this.#subscribers) subscriber.end()
    this.closing = Promise.resolve(this.#backend.close())
    this.#home.closed(this)
  }

  /** @internal Let go by its registry: it keeps its options and ids going (an in-memory one not its history). */
  forgotten (): void {
    this.#registered = false
    this.#backend.forget?.()
  }

  /**
   * @internal Taken back by its registry (asked for by name, or published on or subscribed to, while reachable).
   * Throws, and stays forgotten, when its backend serves another channel of its name by then.
   */
  rejoined (): void {
    this.#backend.rejoined?.()
    this.#registered = true
  }

  /** @internal */
  attach (subscriber: Subscriber): void {
    this.#subscribers.add(subscriber)
    this.#tags.add(subscriber)
    if (this.#subscribers.size !== 1) return
    this.#backend.subscribed?.(true)
    this.#home.busy(this)
  }

  /** @internal */
  detach (subscriber: Subscriber): void {
    if (!this.#subscribers.delete(subscriber)) return
    this.#tags.delete(subscriber)
    if (this.#subscribers.size !== 0) return
    this.#backend.subscribed?.(false)
    if (this.#closed) return
    if (this.#idsGiven) this.#home.idle(this)
    else this.#home.forget(this)
  }

  /** @internal A subscriber's queue is full: it is about to be cut off. */
  overflowed (items: number, bytes: number): void {
    this.#cutOffs++
    this.#counters.cutOffs++
    if (cutOff.hasSubscribers) cutOff.publish({ channel: this.name, queuedItems: items, queuedBytes: bytes })
    const { queueItems, queueBytes } = this.limits
    this.log.warn({ channel: this.name, queuedItems: items, queuedBytes: bytes, queueItems, queueBytes },
      'SSE channel subscriber too slow (queue full); disconnected')
  }

  /** @internal A subscriber with a Last-Event-ID got its replay, or a reset. */
  resumed ({ reset, items, position }: ReplayServed): void {
    // the subscriber's client now holds `position`: it resumes from there if it comes back within idleTimeout
    this.#idsGiven = true
    if (reset === undefined) {
      this.#replays++
      this.#counters.replays++
      if (replayServed.hasSubscribers) replayServed.publish({ channel: this.name, items, position })
    } else {
      this.#countReset(reset, position)
    }
  }

  #countReset (reason: ResetReason, position: string): void {
    this.#resets++
    this.#counters.resets[reason]++
    if (resetServed.hasSubscribers) resetServed.publish({ channel: this.name, reason, position })
  }

  /** @internal This channel's entry in `app.sse.stats()`. */
  stats (): SseChannelStats {
    const backend = this.#backend.stats?.()
    return {
      name: this.name,
      subscribers: this.#subscribers.size,
      history: undefined,
      // a backend whose position() may wait (Redis) gives its position in stats(): this one never waits
      position: backend?.position ?? this.#backend.position() as string,
      items: this.#items,
      cutOffs: this.#cutOffs,
      replays: this.#replays,
      resets: this.#resets,
      ...backend
    }
  }

  /**
   * @internal The first option given that differs from this channel's (a second `channel(name, options)` must
   * not silently differ).
   */
  differsFrom (options: ChannelOptions | SharedChannelOptions): keyof ResolvedChannelOptions | undefined {
    return OPTION_NAMES.find(key => options[key] !== undefined && options[key] !== this.limits[key])
  }

  #append (item: SseItem<T>, options?: PublishOptions & TargetOptions): string | Promise<string> {
    // (here, so that a shared backend that cannot take it back rejects the publish instead of throwing)
    if (!this.#registered && !this.#closed) this.#home.rejoin(this)
    // a non-object is refused by the encoder, with the message every other refusal has
    if (!isItemObject(item)) encodeItem(item)
    refuseFieldless(item)
    const target = resolveTarget(options)
    if (this.#closed) throw channelClosed(this.name)
    this.#idsGiven = true
    // published on with nobody listening: its idle time starts again (a cheap check on the path of every publish)
    if (this.#subscribers.size === 0) this.#home.idle(this)
    if (target === undefined) return this.#backend.append(item, this.#encode, options)
    if (this.#backend.targeting !== true) {
      const problem = `is not supported by the backend of channel "${this.name}", which does not keep targeting ` +
        'with its items (Redis): use a channel per audience'
      throw invalidOption(options?.to === undefined ? 'exclude' : 'to', problem, 'publish()')
    }
    this.#targeted = true
    this.#tags.start(this.#subscribers)
    return this.#backend.append(item, this.#targetedEncoder(target), options)
  }

  /** The channel's encoder, keeping `target` with the item it encodes. */
  #targetedEncoder (target: Target): ChannelEncoder {
    return {
      item: (item) => setTarget(encodeAhead(item, this.#serialize), target),
      parts: this.#encode.parts
    }
  }

  #encode: ChannelEncoder = {
    item: (item) => encodeAhead(item, this.#serialize),
    parts: (item) => encodeParts(item, this.#serialize)
  }

  /** The history lost items the subscribers may not have had: each gets one `sse-reset` item, as a live item. */
  #reset = (reason: ResetReason, position: string): void => {
    const item: ChannelItem = resetItem(reason, position)
    for (const subscriber of this.#subscribers) {
      subscriber.push(item)
      this.#countReset(reason, position)
    }
  }

  #deliver = (item: ChannelItem): void => {
    this.#items++
    // the targeting is looked up once per item, not per subscriber: an untargeted item fans out as it always did
    const target = this.#targeted ? targetOf(item) : undefined
    if (target === undefined) {
      for (const subscriber of this.#subscribers) subscriber.push(item)
      return
    }
    this.#tags.deliver(item, target, this.#subscribers)
  }
}

/** What every channel of one plugin instance shares. */
export interface ChannelContext {
  log: FastifyBaseLogger
  serialize: SseSerializer
  /** The backend of channels created without a `backend` option. */
  backend: ChannelBackendFactory
  /** Totals over every channel, closed ones included. */
  counters: ChannelCounters
}

/**
 * `app.sse`: creates channels on first use, forgets those nobody uses (see `idleTimeout`), and closes them all with
 * the app.
 */
export class ChannelRegistry implements SseChannels, ChannelHome {
  readonly #channels = new Map<string, SseChannel<unknown>>()
  readonly #context: ChannelContext
  readonly #streams: StreamRegistry
  readonly #idle: IdleChannels<SseChannel<unknown>>
  /** Forgotten channels still reachable from the app's code: `channel(name)` hands them back, options and all. */
  readonly #forgotten = new ForgottenChannels<SseChannel<unknown>>()
  #closed = false

  constructor (
    log: FastifyBaseLogger, serialize: SseSerializer, backend: ChannelBackendFactory = memoryBackend,
    streams = new StreamRegistry(), clock?: IdleClock
  ) {
    this.#idle = new IdleChannels(channel => { this.forget(channel) }, clock)
    const counters = { cutOffs: 0, replays: 0, resets: { expired: 0, unknown: 0, invalid: 0 } }
    this.#context = { log, serialize, backend, counters }
    this.#streams = streams
  }

  /**
   * `app.sse.stats()`: the streams' counters, the channels' totals, and the `channels` busiest channels (most
   * subscribers first): one pass over the names, and an entry made only for those shown.
   */
  stats (options?: SseStatsOptions): SseStats {
    const count = statsChannels(options)
    const { cutOffs, replays, resets } = this.#context.counters
    const busiest = largest(this.#channels.values(), count, channel => channel.size)
    const channels = busiest.map(channel => channel.stats())
    return {
      ...this.#streams.snapshot(), cutOffs, replays, resets: { ...resets }, channelCount: this.#channels.size, channels
    }
  }

  channel<T = unknown>(name: string, options: SharedChannelOptions): Channel<T, Promise<string>>
  channel<T = unknown>(name: string, options?: ChannelOptions): Channel<T>
  channel<T = unknown> (
    name: string, options?: ChannelOptions | SharedChannelOptions
  ): Channel<T, string> | Channel<T, Promise<string>> {
    if (typeof name !== 'string' || name === '') throw invalidOption('name', `of a channel must be a non-empty string, got ${JSON.stringify(name)}`)
    const resolved = options === undefined ? undefined : resolveChannelOptions(options)
    const backend = options?.backend ?? this.#context.backend
    const existing = this.#channels.get(name) ?? this.#forgotten.find(name)
    if (existing !== undefined) {
      if (backend !== existing.backendFactory) throw otherBackend(name)
      const differs = options === undefined ? undefined : existing.differsFrom(options)
      if (differs !== undefined) {
        throw invalidOption(differs, `of channel "${name}" is ${existing.limits[differs]}; it was created with other options than these`)
      }
      if (!existing.registered) this.rejoin(existing)
      return existing as SseChannel<unknown> as Channel<T, string>
    }
    const created = new SseChannel<unknown>(name, resolved ?? DEFAULTS, this.#context, backend, this)
    this.#channels.set(name, created)
    // a name nobody subscribes to or publishes on is let go too
    this.#idle.idle(created)
    return created as SseChannel<unknown> as Channel<T, string>
  }

  /** Closes every channel: their subscribers' streams end; settles once their backends released what they hold. */
  async close (): Promise<void> {
    this.#closed = true
    this.#idle.clear()
    // a forgotten channel still reachable is closed too: its publish then throws, as on any channel
    const channels = [...this.#channels.values(), ...this.#forgotten.values()]
    for (const channel of channels) channel.close()
    await Promise.all(channels.map(channel => channel.closing))
  }

  /**
   * @internal A forgotten channel is taken back. While it is reachable `channel(name)` hands it back, so no other
   * channel of its name exists meanwhile.
   */
  rejoin (channel: SseChannel<unknown>): void {
    channel.rejoined()
    this.#forgotten.drop(channel)
    // forgotten since the app closed (made after it): closed like every channel, its publish throws
    if (this.#closed) {
      channel.close()
    } else {
      this.#channels.set(channel.name, channel)
      this.#idle.idle(channel)
    }
  }

  /** @internal */
  idle (channel: SseChannel<unknown>): void {
    this.#idle.idle(channel)
  }

  /** @internal */
  busy (channel: SseChannel<unknown>): void {
    this.#idle.busy(channel)
  }

  /** @internal */
  forget (channel: SseChannel<unknown>): void {
    if (channel.idleTimeout === Infinity || this.#channels.get(channel.name) !== channel) return
    this.#idle.busy(channel)
    this.#channels.delete(channel.name)
    channel.forgotten()
    this.#forgotten.keep(channel)
  }

  /** @internal */
  closed (channel: SseChannel<unknown>): void {
    this.#idle.busy(channel)
    if (this.#channels.get(channel.name) === channel) this.#channels.delete(channel.name)
    else this.#forgotten.drop(channel)
  }
}

function otherBackend (name: string): SseError {
  return invalidOption('backend', `of channel "${name}" differs from the one it was created with (pass the same backend to get it again)`)
}
