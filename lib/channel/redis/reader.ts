import type { FastifyBaseLogger } from 'fastify'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import type { Cluster, Redis } from 'ioredis'
import { readerDown, readerUp } from '../../diagnostics.js'
import { channelUnavailable } from '../../errors.js'
import type { ResetReason } from '../backend.js'
import type { Entry } from './entry.js'
import { gap, keyOf, NO_STREAM, streamInfo } from './ids.js'
import type { Connection, Settings } from './options.js'

// The shared reader: one connection and one blocking read per backend per process (on a Redis Cluster, per slot
// group), over the streams of the channels that have local subscribers, whatever their number.

/** ioredis states of a connection that is or will be open (not waiting to connect on first use, not closed). */
const OPEN = new Set(['connecting', 'connect', 'ready'])
/** Entries one XREAD returns at most, per stream. */
const READ_BATCH = 512
/**
 * Milliseconds past `blockTimeout` a read (or a check) may go unanswered before Redis counts as stalled: the reader
 * is then down, and takes a new connection.
 */
const STALL_MARGIN = 1000
/** The margin doubles for each read in a row that was late (a huge answer still arrives whole), up to 2^6 times. */
const MAX_STALL_DOUBLINGS = 6

/** What a reader needs of a channel it reads (a `ReadChannel`): its stream, where it is, and where to hand on. */
export interface ReadChannel {
  /** The stream's key, as sent to Redis (without the client's `keyPrefix`). */
  readonly key: string
  /** The reader's tag the channel is placed under. */
  readonly tag: string
  readonly name: string
  /** The id of the newest entry handed on; defined once the channel knows where its stream is. */
  readonly last: string | undefined
  /** Entries read after `last`, oldest first. */
  handOn: (entries: Entry[]) => void
  /** The stream lost what came after `last` (`reason`); `position` is where it is now. */
  lost: (reason: ResetReason, position: string) => void
  /** Finds out again where the stream is (after a connection was lost). */
  recheck: () => void
}

/**
 * One backend's reader: one connection, one `XREAD BLOCK` over the streams of every channel with local
 * subscribers, plus a control stream of its own that a joining channel writes to, to cut the block short (an XADD
 * that reaches Redis before the XREAD does is still seen by it: no race, and no `CLIENT UNBLOCK` permission).
 * It lives from the first channel that needs it until no channel has needed it for `readerIdleTimeout` (and Redis
 * answers it: down, it stays), or the last channel of its tag closes.
 */
export class StreamReader {
  readonly #settings: Settings
  readonly #log: FastifyBaseLogger
  readonly #connection: Connection
  /** The channels read, by stream key: each has local subscribers and knows where it is (`last`). */
  readonly #reading = new Map<string, ReadChannel>()
  readonly #control: string
  /** The length of the client's `keyPrefix`: ioredis adds it to the keys sent, XREAD answers with full names. */
  readonly #keyPrefix: number
  /** How its errors name the channels it reads: all those of its prefix. */
  readonly #channels: string
  #controlLast = '0-0'
  /** Whether the XREAD in flight (if any) was asked to return already: one wake-up per XREAD. */
  #woken = true
  /** Set while the loop waits for a channel to read. */
  #wake: (() => void) | undefined
  /** Runs `readerIdleTimeout` after the last channel read left, unless one joins: the reader is not needed. */
  #idle: NodeJS.Timeout | undefined
  readonly #onIdle: () => void
  /** Set while the loop waits for the connection to be ready before it sends anything. */
  #ready: (() => void) | undefined
  /** Settles when the connection is lost: the XREAD in flight then never answers (it is not resent). */
  #lost!: Promise<'lost'>
  #onLost!: () => void
  /** Whether it told its channels it is down (its connection lost, a read failed or late), until an answer comes. */
  #down = false
  /** Reads in a row that got no answer in time: each doubles the margin of the next. */
  #late = 0
  #deadline: NodeJS.Timeout | undefined
  #closed = false
  /**
   * Set when a read was cut short (the connection lost, or the read failed): a Redis that restarted without its
   * data, or a key deleted meanwhile, would otherwise be read on from ids of a stream that is gone. Each stream is
   * checked before the next read.
   */
  #check = false
  readonly #ended: Promise<void>

  /** Every channel of its tag in this process, read or not: what its connection state is told to. */
  readonly #served: () => Iterable<ReadChannel>

  /** `onIdle` runs once no channel has been read for `readerIdleTimeout` (the reader is to be closed). */
  constructor (
    settings: Settings, log: FastifyBaseLogger, tag: string, served: () => Iterable<ReadChannel>, onIdle: () => void
  ) {
    this.#settings = settings
    this.#log = log
    this.#served = served
    this.#onIdle = onIdle
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
  add (backend: ReadChannel): void {
    this.#reading.set(backend.key, backend)
    clearTimeout(this.#idle)
    this.#wake?.()
    if (this.#woken) return
    this.#woken = true
    // a pipeline answers its errors instead of rejecting; a wake-up lost with the connection is not needed (the
    // read after a reconnection is a new one); the key expires on its own once no reader writes to it
    void this.#settings.redis.pipeline()
      .call('XADD', this.#control, 'MAXLEN', '1', '*', 'w', '1')
      .call('PEXPIRE', this.#control, this.#settings.blockTimeout * 2)
      .exec()
  }

  /** Whether it reads: its connection is up and Redis answers (false from a loss, a failed or late read on). */
  get connected (): boolean {
    return !this.#down && this.#connection.status === 'ready'
  }

  /** Stops reading this channel's stream (what the XREAD in flight brings for it is dropped). */
  remove (backend: ReadChannel): void {
    if (this.#reading.get(backend.key) !== backend) return
    this.#reading.delete(backend.key)
    if (this.#reading.size === 0) this.#idle = setTimeout(this.#idleOut, this.#settings.readerIdleTimeout).unref()
  }

  /** Not needed for a while: closed, unless down (kept until Redis answers, so that its channels are told it is up). */
  #idleOut = (): void => {
    if (this.#down) this.#idle = setTimeout(this.#idleOut, this.#settings.readerIdleTimeout).unref()
    else this.#onIdle()
  }

  close (): Promise<void> {
    this.#closed = true
    clearTimeout(this.#deadline)
    clearTimeout(this.#idle)
    this.#wake?.()
    this.#ready?.()
    this.#onLost()
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
      // down, it asks on with nothing to read (its control stream alone), until Redis answers
      if (this.#reading.size === 0 && !this.#down) {
        await new Promise<void>(resolve => { this.#wake = resolve })
        this.#wake = undefined
        continue
      }
      try {
        // nothing is sent before the connection is ready: commands sent while it is down would pile up in its offline
        // queue (one check per try to reconnect), and a read's time to answer is measured from when Redis has it
        if (this.#connection.status !== 'ready') {
          await new Promise<void>(resolve => { this.#ready = resolve })
          this.#ready = undefined
          continue
        }
        const reading = Array.from(this.#reading.values())
        const checking = this.#check && reading.length > 0
        const ids = reading.map(backend => backend.last as string)
        let command: Promise<unknown>
        if (checking) {
          command = this.#checks(reading, ids)
        } else {
          // with nothing to read, no block: whether Redis answers is all it asks
          this.#woken = reading.length === 0
          const block = this.#woken ? [] : ['BLOCK', this.#settings.blockTimeout]
          command = this.#connection.call('XREAD', 'COUNT', READ_BATCH, ...block,
            'STREAMS', this.#control, ...reading.map(backend => backend.key), this.#controlLast, ...ids)
        }
        const reply = await Promise.race([command, this.#lost, this.#overdue()])
        clearTimeout(this.#deadline)
        this.#woken = true
        if (reply === 'overdue') {
          await this.#stalled()
          continue
        }
        if (reply === 'lost') continue
        if (checking) {
          // a pipeline answers its errors: a failed check throws here
          this.#checked(reading, ids, reply as Array<[Error | null, unknown]>)
          this.#check = false
        } else if (reply !== null) {
          this.#handOn(reading, ids, reply as Array<[string, Entry[]]>)
        }
        failures = 0
        this.#late = 0
        this.#up()
      } catch (err) {
        // (never after close(): the read in flight is given up there, as `#lost`)
        clearTimeout(this.#deadline)
        this.#woken = true
        failures++
        this.#check = true
        const reading = Array.from(this.#reading.values())
        const failure = channelUnavailable(this.#channels, `the reader failed: ${(err as Error).message}`, err)
        this.#log.error({ err: failure, streams: reading.length }, 'SSE Redis channel reader failed; retrying')
        // a key that holds no stream fails the read for every channel: each finds its stream again first; any
        // other failure (a node down on a cluster) is the read's, retried as it was, and said once, not per channel
        if ((err as Error).message.startsWith('WRONGTYPE')) {
          for (const backend of reading) if (this.#reading.get(backend.key) === backend) backend.recheck()
        } else {
          this.#downFor('cannot read; retrying')
        }
        await new Promise(resolve => setTimeout(resolve, Math.min(2000, 50 * 2 ** failures)).unref())
      }
    }
  }

  /** What an XREAD from `ids` brought: to each channel still read from there (not gone quiet, nor restarted). */
  #handOn (reading: ReadChannel[], ids: string[], reply: Array<[string, Entry[]]>): void {
    const sent = new Map(reading.map((backend, i) => [backend.key, ids[i]]))
    for (const [prefixed, entries] of reply) {
      const key = prefixed.slice(this.#keyPrefix)
      if (key === this.#control) {
        this.#controlLast = (entries.at(-1) as Entry)[0]
        continue
      }
      const backend = this.#reading.get(key)
      if (backend !== undefined && backend.last === sent.get(key)) backend.handOn(entries)
    }
  }

  /**
   * Whether each stream still goes on from where its channel was read (`ids`): one pipeline on the reader's
   * connection, answered before its next read. See `#checked`.
   */
  #checks (reading: ReadChannel[], ids: string[]): Promise<unknown> {
    const pipeline = this.#connection.pipeline()
    for (let i = 0; i < reading.length; i++) {
      const key = (reading[i] as ReadChannel).key
      const id = ids[i] as string
      pipeline.call('XINFO', 'STREAM', key).call('XRANGE', key, id, id)
    }
    return pipeline.exec()
  }

  /**
   * A stream that does not go on from where its channel was read (a Redis that lost its data, a key deleted,
   * entries trimmed before they were read) resets its channel's subscribers to where it is now.
   */
  #checked (reading: ReadChannel[], ids: string[], replies: Array<[Error | null, unknown]>): void {
    for (let i = 0; i < reading.length; i++) {
      const [infoError, info] = replies[2 * i] as [Error | null, unknown]
      const [rangeError, range] = replies[2 * i + 1] as [Error | null, unknown]
      // a key that holds no stream: the read fails the same way, and each channel finds its stream again
      if (rangeError !== null) throw rangeError
      const backend = reading[i] as ReadChannel
      const last = ids[i] as string
      // still read from there (not gone quiet, nor restarted meanwhile)
      if (this.#reading.get(backend.key) !== backend || backend.last !== last) continue
      // XRANGE worked, so XINFO only fails when there is no stream (any more)
      const stream = infoError === null ? streamInfo(info) : NO_STREAM
      const reason = gap(stream, last, keyOf(last), (range as Entry[]).length > 0)
      if (reason !== undefined) backend.lost(reason, stream.lastEntry ?? stream.lastGenerated)
    }
  }

  /**
   * Settles `blockTimeout` + the margin after a read was sent, unless it was answered: the timer fires before the I/O
   * that was due by then, which may hold the answer, so it settles after that I/O.
   */
  #overdue (): Promise<'overdue'> {
    return new Promise(resolve => {
      this.#deadline = setTimeout(() => setImmediate(resolve, 'overdue'), this.#patience()).unref()
    })
  }

  /** How long a read may take: its block, and the margin (doubled for each late read before it). */
  #patience (): number {
    return Math.min(2 ** 31 - 1, this.#settings.blockTimeout + STALL_MARGIN * 2 ** this.#late)
  }

  /**
   * A read got no answer in time: a stalled Redis (or a connection that died without a word). The reader is down,
   * and takes a new connection (the loop reads again once it is ready, after checking each stream).
   */
  async #stalled (): Promise<void> {
    this.#downFor(`got no answer within ${this.#patience()} ms (Redis stalled?); reconnecting`)
    this.#late = Math.min(MAX_STALL_DOUBLINGS, this.#late + 1)
    // its close tells the loop to check each stream before it reads again
    const lost = this.#lost
    this.#connection.disconnect(true)
    await lost
  }

  /** Once per outage, whatever its cause: a warning, and each of its channels told. */
  #downFor (why: string): void {
    if (this.#down) return
    this.#down = true
    this.#log.warn({ streams: this.#reading.size }, `SSE Redis channel reader ${why}`)
    this.#tell(readerDown)
  }

  /** Redis answered: the outage, if any, is over. */
  #up (): void {
    if (!this.#down) return
    this.#down = false
    this.#log.info({ streams: this.#reading.size }, 'SSE Redis channel reader reconnected; resuming')
    this.#tell(readerUp)
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
    this.#downFor('lost its connection; reconnecting')
  }

  /** Connected again: up once a read (or check) is answered; at once when there is nothing to read. */
  #onReady = (): void => {
    this.#ready?.()
    if (this.#reading.size === 0) this.#up()
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
