import { performance } from 'node:perf_hooks'

// When a registry lets go of a channel nobody uses. A name taken from a request (`channel(req.params.room)`) must
// not hold memory for ever: a channel with no subscriber is forgotten at once when nothing was ever published on
// it (no client can hold one of its ids; a shared channel's are in its store, so never at once), else once it had no
// subscriber and no publish for its `idleTimeout`.
// Idle channels wait in one insertion-ordered map per timeout, oldest first, so a sweep reads only those due and
// one timer serves them all, whatever their number.

/** What a channel tells its registry. */
export interface ChannelHome<C> {
  /** A forgotten channel is used again (published on, subscribed to): taken back, under its name. */
  rejoin: (channel: C) => void
  /** The channel has no subscriber now (or was published on while it had none). */
  idle: (channel: C) => void
  /** The channel has a subscriber. */
  busy: (channel: C) => void
  /** Lets go of a channel with no subscriber on which nothing was ever published. */
  forget: (channel: C) => void
  /** Drops a closed channel. */
  closed: (channel: C) => void
}

/**
 * The channels a registry forgot, by name, held weakly: while the app's code still holds one (`const news =
 * app.sse.channel('news', { history: 1000 })`), `channel(name)` hands that object back with its options and its ids
 * going on; one nobody holds is collected, and its entry with it.
 */
export class ForgottenChannels<C extends { readonly name: string }> {
  readonly #byName = new Map<string, WeakRef<C>>()
  /** Drops the entry of a collected channel (unless the name was forgotten again since, by a channel still alive). */
  readonly #collected = new FinalizationRegistry<string>(name => { this.find(name) })

  /** Entries, some of which may name a channel already collected. */
  get size (): number {
    return this.#byName.size
  }

  keep (channel: C): void {
    this.#byName.set(channel.name, new WeakRef(channel))
    this.#collected.register(channel, channel.name, channel)
  }

  /** The forgotten channel of that name, if it is still alive; the entry of one collected is dropped. */
  find (name: string): C | undefined {
    const channel = this.#byName.get(name)?.deref()
    if (channel === undefined) this.#byName.delete(name)
    return channel
  }

  /** The channel is taken back or closed: only one channel of a name is alive and not closed, so the entry is its. */
  drop (channel: C): void {
    this.#byName.delete(channel.name)
    this.#collected.unregister(channel)
  }

  /** The forgotten channels still alive. */
  values (): C[] {
    const alive: C[] = []
    for (const ref of this.#byName.values()) {
      const channel = ref.deref()
      if (channel !== undefined) alive.push(channel)
    }
    return alive
  }
}

/** What the idle list needs of a channel. */
export interface Forgettable {
  readonly idleTimeout: number
}

/** Where the idle list reads the time and sets its timer: the process's, or a test's own. */
export interface IdleClock {
  now: () => number
  /** Calls `fn` in `ms` milliseconds; returns what cancels it. */
  later: (fn: () => void, ms: number) => () => void
}

const PROCESS_CLOCK: IdleClock = {
  now: () => performance.now(),
  later: (fn, ms) => {
    // the timer never keeps the process alive
    const timer = setTimeout(fn, ms).unref()
    return () => { clearTimeout(timer) }
  }
}

/** Channels one sweep forgets at most; the rest wait for the next turn of the loop, so requests are served between. */
const SWEEP_MAX = 1000

/** The channels of one registry that have no subscriber, each forgotten once idle for its `idleTimeout`. */
export class IdleChannels<C extends Forgettable> {
  /** Per timeout: channel → when it went idle (or was last published on while idle), oldest first. */
  readonly #byTimeout = new Map<number, Map<C, number>>()
  readonly #forget: (channel: C) => void
  readonly #clock: IdleClock
  #cancel: (() => void) | undefined
  #due = Infinity

  constructor (forget: (channel: C) => void, clock: IdleClock = PROCESS_CLOCK) {
    this.#forget = forget
    this.#clock = clock
  }

  /** Channels waiting to be forgotten. */
  get pending (): number {
    let count = 0
    for (const channels of this.#byTimeout.values()) count += channels.size
    return count
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
    const now = this.#clock.now()
    channels.set(channel, now)
    this.#schedule(now + timeout)
  }

  /** The channel has a subscriber again, or is gone. */
  busy (channel: C): void {
    this.#byTimeout.get(channel.idleTimeout)?.delete(channel)
  }

  /** Stops the timer and lets go of every channel (the registry closes). */
  clear (): void {
    this.#cancel?.()
    this.#cancel = undefined
    this.#due = Infinity
    this.#byTimeout.clear()
  }

  #schedule (at: number): void {
    if (at >= this.#due) return
    this.#cancel?.()
    this.#due = at
    // a millisecond late at most
    this.#cancel = this.#clock.later(this.#sweep, Math.max(0, at - this.#clock.now()) + 1)
  }

  #sweep = (): void => {
    this.#cancel = undefined
    this.#due = Infinity
    const now = this.#clock.now()
    let next = Infinity
    let budget = SWEEP_MAX
    for (const [timeout, channels] of this.#byTimeout) {
      for (const [channel, since] of channels) {
        if (since + timeout > now) {
          next = Math.min(next, since + timeout)
          break
        }
        if (budget === 0) {
          next = now
          break
        }
        budget--
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
