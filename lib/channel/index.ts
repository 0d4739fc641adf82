import type { FastifyBaseLogger } from 'fastify'
import type { ChannelBackend, ChannelBackendFactory, ChannelItem, HistoryOptions, Replay, ResetReason } from './backend.js'
import { memoryBackend } from './memory.js'
import { encodeItem, kFrame, withFrame } from '../encode.js'
import { channelClosed, invalidOption } from '../errors.js'
import { kAttachStream, type Disconnect } from '../stream.js'
import type { SseItem, SseSerializer } from '../types.js'

// Broadcast: one writer, many listeners. Each published item is encoded once by the channel and the same
// frame is handed to every subscriber's bounded queue; the stream writer (lib/stream) writes those bytes as they
// are. Publishing never waits for anyone: a subscriber whose queue is full is cut off and resumes by
// Last-Event-ID when its client reconnects.

/** Options of `app.sse.channel(name, options)`. */
export interface ChannelOptions {
  /** Items kept for replay to reconnecting clients. Default 100; 0 keeps none. */
  history?: number
  /** Milliseconds an item stays in the history. Default: no age limit. */
  historyMaxAge?: number
  /** Items a subscriber may have waiting before it is disconnected as too slow. Default 512. */
  queueItems?: number
  /** Bytes (of encoded frames) a subscriber may have waiting before it is disconnected. Default 1 MiB. */
  queueBytes?: number
  /**
   * Where the history lives and how items reach the other processes. Default: this process's memory. A shared
   * backend (`redisChannels()` from `fastify-typed-sse/redis`) is given by the other overload of `channel()`.
   */
  backend?: ChannelBackendFactory<string>
}

/** Options of a channel whose items are stored outside this process (Redis): its `publish` returns a promise. */
export interface SharedChannelOptions extends Omit<ChannelOptions, 'backend'> {
  /** The shared store, e.g. `redisChannels({ redis })` from `fastify-typed-sse/redis`. */
  backend: ChannelBackendFactory<Promise<string>>
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
}

/**
 * The `data` of the one `event: 'sse-reset'` item a subscriber gets first when it cannot resume from its
 * `lastEventId` (the client should reload its state). That item's `id` is the channel's position.
 */
export interface SseResetData {
  reason: ResetReason
}

/**
 * What `subscribe()` returns: items published after the subscription (after a replay), until it ends. Its
 * items are `SseItem<T>`, except a first `sse-reset` one whose data is `SseResetData`.
 */
export type ChannelSubscription<T> = AsyncIterableIterator<SseItem<T | SseResetData>>

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
   * (the stream's), resolved once the item is stored, and rejects instead of throwing.
   */
  publish: (item: SseItem<T>) => Published
  /** Items published from now on, after those missed since `lastEventId`. Ends when `signal` aborts. */
  subscribe: (options?: SubscribeOptions) => ChannelSubscription<T>
  /** Ends every subscription (their streams end) and forgets the history; the name can be used again. */
  close: () => void
}

/** `app.sse`: the plugin's channels. */
export interface SseChannels {
  /**
   * The channel of that name, created on first use; the same object for the same name. With a shared
   * `backend` (Redis), its items reach the subscribers of every process and `publish` returns a promise.
   */
  channel<T = unknown>(name: string, options: SharedChannelOptions): Channel<T, Promise<string>>
  /** The channel of that name, created on first use; the same object for the same name. */
  channel<T = unknown>(name: string, options?: ChannelOptions): Channel<T>
}

/** A `Last-Event-ID` longer than this is refused without a lookup (reset `invalid`). */
export const MAX_LAST_EVENT_ID = 256

interface ResolvedChannelOptions extends HistoryOptions {
  queueItems: number
  queueBytes: number
}

const DEFAULTS: ResolvedChannelOptions = { history: 100, historyMaxAge: Infinity, queueItems: 512, queueBytes: 1024 * 1024 }
const MAX_HISTORY = 10_000_000
const OPTION_NAMES = Object.keys(DEFAULTS) as Array<keyof ResolvedChannelOptions>

function resolveChannelOptions (options: ChannelOptions | SharedChannelOptions): ResolvedChannelOptions {
  const { history = DEFAULTS.history, historyMaxAge = DEFAULTS.historyMaxAge, queueItems = DEFAULTS.queueItems, queueBytes = DEFAULTS.queueBytes, backend } = options
  if (backend !== undefined && typeof backend !== 'function') {
    throw invalidOption('backend', `must be a channel backend such as redisChannels({ redis }), got ${typeof backend}`)
  }
  if (!(Number.isSafeInteger(history) && history >= 0 && history <= MAX_HISTORY)) {
    throw invalidOption('history', `must be a whole number of items from 0 to ${MAX_HISTORY}, got ${String(history)}`)
  }
  if (!(typeof historyMaxAge === 'number' && historyMaxAge > 0)) {
    throw invalidOption('historyMaxAge', `must be a positive number of milliseconds, got ${String(historyMaxAge)}`)
  }
  if (!(Number.isSafeInteger(queueItems) && queueItems >= 1)) {
    throw invalidOption('queueItems', `must be a whole number of items >= 1, got ${String(queueItems)}`)
  }
  if (!(Number.isSafeInteger(queueBytes) && queueBytes >= 1)) {
    throw invalidOption('queueBytes', `must be a whole number of bytes >= 1, got ${String(queueBytes)}`)
  }
  return { history, historyMaxAge, queueItems, queueBytes }
}

const DONE: IteratorReturnResult<undefined> = Object.freeze({ value: undefined, done: true })

function isItemObject (item: unknown): item is SseItem<unknown> {
  return item !== null && typeof item === 'object' && !Array.isArray(item)
}

/** One subscriber: a replay backlog, then a bounded queue of live items, pulled one at a time. Internal. */
export class Subscriber implements ChannelSubscription<unknown> {
  readonly #channel: SseChannel<unknown>
  readonly #signal: AbortSignal | undefined
  #backlog: ReadonlyArray<SseItem<unknown>> = []
  #backlogAt = 0
  #queue: Array<ChannelItem | undefined> = []
  #head = 0
  #bytes = 0
  #replaying = false
  /** Fell too far behind: takes no more items, ends once the queue is delivered. */
  #cutOff = false
  #done = false
  #wake: ((result: IteratorResult<SseItem<unknown>, undefined>) => void) | undefined
  /** Set when a stream writes this subscription: how to drop its client when it falls too far behind. */
  #disconnect: Disconnect | undefined
  /** The pending `next()`, so a second call made before it settles queues behind it instead of replacing it. */
  #waiting: Promise<unknown> | undefined

  constructor (channel: SseChannel<unknown>, signal: AbortSignal | undefined) {
    this.#channel = channel
    this.#signal = signal
  }

  /** Joins the channel's fan-out, then asks the backend for what was missed since `lastEventId`. */
  start (lastEventId: SubscribeOptions['lastEventId'], backend: ChannelBackend): void {
    if (this.#signal?.aborted === true) {
      this.#done = true
      return
    }
    this.#signal?.addEventListener('abort', this.#onAbort)
    this.#channel.attach(this)
    if (lastEventId === undefined || lastEventId === '') return
    if (typeof lastEventId !== 'string' || lastEventId.length > MAX_LAST_EVENT_ID) {
      this.#backlog = [resetItem('invalid', backend.position())]
      return
    }
    const replay = backend.replay(lastEventId)
    if (!(replay instanceof Promise)) {
      this.#resume(replay)
      return
    }
    this.#replaying = true
    replay.then(this.#onReplay, this.#onReplayFailed)
  }

  get queued (): number {
    return this.#queue.length - this.#head
  }

  [Symbol.asyncIterator] (): this {
    return this
  }

  next (): Promise<IteratorResult<SseItem<unknown>, undefined>> {
    const item = this.#shift()
    if (item !== undefined) return Promise.resolve({ value: item, done: false })
    if (this.#cutOff) this.end()
    if (this.#done) return Promise.resolve(DONE)
    if (this.#waiting !== undefined) return this.#waiting.then(() => this.next())
    const waiting = new Promise<IteratorResult<SseItem<unknown>, undefined>>(resolve => { this.#wake = resolve })
    this.#waiting = waiting
    return waiting
  }

  return (): Promise<IteratorResult<SseItem<unknown>, undefined>> {
    this.end()
    return Promise.resolve(DONE)
  }

  [kAttachStream] (disconnect: Disconnect): void {
    this.#disconnect = disconnect
  }

  /** A live item, from the channel's fan-out. Never waits. */
  push (item: ChannelItem): void {
    if (this.#wake !== undefined && !this.#replaying) {
      this.#settle({ value: item, done: false })
      return
    }
    const size = item[kFrame].length
    const queued = this.queued
    if (queued >= this.#channel.limits.queueItems || (queued > 0 && this.#bytes + size > this.#channel.limits.queueBytes)) {
      this.#channel.overflowed(queued, this.#bytes)
      // A stream whose client is stuck drops it, and this queue, now. Otherwise what is queued is still
      // delivered, then the subscription ends: the client resumes from the history by Last-Event-ID.
      if (this.#disconnect?.() === true) this.end()
      else this.#cut()
      return
    }
    this.#queue.push(item)
    this.#bytes += size
  }

  #cut (): void {
    this.#cutOff = true
    this.#channel.detach(this)
  }

  /** Ends the subscription: releases the queue and the listener; a waiting `next()` gets done. */
  end (): void {
    if (this.#done) return
    this.#done = true
    this.#channel.detach(this)
    this.#signal?.removeEventListener('abort', this.#onAbort)
    this.#queue = []
    this.#head = 0
    this.#bytes = 0
    this.#backlog = []
    this.#settle(DONE)
  }

  /** Resolves the pending `next()`, if any. */
  #settle (result: IteratorResult<SseItem<unknown>, undefined>): void {
    const wake = this.#wake
    this.#wake = undefined
    this.#waiting = undefined
    wake?.(result)
  }

  #shift (): SseItem<unknown> | undefined {
    if (this.#replaying) return undefined
    if (this.#backlogAt < this.#backlog.length) {
      const item = this.#backlog[this.#backlogAt++]
      if (this.#backlogAt === this.#backlog.length) {
        this.#backlog = []
        this.#backlogAt = 0
      }
      return item
    }
    if (this.#head === this.#queue.length) return undefined
    const item = this.#queue[this.#head] as ChannelItem
    this.#queue[this.#head++] = undefined
    this.#bytes -= item[kFrame].length
    if (this.#head === this.#queue.length) {
      this.#queue = []
      this.#head = 0
    }
    return item
  }

  /** Replay answered: its items (or a reset) first, then the live items that came after `position`. */
  #resume (replay: Replay): void {
    this.#replaying = false
    // live items up to `position` were read by the replay already (an asynchronous read raced them)
    for (let i = this.#head; i < this.#queue.length; i++) {
      if ((this.#queue[i] as ChannelItem).id !== replay.position) continue
      for (let j = this.#head; j <= i; j++) this.#bytes -= (this.#queue[j] as ChannelItem)[kFrame].length
      this.#queue = this.#queue.slice(i + 1)
      this.#head = 0
      break
    }
    this.#backlog = replay.reset === undefined ? replay.items : [resetItem(replay.reset, replay.position)]
    const item = this.#wake === undefined ? undefined : this.#shift()
    if (item !== undefined) this.#settle({ value: item, done: false })
  }

  #onReplay = (replay: Replay): void => {
    if (!this.#done) this.#resume(replay)
  }

  #onReplayFailed = (err: unknown): void => {
    this.#channel.log.error({ err, channel: this.#channel.name }, 'SSE channel replay failed; subscription ended')
    this.end()
  }

  #onAbort = (): void => {
    this.end()
  }
}

/**
 * Encoded here with JSON, like a channel's items: a typed route's serializer or validator knows nothing of
 * `sse-reset`, and must not refuse it (the client would reconnect into the same refusal) or strip its reason.
 */
function resetItem (reason: ResetReason, position: string): SseItem<SseResetData> {
  const item: SseItem<SseResetData> = { id: position, event: 'sse-reset', data: { reason } }
  return withFrame(item, Buffer.from(encodeItem(item)))
}

export class SseChannel<T> implements Channel<T, string | Promise<string>> {
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
  readonly #onClose: (channel: SseChannel<T>) => void
  #closed = false

  constructor (name: string, limits: ResolvedChannelOptions, context: ChannelContext, backend: ChannelBackendFactory, onClose: (channel: SseChannel<T>) => void) {
    this.name = name
    this.limits = limits
    this.log = context.log
    this.backendFactory = backend
    this.#serialize = context.serialize
    this.#onClose = onClose
    this.#backend = backend(name, { history: limits.history, historyMaxAge: limits.historyMaxAge }, this.#deliver, context.log)
  }

  get size (): number {
    return this.#subscribers.size
  }

  get closed (): boolean {
    return this.#closed
  }

  publish (item: SseItem<T>): string | Promise<string> {
    if (this.#backend.asynchronous !== true) return this.#append(item)
    try {
      return this.#append(item)
    } catch (err) {
      return Promise.reject(err)
    }
  }

  subscribe (options: SubscribeOptions = {}): ChannelSubscription<T> {
    const subscriber = new Subscriber(this as SseChannel<unknown>, options.signal)
    if (this.#closed) subscriber.end()
    else subscriber.start(options.lastEventId, this.#backend)
    return subscriber as ChannelSubscription<T>
  }

  close (): void {
    if (this.#closed) return
    this.#closed = true
    for (const subscriber of this.#subscribers) subscriber.end()
    this.closing = Promise.resolve(this.#backend.close())
    this.#onClose(this)
  }

  /** @internal */
  attach (subscriber: Subscriber): void {
    this.#subscribers.add(subscriber)
  }

  /** @internal */
  detach (subscriber: Subscriber): void {
    this.#subscribers.delete(subscriber)
  }

  /** @internal A subscriber's queue is full: it is about to be cut off. */
  overflowed (items: number, bytes: number): void {
    this.log.warn({ channel: this.name, queuedItems: items, queuedBytes: bytes, queueItems: this.limits.queueItems, queueBytes: this.limits.queueBytes },
      'SSE channel subscriber too slow (queue full); disconnected')
  }

  /** @internal The first option given that differs from this channel's (a second `channel(name, options)` must not silently differ). */
  differsFrom (options: ChannelOptions | SharedChannelOptions): keyof ResolvedChannelOptions | undefined {
    return OPTION_NAMES.find(key => options[key] !== undefined && options[key] !== this.limits[key])
  }

  #append (item: SseItem<T>): string | Promise<string> {
    // a non-object is refused by the encoder, with the message every other refusal has
    if (!isItemObject(item)) encodeItem(item)
    if (this.#closed) throw channelClosed(this.name)
    return this.#backend.append(item, this.#encode)
  }

  #encode = (item: SseItem<unknown>): ChannelItem => {
    return withFrame(item, Buffer.from(encodeItem(item, this.#serialize))) as ChannelItem
  }

  #deliver = (item: ChannelItem): void => {
    for (const subscriber of this.#subscribers) subscriber.push(item)
  }
}

/** What every channel of one plugin instance shares. */
export interface ChannelContext {
  log: FastifyBaseLogger
  serialize: SseSerializer
  /** The backend of channels created without a `backend` option. */
  backend: ChannelBackendFactory
}

/** `app.sse`: creates channels on first use and closes them all with the app. */
export class ChannelRegistry implements SseChannels {
  readonly #channels = new Map<string, SseChannel<unknown>>()
  readonly #context: ChannelContext

  constructor (log: FastifyBaseLogger, serialize: SseSerializer, backend: ChannelBackendFactory = memoryBackend) {
    this.#context = { log, serialize, backend }
  }

  channel<T = unknown>(name: string, options: SharedChannelOptions): Channel<T, Promise<string>>
  channel<T = unknown>(name: string, options?: ChannelOptions): Channel<T>
  channel<T = unknown> (name: string, options?: ChannelOptions | SharedChannelOptions): Channel<T, string> | Channel<T, Promise<string>> {
    if (typeof name !== 'string' || name === '') throw invalidOption('name', `of a channel must be a non-empty string, got ${JSON.stringify(name)}`)
    const resolved = options === undefined ? undefined : resolveChannelOptions(options)
    const backend = options?.backend ?? this.#context.backend
    const existing = this.#channels.get(name)
    if (existing !== undefined) {
      if (backend !== existing.backendFactory) {
        throw invalidOption('backend', `of channel "${name}" differs from the one it was created with (pass the same backend to get it again)`)
      }
      const differs = options === undefined ? undefined : existing.differsFrom(options)
      if (differs !== undefined) {
        throw invalidOption(differs, `of channel "${name}" is ${existing.limits[differs]}; it was created with other options than these`)
      }
      return existing as SseChannel<unknown> as Channel<T, string>
    }
    const created = new SseChannel<unknown>(name, resolved ?? DEFAULTS, this.#context, backend, this.#forget)
    this.#channels.set(name, created)
    return created as SseChannel<unknown> as Channel<T, string>
  }

  /** Closes every channel: their subscribers' streams end; settles once their backends released what they hold. */
  async close (): Promise<void> {
    const channels = Array.from(this.#channels.values())
    for (const channel of channels) channel.close()
    await Promise.all(channels.map(channel => channel.closing))
  }

  #forget = (channel: SseChannel<unknown>): void => {
    this.#channels.delete(channel.name)
  }
}
