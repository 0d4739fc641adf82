import { isRetry } from './encode.js'
import { invalidOption } from './errors.js'
import type { ResolvedStreamOptions } from './stream.js'
import type { SsePluginOptions, SseStreamOptions } from './types.js'

// The plugin's and each stream's options, checked once when they are given: a bad one is refused by name
// at registration (or at `reply.sse()`), never discovered later on a live stream.

const MAX_TIMER = 2 ** 31 - 1

/** Stream options resolved, with what only typed routes use. */
export interface ResolvedOptions extends ResolvedStreamOptions {
  validate: boolean
}

export const DEFAULTS: ResolvedOptions = {
  heartbeat: 15_000, retry: undefined, serialize: JSON.stringify, validate: false
}

/** `options` checked, with `base` filling what they leave out. */
export function resolveOptions (options: SseStreamOptions, base: ResolvedOptions): ResolvedOptions {
  const {
    heartbeat = base.heartbeat, retry = base.retry, serialize = base.serialize, validate = base.validate
  } = options
  if (heartbeat !== false && !(Number.isSafeInteger(heartbeat) && heartbeat > 0 && heartbeat <= MAX_TIMER)) {
    throw invalidOption('heartbeat', `must be a positive whole number of milliseconds or false, got ${String(heartbeat)}`)
  }
  if (retry !== undefined && !isRetry(retry)) {
    throw invalidOption('retry', `must be a non-negative whole number of milliseconds, got ${String(retry)}`)
  }
  if (typeof serialize !== 'function') throw invalidOption('serialize', `must be a function, got ${typeof serialize}`)
  if (typeof validate !== 'boolean') throw invalidOption('validate', `must be a boolean, got ${typeof validate}`)
  return { heartbeat, retry, serialize, validate }
}

/** The plugin-wide stream limit and the `Retry-After` of the 503 answers beyond it. */
export interface Limits {
  maxConnections: number
  retryAfter: number
}

export function resolveLimits (options: SsePluginOptions): Limits {
  const { maxConnections = Infinity, retryAfter = 5 } = options
  if (maxConnections !== Infinity && !(Number.isSafeInteger(maxConnections) && maxConnections >= 0)) {
    throw invalidOption('maxConnections', `must be a whole number of streams >= 0, got ${String(maxConnections)}`)
  }
  if (!(Number.isSafeInteger(retryAfter) && retryAfter >= 0)) {
    throw invalidOption('retryAfter', `must be a whole number of seconds >= 0, got ${String(retryAfter)}`)
  }
  return { maxConnections, retryAfter }
}
