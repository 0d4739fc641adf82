/**
 * Every refusal the plugin makes is a TypeError (so `instanceof TypeError` holds, as the contract says) that
 * carries a stable `code` and the name of the offending field or option, so logs and tests can match on it.
 */
export class SseError extends TypeError {
  readonly code: string
  /** The item field (`id`, `event`, `retry`, `data`, `comment`), option or route the error is about. */
  readonly field: string

  constructor (code: string, field: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'SseError'
    this.code = code
    this.field = field
  }
}

/** A bad `SseItem`: refused before any byte of it is written. */
export function invalidItem (field: string, problem: string, cause?: unknown): SseError {
  return new SseError('FST_SSE_INVALID_ITEM', field, `SSE item field "${field}" ${problem}`, cause === undefined ? undefined : { cause })
}

/** A bad plugin, stream or channel option: refused when it is given, not when it is first used. */
export function invalidOption (option: string, problem: string): SseError {
  return new SseError('FST_SSE_INVALID_OPTION', option, `fastify-typed-sse option "${option}" ${problem}`)
}

/** A publish on a channel that was closed (by `channel.close()` or with the app). */
export function channelClosed (name: string): SseError {
  return new SseError('FST_SSE_CHANNEL_CLOSED', 'channel', `SSE channel "${name}" is closed`)
}

/** A publish the channel's shared store (Redis) did not take: unreachable, too slow to answer, or an error. */
export function channelUnavailable (name: string, problem: string, cause?: unknown): SseError {
  return new SseError('FST_SSE_CHANNEL_UNAVAILABLE', 'channel', `SSE channel "${name}": ${problem}`, cause === undefined ? undefined : { cause })
}
