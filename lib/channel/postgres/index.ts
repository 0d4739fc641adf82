import type { FastifyBaseLogger } from 'fastify'
import type { Client, Pool } from 'pg'
import type { ChannelBackendFactory } from '../backend.js'
import { invalidOption, shown } from '../../errors.js'
import { refuseNonObject, refuseUnknown } from '../../options.js'
import { addChannel, checkName, positiveMs } from '../store/items.js'
import { PostgresChannel, type PostgresGroup } from './channel.js'
import type { PostgresSettings } from './settings.js'
import { Listener } from './listener.js'
import { checkPrefix, DEFAULT_PREFIX, schemaNames } from './schema.js'

export { ensureSchema, schemaSql, type EnsureSchemaOptions } from './schema.js'

// Channels shared by every server process through PostgreSQL: a table of items numbered per channel in commit
// order (./schema), LISTEN/NOTIFY to say that there are new ones (./listener: one listening connection per backend
// per process), replays by query (./channel). Only these modules use pg, and only by type: the main entry never
// loads it.

/** Options of `postgresChannels()`. */
export interface PostgresChannelsOptions {
  /**
   * Your pg `Pool`: publishes, replays and the listener's reads use it. Never closed by the plugin. Behind
   * PgBouncer in transaction mode it works as it is (each publish and read is one statement); only the listener
   * needs a session of its own (`listener`).
   */
  pool: Pool
  /**
   * Prefix of the tables and functions (`<prefix>channels`, `<prefix>items`, …) and of the notification channel
   * (`<prefix>items`): lowercase letters, digits and `_`, at most 31 characters; the same as `ensureSchema()`'s.
   * Default `'sse_'`.
   */
  prefix?: string
  /**
   * Opens the connection that LISTENs (a connected pg `Client`, or a client of a pool), one per backend per process
   * while some channel has local subscribers, opened again after a loss; the plugin ends it. Default: one taken
   * from `pool` (`pool.connect()`, not given back until then). Behind PgBouncer in transaction mode, give a direct
   * connection (or one through a session-mode pool): LISTEN needs a session.
   */
  listener?: () => Promise<Client>
  /**
   * The listening connection's `application_name` is `<readerName>:<prefix>` (see `pg_stat_activity`). Letters,
   * digits and `_:.-`. Default `'fastify-typed-sse'`; give each server its own (its host name) to tell them apart.
   */
  readerName?: string
  /** Milliseconds after which a publish PostgreSQL has not answered rejects. Default 5000. */
  publishTimeout?: number
  /**
   * Milliseconds a publish's `idempotencyKey` is remembered: a publish with the same key within that time stores
   * nothing and resolves to the first one's id. Default 300000 (5 minutes).
   */
  idempotencyWindow?: number
}

/** What `postgresChannels()` returns: pass it as the `backend` option of `app.sse.channel(name, { backend })`. */
export type PostgresChannels = ChannelBackendFactory<Promise<string>>

const OPTIONS = ['pool', 'prefix', 'listener', 'readerName', 'publishTimeout', 'idempotencyWindow']
const OWNER = 'postgresChannels()'

/** What the channels of one backend share: the settings, the listener, the names in use. */
class Backend implements PostgresGroup {
  readonly settings: PostgresSettings
  readonly #channels = new Map<string, PostgresChannel>()
  #listener: Listener | undefined
  /** Settles once the last listener closed has ended its connection. */
  #closed: Promise<void> = Promise.resolve()

  constructor (settings: PostgresSettings) {
    this.settings = settings
  }

  /** A channel of this backend is created: one per name (its listener reads each channel once). */
  open (name: string, channel: () => PostgresChannel): PostgresChannel {
    checkName(name, 'PostgreSQL')
    return addChannel(this.#channels, name, OWNER, channel)
  }

  listener = (log: FastifyBaseLogger): Listener => {
    this.#listener ??= new Listener(this.settings, log, () => this.#channels.values())
    return this.#listener
  }

  get connected (): boolean | undefined {
    return this.#listener?.connected
  }

  get failing (): boolean | undefined {
    return this.#listener?.failing
  }

  remove (channel: PostgresChannel): void {
    this.#listener?.remove(channel)
  }

  rejoin = (channel: PostgresChannel): void => {
    addChannel(this.#channels, channel.name, OWNER, () => channel)
  }

  /** The last channel (closed, or forgotten before) closes the listener; a close waits for every one closing. */
  close (channel: PostgresChannel): Promise<void> {
    this.forget(channel)
    return this.#closed
  }

  forget (channel: PostgresChannel): void {
    if (this.#channels.get(channel.name) !== channel) return
    this.#channels.delete(channel.name)
    const listener = this.#listener
    if (this.#channels.size > 0 || listener === undefined) return
    this.#listener = undefined
    // with no channel left, none would close it with the app
    // chained: a close still running (its last channel forgotten) is waited for with a later one
    this.#closed = Promise.all([this.#closed, listener.close()]).then(() => {})
  }
}

/**
 * Channels shared by every server process through PostgreSQL:
 * `app.sse.channel<T>('chat', { backend: postgresChannels({ pool }) })`, once `ensureSchema(pool)` has made the
 * tables. Their `publish` returns a promise of the id (`<epoch>-<n>`); a browser can reconnect to any process with
 * `Last-Event-ID` and gets exactly what it missed.
 */
export function postgresChannels (options: PostgresChannelsOptions): PostgresChannels {
  refuseNonObject(options, '{ pool, prefix, … }', OWNER)
  refuseUnknown(options, OPTIONS, OWNER)
  const {
    pool, prefix = DEFAULT_PREFIX, listener, readerName = 'fastify-typed-sse', publishTimeout = 5000,
    idempotencyWindow = 300_000
  } = options
  const candidate = pool as Partial<Pool> | undefined
  if (typeof candidate?.query !== 'function' || typeof candidate.connect !== 'function') {
    throw invalidOption('pool', `must be a pg Pool (new Pool({ connectionString })), got ${shown(pool)}`, OWNER)
  }
  if (listener !== undefined && typeof listener !== 'function') {
    throw invalidOption('listener', `must be a function that opens a connection, got ${shown(listener)}`, OWNER)
  }
  if (typeof readerName !== 'string' || !/^[\w:.-]{1,30}$/.test(readerName)) {
    throw invalidOption('readerName', `must be 1 to 30 letters, digits and _:.- only, got ${shown(readerName)}`, OWNER)
  }
  const settings: PostgresSettings = {
    pool,
    prefix: checkPrefix(prefix, OWNER),
    names: schemaNames(prefix),
    readerName,
    publishTimeout: positiveMs('publishTimeout', publishTimeout, OWNER),
    idempotencyWindow: positiveMs('idempotencyWindow', idempotencyWindow, OWNER),
    listener: listener ?? (() => pool.connect())
  }
  const backend = new Backend(settings)
  return (name, history, deliver, log, reset) =>
    backend.open(name, () => new PostgresChannel(name, history, deliver, log, reset, backend))
}
