import type { AdmissionLimits } from './options.js'

// The rate new streams are admitted at (the plugin's `admission` option): a token bucket per plugin instance.
// A reconnection storm (every client of a restarted server, or of a dropped load balancer, at once) meets it
// before any source starts. Each refused client is told to come back after `retryAfter` plus a random whole
// number of seconds up to `spread`, so that they do not all come back in the same second.

/** The token bucket of new streams. */
export class AdmissionGate {
  readonly #limits: AdmissionLimits
  readonly #retryAfter: number
  #tokens: number
  #at: number

  constructor (limits: AdmissionLimits, retryAfter: number, now = performance.now()) {
    this.#limits = limits
    this.#retryAfter = retryAfter
    this.#tokens = limits.burst
    this.#at = now
  }

  /** Takes a new stream's token: false when the bucket is empty (the stream is refused). */
  admit (now = performance.now()): boolean {
    const { rate, burst } = this.#limits
    this.#tokens = Math.min(burst, this.#tokens + (now - this.#at) * rate / 1000)
    this.#at = now
    if (this.#tokens < 1) return false
    this.#tokens--
    return true
  }

  /** The `Retry-After` of a refused request: `retryAfter` plus 0 to `spread` seconds, uniformly. */
  retryAfter (random = Math.random()): number {
    return this.#retryAfter + Math.floor(random * (this.#limits.spread + 1))
  }
}
