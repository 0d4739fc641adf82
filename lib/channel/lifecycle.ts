import { performance } from 'node:perf_hooks'

// When a registry lets go of a channel nobody uses. A name taken from a request (`channel(req.params.room)`) must
// not hold memory for ever: a channel with no subscriber is forgotten at once when nothing was ever published on
// it (no client can hold one of its ids), else once it had no subscriber and no publish for its `idleTimeout`.
// Idle channels wait in one insertion-ordered map per timeout, oldest first, so a sweep reads only those due and
// one timer serves them all, whatever their number.

/** What a channel tells its registry, and where an object that was forgotten finds the channel of its name. */
export interface ChannelHome<C> {
  /** The channel now registered under the name of `channel`: `channel` itself, taken back when there is none. */
  rejoin: (channel: C) => C
  /** The channel has no subscriber now (or was published on while it had none). */
  idle: (channel: C) => void
  /** The channel has a subscriber. */
  busy: (channel: C) => void
  /** Lets go of a channel with no subscriber on which nothing was ever published. */
  forget: (channel: C) => void
  /** Drops a closed channel. */
  closed: (channel: C) => void
}

/** What the idle list needs of a channel. */
export interface Forgettable {
  readonly idleTimeout: number
}

/** The channels of one registry that have no subscriber, each forgotten once idle for its `idleTimeout`. */
export class IdleChannels<C extends Forgettable> {
  /** Per timeout: channel → when it went idle (or was last published on while idle), oldest first. */
  readonly #byTimeout = new Map<number, Map<C, number>>()
  readonly #forget: (channel: C) => void
  #timer: NodeJS.Timeout | undefined
  #due = Infinity

  constructor (forget: (channel: C) => void) {
    this.#forget = forget
  }

  /** The channel has no subscriber from now (or was published on while it had none): its idle time starts again. */
  idle (channel: C): void {
    const timeout = channel.idleTimeout
    if (timeout === Infinity) return
    // even with a timeout of 0, forgotten by the timer: the call that went on to use the channel has run by then
    let channels = this.#byTimeout.get(timeout)
    if (channels === undefined) this.#byTimeout.set(timeout, channels = new Map())
    // deleted first, so the map stays ordered by idle time
    channels.delete(channel)
    const now = performance.now()
    channels.set(channel, now)
    this.#schedule(now + timeout)
  }

  /** The channel has a subscriber again, or is gone. */
  busy (channel: C): void {
    this.#byTimeout.get(channel.idleTimeout)?.delete(channel)
  }

  /** Stops the timer (the registry closes). */
  clear (): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#byTimeout.clear()
  }

  #schedule (at: number): void {
    if (at >= this.#due) return
    clearTimeout(this.#timer)
    this.#due = at
    // a few milliseconds late at most; the timer never keeps the process alive
    this.#timer = setTimeout(this.#sweep, Math.max(0, at - performance.now()) + 1).unref()
  }

  #sweep = (): void => {
    this.#timer = undefined
    this.#due = Infinity
    const now = performance.now()
    let next = Infinity
    for (const [timeout, channels] of this.#byTimeout) {
      for (const [channel, since] of channels) {
        if (since + timeout > now) {
          next = Math.min(next, since + timeout)
          break
        }
        channels.delete(channel)
        this.#forget(channel)
      }
      if (channels.size === 0) this.#byTimeout.delete(timeout)
    }
    if (next !== Infinity) this.#schedule(next)
  }
}

/**
 * The `count` entries with the largest `weight`, largest first (ties in the order given), without sorting them all:
 * `app.sse.stats()` shows the busiest channels of however many.
 */
export function largest<T> (entries: Iterable<T>, count: number, weight: (entry: T) => number): T[] {
  const byWeight = (a: T, b: T): number => weight(b) - weight(a)
  if (count === 0) return []
  let kept: T[] = []
  let floor = -Infinity
  for (const entry of entries) {
    if (kept.length >= count && weight(entry) <= floor) continue
    kept.push(entry)
    if (kept.length >= 2 * count) {
      kept = kept.sort(byWeight).slice(0, count)
      floor = weight(kept[count - 1] as T)
    }
  }
  return kept.sort(byWeight).slice(0, count)
}
