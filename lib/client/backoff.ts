// When the client tries again: the server's `retry:` or `Retry-After` as the floor, a random share of a window
// above it that doubles with each failure in a row, and a wait that the browser coming back online cuts short.

/** Internal (lib/testing uses it too): the longest delay a timer holds; a longer one fires at once in Node. */
export const MAX_DELAY = 2 ** 31 - 1

/**
 * The wait a `Retry-After` header asks for, in ms (delay-seconds or an HTTP date), capped to what a timer can
 * hold; undefined when it is absent or unreadable.
 */
export function retryAfterMs (value: string | null, now = Date.now()): number | undefined {
  if (value === null) return undefined
  const text = value.trim()
  const ms = /^[0-9]+$/.test(text) ? Number(text) * 1000 : Date.parse(text) - now
  return Number.isNaN(ms) ? undefined : Math.min(Math.max(ms, 0), MAX_DELAY)
}

/**
 * How long to wait before attempt number `attempt` of a run (1 after a stream that was open, n + 1 after n failed
 * attempts in a row): never less than `floor` (what the server asked: its `retry:`, or a `Retry-After`), plus a
 * uniformly random share of the window from `floor` to `floor × 2^attempt`, bounded by `max` (unless the floor is
 * above it). Clients dropped at the same moment (a deploy, a restart) so come back spread over the window instead
 * of all at once, and a server that keeps failing is asked less and less often.
 */
export function reconnectDelay (
  floor: number, attempt: number, max: number, random: () => number = Math.random
): number {
  const top = Math.max(floor, Math.min(max, floor * 2 ** attempt))
  return Math.min(MAX_DELAY, Math.round(floor + random() * (top - floor)))
}

/** What `wait` listens to for the browser coming back online: `window` (or a worker's global) where it has one. */
interface OnlineTarget {
  addEventListener?: (type: 'online', listener: () => void) => void
  removeEventListener?: (type: 'online', listener: () => void) => void
}

/**
 * Resolves `true` after `ms`, or as soon as the browser comes back online (its `online` event, where the global
 * object has `addEventListener`: waiting out a backoff makes no sense once the network is back); `false` at once
 * when `signal` aborts first.
 */
export function wait (ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false)
  const global = globalThis as OnlineTarget
  const listens = typeof global.addEventListener === 'function'
  return new Promise(resolve => {
    const done = (result: boolean): void => {
      clearTimeout(timer)
      signal.removeEventListener('abort', aborted)
      if (listens) global.removeEventListener?.('online', online)
      resolve(result)
    }
    const aborted = (): void => done(false)
    const online = (): void => done(true)
    const timer = setTimeout(done, ms, true)
    signal.addEventListener('abort', aborted, { once: true })
    if (listens) global.addEventListener?.('online', online)
  })
}
