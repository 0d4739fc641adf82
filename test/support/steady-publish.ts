import { setTimeout as sleep } from 'node:timers/promises'
import type { SseRuntimeError } from '../../lib/index.js'
import { within } from '../helpers.js'

// The engines' fault tests: two servers publish to one channel, one after the other, through an outage; then every
// subscriber must read every publish that resolved, once, in one order.

/** A channel's publish, as the fault tests call it. */
export interface PublishingRoom {
  publish: (item: { data: number }) => Promise<string>
}

export interface SteadyPublish {
  /** The ids of the publishes that resolved, in order. */
  readonly resolved: string[]
  /** What the others were refused with. */
  readonly rejected: SseRuntimeError[]
  /** Waits, at most the bound `steadyPublish()` was given, until `done()` (polled every 5 ms); fails naming `what`. */
  until: (done: () => boolean, what: string) => Promise<void>
  /** Stops publishing; resolves once the publish under way settled. */
  stop: () => Promise<void>
}

/** Publishes `{ data: n }` on `rooms` in turn until stopped, at most 4,000 items or 40 s; `until` waits `waitMs`. */
export function steadyPublish (rooms: readonly [PublishingRoom, PublishingRoom], waitMs: number): SteadyPublish {
  const resolved: string[] = []
  const rejected: SseRuntimeError[] = []
  let stopped = false
  const publishing = (async () => {
    const deadline = Date.now() + 40_000
    for (let n = 0; !stopped && n < 4000 && Date.now() < deadline; n++) {
      try {
        resolved.push(await rooms[n % 2]!.publish({ data: n }))
      } catch (err) {
        rejected.push(err as SseRuntimeError)
        await sleep(5)
      }
    }
  })()
  return {
    resolved,
    rejected,
    async until (done, what) {
      for (const deadline = Date.now() + waitMs; !done();) {
        if (Date.now() > deadline) throw new Error(`timed out: ${what}`)
        await sleep(5)
      }
    },
    async stop () {
      stopped = true
      await publishing
    }
  }
}

/** What each reader reads (one id per call) up to `last`, all within `ms`. */
export function readUpTo (last: string, readers: Array<() => Promise<string>>, ms: number): Promise<string[][]> {
  const read = async (next: () => Promise<string>): Promise<string[]> => {
    const ids: string[] = []
    while (ids.at(-1) !== last) ids.push(await next())
    return ids
  }
  return within(Promise.all(readers.map(read)), ms, 'every subscriber reached the last publish')
}
