import type { ChannelBackendFactory, HistoryOptions } from './backend.js'
import { invalidOption, shown } from '../errors.js'
import type { SseStatsOptions } from '../metrics.js'
import { refuseNonObject, refuseUnknown } from '../options.js'
import { QUEUE_LIMITS, queueLimit } from '../slow-client.js'

// A channel's options, and those of `subscribe()` and `app.sse.stats()`, checked when they are given: a misspelt
// name is refused, never ignored.

/** Options of `app.sse.channel(name, options)`. */
export interface ChannelOptions {
  /** Items kept for replay to reconnecting clients. Default 100; 0 keeps none. */
  history?: number
  /** Milliseconds an item stays in the history. Default: no age limit. */
  historyMaxAge?: number
  /** Items a subscriber may have waiting before it is disconnected as too slow. Default 512. */
  queueItems?: number
  /** Bytes (of encoded frames) a subscriber may have waiting before it is disconnected. Default 1 MiB. */
  queueBytes?: number
  /**
   * Milliseconds a channel with no subscriber and no publish is kept before it is forgotten (the next
   * `channel(name)` makes a new one, unless the forgotten object is still held: then it is handed back): an
   * in-memory one with its history, a shared one with nothing lost (its history is in the store). Default 300000
   * (5 minutes), at most 2147483647; `Infinity`: until `close()`. An in-memory one of which no client can hold an
   * id (nothing published, no replay or reset served) is forgotten as soon as its last subscriber leaves.
   */
  idleTimeout?: number
  /**
   * Where the history lives and how items reach the other processes. Default: this process's memory. A shared
   * backend (`redisChannels()` from `fastify-typed-sse/redis`) is given by the other overload of `channel()`.
   */
  backend?: ChannelBackendFactory<string>
}

/** Options of a channel whose items are stored outside this process (Redis): its `publish` returns a promise. */
export interface SharedChannelOptions extends Omit<ChannelOptions, 'backend'> {
  /** The shared store, e.g. `redisChannels({ redis })` from `fastify-typed-sse/redis`. */
  backend: ChannelBackendFactory<Promise<string>>
}

export interface ResolvedChannelOptions extends HistoryOptions {
  queueItems: number
  queueBytes: number
  idleTimeout: number
}

export const DEFAULTS: ResolvedChannelOptions = {
  history: 100, historyMaxAge: Infinity, ...QUEUE_LIMITS, idleTimeout: 300_000
}
const MAX_HISTORY = 10_000_000
const MAX_TIMER = 2 ** 31 - 1
export const OPTION_NAMES = Object.keys(DEFAULTS) as Array<keyof ResolvedChannelOptions>
const CHANNEL_OPTIONS: readonly string[] = [...OPTION_NAMES, 'backend']
export const SUBSCRIBE_OPTIONS: readonly string[] = ['lastEventId', 'signal', 'tags']
const STATS_CHANNELS = 100

export function resolveChannelOptions (options: ChannelOptions | SharedChannelOptions): ResolvedChannelOptions {
  refuseNonObject(options, '{ history, backend, … }', 'channel()')
  refuseUnknown(options, CHANNEL_OPTIONS, 'channel()')
  const {
    history = DEFAULTS.history, historyMaxAge = DEFAULTS.historyMaxAge, idleTimeout = DEFAULTS.idleTimeout, backend
  } = options
  if (backend !== undefined && typeof backend !== 'function') {
    throw invalidOption('backend', `must be a channel backend such as redisChannels({ redis }), got ${typeof backend}`)
  }
  if (!(Number.isSafeInteger(history) && history >= 0 && history <= MAX_HISTORY)) {
    throw invalidOption('history', `must be a whole number of items from 0 to ${MAX_HISTORY}, got ${String(history)}`)
  }
  if (!(typeof historyMaxAge === 'number' && historyMaxAge > 0)) {
    throw invalidOption('historyMaxAge', `must be a positive number of milliseconds, got ${String(historyMaxAge)}`)
  }
  const timer = Number.isSafeInteger(idleTimeout) && idleTimeout >= 0 && idleTimeout <= MAX_TIMER
  if (idleTimeout !== Infinity && !timer) {
    const problem = `must be a whole number of milliseconds from 0 to ${MAX_TIMER} (or Infinity), got ${shown(idleTimeout)}`
    throw invalidOption('idleTimeout', problem)
  }
  const queueItems = queueLimit('queueItems', options.queueItems)
  const queueBytes = queueLimit('queueBytes', options.queueBytes)
  return { history, historyMaxAge, queueItems, queueBytes, idleTimeout }
}

/** How many channel entries `stats()` shows, checked. */
export function statsChannels (options: SseStatsOptions | undefined): number {
  if (options === undefined) return STATS_CHANNELS
  refuseNonObject(options, '{ channels }', 'stats()')
  refuseUnknown(options, ['channels'], 'stats()')
  const { channels = STATS_CHANNELS } = options
  if (channels !== Infinity && !(Number.isSafeInteger(channels) && channels >= 0)) {
    throw invalidOption('channels', `must be a whole number of channels >= 0 (or Infinity), got ${shown(channels)}`, 'stats()')
  }
  return channels
}
