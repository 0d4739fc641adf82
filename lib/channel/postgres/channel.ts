import type { FastifyBaseLogger } from 'fastify'
import type { Deliver, HistoryOptions, Replay, ReplayPage, Reset } from '../backend.js'
import { channelUnavailable, invalidItem } from '../../errors.js'
import type { SseItem } from '../../types.js'
import { StoredChannel } from '../store/channel.js'
import { Cursor } from '../store/cursor.js'
import { cutPage } from '../page.js'
import { formatId, parseId, rebuild, type ReadItem, type StoredItem } from '../store/items.js'
import type { Listener } from './listener.js'
import { catchUp, channelRow, replayReset, type ChannelRow, type RawChannelRow } from './rules.js'
import { READ_BATCH, readItem, type RawItemRow } from './rows.js'
import type { PostgresSettings } from './settings.js'

// One PostgreSQL channel: a publish is one call of the append function (one statement: its own transaction); a
// replay is one query per page; live items come through the listener of its backend (./listener), which reads them
// after the channel's cursor whenever a notification says there are some.

/** PostgreSQL SQLSTATEs that say the schema is not there: undefined_table, undefined_function. */
const NO_SCHEMA = new Set(['42P01', '42883'])

/** What a channel needs of its backend. */
export interface PostgresGroup {
  readonly settings: PostgresSettings
  /** The listener, started on first need. */
  listener: (log: FastifyBaseLogger) => Listener
  /** Whether the listener's connection is up; undefined while there is none. */
  readonly connected: boolean | undefined
  /** Whether the listener failed to listen and has not listened since (undefined while there is none). */
  readonly failing: boolean | undefined
  /** Takes the channel out of the listener's reads (there is nothing to do without a listener). */
  remove: (channel: PostgresChannel) => void
  /** The channel closed: the last one closes the listener. */
  close: (channel: PostgresChannel) => Promise<void>
  /** The channel was forgotten: its name is free, and the last one closes the listener. */
  forget: (channel: PostgresChannel) => void
  /** A forgotten channel is taken back: its name again (throws when another channel has it). */
  rejoin: (channel: PostgresChannel) => void
}

export class PostgresChannel extends StoredChannel {
  readonly #group: PostgresGroup
  /** Where the listener has handed on to; a new one each time the channel goes quiet (see `#quiet`, `readFrom`). */
  #cursor = new Cursor()
  readonly #keep: number
  readonly #maxAge: number | null
  readonly #replaySql: string
  readonly #appendSql: string
  readonly #locateSql: string
  /** Bumped when the channel goes quiet, so a start that answers afterwards is ignored. */
  #starts = 0
  #failures = 0
  #retry: NodeJS.Timeout | undefined
  /** Settles once a start under way has found where the channel is (it never rejects). */
  #starting: Promise<unknown> | undefined

  constructor (
    name: string, history: HistoryOptions, deliver: Deliver, log: FastifyBaseLogger, reset: Reset, group: PostgresGroup
  ) {
    super(name, history, deliver, log, reset, { engine: 'PostgreSQL', publishTimeout: group.settings.publishTimeout })
    this.#group = group
    // one item is always kept, so that a reader behind by one still finds it
    this.#keep = Math.max(1, history.history)
    this.#maxAge = Number.isFinite(history.historyMaxAge) ? history.historyMaxAge : null
    const { channels, items, append, channel } = group.settings.names
    this.#appendSql = `SELECT ${append}($1, $2, $3, $4, $5, $6, $7, $8) AS id`
    this.#locateSql = `SELECT epoch, last_seq, trimmed_seq FROM ${channel}($1)`
    // one statement, one snapshot: the row and the items after the id agree
    this.#replaySql = `SELECT c.epoch, c.last_seq, c.trimmed_seq,
  (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now,
  i.seq, (extract(epoch FROM i.at) * 1000)::float8 AS at, i.head, i.tail, i.fields
FROM ${channels} c LEFT JOIN LATERAL (
  SELECT seq, at, head, tail, fields FROM ${items} WHERE channel = c.name AND seq > $2 ORDER BY seq LIMIT $3
) i ON true
WHERE c.name = $1 ORDER BY i.seq`
  }

  /** The epoch of the row the listener reads this channel from (undefined before it found it). */
  get epoch (): string | undefined {
    return this.#cursor.tag
  }

  /** Where the listener has read this channel to (undefined while it is not read). */
  get cursorAt (): number | undefined {
    return this.#cursor.at
  }

  protected get cursor (): Cursor {
    return this.#cursor
  }

  protected get connected (): boolean | undefined {
    return this.#group.connected
  }

  /** PostgreSQL text holds no NUL: such an item is refused before anything is sent. */
  protected override refuse = (item: SseItem<unknown>, stored: StoredItem): void => {
    if (!stored.head.includes('\0') && !stored.tail.includes('\0')) return
    const field = stored.head.includes('\0')
      ? 'comment'
      : typeof item.event === 'string' && item.event.includes('\0') ? 'event' : 'data'
    throw invalidItem(field, 'must not contain NUL on a PostgreSQL channel (PostgreSQL text cannot hold it)')
  }

  protected async store (stored: StoredItem, idempotencyKey: string | undefined): Promise<string> {
    const { pool, idempotencyWindow } = this.#group.settings
    // a channel that has just got its first subscriber finds where it is first: its subscribers then get this item
    // (the start and the publish use different connections of the pool, and would otherwise race)
    if (this.#starting !== undefined && this.#group.failing !== true) await this.#starting
    try {
      const { rows } = await pool.query<{ id: string }>(this.#appendSql, [this.name, stored.head, stored.tail,
        stored.fields, idempotencyKey ?? null, this.#keep, this.#maxAge, idempotencyWindow])
      const id = (rows[0] as { id: string }).id
      const { tag, seq } = parseId(id) as { tag: string, seq: number }
      this.know(tag, seq)
      return id
    } catch (err) {
      const code = (err as { code?: unknown }).code
      const hint = typeof code === 'string' && NO_SCHEMA.has(code)
        ? ` (is the schema there? run ensureSchema(pool, { prefix: '${this.#group.settings.prefix}' }) first)`
        : ''
      throw channelUnavailable(this.name, `PostgreSQL did not store the item: ${(err as Error).message}${hint}`, err)
    }
  }

  replay (lastEventId: string, page: ReplayPage): Promise<Replay> {
    return this.#page(lastEventId, page.items, page)
  }

  /** The page after `lastEventId`: at most `count` items (one more is read: whether another page follows). */
  async #page (lastEventId: string, count: number, page: ReplayPage): Promise<Replay> {
    // once the reader knows where the channel is, what this query sees it has handed on or will
    await this.#cursor.reached(0)
    const after = parseId(lastEventId)?.seq
    // an id that is not one of ours reads no item, only the row
    const { rows } = await this.#group.settings.pool.query<RawChannelRow & RawItemRow & { now: number, at: number }>(
      this.#replaySql, [this.name, after ?? 0, after === undefined ? 0 : count + 1])
    const first = rows[0]
    // the row was deleted since the reader found it: the client resumes from where the reader is
    if (first === undefined) return this.answer('unknown', [], this.#cursor.tag as string, this.#cursor.at as number)
    const row = channelRow(first)
    const stored = first.seq === null ? [] : rows.map(readItem)
    const reset = replayReset(row, lastEventId, first.seq === null ? undefined : first.at, first.now,
      this.history.historyMaxAge)
    if (reset !== undefined) return this.answer(reset, [], row.epoch, row.last)
    const { items, taken, cut } = cutPage(stored, count, page, item => rebuild(item, formatId(row.epoch, item.seq)))
    if (taken < stored.length) {
      const position = formatId(row.epoch, (stored[taken - 1] as ReadItem).seq)
      return { items, position, next: () => this.#page(position, cut ? taken : count, page) }
    }
    return this.answer(undefined, items, row.epoch, stored.at(-1)?.seq ?? row.last)
  }

  subscribed (active: boolean): void {
    if (active) this.#start()
    else this.#quiet()
  }

  close (): Promise<void> {
    this.#quiet()
    return this.#group.close(this)
  }

  /** Let go by its registry (it has no subscriber): its name is free, its table keeps what a client resumes from. */
  forget (): void {
    this.#quiet()
    this.#group.forget(this)
  }

  /** Taken back: its name again (refused when another channel of the backend took it meanwhile). */
  rejoined (): void {
    this.#group.rejoin(this)
  }

  /**
   * What the listener read after the cursor (`row`: the channel's, undefined when it is gone): handed on, after a
   * reset when items were removed before they were read. Answers whether there may be more to read.
   */
  readFrom (row: ChannelRow | undefined, items: readonly ReadItem[]): boolean {
    // a subscriber that leaves on an item (cut off, say) may leave the channel with none: it goes quiet with a new
    // cursor, unknown until a new start finds where the channel is, and the rest of this read is not handed on
    const cursor = this.#cursor
    const epoch = cursor.tag as string
    const next = catchUp(epoch, cursor.at as number, row, items)
    if (next.relocate) {
      this.#group.remove(this)
      this.#start()
      return false
    }
    if (next.lost !== undefined) {
      this.lost('expired', epoch, next.lost)
      cursor.set(epoch, next.lost)
    }
    for (const item of items) {
      this.handOn(epoch, item)
      if (this.#cursor !== cursor) return false
      cursor.set(epoch, item.seq)
    }
    return items.length === READ_BATCH
  }

  /**
   * Finds the channel's row (made on first use) once the listener listens, so that every item after it is
   * notified, then joins the listener's reads from there. A row made again (another epoch) while the channel was
   * read resets its subscribers. Retried after a while when PostgreSQL does not answer.
   */
  #start (): void {
    const start = this.#starts
    const listener = this.#group.listener(this.log)
    const located = listener.ready()
      .then(() => this.#group.settings.pool.query<RawChannelRow>(this.#locateSql, [this.name]))
    this.#starting = Promise.allSettled([located])
    // a start that answers after the channel went quiet leaves alone what a later start set (see `#quiet`)
    located.then(({ rows }) => {
      if (start !== this.#starts) return
      this.#starting = undefined
      this.#failures = 0
      const row = channelRow(rows[0] as RawChannelRow)
      const epoch = this.#cursor.tag
      if (this.#cursor.at !== undefined && epoch !== row.epoch) {
        this.lost('unknown', row.epoch, row.last)
        // the reset may have cut the last subscriber off
        if (start !== this.#starts) return
      }
      this.#cursor.set(row.epoch, row.last)
      listener.read(this)
    }, (err: Error) => {
      if (start !== this.#starts) return
      this.#starting = undefined
      const failure = channelUnavailable(this.name, `the reader could not find the channel: ${err.message}`, err)
      this.log.error({ err: failure, channel: this.name }, 'SSE PostgreSQL channel reader failed; retrying')
      this.#retry = setTimeout(() => this.#start(), Math.min(2000, 50 * 2 ** ++this.#failures)).unref()
    })
  }

  /** No local subscriber any more (or closed): out of the listener's reads; waiting replays are dropped with it. */
  #quiet (): void {
    this.#starts++
    this.#starting = undefined
    clearTimeout(this.#retry)
    this.#failures = 0
    const { tag, at } = this.#cursor
    if (at !== undefined) this.know(tag as string, at)
    // what waits for the old cursor is dropped with it
    this.#cursor.clear()
    this.#cursor = new Cursor()
    this.#group.remove(this)
  }
}
