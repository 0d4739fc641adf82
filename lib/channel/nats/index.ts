import type { FastifyBaseLogger } from 'fastify'
import type { NatsConnection } from '@nats-io/transport-node'
import type { ChannelBackendFactory } from '../backend.js'
import { readerDown, readerUp } from '../../diagnostics.js'
import { invalidOption, shown } from '../../errors.js'
import { refuseNonObject, refuseUnknown } from '../../options.js'
import { Cursor } from '../store/cursor.js'
import { addChannel, checkName, positiveMs } from '../store/items.js'
import { NatsChannel, type NatsGroup } from './channel.js'
import { NatsReader, type ReaderHost } from './reader.js'
import { handles, streamFacts, type NatsSettings, type StreamFacts } from './stream.js'
import { checkStreamName, checkSubjectPrefix } from './subjects.js'

// Channels shared by every server process through NATS JetStream: one stream, a subject per channel, the stream
// sequence in the ids (./subjects), one ordered consumer per process over every channel (./reader), replays by
// an ordered consumer filtered on the channel's subject (./channel). Only these modules load the NATS client.

/** Options of `natsChannels()`. */
export interface NatsChannelsOptions {
  /**
   * Your NATS connection (`connect()` of `@nats-io/transport-node`), to a server with JetStream enabled. Never
   * closed by the plugin.
   */
  connection: NatsConnection
  /** The first tokens of the channels' subjects: channel `chat` is `<prefix>.chat`. Default `'sse'`. */
  prefix?: string
  /** The JetStream stream of the channels, made when missing (subjects `<prefix>.>` only). Default `'SSE'`. */
  stream?: string
  /** Milliseconds after which a publish NATS has not acknowledged rejects. Default 5000. */
  publishTimeout?: number
  /**
   * Milliseconds a publish's `idempotencyKey` is remembered (the stream's `duplicate_window`, set when the backend
   * makes the stream). Default 300000 (5 minutes).
   */
  idempotencyWindow?: number
  /**
   * Items the stream keeps per channel (its `max_msgs_per_subject`, set when the backend makes the stream); a
   * channel's `history` must be below it. Default 1000.
   */
  maxPerChannel?: number
  /** Milliseconds the stream keeps an item (its `max_age`, set when the backend makes it). Default: no limit. */
  maxAge?: number
  /** Where the stream keeps its items when the backend makes it: `'file'` or `'memory'`. Default `'file'`. */
  storage?: 'file' | 'memory'
}

/** What `natsChannels()` returns: pass it as the `backend` option of `app.sse.channel(name, { backend })`. */
export type NatsChannels = ChannelBackendFactory<Promise<string>>

const OPTIONS = ['connection', 'prefix', 'stream', 'publishTimeout', 'idempotencyWindow', 'maxPerChannel', 'maxAge',
  'storage']
const OWNER = 'natsChannels()'

/** What the channels of one backend share: the settings, the stream's facts, the reader, the connection state. */
class Backend implements NatsGroup, ReaderHost {
  readonly settings: NatsSettings
  readonly cursor = new Cursor()
  readonly #channels = new Map<string, NatsChannel>()
  #reader: NatsReader | undefined
  /** Settles once the last reader stopped has deleted its consumer. */
  #closed: Promise<void> = Promise.resolve()
  #facts: Promise<StreamFacts> | undefined
  #up = true
  #log: FastifyBaseLogger | undefined

  constructor (settings: NatsSettings) {
    this.settings = settings
    void this.#watch()
  }

  /** A channel of this backend is created: one per name (its reader hands each subject's messages to one channel). */
  open (name: string, history: number, channel: () => NatsChannel): NatsChannel {
    checkName(name, 'NATS')
    if (history >= this.settings.maxPerChannel) {
      throw invalidOption('history', `of channel "${name}" is ${history}: a NATS channel replays fewer items than ` +
        `the stream keeps per channel (maxPerChannel ${this.settings.maxPerChannel} of natsChannels())`)
    }
    return addChannel(this.#channels, name, OWNER, channel)
  }

  get connected (): boolean | undefined {
    return this.#reader === undefined ? undefined : this.#up
  }

  get up (): boolean {
    return this.#up
  }

  reader = (log: FastifyBaseLogger): NatsReader => {
    this.#log ??= log
    this.#reader ??= new NatsReader(this, log)
    return this.#reader
  }

  get starting (): Promise<unknown> | undefined {
    const reader = this.#reader
    return reader === undefined || reader.failing ? undefined : reader.starting
  }

  remove (channel: NatsChannel): void {
    this.#reader?.remove(channel)
  }

  facts = (fresh = false): Promise<StreamFacts> => {
    if (fresh || this.#facts === undefined) {
      const facts = streamFacts(this.settings)
      this.#facts = facts
      // a failure is not kept: the next call asks again
      facts.catch(() => { if (this.#facts === facts) this.#facts = undefined })
    }
    return this.#facts
  }

  rejoin = (channel: NatsChannel): void => {
    addChannel(this.#channels, channel.name, OWNER, () => channel)
  }

  /** The last channel (closed, or forgotten before) stops the reader; a close waits for every one stopping. */
  close (channel: NatsChannel): Promise<void> {
    this.forget(channel)
    return this.#closed
  }

  forget (channel: NatsChannel): void {
    if (this.#channels.get(channel.name) !== channel) return
    this.#channels.delete(channel.name)
    const reader = this.#reader
    if (this.#channels.size > 0 || reader === undefined) return
    this.#reader = undefined
    // with no channel left, none would stop it with the app
    // chained: a close still running (its last channel forgotten) is waited for with a later one
    this.#closed = Promise.all([this.#closed, reader.close()]).then(() => {})
  }

  /** The connection's state: said once per outage and once when it is back (then the reader starts again). */
  async #watch (): Promise<void> {
    for await (const status of this.settings.connection.status()) {
      if (status.type === 'disconnect' && this.#up) {
        this.#up = false
        this.#log?.warn({ channels: this.#channels.size }, 'SSE NATS channel reader lost its connection; reconnecting')
        this.#tell(readerDown)
      } else if (status.type === 'reconnect' && !this.#up) {
        this.#up = true
        // the server may have restarted without its store: the stream (and its tag) is read again
        this.#facts = undefined
        this.#log?.info({ channels: this.#channels.size }, 'SSE NATS channel reader reconnected; resuming')
        this.#tell(readerUp)
        this.#reader?.restart()
      }
    }
  }

  /** One diagnostics message per channel of the backend: each channel's connection state changed with it. */
  #tell (event: typeof readerDown): void {
    if (!event.hasSubscribers || this.#reader === undefined) return
    for (const channel of this.#channels.values()) {
      event.publish({ channel: channel.name, after: channel.stats().position })
    }
  }
}

/**
 * Channels shared by every server process through NATS JetStream:
 * `app.sse.channel<T>('chat', { backend: natsChannels({ connection }) })`. Their `publish` returns a promise of the
 * id (`<tag>-<stream sequence>`); a browser can reconnect to any process with `Last-Event-ID` and gets exactly what
 * it missed.
 */
export function natsChannels (options: NatsChannelsOptions): NatsChannels {
  refuseNonObject(options, '{ connection, prefix, … }', OWNER)
  refuseUnknown(options, OPTIONS, OWNER)
  const {
    connection, prefix = 'sse', stream = 'SSE', publishTimeout = 5000, idempotencyWindow = 300_000,
    maxPerChannel = 1000, maxAge = Infinity, storage = 'file'
  } = options
  const candidate = connection as Partial<NatsConnection> | undefined
  if (typeof candidate?.publish !== 'function' || typeof candidate.status !== 'function') {
    throw invalidOption('connection', 'must be a NATS connection (await connect({ servers }) of ' +
      `@nats-io/transport-node), got ${shown(connection)}`, OWNER)
  }
  if (!(Number.isSafeInteger(maxPerChannel) && maxPerChannel >= 2)) {
    throw invalidOption('maxPerChannel', `must be a whole number of items >= 2, got ${shown(maxPerChannel)}`, OWNER)
  }
  if (maxAge !== Infinity) positiveMs('maxAge', maxAge, OWNER)
  if (storage !== 'file' && storage !== 'memory') {
    throw invalidOption('storage', `must be 'file' or 'memory', got ${shown(storage)}`, OWNER)
  }
  const settings: NatsSettings = {
    connection,
    ...handles(connection),
    prefix: checkSubjectPrefix(prefix, OWNER),
    stream: checkStreamName(stream, OWNER),
    publishTimeout: positiveMs('publishTimeout', publishTimeout, OWNER),
    idempotencyWindow: positiveMs('idempotencyWindow', idempotencyWindow, OWNER),
    maxPerChannel,
    maxAge,
    storage
  }
  const backend = new Backend(settings)
  return (name, history, deliver, log, reset) =>
    backend.open(name, history.history, () => new NatsChannel(name, history, deliver, log, reset, backend))
}
