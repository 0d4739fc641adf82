import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import type { BackendStats, ChannelBackend, ChannelBackendFactory, ChannelEncoder, ChannelItem, Deliver, HistoryOptions, Replay } from './backend.js'
import { publishFailed, readerDown, readerUp } from '../diagnostics.js'
import { joinFrame, withFrame } from '../encode.js'
import { channelUnavailable, invalidItem, invalidOption, type SseRuntimeError } from '../errors.js'
import type { SseItem } from '../types.js'

// Channels shared by every server process through one Redis stream per channel: `XADD … MAXLEN ~ N` per publish
// (its id is the item's id: `<ms>-<seq>`, exactly what a browser sends back as Last-Event-ID), one `XREAD BLOCK`
// reader per channel per process on a connection of its own, fanning out locally through the channel's shared
// frame. The stream entry holds the frame around its id line and the item's fields as JSON, so each process
// rebuilds the frame by concatenation, never by serializing the data again. Only this module uses ioredis, and
// only by type: the main entry never loads it.

/** Options of `redisChannels()`. */
export interface RedisChannelsOptions {
  /**
   * Your ioredis client (also what `@fastify/redis` gives you). Publishes and replays use it; each channel's
   * reader uses `redis.duplicate()`, closed with the channel. Your client is never closed by the plugin.
   */
  redis: Redis
  /** Prefix of the stream keys: a channel `chat` lives at `<prefix>chat`. Default `'sse:'`. */
  prefix?: string
  /** Milliseconds after which a publish Redis has not answered rejects. Default 5000. */
  publishTimeout?: number
  /** Milliseconds one `XREAD BLOCK` waits before the reader asks again. Default 5000. */
  blockTimeout?: number
  /**
   * The reader connections' name in `CLIENT LIST`: `<readerName>:<stream key>`. Default `'fastify-typed-sse'`;
   * give each server its own (its host name) to tell them apart.
   */
  readerName?: string
}

/** What `redisChannels()` returns: pass it as the `backend` option of `app.sse.channel(name, { backend })`. */
export type RedisChannels = ChannelBackendFactory<Promise<string>>

const MAX_ID_PART = 2n ** 64n - 1n
const STREAM_ID = /^(0|[1-9][0-9]{0,19})-(0|[1-9][0-9]{0,19})$/
/** ioredis states in which a command would wait in the offline queue for a connection that was lost. */
const DISCONNECTED = new Set(['reconnecting', 'close', 'end'])
/** Entries one XREAD returns at most. */
const READ_BATCH = 512

/** A stream id as one comparable number; undefined when it is not a stream id Redis could have issued. */
function idKey (id: string): bigint | undefined {
  const match = STREAM_ID.exec(id)
  if (match === null) return undefined
  const ms = BigInt(match[1] as string)
  const seq = BigInt(match[2] as string)
  return ms > MAX_ID_PART || seq >= MAX_ID_PART ? undefined : (ms << 64n) + seq
}

/** The key of an id Redis gave us (always well formed). */
function keyOf (id: string): bigint {
  return idKey(id) as bigint
}

type Entry = [id: string, fields: string[]]

interface StreamInfo {
  /** The newest id the stream ever issued ('0-0' when there is no stream). */
  lastGenerated: string
  /**
   * An id before which something was removed: a client behind it has missed something. Trimming (MAXLEN) leaves
   * no record of the ids it removed, only that it removed some, so when it did this is the oldest kept entry: a
   * client exactly at the last trimmed entry gets a reset it could have done without, never a silent gap.
   */
  removedBefore: string
  /** The newest entry still kept. */
  lastEntry: string | undefined
}

const NO_STREAM: StreamInfo = { lastGenerated: '0-0', removedBefore: '0-0', lastEntry: undefined }

/** The reply of `XINFO STREAM` (a flat list of names and values), from Redis 7 or later. */
function streamInfo (reply: unknown): StreamInfo {
  const fields = reply as unknown[]
  const info = new Map<unknown, unknown>()
  for (let i = 0; i + 1 < fields.length; i += 2) info.set(fields[i], fields[i + 1])
  const lastGenerated = info.get('last-generated-id') as string
  const firstEntry = (info.get('first-entry') as Entry | null)?.[0]
  const lastEntry = (info.get('last-entry') as Entry | null)?.[0]
  // XDEL says what it deleted; trimming only shows in the count of entries ever added
  const deleted = info.get('max-deleted-entry-id') as string
  const trimmed = Number(info.get('entries-added')) > Number(info.get('length'))
  const removedBefore = trimmed && firstEntry !== undefined && keyOf(firstEntry) > keyOf(deleted) ? firstEntry : deleted
  return { lastGenerated, removedBefore, lastEntry }
}

class RedisBackend implements ChannelBackend<Promise<string>> {
  readonly asynchronous = true
  readonly #name: string
  readonly #key: string
  readonly #redis: Redis
  readonly #reader: Redis
  readonly #maxLen: string
  readonly #maxAge: number
  readonly #publishTimeout: number
  readonly #blockTimeout: number
  readonly #deliver: Deliver
  readonly #log: FastifyBaseLogger
  /** Where the reader starts: the newest entry, read on the publishing connection (so before its next XADD). */
  #start: Promise<unknown>
  /** The id of the newest entry the reader has handed on (undefined until it knows where the stream is). */
  #last: string | undefined
  /** Replays waiting for the reader to reach their position, so live items and replay meet exactly there. */
  #waiting: Array<{ at: bigint, resolve: () => void }> = []
  #closed = false
  #down = false
  #publishFailures = 0
  #wake: (() => void) | undefined
  readonly #ended: Promise<void>

  constructor (name: string, options: HistoryOptions, deliver: Deliver, log: FastifyBaseLogger, settings: Required<Omit<RedisChannelsOptions, 'redis'>> & { redis: Redis }) {
    this.#name = name
    this.#key = settings.prefix + name
    this.#redis = settings.redis
    this.#maxLen = String(Math.max(1, options.history))
    this.#maxAge = options.historyMaxAge
    this.#publishTimeout = settings.publishTimeout
    this.#blockTimeout = settings.blockTimeout
    this.#deliver = deliver
    this.#log = log
    this.#start = this.#newest()
    // Its own connection: XREAD BLOCK holds it. No retry limit: a command waits for the reconnection, and the
    // reader resumes from the last id it handed on. RESP2 keeps XREAD's reply one shape on ioredis 5 and 6.
    this.#reader = this.#redis.duplicate({ connectionName: settings.readerName + ':' + this.#key.replace(/[^\w:.-]/g, '_'), maxRetriesPerRequest: null, enableOfflineQueue: true, lazyConnect: false, protocol: 2 })
    this.#reader.on('error', this.#onReaderError)
    this.#reader.on('reconnecting', this.#onReaderLost)
    this.#reader.on('ready', this.#onReaderReady)
    this.#ended = new Promise(resolve => this.#reader.once('end', resolve))
    void this.#read()
  }

  append (item: SseItem<unknown>, encode: ChannelEncoder): Promise<string> {
    if (item.id !== undefined) throw invalidItem('id', 'is given by the Redis stream on a Redis channel; publish the item without one')
    // encoded (and refused) once, here, around its id line; every reader joins the parts with the entry's id
    const { head, tail } = encode.parts(item)
    let fields: string
    try {
      fields = JSON.stringify({ event: item.event, retry: item.retry, comment: item.comment, data: item.data })
    } catch (err) {
      throw invalidItem('data', 'must be JSON-serializable on a Redis channel', err)
    }
    const status = this.#redis.status
    if (DISCONNECTED.has(status)) return Promise.reject(this.#failed(channelUnavailable(this.#name, `Redis is not connected (${status}); the item was not published`)))
    const stored = this.#redis.call('XADD', this.#key, 'MAXLEN', '~', this.#maxLen, '*', 'h', head, 't', tail, 'j', fields)
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(this.#failed(channelUnavailable(this.#name, `Redis did not answer within ${this.#publishTimeout} ms; the item may or may not have been published`)))
      }, this.#publishTimeout)
      stored.then(id => {
        clearTimeout(timer)
        resolve(id as string)
      }, (err: Error) => {
        clearTimeout(timer)
        reject(this.#failed(channelUnavailable(this.#name, `Redis did not store the item: ${err.message}`, err)))
      })
    })
  }

  replay (lastEventId: string): Replay | Promise<Replay> {
    const at = idKey(lastEventId)
    if (at === undefined) return { reset: 'unknown', items: [], position: this.position() }
    return this.#replay(lastEventId, at)
  }

  position (): string {
    return this.#last ?? '0-0'
  }

  stats (): BackendStats {
    return { connected: this.#reader.status === 'ready', publishFailures: this.#publishFailures }
  }

  close (): Promise<void> {
    this.#closed = true
    this.#waiting = []
    this.#wake?.()
    // waiting to reconnect, it has no connection to close and says nothing more
    const ended = this.#reader.status === 'reconnecting' ? Promise.resolve() : this.#ended
    this.#reader.disconnect()
    return ended
  }

  async #replay (lastEventId: string, at: bigint): Promise<Replay> {
    // one snapshot: what the stream issued and trimmed, and what follows the id
    const replies = await this.#redis.multi()
      .call('XINFO', 'STREAM', this.#key)
      .call('XRANGE', this.#key, '(' + lastEventId, '+')
      .exec() as Array<[Error | null, unknown]>
    const [[infoError, info], [rangeError, range]] = replies as [[Error | null, unknown], [Error | null, unknown]]
    if (rangeError !== null) throw rangeError
    // XRANGE worked, so XINFO only fails when there is no stream (yet, or any more)
    const stream = infoError === null ? streamInfo(info) : NO_STREAM
    const entries = range as Entry[]
    let reset: Replay['reset']
    if (at > keyOf(stream.lastGenerated)) reset = 'unknown'
    else if (at < keyOf(stream.removedBefore)) reset = 'expired'
    else if (entries.length > 0 && Number(entries[0]?.[0].split('-')[0]) <= Date.now() - this.#maxAge) reset = 'expired'
    // the replay ends at the newest entry it covers; live items up to there are dropped by the subscription
    const position = reset === undefined
      ? entries.at(-1)?.[0] ?? stream.lastEntry ?? lastEventId
      : stream.lastEntry ?? stream.lastGenerated
    if (stream.lastEntry !== undefined) await this.#reached(keyOf(position))
    if (reset !== undefined) return { reset, items: [], position }
    const items: ChannelItem[] = []
    for (const [id, fields] of entries) {
      const item = this.#item(id, fields)
      if (item !== undefined) items.push(item)
    }
    return { items, position }
  }

  /** A publish Redis did not take: counted, and reported to diagnostics subscribers. */
  #failed (error: SseRuntimeError): SseRuntimeError {
    this.#publishFailures++
    if (publishFailed.hasSubscribers) publishFailed.publish({ channel: this.#name, error })
    return error
  }

  /** The newest entry, asked on the publishing connection: every XADD this process sends afterwards comes after it. */
  #newest (): Promise<unknown> {
    const newest = this.#redis.call('XREVRANGE', this.#key, '+', '-', 'COUNT', 1)
    newest.catch(() => {}) // awaited (and its failure handled) by the reader loop
    return newest
  }

  /** Settles once the reader has handed on the entry at `at` (or a newer one). */
  #reached (at: bigint): Promise<void> {
    if (this.#last !== undefined && keyOf(this.#last) >= at) return Promise.resolve()
    return new Promise(resolve => this.#waiting.push({ at, resolve }))
  }

  async #read (): Promise<void> {
    let failures = 0
    while (!this.#closed) {
      try {
        if (this.#last === undefined) {
          const newest = await this.#start as Entry[]
          this.#last = newest[0]?.[0] ?? '0-0'
          this.#caughtUp()
        }
        const reply = await this.#reader.call('XREAD', 'COUNT', READ_BATCH, 'BLOCK', this.#blockTimeout, 'STREAMS', this.#key, this.#last) as Array<[string, Entry[]]> | null
        failures = 0
        if (reply !== null) this.#handOn((reply[0] as [string, Entry[]])[1])
      } catch (err) {
        if (this.#closed) break
        // a reader that could not start starts where the stream is once it can (what was published before is not live)
        this.#start = this.#newest()
        failures++
        const failure = channelUnavailable(this.#name, `the reader failed: ${(err as Error).message}`, err)
        this.#log.error({ err: failure, channel: this.#name }, 'SSE Redis channel reader failed; retrying')
        await new Promise<void>(resolve => {
          this.#wake = resolve
          setTimeout(resolve, Math.min(2000, 50 * 2 ** failures)).unref()
        })
      }
    }
  }

  #handOn (entries: Entry[]): void {
    for (const [id, fields] of entries) {
      this.#last = id
      const item = this.#item(id, fields)
      if (item !== undefined) this.#deliver(item)
    }
    this.#caughtUp()
  }

  #caughtUp (): void {
    const last = keyOf(this.#last as string)
    const reached = this.#waiting.filter(waiter => waiter.at <= last)
    this.#waiting = this.#waiting.filter(waiter => waiter.at > last)
    for (const waiter of reached) waiter.resolve()
  }

  /** The item of a stream entry, its frame rebuilt around its id; undefined (logged) for an entry not ours. */
  #item (id: string, fields: string[]): ChannelItem | undefined {
    if (fields.length === 6 && fields[0] === 'h' && fields[2] === 't' && fields[4] === 'j') {
      try {
        const stored = JSON.parse(fields[5] as string) as SseItem<unknown>
        const frame = joinFrame({ head: fields[1] as string, tail: fields[3] as string }, id)
        return withFrame({ ...stored, id }, Buffer.from(frame))
      } catch {}
    }
    this.#log.warn({ channel: this.#name, id }, 'SSE Redis channel: skipped a stream entry that no channel wrote')
    return undefined
  }

  #onReaderError = (err: Error): void => {
    const failure = channelUnavailable(this.#name, `the reader's connection failed: ${err.message}`, err)
    this.#log.debug({ err: failure, channel: this.#name }, 'SSE Redis channel reader connection error')
  }

  #onReaderLost = (): void => {
    if (this.#down) return
    this.#down = true
    if (readerDown.hasSubscribers) readerDown.publish({ channel: this.#name, after: this.#last })
    this.#log.warn({ channel: this.#name, after: this.#last }, 'SSE Redis channel reader lost its connection; reconnecting')
  }

  #onReaderReady = (): void => {
    if (!this.#down) return
    this.#down = false
    if (readerUp.hasSubscribers) readerUp.publish({ channel: this.#name, after: this.#last })
    this.#log.info({ channel: this.#name, after: this.#last }, 'SSE Redis channel reader reconnected; resuming')
  }
}

function positive (option: string, value: unknown): number {
  if (!(Number.isSafeInteger(value) && (value as number) > 0)) {
    throw invalidOption(option, `must be a positive whole number of milliseconds, got ${String(value)}`)
  }
  return value as number
}

/**
 * Channels shared by every server process through Redis Streams:
 * `app.sse.channel<T>('chat', { backend: redisChannels({ redis }) })`. Their `publish` returns a promise of the
 * stream id; a browser can reconnect to any process with `Last-Event-ID` and gets exactly what it missed.
 */
export function redisChannels (options: RedisChannelsOptions): RedisChannels {
  const { redis, prefix = 'sse:', publishTimeout = 5000, blockTimeout = 5000, readerName = 'fastify-typed-sse' } = options
  if (typeof (redis as Partial<Redis> | undefined)?.duplicate !== 'function') {
    throw invalidOption('redis', 'must be an ioredis client (new Redis(url), or fastify.redis from @fastify/redis)')
  }
  if (typeof prefix !== 'string') throw invalidOption('prefix', `must be a string, got ${typeof prefix}`)
  if (typeof readerName !== 'string' || !/^[\w:.-]+$/.test(readerName)) {
    throw invalidOption('readerName', `must be letters, digits and _:.- only, got ${JSON.stringify(readerName)}`)
  }
  const settings = { redis, prefix, readerName, publishTimeout: positive('publishTimeout', publishTimeout), blockTimeout: positive('blockTimeout', blockTimeout) }
  return (name, history, deliver, log) => new RedisBackend(name, history, deliver, log, settings)
}
