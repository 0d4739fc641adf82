import type { FastifyBaseLogger } from 'fastify'
import type {
  BackendStats, ChannelBackend, ChannelEncoder, Deliver, HistoryOptions, PublishOptions, Replay, ReplayPage, Reset,
  ResetReason
} from '../backend.js'
import { publishFailed } from '../../diagnostics.js'
import { channelUnavailable, invalidItem, type SseRuntimeError } from '../../errors.js'
import type { SseItem } from '../../types.js'
import type { Cursor } from './cursor.js'
import { checkIdempotencyKey, formatId, rebuild, storedItem, type StoredItem } from './items.js'

// What a channel on PostgreSQL or on NATS JetStream does alike: the checks of a publish and its time limit, the ids
// `<tag>-<seq>`, items handed on by the store's reader, resets, and what `stats()` shows. Each store says how it
// stores, reads and replays.

/** What the stores' channels are given besides the channel's own arguments. */
export interface StoreContext {
  /** How log lines and errors name the store: `PostgreSQL`, `NATS`. */
  readonly engine: string
  /** Milliseconds after which a publish the store has not answered rejects. */
  readonly publishTimeout: number
}

export abstract class StoredChannel implements ChannelBackend<Promise<string>> {
  readonly asynchronous = true
  readonly name: string
  protected readonly history: HistoryOptions
  protected readonly log: FastifyBaseLogger
  protected readonly engine: string
  readonly #publishTimeout: number
  readonly #deliver: Deliver
  readonly #reset: Reset
  #publishFailures = 0
  /** For `stats()` while the channel is not read: the newest id this process published or handed on. */
  #known: { tag: string, seq: number } | undefined

  constructor (
    name: string, history: HistoryOptions, deliver: Deliver, log: FastifyBaseLogger, reset: Reset, context: StoreContext
  ) {
    this.name = name
    this.history = history
    this.log = log
    this.engine = context.engine
    this.#publishTimeout = context.publishTimeout
    this.#deliver = deliver
    this.#reset = reset
  }

  /** Where this channel is read to: defined (`at`) while it has local subscribers and its reader knows where it is. */
  protected abstract get cursor (): Cursor
  /** Whether its reader's connection is up (undefined while there is no reader). */
  protected abstract get connected (): boolean | undefined
  /** Stores the item (with its idempotency key, if any) and answers its id; a refusal rejects. */
  protected abstract store (stored: StoredItem, idempotencyKey: string | undefined): Promise<string>
  abstract replay (lastEventId: string, page: ReplayPage): Promise<Replay>
  abstract subscribed (active: boolean): void
  abstract close (): Promise<void>
  /** Refuses an item this store cannot keep, before anything is sent (throws an `SseError` naming the field). */
  protected readonly refuse?: (item: SseItem<unknown>, stored: StoredItem) => void

  append (item: SseItem<unknown>, encode: ChannelEncoder, options?: PublishOptions): Promise<string> {
    if (item.id !== undefined) {
      throw invalidItem('id', `is given by ${this.engine} on a ${this.engine} channel; publish the item without one`)
    }
    const idempotencyKey = options?.idempotencyKey
    if (idempotencyKey !== undefined) checkIdempotencyKey(idempotencyKey)
    const stored = storedItem(item, encode.parts(item), this.engine)
    this.refuse?.(item, stored)
    const retry = idempotencyKey === undefined
      ? ''
      : ' (publish it again with the same idempotencyKey: it is stored once)'
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(this.failed(channelUnavailable(this.name, `${this.engine} did not answer within ` +
          `${this.#publishTimeout} ms; the item may or may not have been published${retry}`)))
      }, this.#publishTimeout)
      this.store(stored, idempotencyKey).then(id => {
        clearTimeout(timer)
        resolve(id)
      }, (err: Error) => {
        clearTimeout(timer)
        reject(err instanceof Error && 'code' in err && err.code === 'FST_SSE_CHANNEL_UNAVAILABLE'
          ? this.failed(err as SseRuntimeError)
          : this.failed(channelUnavailable(this.name, `${this.engine} did not store the item: ${err.message}`, err)))
      })
    })
  }

  /** The newest id handed on, once the reader knows where the channel is. */
  position (): string | Promise<string> {
    const cursor = this.cursor
    if (cursor.at !== undefined) return formatId(cursor.tag as string, cursor.at)
    return cursor.reached(0).then(() => formatId(cursor.tag as string, cursor.at as number))
  }

  /** Never waits: the newest id handed on (or known), the reader's connection, the publishes that failed. */
  stats (): BackendStats {
    const { tag, at } = this.cursor
    const known = at === undefined ? this.#known : { tag: tag as string, seq: at }
    return {
      position: known === undefined ? '' : formatId(known.tag, known.seq),
      connected: this.connected,
      publishFailures: this.#publishFailures
    }
  }

  /** An id of this channel this process saw (published or handed on): `stats()` shows the newest. */
  protected know (tag: string, seq: number): void {
    if (this.#known === undefined || this.#known.tag !== tag || seq > this.#known.seq) this.#known = { tag, seq }
  }

  /** A stored item the reader read: handed to this process's subscribers (one no channel wrote is skipped). */
  handOn (tag: string, stored: StoredItem & { seq: number }): void {
    const id = formatId(tag, stored.seq)
    const item = rebuild(stored, id)
    if (item === undefined) {
      this.log.warn({ channel: this.name, id }, `SSE ${this.engine} channel: skipped an item that no channel wrote`)
      return
    }
    this.#deliver(item)
  }

  /**
   * The store does not go on from where the reader was: the subscribers may have missed items and get one
   * `sse-reset` at `tag-seq`, where the reader goes on.
   */
  lost (reason: ResetReason, tag: string, seq: number): void {
    this.log.warn({ channel: this.name, reason, position: formatId(tag, seq) }, `SSE ${this.engine} channel: its ` +
      'history does not go on from the last item read (items were removed before they were read, or the history ' +
      'was made again); its subscribers get sse-reset')
    this.#reset(reason, formatId(tag, seq))
  }

  /** A replay's answer, once the reader has handed on everything up to its position (see `Replay.position`). */
  protected async answer (
    reset: ResetReason | undefined, items: Replay['items'], tag: string, seq: number
  ): Promise<Replay> {
    await this.cursor.reached(seq)
    return { reset, items, position: formatId(tag, seq) }
  }

  /** A publish the store did not take: counted, and reported to diagnostics subscribers. */
  protected failed (error: SseRuntimeError): SseRuntimeError {
    this.#publishFailures++
    if (publishFailed.hasSubscribers) publishFailed.publish({ channel: this.name, error })
    return error
  }
}
