import type {
  BackendStats, ChannelBackend, ChannelEncoder, ChannelItem, Deliver, HistoryOptions, Replay, ReplayPage
} from './backend.js'
import { frameSize } from '../encode.js'
import type { SseItem } from '../types.js'

// The in-process history: a ring of the last `history` items (optionally younger than `historyMaxAge`). The ring
// grows as it fills (doubling, up to `history`), so a large bound costs nothing until items come.
// Ids are `<epoch>-<seq>`: the epoch is new for every channel object, so an id from a previous process (or a
// channel closed and made again) is unknown here, and a client that sends one gets an sse-reset, not a guess.

const SEQ = /^(?:0|[1-9][0-9]{0,14})$/
/** Slots of a ring's first allocation. */
const FIRST_SLOTS = 8
let instances = 0

export class MemoryBackend implements ChannelBackend<string> {
  /** The ring keeps the items `encode.item` made, targeting and all. */
  readonly targeting = true
  readonly #epoch: string
  readonly #capacity: number
  readonly #maxAge: number
  readonly #deliver: Deliver
  readonly #now: () => number
  /** Item of seq `s` at `s % #ring.length`; `#ring.length` grows to `#capacity` as the history fills. */
  #ring: Array<ChannelItem | undefined> = []
  #times: number[] = []
  /** id → seq of the kept items (ids given by publishers included). */
  readonly #index = new Map<string, number>()
  /** Seq of the oldest kept item; `#last + 1` when none is kept. */
  #first = 1
  /** Seq of the newest item ever appended; 0 before the first. */
  #last = 0

  constructor (options: HistoryOptions, deliver: Deliver, now: () => number = Date.now) {
    this.#epoch = Date.now().toString(36) + '.' + (++instances).toString(36)
    this.#capacity = options.history
    this.#maxAge = options.historyMaxAge
    this.#deliver = deliver
    this.#now = now
  }

  append (item: SseItem<unknown>, encode: ChannelEncoder): string {
    const seq = this.#last + 1
    // a publisher-given id is checked by the encoder like any field
    const stored = encode.item(item.id === undefined ? { ...item, id: this.#epoch + '-' + seq } : item as SseItem<unknown> & { id: string })
    if (this.#capacity === 0) {
      this.#last = seq
      this.#first = seq + 1
    } else {
      const now = this.#now()
      // expired before `seq` counts as kept: its slot still holds what it held before
      this.#expire(now)
      this.#last = seq
      if (seq - this.#first >= this.#capacity) this.#evictOldest()
      else if (seq - this.#first >= this.#ring.length) this.#grow()
      const slot = seq % this.#ring.length
      this.#ring[slot] = stored
      this.#times[slot] = now
      this.#index.set(stored.id, seq)
    }
    this.#deliver(stored)
    return stored.id
  }

  replay (lastEventId: string, page: ReplayPage): Replay {
    this.#expire(this.#now())
    let seq = this.#index.get(lastEventId)
    if (seq === undefined) {
      seq = this.#parse(lastEventId)
      if (seq === undefined) return { reset: 'unknown', items: [], position: this.resetId() }
    }
    return this.#page(seq, page)
  }

  /**
   * The page after `seq`, read now. A reset carries `resetId()`, never the newest item's id: a targeted item's id
   * (which a publisher may give) could name what the subscriber was not to see.
   */
  #page (seq: number, page: ReplayPage): Replay {
    this.#expire(this.#now())
    // the oldest kept item follows `seq` directly: nothing after it was dropped
    if (seq < this.#first - 1) return { reset: 'expired', items: [], position: this.resetId() }
    const items: ChannelItem[] = []
    let bytes = 0
    let s = seq + 1
    for (; s <= this.#last && items.length < page.items; s++) {
      const item = this.#ring[s % this.#ring.length] as ChannelItem
      const size = frameSize(item)
      if (items.length > 0 && bytes + size > page.bytes) break
      items.push(item)
      bytes += size
    }
    if (s > this.#last) return { items, position: this.position() }
    const after = s - 1
    return { items, position: this.#epoch + '-' + after, next: () => this.#page(after, page) }
  }

  /** `<epoch>-<seq>` of the newest item: names no item (whatever ids publishers gave), and resumes from there. */
  resetId (): string {
    return this.#epoch + '-' + this.#last
  }

  /** The id of the newest item (as it was delivered), or `<epoch>-<seq>` once that item is no longer kept. */
  position (): string {
    const newest = this.#last >= this.#first ? this.#ring[this.#last % this.#ring.length] : undefined
    return newest?.id ?? this.#epoch + '-' + this.#last
  }

  stats (): BackendStats {
    this.#expire(this.#now())
    return { history: this.#last - this.#first + 1 }
  }

  /** The history goes (the ring's memory too); the ids go on from the last. */
  forget (): void {
    this.#ring = []
    this.#times = []
    this.#index.clear()
    this.#first = this.#last + 1
  }

  close (): void {
    this.forget()
  }

  /** Twice the slots (at most `#capacity`), the kept items moved to theirs. */
  #grow (): void {
    const size = Math.min(this.#capacity, Math.max(FIRST_SLOTS, this.#ring.length * 2))
    const ring = new Array<ChannelItem | undefined>(size)
    const times = new Array<number>(size)
    for (let s = this.#first; s <= this.#last - 1; s++) {
      ring[s % size] = this.#ring[s % this.#ring.length]
      times[s % size] = this.#times[s % this.#ring.length] as number
    }
    this.#ring = ring
    this.#times = times
  }

  /** The seq of an id this channel object issued, else undefined. */
  #parse (id: string): number | undefined {
    if (!id.startsWith(this.#epoch + '-')) return undefined
    const digits = id.slice(this.#epoch.length + 1)
    if (!SEQ.test(digits)) return undefined
    const seq = Number(digits)
    return seq <= this.#last ? seq : undefined
  }

  #expire (now: number): void {
    const oldest = now - this.#maxAge
    while (this.#first <= this.#last && (this.#times[this.#first % this.#times.length] as number) <= oldest) {
      this.#evictOldest()
    }
  }

  #evictOldest (): void {
    const slot = this.#first % this.#ring.length
    const item = this.#ring[slot] as ChannelItem
    if (this.#index.get(item.id) === this.#first) this.#index.delete(item.id)
    this.#ring[slot] = undefined
    // an empty slot never expires: no later sweep can read it as an item
    this.#times[slot] = Infinity
    this.#first++
  }
}

/** The default backend factory. */
export function memoryBackend (_name: string, options: HistoryOptions, deliver: Deliver): ChannelBackend<string> {
  return new MemoryBackend(options, deliver)
}
