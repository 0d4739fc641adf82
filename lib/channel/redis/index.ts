import type { FastifyBaseLogger } from 'fastify'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import type { Cluster, Redis } from 'ioredis'
import type {
  BackendStats, ChannelBackend, ChannelBackendFactory, ChannelEncoder, ChannelItem, Deliver, HistoryOptions,
  PublishOptions, Replay, Reset, ResetReason
} from '../backend.js'
import { publishFailed, readerDown, readerUp } from '../../diagnostics.js'
import { joinFrame, withFrame } from '../../encode.js'
import { channelUnavailable, invalidItem, invalidOption, type SseRuntimeError } from '../../errors.js'
import type { SseItem } from '../../types.js'

// Channels shared by every server process through one Redis stream per channel: `XADD … MAXLEN ~ N` per publish
// (its id is the item's id: `<ms>-<seq>`, exactly what a browser sends back as Last-Event-ID). Each process reads
// every stream it has local subscribers for with one `XREAD BLOCK` on one connection per backend, whatever the
// number of channels; a channel joins that read by unblocking it (`CLIENT UNBLOCK` from the publishing
// connection), and a channel without local subscribers is not read at all. The stream entry holds the frame
// around its id line and the item's fields as JSON, so each process rebuilds the frame by concatenation, never
// by serializing the data again. Only this module uses ioredis, and only by type: the main entry never loads it.
//
// On a Redis Cluster one XREAD may only name keys of one hash slot, so each channel's key carries a hash tag: its
// own (a name like `{tenant}chat`) or its slot group's (`{<prefix><n>}<name>`, n a hash of the name), and there is
// one reader per tag, a cluster client of its own that follows the slot wherever it moves.

/** Options of `redisChannels()`. */
export interface RedisChannelsOptions {
  /**
   * Your ioredis client (also what `@fastify/redis` gives you), or an ioredis `Cluster` for a Redis Cluster.
   * Publishes and replays use it; the reader of every channel of this backend is one `redis.duplicate()` (on a
   * cluster: one per slot group or hash tag), closed with the last channel it reads. Your client is never closed by
   * the plugin.
   */
  redis: Redis | Cluster
  /**
   * Prefix of the stream keys, not empty: a channel `chat` lives at `<prefix>chat` (on a Redis Cluster at
   * `{<prefix><n>}chat`, n its slot group, or `<prefix>{tag}chat` for a name with a hash tag of its own; the prefix
   * then holds no `{` or `}`). Default `'sse:'`.
   */
  prefix?: string
  /** Milliseconds after which a publish Redis has not answered rejects. Default 5000. */
  publishTimeout?: number
  /** Milliseconds one `XREAD BLOCK` waits before the reader asks again. Default 5000. */
  blockTimeout?: number
  /**
   * The reader connection's name in `CLIENT LIST`: `<readerName>:<prefix>`. Default `'fastify-typed-sse'`;
   * give each server its own (its host name) to tell them apart.
   */
  readerName?: string
  /**
   * Milliseconds a publish's `idempotencyKey` is remembered: a publish with the same key within that time
   * stores nothing and resolves to the first one's id. Default 300000 (5 minutes).
   */
  idempotencyWindow?: number
  /**
   * On a Redis Cluster: how many hash slots the channels without a hash tag of their own are spread over (each
   * slot group has one reader connection in a process that has subscribers in it). Ignored without a cluster.
   * Default 16.
   */
  slotGroups?: number
}

/** What `redisChannels()` returns: pass it as the `backend` option of `app.sse.channel(name, { backend })`. */
export type RedisChannels = ChannelBackendFactory<Promise<string>>

const MAX_ID_PART = 2n ** 64n - 1n
const STREAM_ID = /^(0|[1-9][0-9]{0,19})-(0|[1-9][0-9]{0,19})$/
/** ioredis states in which a command would wait in the offline queue for a connection that was lost. */
const DISCONNECTED = new Set(['reconnecting', 'close', 'end'])
/** ioredis states of a connection that is or will be open (not waiting to connect on first use, not closed). */
const OPEN = new Set(['connecting', 'connect', 'ready'])
/** Entries one XREAD returns at most, per stream. */
const READ_BATCH = 512
/** An idempotency key longer than this is refused (it is part of a Redis key). */
const MAX_IDEMPOTENCY_KEY = 256
/**
 * Stores the item unless its idempotency key was seen within the window: then it answers the id stored with it.
 * KEYS: stream, idempotency key. ARGV: MAXLEN, head, tail, fields, window in ms.
 */
const IDEMPOTENT_XADD = `local id = redis.call('GET', KEYS[2])
if id then return id end
id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'h', ARGV[2], 't', ARGV[3], 'j', ARGV[4])
redis.call('SET', KEYS[2], id, 'PX', ARGV[5])
return id`

function isIdempotencyKey (key: unknown): boolean {
  return typeof key === 'string' && key !== '' && key.length <= MAX_IDEMPOTENCY_KEY
}

/**
 * The start of a channel's idempotency keys: `#<length of the stream key>:<stream key>:` (`!` instead of `#` when
 * the prefix starts with `#`). No channel key starts with it (they start with the prefix, or on a cluster with `{`),
 * the length keeps two channels' keys apart whatever their names and keys hold, and the stream key's hash tag comes
 * first on a cluster: the script's two keys share a slot.
 */
function idempotencyPrefix (prefix: string, key: string): string {
  return (prefix.startsWith('#') ? '!' : '#') + key.length + ':' + key + ':'
}

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
  /** The newest id deleted by XDEL ('0-0' when none): an id that is no entry but may have been one. */
  deleted: string
  /** The newest entry still kept. */
  lastEntry: string | undefined
}

const NO_STREAM: StreamInfo = { lastGenerated: '0-0', removedBefore: '0-0', deleted: '0-0', lastEntry: undefined }

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
  return { lastGenerated, removedBefore, deleted, lastEntry }
}

/**
 * Why a client (or a reader) at `id` cannot go on from there without a gap, or undefined when it can; `found`:
 * the stream holds `id`. The age of what follows is the caller's concern.
 */
function gap (stream: StreamInfo, id: string, at: bigint, found: boolean): ResetReason | undefined {
  if (at > keyOf(stream.lastGenerated)) return 'unknown'
  if (at < keyOf(stream.removedBefore)) return 'expired'
  // Not in the stream, not deleted from it, neither its origin nor its newest id: the stream the id came from is
  // gone (a Redis that lost its data started it again, with newer ids and nothing trimmed).
  if (!found && at > keyOf(stream.deleted) && at !== 0n && id !== stream.lastGenerated) return 'unknown'
  return undefined
}

/** Milliseconds since the epoch on Redis's clock, from the reply of `TIME`. */
function redisNow (reply: unknown): number {
  const [seconds, micros] = reply as [string, string]
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)
}

/** What a reader reads on: a connection, or on a cluster a cluster client of its own. */
type Connection = Redis | Cluster

interface Settings extends Required<Omit<RedisChannelsOptions, 'redis'>> {
  redis: Connection
  /** Whether `redis` is a Cluster: every key then carries a hash tag, and each tag has its reader. */
  cluster: boolean
}

/** The hash tag Redis Cluster hashes a key by (its first `{…}` with something inside), or undefined. */
function hashTag (key: string): string | undefined {
  const open = key.indexOf('{')
  if (open === -1) return undefined
  const close = key.indexOf('}', open + 1)
  return close > open + 1 ? key.slice(open + 1, close) : undefined
}

/** The slot group of a channel name: FNV-1a (32 bits) over its UTF-16 code units, modulo the number of groups. */
function slotGroup (name: string, groups: number): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 0x01000193)
  return (hash >>> 0) % groups
}

/**
 * Where a channel lives: its stream's key, and the reader's tag (`''` without a cluster: one reader for all; on a
 * cluster `{tag}`, which every key of that reader starts with or carries, so that they share a slot).
 */
function place (settings: Settings, name: string): { key: string, tag: string } {
  if (!settings.cluster) return { key: settings.prefix + name, tag: '' }
  const own = hashTag(name)
  if (own !== undefined) return { key: settings.prefix + name, tag: `{${own}}` }
  const tag = `{${settings.prefix}${slotGroup(name, settings.slotGroups)}}`
  return { key: tag + name, tag }
}

/**
 * One backend's reader: one connection, one `XREAD BLOCK` over the streams of every channel with local
 * subscribers, plus a control stream of its own that a joining channel writes to, to cut the block short (an XADD
 * that reaches Redis before the XREAD does is still seen by it: no race, and no `CLIENT UNBLOCK` permission).
 * It lives from the first channel that needs it to the close of the last channel of its backend.
 */
class StreamReader {
  readonly #settings: Settings
  readonly #log: FastifyBaseLogger
  readonly #connection: Connection
  /** The channels read, by stream key: each has local subscribers and knows where it is (`last`). */
  readonly #reading = new Map<string, RedisBackend>()
  readonly #control: string
  /** The length of the client's `keyPrefix`: ioredis adds it to the keys sent, XREAD answers with full names. */
  readonly #keyPrefix: number
  /** How its errors name the channels it reads: all those of its prefix. */
  readonly #channels: string
  #controlLast = '0-0'
  /** Whether the XREAD in flight (if any) was asked to return already: one wake-up per XREAD. */
  #woken = true
  #idle: (() => void) | undefined
  /** Set while the loop waits for the connection to be ready before it checks the streams. */
  #ready: (() => void) | undefined
  /** Settles when the connection is lost: the XREAD in flight then never answers (it is not resent). */
  #lost!: Promise<'lost'>
  #onLost!: () => void
  #down = false
  #closed = false
  /**
   * Set when a read was cut short (the connection lost, or the read failed): a Redis that restarted without its
   * data, or a key deleted meanwhile, would otherwise be read on from ids of a stream that is gone. Each stream is
   * checked before the next read.
   */
  #check = false
  readonly #ended: Promise<void>

  /** Every channel of its backend in this process, read or not: what its connection state is told to. */
  readonly #served: () => Iterable<RedisBackend>

  constructor (settings: Settings, log: FastifyBaseLogger, tag: string, served: () => Iterable<RedisBackend>) {
    this.#settings = settings
    this.#log = log
    this.#served = served
    // the tag first: the control stream shares the slot of the streams read with it
    this.#control = tag + settings.prefix + 'reader:' + randomUUID()
    this.#channels = settings.prefix + '*'
    this.#keyPrefix = String(settings.redis.options.keyPrefix ?? '').length
    this.#newLost()
    const name = settings.readerName + ':' + settings.prefix.replace(/[^\w:.-]/g, '_')
    this.#connection = settings.cluster
      ? clusterReader(settings.redis as Cluster, name)
      : reader(settings.redis as Redis, name)
    this.#connection.on('error', this.#onError)
    this.#connection.on('close', this.#onClose)
    this.#connection.on('reconnecting', this.#onReconnecting)
    this.#connection.on('ready', this.#onReady)
    this.#ended = new Promise(resolve => this.#connection.once('end', resolve))
    void this.#run()
  }

  /** Reads this channel's stream after its `last`; the XREAD in flight does not cover it, so it is cut short. */
  add (backend: RedisBackend): void {
    this.#reading.set(backend.key, backend)
    this.#idle?.()
    if (this.#woken) return
    this.#woken = true
    // a pipeline answers its errors instead of rejecting; a wake-up lost with the connection is not needed (the
    // read after a reconnection is a new one); the key expires on its own once no reader writes to it
    void this.#settings.redis.pipeline()
      .call('XADD', this.#control, 'MAXLEN', '1', '*', 'w', '1')
      .call('PEXPIRE', this.#control, this.#settings.blockTimeout * 2)
      .exec()
  }

  /** Whether its connection is up (false while it connects or reconnects). */
  get connected (): boolean {
    return this.#connection.status === 'ready'
  }

  /** Stops reading this channel's stream (what the XREAD in flight brings for it is dropped). */
  remove (backend: RedisBackend): void {
    if (this.#reading.get(backend.key) === backend) this.#reading.delete(backend.key)
  }

  close (): Promise<void> {
    this.#closed = true
    this.#idle?.()
    this.#ready?.()
    // waiting to reconnect, it has no connection to close and says nothing more
    const ended = this.#connection.status === 'reconnecting' ? Promise.resolve() : this.#ended
    // a cluster client ends as it lets go of its node connections, before they have closed: wait for them too
    const nodes = this.#settings.cluster
      ? (this.#connection as Cluster).nodes().filter(node => OPEN.has(node.status)).map(node => once(node, 'end'))
      : []
    this.#connection.disconnect()
    return Promise.all([ended, ...nodes]).then(() => {})
  }

  async #run (): Promise<void> {
    let failures = 0
    while (!this.#closed) {
      if (this.#reading.size === 0) {
        await new Promise<void>(resolve => { this.#idle = resolve })
        this.#idle = undefined
        continue
      }
      try {
        // a check waits for the connection: those sent while it is down would pile up in its offline queue, one per
        // try to reconnect
        if (this.#check && this.#connection.status !== 'ready') {
          await new Promise<void>(resolve => { this.#ready = resolve })
          this.#ready = undefined
          continue
        }
        const checking = this.#check
        const reading = Array.from(this.#reading.values())
        const ids = reading.map(backend => backend.last as string)
        let command: Promise<unknown>
        if (checking) {
          command = this.#checks(reading, ids)
        } else {
          this.#woken = false
          command = this.#connection.call('XREAD', 'COUNT', READ_BATCH, 'BLOCK', this.#settings.blockTimeout,
            'STREAMS', this.#control, ...reading.map(backend => backend.key), this.#controlLast, ...ids)
        }
        const reply = await Promise.race([command, this.#lost])
        this.#woken = true
        failures = 0
        if (reply === 'lost' || reply === null) continue
        if (checking) {
          this.#check = false
          this.#checked(reading, ids, reply as Array<[Error | null, unknown]>)
          continue
        }
        const sent = new Map(reading.map((backend, i) => [backend.key, ids[i]]))
        for (const [prefixed, entries] of reply as Array<[string, Entry[]]>) {
          const key = prefixed.slice(this.#keyPrefix)
          if (key === this.#control) {
            this.#controlLast = (entries.at(-1) as Entry)[0]
            continue
          }
          // still read from where this XREAD started (not gone quiet, nor restarted meanwhile)
          const backend = this.#reading.get(key)
          if (backend !== undefined && backend.last === sent.get(key)) backend.handOn(entries)
        }
      } catch (err) {
        this.#woken = true
        if (this.#closed) break
        failures++
        this.#check = true
        const reading = Array.from(this.#reading.values())
        const failure = channelUnavailable(this.#channels, `the reader failed: ${(err as Error).message}`, err)
        this.#log.error({ err: failure, streams: reading.length }, 'SSE Redis channel reader failed; retrying')
        // a key that holds no stream fails the read for every channel: each finds its stream again first; any
        // other failure (a node down on a cluster) is the read's, retried as it was, and said once, not per channel
        if ((err as Error).message.startsWith('WRONGTYPE')) {
          for (const backend of reading) if (this.#reading.get(backend.key) === backend) backend.recheck()
        }
        await new Promise(resolve => setTimeout(resolve, Math.min(2000, 50 * 2 ** failures)).unref())
      }
    }
  }

  /**
   * Whether each stream still goes on from where its channel was read (`ids`): one pipeline on the reader's
   * connection, answered before its next read. See `#checked`.
   */
  #checks (reading: RedisBackend[], ids: string[]): Promise<unknown> {
    const pipeline = this.#connection.pipeline()
    for (let i = 0; i < reading.length; i++) {
      const key = (reading[i] as RedisBackend).key
      const id = ids[i] as string
      pipeline.call('XINFO', 'STREAM', key).call('XRANGE', key, id, id)
    }
    return pipeline.exec()
  }

  /**
   * A stream that does not go on from where its channel was read (a Redis that lost its data, a key deleted,
   * entries trimmed before they were read) resets its channel's subscribers to where it is now.
   */
  #checked (reading: RedisBackend[], ids: string[], replies: Array<[Error | null, unknown]>): void {
    for (let i = 0; i < reading.length; i++) {
      const [infoError, info] = replies[2 * i] as [Error | null, unknown]
      const [rangeError, range] = replies[2 * i + 1] as [Error | null, unknown]
      // a key that holds no stream: the read fails the same way, and each channel finds its stream again
      if (rangeError !== null) throw rangeError
      const backend = reading[i] as RedisBackend
      const last = ids[i] as string
      // still read from there (not gone quiet, nor restarted meanwhile)
      if (this.#reading.get(backend.key) !== backend || backend.last !== last) continue
      // XRANGE worked, so XINFO only fails when there is no stream (any more)
      const stream = infoError === null ? streamInfo(info) : NO_STREAM
      const reason = gap(stream, last, keyOf(last), (range as Entry[]).length > 0)
      if (reason !== undefined) backend.lost(reason, stream.lastEntry ?? stream.lastGenerated)
    }
  }

  #newLost (): void {
    this.#lost = new Promise(resolve => { this.#onLost = () => resolve('lost') })
  }

  #onError = (err: Error): void => {
    const failure = channelUnavailable(this.#channels, `the reader's connection failed: ${err.message}`, err)
    this.#log.debug({ err: failure }, 'SSE Redis channel reader connection error')
  }

  #onClose = (): void => {
    this.#check = true
    this.#onLost()
    this.#newLost()
  }

  #onReconnecting = (): void => {
    if (this.#down) return
    this.#down = true
    this.#log.warn({ streams: this.#reading.size }, 'SSE Redis channel reader lost its connection; reconnecting')
    this.#tell(readerDown)
  }

  #onReady = (): void => {
    this.#ready?.()
    if (!this.#down) return
    this.#down = false
    this.#log.info({ streams: this.#reading.size }, 'SSE Redis channel reader reconnected; resuming')
    this.#tell(readerUp)
  }

  /** One diagnostics message per channel it serves: each channel's connection state changed with it. */
  #tell (event: typeof readerDown): void {
    if (!event.hasSubscribers) return
    for (const backend of this.#served()) event.publish({ channel: backend.name, after: backend.last })
  }
}

/** A reader's own connection to a Redis. */
function reader (redis: Redis, name: string): Redis {
  // No retry limit: a command waits for the reconnection. Not resent after one: the loop asks again itself,
  // from the ids it has handed on. RESP2 keeps XREAD's reply one shape on ioredis 5 and 6.
  return redis.duplicate({
    connectionName: name,
    maxRetriesPerRequest: null,
    enableOfflineQueue: true,
    autoResendUnfulfilledCommands: false,
    lazyConnect: false,
    protocol: 2
  })
}

/**
 * A reader's own cluster client: it connects to the master that serves its slot (and follows MOVED, ASK and a
 * failover there; a replica could be behind what was published); no ready check and no periodic slot refresh,
 * whose connections would come and go beside it.
 */
function clusterReader (cluster: Cluster, name: string): Cluster {
  return cluster.duplicate([], {
    enableOfflineQueue: true,
    enableReadyCheck: false,
    lazyConnect: false,
    scaleReads: 'master',
    slotsRefreshInterval: 0,
    redisOptions: { ...cluster.options.redisOptions, connectionName: name, protocol: 2 }
  })
}

/**
 * What the channels of one `redisChannels()` backend share: the settings, the readers (one; on a cluster one per
 * tag), the names in use.
 */
class Backends {
  readonly settings: Settings
  readonly #channels = new Map<string, RedisBackend>()
  /** The readers by tag, each started on first need and closed with the last channel of its tag. */
  readonly #readers = new Map<string, StreamReader>()
  /** How many channels each tag has. */
  readonly #tags = new Map<string, number>()

  constructor (settings: Settings) {
    this.settings = settings
  }

  /** A channel of this backend is created: one per name (its reader reads each stream once). */
  open (name: string, backend: RedisBackend): void {
    if (this.#channels.has(name)) {
      throw invalidOption('backend', `of channel "${name}" already serves a channel of that name ` +
        '(another app of this process?): give each app its own redisChannels()')
    }
    this.#channels.set(name, backend)
    this.#tags.set(backend.tag, (this.#tags.get(backend.tag) ?? 0) + 1)
  }

  /** The reader of a channel's tag, started on first need. */
  reader (backend: RedisBackend, log: FastifyBaseLogger): StreamReader {
    const tag = backend.tag
    let reader = this.#readers.get(tag)
    if (reader === undefined) {
      reader = new StreamReader(this.settings, log, tag, () => this.#served(tag))
      this.#readers.set(tag, reader)
    }
    return reader
  }

  /** Whether the reader's connection is up; undefined while there is no reader (no channel was read yet). */
  connected (backend: RedisBackend): boolean | undefined {
    return this.#readers.get(backend.tag)?.connected
  }

  /** Stops reading a channel's stream (there is nothing to stop without a reader). */
  remove (backend: RedisBackend): void {
    this.#readers.get(backend.tag)?.remove(backend)
  }

  /** A channel of this backend closed: the last one of its tag closes their reader. */
  close (backend: RedisBackend): Promise<void> {
    this.#channels.delete(backend.name)
    const left = (this.#tags.get(backend.tag) as number) - 1
    if (left > 0) {
      this.#tags.set(backend.tag, left)
      return Promise.resolve()
    }
    this.#tags.delete(backend.tag)
    const reader = this.#readers.get(backend.tag)
    if (reader === undefined) return Promise.resolve()
    this.#readers.delete(backend.tag)
    return reader.close()
  }

  /** The channels of a tag: those a reader's connection state is told to. */
  * #served (tag: string): Generator<RedisBackend, void> {
    for (const backend of this.#channels.values()) if (backend.tag === tag) yield backend
  }
}

class RedisBackend implements ChannelBackend<Promise<string>> {
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
    if (idempotencyKey !== undefined && !isIdempotencyKey(idempotencyKey)) {
      const got = JSON.stringify(idempotencyKey)
      const problem = `must be a non-empty string of at most ${MAX_IDEMPOTENCY_KEY} characters, got ${got}`
      throw invalidOption('idempotencyKey', problem)
    }
    // encoded (and refused) once, here, around its id line; every reader joins the parts with the entry's id
    const { head, tail } = encode.parts(item)
    let fields: string
    try {
      fields = JSON.stringify({ event: item.event, retry: item.retry, comment: item.comment, data: item.data })
    } catch (err) {
      throw invalidItem('data', 'must be JSON-serializable on a Redis channel', err)
    }
    const redis = this.#settings.redis
    const status = redis.status
    if (DISCONNECTED.has(status)) {
      const problem = `Redis is not connected (${status}); the item was not published`
      return Promise.reject(this.#failed(channelUnavailable(this.#name, problem)))
    }
    const stored = idempotencyKey === undefined
      ? redis.call('XADD', this.key, 'MAXLEN', '~', this.#maxLen, '*', 'h', head, 't', tail, 'j', fields)
      : redis.call('EVAL', IDEMPOTENT_XADD, 2, this.key, this.#idempotent + idempotencyKey,
        this.#maxLen, head, tail, fields, this.#settings.idempotencyWindow)
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

  replay (lastEventId: string): Promise<Replay> {
    const at = idKey(lastEventId)
    if (at === undefined) return this.#reset('unknown')
    return this.#replay(lastEventId, at)
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

  /** Entries the reader read from this channel's stream after `last`, oldest first. */
  handOn (entries: Entry[]): void {
    for (const [id, fields] of entries) {
      this.last = id
      const item = this.#item(id, fields)
      if (item !== undefined) this.#deliver(item)
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

  async #replay (lastEventId: string, at: bigint): Promise<Replay> {
    // one snapshot: what the stream issued and removed, what follows the id (and whether it is still there), and
    // the time on Redis's clock (the stream ids' clock: this server's may be off)
    const replies = await this.#settings.redis.multi()
      .call('XINFO', 'STREAM', this.key)
      .call('XRANGE', this.key, lastEventId, '+')
      .call('TIME')
      .exec() as Array<[Error | null, unknown]>
    type Reply = [Error | null, unknown]
    const [[infoError, info], [rangeError, range], [, time]] = replies as [Reply, Reply, Reply]
    if (rangeError !== null) throw rangeError
    // XRANGE worked, so XINFO only fails when there is no stream (yet, or any more)
    const stream = infoError === null ? streamInfo(info) : NO_STREAM
    let entries = range as Entry[]
    const found = entries[0]?.[0] === lastEventId
    if (found) entries = entries.slice(1)
    const tooOld = entries.length > 0 && Number(entries[0]?.[0].split('-')[0]) <= redisNow(time) - this.#maxAge
    const reset = gap(stream, lastEventId, at, found) ?? (tooOld ? 'expired' : undefined)
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
  const {
    redis, prefix = 'sse:', publishTimeout = 5000, blockTimeout = 5000, readerName = 'fastify-typed-sse',
    idempotencyWindow = 300_000, slotGroups = 16
  } = options
  if (typeof (redis as Partial<Redis> | undefined)?.duplicate !== 'function') {
    throw invalidOption('redis', 'must be an ioredis client (new Redis(url), new Cluster(nodes), ' +
      'or fastify.redis from @fastify/redis)')
  }
  if (typeof prefix !== 'string') throw invalidOption('prefix', `must be a string, got ${typeof prefix}`)
  // every channel key starts with it (or on a cluster with `{`); idempotency keys never do
  if (prefix === '') throw invalidOption('prefix', 'must be non-empty: the keys of channels start with it')
  const cluster = (redis as Partial<Cluster>).isCluster === true
  // a channel's own tag is in its name, so the prefix holds none: then no two names can share a key
  if (cluster && /[{}]/.test(prefix)) {
    throw invalidOption('prefix', 'must be without { or } on a Redis Cluster (a channel name "{tag}…" chooses ' +
      `its slot itself), got ${JSON.stringify(prefix)}`)
  }
  // ioredis puts the client's keyPrefix before each key: a hash tag there would be the tag of every key
  if (cluster && /[{}]/.test(String(redis.options.keyPrefix ?? ''))) {
    throw invalidOption('redis', 'must have a keyPrefix without { or } on a Redis Cluster (it comes before the ' +
      `hash tags of the channels' keys), got ${JSON.stringify(String(redis.options.keyPrefix))}`)
  }
  if (!(Number.isSafeInteger(slotGroups) && slotGroups >= 1 && slotGroups <= 16384)) {
    throw invalidOption('slotGroups', `must be a whole number from 1 to 16384, got ${String(slotGroups)}`)
  }
  if (typeof readerName !== 'string' || !/^[\w:.-]+$/.test(readerName)) {
    throw invalidOption('readerName', `must be letters, digits and _:.- only, got ${JSON.stringify(readerName)}`)
  }
  const backends = new Backends({
    redis,
    cluster,
    prefix,
    readerName,
    slotGroups,
    publishTimeout: positive('publishTimeout', publishTimeout),
    blockTimeout: positive('blockTimeout', blockTimeout),
    idempotencyWindow: positive('idempotencyWindow', idempotencyWindow)
  })
  return (name, history, deliver, log, reset) => new RedisBackend(name, history, deliver, log, reset, backends)
}
