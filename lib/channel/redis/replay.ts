import type { ChannelItem, ReplayPage, ResetReason } from '../backend.js'
import { cutPage } from '../page.js'
import type { Entry } from './entry.js'
import { gap, NO_STREAM, redisNow, streamInfo } from './ids.js'
import type { Connection } from './options.js'

// One page of a replay from a Redis stream: one MULTI (`XINFO STREAM`, `XRANGE <key> <id> + COUNT <n + 2>`: the id,
// the page, and one more that says whether another page follows; `TIME`), decoded once. Subscribers of this process
// that resume from the same place at about the same time share one read: whoever asks for the same page (same id,
// same size) while it is in flight, or within SHARE_MS of its answer, gets that answer.

/** One page as read: shared by every subscriber that asked for it, never changed. */
export interface PageRead {
  readonly reset: ResetReason | undefined
  /** The page's items, oldest first (entries no channel wrote are skipped). */
  readonly items: readonly ChannelItem[]
  /**
   * With more entries after the page: the id of its last entry, where the next page starts. Undefined on the last
   * page (and on a reset).
   */
  readonly more: string | undefined
  /** The entries the next page asks for: fewer than this one when this one was cut short by its bytes. */
  readonly nextCount: number
  /** On the last page: the newest id it covers; on a reset: where the stream is. */
  readonly position: string
  /** Whether the stream has entries: the reader is then waited for until it reached `position`. */
  readonly wait: boolean
  /** Milliseconds after the read that its first item turns older than `historyMaxAge` (Infinity: never). */
  readonly young: number
}

/** What a page read needs of its channel. */
export interface PageSource {
  readonly redis: Connection
  readonly key: string
  readonly maxAge: number
  /** The item of an entry (undefined, logged, for one no channel wrote). */
  item: (id: string, fields: string[]) => ChannelItem | undefined
}

/** Reads the page after `from` (`at`: its key) of at most `count` entries and `page.bytes` bytes. */
export async function readPage (
  source: PageSource, from: string, at: bigint, count: number, page: ReplayPage
): Promise<PageRead> {
  // one snapshot: what the stream issued and removed, what follows the id (and whether it is still there), and the
  // time on Redis's clock (the stream ids' clock: this server's may be off)
  const replies = await source.redis.multi()
    .call('XINFO', 'STREAM', source.key)
    .call('XRANGE', source.key, from, '+', 'COUNT', count + 2)
    .call('TIME')
    .exec() as Array<[Error | null, unknown]>
  type Reply = [Error | null, unknown]
  const [[infoError, info], [rangeError, range], [, time]] = replies as [Reply, Reply, Reply]
  if (rangeError !== null) throw rangeError
  // XRANGE worked, so XINFO only fails when there is no stream (yet, or any more)
  const stream = infoError === null ? streamInfo(info) : NO_STREAM
  let entries = range as Entry[]
  const found = entries[0]?.[0] === from
  if (found) entries = entries.slice(1)
  const young = entries.length > 0 ? Number(entries[0]?.[0].split('-')[0]) - (redisNow(time) - source.maxAge) : Infinity
  const tooOld = young <= 0
  const reset = gap(stream, from, at, found) ?? (tooOld ? 'expired' : undefined)
  const wait = stream.lastEntry !== undefined
  if (reset !== undefined) {
    const position = stream.lastEntry ?? stream.lastGenerated
    return { reset, items: [], more: undefined, nextCount: count, position, wait, young }
  }
  const { items, taken, cut } = cutPage(entries, count, page, ([id, fields]) => source.item(id, fields))
  const more = taken < entries.length ? (entries[taken - 1] as Entry)[0] : undefined
  // the replay ends at the newest entry it covers; live items up to there are dropped by the subscription
  const position = entries.at(-1)?.[0] ?? stream.lastEntry ?? from
  // cut short by its bytes: the next page asks for as many entries as this one took
  return { reset, items, more, nextCount: cut ? taken : count, position, wait, young }
}

/** Milliseconds a page read stays shared once it answered. */
export const SHARE_MS = 1000
/** Page reads a channel shares at most (the oldest is forgotten first). */
export const MAX_SHARED = 8

interface Shared {
  readonly read: Promise<PageRead>
  /** Until when it is shared (undefined while in flight). */
  until: number | undefined
}

/**
 * The page reads of one channel, by page: a later request for the same page joins the one in flight, or one that
 * answered less than `SHARE_MS` ago (and whose items are still young enough to replay). The caller decides whether
 * a shared last page (or reset) still holds for it.
 */
export class PageReads {
  readonly #reads = new Map<string, Shared>()
  #sweep: NodeJS.Timeout | undefined

  /** The read of that page: a shared one (`joined`) when `join`, else `read()` now. */
  read (from: string, count: number, page: ReplayPage, read: () => Promise<PageRead>, join: boolean): {
    read: Promise<PageRead>
    joined: boolean
  } {
    const key = from + ' ' + count + ' ' + page.bytes
    const shared = join ? this.#reads.get(key) : undefined
    if (shared !== undefined && (shared.until === undefined || performance.now() < shared.until)) {
      return { read: shared.read, joined: true }
    }
    const entry: Shared = { read: read(), until: undefined }
    this.#reads.delete(key)
    this.#reads.set(key, entry)
    if (this.#reads.size > MAX_SHARED) this.#reads.delete(this.#reads.keys().next().value as string)
    entry.read.then(({ young }) => {
      // not past the age its first item may have: a page of items too old to replay is not handed out
      entry.until = performance.now() + Math.min(SHARE_MS, young)
      this.#sweep ??= setTimeout(this.#expire, SHARE_MS).unref()
    }, () => {
      if (this.#reads.get(key) === entry) this.#reads.delete(key)
    })
    return { read: entry.read, joined: false }
  }

  /** Forgets every read: what asks after this reads anew (the channel went quiet, or its stream changed). */
  clear (): void {
    this.#reads.clear()
    clearTimeout(this.#sweep)
    this.#sweep = undefined
  }

  /** Forgets the reads no longer shared (their pages are released with them). */
  #expire = (): void => {
    this.#sweep = undefined
    const now = performance.now()
    for (const [key, shared] of this.#reads) {
      if (shared.until !== undefined && now >= shared.until) this.#reads.delete(key)
    }
    if (this.#reads.size > 0) this.#sweep = setTimeout(this.#expire, SHARE_MS).unref()
  }
}
