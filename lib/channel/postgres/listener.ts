import type { FastifyBaseLogger } from 'fastify'
import type { Client, Notification } from 'pg'
import { readerDown, readerUp } from '../../diagnostics.js'
import { channelUnavailable } from '../../errors.js'
import type { BackendStats } from '../backend.js'
import type { ReadItem } from '../store/items.js'
import { READ_BATCH, readItem, type RawItemRow } from './rows.js'
import type { PostgresSettings } from './settings.js'
import { channelRow, parseNotification, type ChannelRow, type RawChannelRow } from './rules.js'

// One backend's listener: one connection that LISTENs to the notifications of every channel of its prefix, whatever
// the number of channels, and reads (on your pool) what the channels with local subscribers have after their
// cursors: one query for every channel notified meanwhile. A notification carries `<seq>:<epoch>:<channel>` (far below
// PostgreSQL's 8,000 bytes), never the item. When the connection is lost, notifications are lost with it: once it
// listens again, every channel read is read again after its cursor, so nothing is missed.

/** Channels one query reads at most; more wait for the next one. */
const READ_CHANNELS = 256

/**
 * Gives back (or ends) a connection the listener is done with, settling once it has ended; a pool's client is
 * destroyed, not reused. Never rejects (pg's end() resolves once the connection has ended, at once when it had).
 */
function release (client: Client, err?: Error): Promise<void> {
  if ('release' in client && typeof client.release === 'function') client.release(err ?? true)
  return client.end()
}

/** What the listener needs of a channel it reads (a `PostgresChannel`): where it is, and where to hand on. */
export interface ListenedChannel {
  readonly name: string
  /** The epoch of the channel's row it is read from (undefined before it was found). */
  readonly epoch: string | undefined
  /** The seq it has handed on up to (undefined before it was found). */
  readonly cursorAt: number | undefined
  /** Hands on what a read found after the cursor; true when there may be more. */
  readFrom: (row: ChannelRow | undefined, items: readonly ReadItem[]) => boolean
  stats: () => BackendStats
}

export class Listener {
  readonly #settings: PostgresSettings
  readonly #log: FastifyBaseLogger
  /** Every channel of its backend in this process, read or not: what its connection state is told to. */
  readonly #served: () => Iterable<ListenedChannel>
  readonly #readSql: string
  /** The channels read, by name: each has local subscribers and knows where it is. */
  readonly #reading = new Map<string, ListenedChannel>()
  /** The channels that may have items after their cursor. */
  readonly #dirty = new Set<ListenedChannel>()
  #client: Client | undefined
  /** Whether it listens now. */
  #up = false
  /** Set once the loss of its connection was said (one warning per outage). */
  #down = false
  #closed = false
  #busy = false
  #failures = 0
  #retry: NodeJS.Timeout | undefined
  #waiting: Array<() => void> = []

  constructor (settings: PostgresSettings, log: FastifyBaseLogger, served: () => Iterable<ListenedChannel>) {
    this.#settings = settings
    this.#log = log
    this.#served = served
    const { channels, items } = settings.names
    // one statement, one snapshot: each channel's row and its items after the cursor agree
    this.#readSql = `SELECT w.n, c.epoch, c.last_seq, c.trimmed_seq, i.seq, i.head, i.tail, i.fields
FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS w(name, after, n)
LEFT JOIN ${channels} c ON c.name = w.name
LEFT JOIN LATERAL (
  SELECT seq, head, tail, fields FROM ${items} WHERE channel = w.name AND seq > w.after ORDER BY seq LIMIT ${READ_BATCH}
) i ON true
ORDER BY w.n, i.seq`
    void this.#connect()
  }

  /** Whether it listens now. */
  get connected (): boolean {
    return this.#up
  }

  /** Whether it lost its connection or failed to listen, and does not listen again yet. */
  get failing (): boolean {
    return this.#down || this.#failures > 0
  }

  /** Settles once it listens: every item stored from then on is notified to it. */
  ready (): Promise<void> {
    if (this.#up) return Promise.resolve()
    return new Promise(resolve => this.#waiting.push(resolve))
  }

  /** Reads this channel after its cursor from now on (and at once: something may have come meanwhile). */
  read (channel: ListenedChannel): void {
    this.#reading.set(channel.name, channel)
    this.#mark(channel)
  }

  /** Stops reading this channel (what a read in flight brings for it is dropped). */
  remove (channel: ListenedChannel): void {
    if (this.#reading.get(channel.name) === channel) this.#reading.delete(channel.name)
    this.#dirty.delete(channel)
  }

  close (): Promise<void> {
    this.#closed = true
    this.#up = false
    clearTimeout(this.#retry)
    this.#waiting = []
    const client = this.#client
    this.#client = undefined
    return client === undefined ? Promise.resolve() : release(client)
  }

  async #connect (): Promise<void> {
    let client: Client | undefined
    try {
      client = await this.#settings.listener()
      if (this.#closed) {
        await release(client)
        return
      }
      // they stay on after the connection is given up: a late error of it is then handled, and ignored
      const connection = client
      const lost = (err?: Error): void => { this.#lost(connection, err) }
      client.on('error', lost)
      client.on('end', lost)
      client.on('notification', this.#onNotification)
      this.#client = client
      const name = this.#settings.readerName + ':' + this.#settings.prefix
      await client.query(`SET application_name = '${name}'`)
      await client.query(`LISTEN ${this.#settings.names.notify}`)
    } catch (err) {
      if (client !== undefined && this.#client === client) this.#drop(client, err as Error)
      if (this.#closed) return
      const failure = channelUnavailable(this.#settings.prefix + '*', `the listener could not listen: ${(err as Error).message}`, err)
      // said once per outage; each try after that at debug
      if (this.#failures++ === 0) this.#log.error({ err: failure }, 'SSE PostgreSQL channel listener failed; retrying')
      else this.#log.debug({ err: failure }, 'SSE PostgreSQL channel listener failed again')
      this.#retry = setTimeout(() => { void this.#connect() }, Math.min(2000, 50 * 2 ** this.#failures)).unref()
      return
    }
    // closed while it started listening: close() ends the connection
    if (this.#client !== client) return
    this.#up = true
    this.#failures = 0
    if (this.#down) {
      this.#down = false
      this.#log.info({ channels: this.#reading.size }, 'SSE PostgreSQL channel listener listens again; resuming')
      this.#tell(readerUp)
    }
    const waiting = this.#waiting
    this.#waiting = []
    for (const resolve of waiting) resolve()
    // what was notified while it did not listen is lost: every channel read is read again after its cursor
    for (const channel of this.#reading.values()) this.#mark(channel)
  }

  /** The connection failed or ended: given up, said once per outage, and listened again after a while. */
  #lost (client: Client, err?: Error): void {
    // while it connects, the query in flight fails with the connection, and #connect tries again
    if (client !== this.#client || !this.#up) return
    this.#drop(client, err)
    if (!this.#down) {
      this.#down = true
      const failure = channelUnavailable(this.#settings.prefix + '*', `the listener lost its connection: ${err?.message ?? 'ended'}`, err)
      this.#log.warn({ err: failure, channels: this.#reading.size },
        'SSE PostgreSQL channel listener lost its connection; listening again')
      this.#tell(readerDown)
    }
    this.#retry = setTimeout(() => { void this.#connect() }, 50).unref()
  }

  #drop (client: Client, err: Error | undefined): void {
    this.#client = undefined
    this.#up = false
    void release(client, err)
  }

  #onNotification = (message: Notification): void => {
    const notified = parseNotification(message.payload)
    if (notified === undefined) return
    const channel = this.#reading.get(notified.name)
    const at = channel?.cursorAt
    // what it has read already (a read in batches reads ahead of the notifications) is not read again; a row made
    // again (another epoch) numbers from 1 again
    if (at === undefined) return
    if (notified.seq > at || notified.epoch !== channel?.epoch) this.#mark(channel as ListenedChannel)
  }

  #mark (channel: ListenedChannel): void {
    this.#dirty.add(channel)
    if (!this.#busy) void this.#read()
  }

  /** Reads every marked channel after its cursor, a batch of channels per query, until none is left. */
  async #read (): Promise<void> {
    this.#busy = true
    let failures = 0
    while (this.#dirty.size > 0 && !this.#closed) {
      const batch: ListenedChannel[] = []
      for (const channel of this.#dirty) {
        batch.push(channel)
        this.#dirty.delete(channel)
        if (batch.length === READ_CHANNELS) break
      }
      const afters = batch.map(channel => channel.cursorAt as number)
      let rows: Array<RawChannelRow & RawItemRow & { n: string }>
      try {
        rows = (await this.#settings.pool.query<RawChannelRow & RawItemRow & { n: string }>(this.#readSql,
          [batch.map(channel => channel.name), afters])).rows
        failures = 0
      } catch (err) {
        for (const channel of batch) if (this.#reading.get(channel.name) === channel) this.#dirty.add(channel)
        const failure = channelUnavailable(this.#settings.prefix + '*', `the reader failed: ${(err as Error).message}`, err)
        this.#log.error({ err: failure, channels: batch.length }, 'SSE PostgreSQL channel reader failed; retrying')
        await new Promise(resolve => setTimeout(resolve, Math.min(2000, 50 * 2 ** ++failures)).unref())
        continue
      }
      this.#handOn(batch, afters, rows)
    }
    this.#busy = false
  }

  #handOn (batch: ListenedChannel[], afters: number[], rows: Array<RawChannelRow & RawItemRow & { n: string }>): void {
    let i = 0
    for (let n = 0; n < batch.length; n++) {
      const channel = batch[n] as ListenedChannel
      const first = rows[i] as RawChannelRow & RawItemRow
      const items = []
      for (; i < rows.length && Number((rows[i] as { n: string }).n) === n + 1; i++) {
        if ((rows[i] as RawItemRow).seq !== null) items.push(readItem(rows[i] as RawItemRow))
      }
      // still read from where this query started (not gone quiet, nor restarted meanwhile)
      if (this.#reading.get(channel.name) !== channel || channel.cursorAt !== afters[n]) continue
      const more = channel.readFrom(first.epoch === null ? undefined : channelRow(first), items)
      if (more) this.#mark(channel)
    }
  }

  /** One diagnostics message per channel it serves: each channel's connection state changed with it. */
  #tell (event: typeof readerDown): void {
    if (!event.hasSubscribers) return
    for (const channel of this.#served()) event.publish({ channel: channel.name, after: channel.stats().position })
  }
}
