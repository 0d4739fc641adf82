import type { FastifyBaseLogger } from 'fastify'
import type {
  BackendStats, ChannelBackend, ChannelEncoder, ChannelItem, Deliver, HistoryOptions, PublishOptions, Replay,
  ReplayPage, Reset, ResetReason
} from '../backend.js'
import { publishFailed } from '../../diagnostics.js'
import { channelUnavailable, invalidItem, type SseRuntimeError } from '../../errors.js'
import type { SseItem } from '../../types.js'
import { entryFields, readEntry, type Entry } from './entry.js'
import { idKey, keyOf } from './ids.js'
import { idempotencyPrefix, place } from './keys.js'
import type { Settings } from './options.js'
import { checkIdempotencyKey, DISCONNECTED, xadd } from './publish.js'
import { PageReads, readPage, type PageSource } from './replay.js'
import type { Backends } from './shared.js'

// One channel's backend on Redis: its publishes (one XADD each), its replays (one MULTI per page, shared by the
// subscribers that ask for the same page at about the same time: ./replay.ts), and the items its backend's reader
// hands on to this process's subscribers.

/** The `ChannelBackend` of one channel on a Redis stream (see ../backend.ts for what each member promises). */
export class RedisBackend implements ChannelBackend<Promise<string>> {
  readonly asynchronous = true
  readonly key: string
  /** Its reader's tag (see `place`). */
  readonly tag: string
  readonly #name: string
  readonly #backends: Backends
  readonly #settings: Settings
  readonly #maxLen: string
  /** What the keys of its publishes' idempotency keys start with. */
  readonly #idempotent: string
  readonly #maxAge: number
  readonly #deliver: Deliver
  readonly #resetSubscribers: Reset
  readonly #log: FastifyBaseLogger
  /**
   * The id of the newest entry handed on to this process's subscribers: defined while the channel has some
   * and the reader knows where its stream is.
   */
  last: string | undefined
  /** Replays (and resets) waiting for the reader to reach their position, so live items and replay meet there. */
  #waiting: Array<{ at: bigint, resolve: () => void }> = []
  /** Bumped when the channel goes quiet, so a start that answers afterwards is ignored. */
  #starts = 0
  #failures = 0
  #retry: NodeJS.Timeout | undefined
  /**
   * For `stats()` while the channel is not read: the newest id this process published on it or handed on before
   * it went quiet ('0-0': neither yet).
   */
  #known = '0-0'
  #publishFailures = 0
  /** The page reads in flight, which a subscriber resuming from the same place joins. */
  readonly #reads = new PageReads()
  readonly #source: PageSource

  constructor (
    name: string, options: HistoryOptions, deliver: Deliver, log: FastifyBaseLogger, reset: Reset, backends: Backends
  ) {
    const { key, tag } = place(backends.settings, name)
    this.key = key
    this.tag = tag
    backends.open(name, this)
    this.#name = name
    this.#idempotent = idempotencyPrefix(backends.settings.prefix, key)
    this.#backends = backends
    this.#settings = backends.settings
    this.#maxLen = String(Math.max(1, options.history))
    this.#maxAge = options.historyMaxAge
    this.#deliver = deliver
    this.#resetSubscribers = reset
    this.#log = log
    const item = (id: string, fields: string[]): ChannelItem | undefined => this.#item(id, fields)
    this.#source = { redis: this.#settings.redis, key, maxAge: this.#maxAge, item }
  }

  /** The channel got its first local subscriber (read its stream from now on) or lost its last (stop). */
  subscribed (active: boolean): void {
    if (active) this.#start(false)
    else this.#quiet()
  }

  append (item: SseItem<unknown>, encode: ChannelEncoder, options?: PublishOptions): Promise<string> {
    if (item.id !== undefined) {
      throw invalidItem('id', 'is given by the Redis stream on a Redis channel; publish the item without one')
    }
    const idempotencyKey = options?.idempotencyKey
    if (idempotencyKey !== undefined) checkIdempotencyKey(idempotencyKey)
    const fields = entryFields(item, encode)
    const redis = this.#settings.redis
    const status = redis.status
    if (DISCONNECTED.has(status)) {
      const problem = `Redis is not connected (${status}); the item was not published`
      return Promise.reject(this.#failed(channelUnavailable(this.#name, problem)))
    }
    const idempotent = idempotencyKey === undefined ? undefined : this.#idempotent + idempotencyKey
    const stored = xadd(redis, this.key, this.#maxLen, fields, idempotent, this.#settings.idempotencyWindow)
    const retry = idempotencyKey === undefined
      ? ''
      : ' (publish it again with the same idempotencyKey: it is stored once)'
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(this.#failed(channelUnavailable(this.#name,
          `Redis did not answer within ${this.#settings.publishTimeout} ms; ` +
          `the item may or may not have been published${retry}`)))
      }, this.#settings.publishTimeout)
      stored.then(id => {
        clearTimeout(timer)
        this.#know(id as string)
        resolve(id as string)
      }, (err: Error) => {
        clearTimeout(timer)
        reject(this.#failed(channelUnavailable(this.#name, `Redis did not store the item: ${err.message}`, err)))
      })
    })
  }

  replay (lastEventId: string, page: ReplayPage): Promise<Replay> {
    const at = idKey(lastEventId)
    if (at === undefined) return this.#reset('unknown')
    return this.#page(lastEventId, at, page.items, page, true)
  }

  position (): string | Promise<string> {
    return this.last ?? this.#reset('invalid').then(replay => replay.position)
  }

  get name (): string {
    return this.#name
  }

  /** Never waits: the position is the newest id handed on so far, the connection that of the shared reader. */
  stats (): BackendStats {
    return {
      position: this.last ?? this.#known,
      connected: this.#backends.connected(this),
      publishFailures: this.#publishFailures
    }
  }

  close (): Promise<void> {
    this.#quiet()
    return this.#backends.close(this)
  }

  /** Let go by its registry (it has no subscriber): its name is free, its stream keeps what a client resumes from. */
  forget (): void {
    this.#quiet()
    this.#backends.forget(this)
  }

  /** Taken back: its name again (refused when another channel of the backend took it meanwhile). */
  rejoined (): void {
    this.#backends.open(this.#name, this)
  }

  /** Entries the reader read from this channel's stream after `last`, oldest first. */
  handOn (entries: Entry[]): void {
    // a subscriber that leaves on an item (cut off, say) may leave the channel with none: it is not read from then
    // on, and `last` stays unknown (a later start finds where the stream is again)
    const start = this.#starts
    for (const [id, fields] of entries) {
      this.last = id
      const item = this.#item(id, fields)
      if (item !== undefined) this.#deliver(item)
      if (start !== this.#starts) return
    }
    this.#caughtUp()
  }

  /**
   * Its stream does not go on from `last` (its reader checks after a read was cut short): the subscribers may have
   * missed items, and are told so with an `sse-reset` at `position`, where the reader goes on.
   */
  lost (reason: ResetReason, position: string): void {
    this.#log.warn({ channel: this.#name, reason, after: this.last, position },
      'SSE Redis channel: its stream does not go on from the last item read (Redis lost its data, or the key was ' +
      'deleted or trimmed); its subscribers get sse-reset')
    this.last = position
    this.#reads.clear()
    this.#resetSubscribers(reason, position)
    this.#caughtUp()
  }

  /** The shared read failed (perhaps for this channel's key): out of it until its stream is found again. */
  recheck (): void {
    this.#backends.remove(this)
    this.#start(true)
  }

  /** A reset to the reader's position, once it knows it (never `0-0` for a stream that has entries). */
  async #reset (reset: 'unknown' | 'invalid'): Promise<Replay> {
    await this.#reached(0n)
    return { reset, items: [], position: this.last as string }
  }

  /**
   * The page after `from`, read by this request or by one in flight it joins (`join`). Every item delivered to this
   * process's subscribers before the request is at or before `since`: a shared last page (or reset) that ends before
   * it may lack what was delivered before this subscriber joined, so the subscriber reads on after it (or anew).
   */
  async #page (from: string, at: bigint, count: number, page: ReplayPage, join: boolean): Promise<Replay> {
    const since = this.last
    const shared = this.#reads.read(from, count, page, () => readPage(this.#source, from, at, count, page), join)
    const read = await shared.read
    const stale = shared.joined && since !== undefined && keyOf(read.position) < keyOf(since)
    if (read.reset !== undefined) {
      if (stale) return this.#page(from, at, count, page, false)
      if (read.wait) await this.#reached(keyOf(read.position))
      return { reset: read.reset, items: [], position: read.position }
    }
    const more = read.more ?? (stale ? read.position : undefined)
    if (more !== undefined) {
      const next = (): Promise<Replay> => this.#page(more, keyOf(more), read.nextCount, page, true)
      return { items: read.items, position: more, next }
    }
    // the replay ends at the newest entry it covers; live items up to there are dropped by the subscription
    if (read.wait) await this.#reached(keyOf(read.position))
    return { items: read.items, position: read.position }
  }

  /**
   * Finds the stream's newest entry on the publishing connection (so before any XADD this process sends
   * afterwards), then joins the shared read: from there, or from `last` when it resumes after a failed read.
   * A key that holds no stream fails here, alone, and is tried again after a while.
   */
  #start (resume: boolean): void {
    const start = this.#starts
    this.#settings.redis.call('XREVRANGE', this.key, '+', '-', 'COUNT', 1).then(newest => {
      if (start !== this.#starts) return
      this.#failures = 0
      if (!resume) this.last = (newest as Entry[])[0]?.[0] ?? '0-0'
      this.#caughtUp()
      this.#backends.reader(this, this.#log).add(this)
    }, (err: Error) => {
      if (start !== this.#starts) return
      // a new reader that could not start starts where the stream is once it can (what came before is not live)
      const failure = channelUnavailable(this.#name, `the reader failed: ${err.message}`, err)
      this.#log.error({ err: failure, channel: this.#name }, 'SSE Redis channel reader failed; retrying')
      this.#retry = setTimeout(() => this.#start(resume), Math.min(2000, 50 * 2 ** ++this.#failures)).unref()
    })
  }

  /** No local subscriber any more (or closed): out of the shared read; waiting replays are dropped with it. */
  #quiet (): void {
    this.#starts++
    clearTimeout(this.#retry)
    this.#failures = 0
    if (this.last !== undefined) this.#know(this.last)
    this.last = undefined
    this.#waiting = []
    this.#reads.clear()
    this.#backends.remove(this)
  }

  /** An id of its stream this process saw (read or published): `stats()` shows the newest. */
  #know (id: string): void {
    if (keyOf(id) > keyOf(this.#known)) this.#known = id
  }

  /** A publish Redis did not take: counted, and reported to diagnostics subscribers. */
  #failed (error: SseRuntimeError): SseRuntimeError {
    this.#publishFailures++
    if (publishFailed.hasSubscribers) publishFailed.publish({ channel: this.#name, error })
    return error
  }

  /** Settles once the reader has handed on the entry at `at` (or a newer one). */
  #reached (at: bigint): Promise<void> {
    if (this.last !== undefined && keyOf(this.last) >= at) return Promise.resolve()
    return new Promise(resolve => this.#waiting.push({ at, resolve }))
  }

  #caughtUp (): void {
    const last = keyOf(this.last as string)
    const reached = this.#waiting.filter(waiter => waiter.at <= last)
    this.#waiting = this.#waiting.filter(waiter => waiter.at > last)
    for (const waiter of reached) waiter.resolve()
  }

  /** The item of a stream entry, its frame rebuilt around its id; undefined (logged) for an entry it cannot read. */
  #item (id: string, fields: string[]): ChannelItem | undefined {
    const item = readEntry(id, fields)
    if (typeof item !== 'string') return item
    if (item === 'newer') {
      this.#log.warn({ channel: this.#name, id, layout: fields[1] },
        'SSE Redis channel: skipped a stream entry in a layout newer than this version reads')
    } else {
      this.#log.warn({ channel: this.#name, id }, 'SSE Redis channel: skipped a stream entry that no channel wrote')
    }
    return undefined
  }
}
