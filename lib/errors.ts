// Every error the plugin throws, rejects with or logs, in one catalogue: each has a stable `code` (FST_SSE_*) that
// logs and tests can match on, and each code is explained in docs/errors.md. Two bases:
// - SseError, a TypeError: bad input (an item, an option, a schema, an argument), refused before anything of it
//   is written. The same call with the same input always fails the same way: fix the caller.
// - SseRuntimeError, an Error: a condition of the moment (a closed channel, a store that does not answer, a
//   server or stream the client cannot use). The same call may succeed later.

/** Codes of bad input (`SseError`). */
export type SseInputErrorCode =
  | 'FST_SSE_INVALID_ITEM'
  | 'FST_SSE_INVALID_OPTION'
  | 'FST_SSE_INVALID_SCHEMA'
  | 'FST_SSE_INVALID_SOURCE'
  | 'FST_SSE_NOT_A_STREAM'
  | 'FST_SSE_UNSEEN_ROUTE'
  | 'FST_SSE_ALREADY_SENT'
  | 'FST_SSE_NOT_ACCEPTABLE'

/** Codes of runtime conditions (`SseRuntimeError` and its subclasses). */
export type SseRuntimeErrorCode =
  | 'FST_SSE_CHANNEL_CLOSED'
  | 'FST_SSE_CHANNEL_UNAVAILABLE'
  | 'FST_SSE_PUSH_OVERFLOW'
  | 'FST_SSE_PARSE'
  | SseClientErrorCode
  | 'FST_SSE_COLLECT_TIMEOUT'
  | 'FST_SSE_COLLECT_ENDED'

/** Codes of `SseClientError`: why a client (`connect()`, `collect()`) could not read a stream. */
export type SseClientErrorCode =
  | 'FST_SSE_CLIENT_STATUS'
  | 'FST_SSE_CLIENT_CONTENT_TYPE'
  | 'FST_SSE_CLIENT_CONNECT'
  | 'FST_SSE_CLIENT_DATA'

/** `GET /path`, as errors name a route. */
export function routeName (route: { method: string | string[], url: string }): string {
  return `${Array.isArray(route.method) ? route.method.join(',') : route.method} ${route.url}`
}

function causeOf (cause: unknown): { cause: unknown } | undefined {
  return cause === undefined ? undefined : { cause }
}

/** Bad input: an item, option, schema or argument. `field` names it (an item field, an option, a route). */
export class SseError extends TypeError {
  readonly code: SseInputErrorCode
  /** The item field (`id`, `event`, `retry`, `data`, `comment`), option, schema part or route at fault. */
  readonly field: string

  constructor (code: SseInputErrorCode, field: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'SseError'
    this.code = code
    this.field = field
  }
}

/** A condition of the moment, not a bad argument: a closed channel, an unreachable store, an unusable stream. */
export class SseRuntimeError extends Error {
  readonly code: SseRuntimeErrorCode

  constructor (code: SseRuntimeErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'SseRuntimeError'
    this.code = code
  }
}

/** Why a client stopped with an error: a stable `code`, and the HTTP `status` when there was an answer. */
export class SseClientError extends SseRuntimeError {
  declare readonly code: SseClientErrorCode
  readonly status: number | undefined

  constructor (code: SseClientErrorCode, message: string, options: { status?: number, cause?: unknown } = {}) {
    super(code, message, causeOf(options.cause))
    this.name = 'SseClientError'
    this.status = options.status
  }
}

/** The event-stream grammar refuses a line or event longer than `maxEventLength`. */
export class SseParseError extends SseRuntimeError {
  declare readonly code: 'FST_SSE_PARSE'

  constructor (message: string) {
    super('FST_SSE_PARSE', message)
    this.name = 'SseParseError'
  }
}

/** A bad `SseItem`: refused before any byte of it is written. */
export function invalidItem (field: string, problem: string, cause?: unknown): SseError {
  return new SseError('FST_SSE_INVALID_ITEM', field, `SSE item field "${field}" ${problem}`, causeOf(cause))
}

/**
 * A bad plugin, stream, channel, backend or client option: refused when it is given, not when it is first used.
 * `owner` names what took the option (`connect()`, say); the plugin's own by default.
 */
export function invalidOption (option: string, problem: string, owner = 'fastify-typed-sse'): SseError {
  return new SseError('FST_SSE_INVALID_OPTION', option, `${owner} option "${option}" ${problem}`)
}

/** A data schema or event map that `sseSchema()` cannot build a stream from. */
export function invalidSchema (field: string, problem: string): SseError {
  return new SseError('FST_SSE_INVALID_SCHEMA', field, `sseSchema(): ${problem}`)
}

/** `reply.sse()` was given something that is not an async or sync iterable of items. */
export function invalidSource (route: string, got: string): SseError {
  return new SseError('FST_SSE_INVALID_SOURCE', 'source', `reply.sse() on ${route} needs an async or sync iterable of SSE items, got ${got}`)
}

/** `reply.sse()` was given a push source that another stream takes its items from already. */
export function sourceTaken (route: string, what: 'push source' | 'channel subscription'): SseError {
  return new SseError('FST_SSE_INVALID_SOURCE', 'source', `reply.sse() on ${route}: this ${what} feeds a stream already; one source feeds one stream (make one per request)`)
}

/** A handler of a route documented as SSE returned something that is neither a stream nor a reply. */
export function notAStream (route: string, got: string): SseError {
  return new SseError('FST_SSE_NOT_A_STREAM', route, `route ${route} has an sseSchema() response but its handler neither yields nor calls reply.sse(): it returned ${got}`)
}

/** A handler passed an iterator to `reply.send()`, which Fastify would serialize as `{}`. */
export function sentIterator (route: string): SseError {
  return new SseError('FST_SSE_NOT_A_STREAM', route, `route ${route} sent an iterator with reply.send(), which would answer {}: stream it with reply.sse()`)
}

/** A route the plugin never saw (declared before it was registered) returned a stream of items. */
export function unseenRoute (route: string): SseError {
  return new SseError('FST_SSE_UNSEEN_ROUTE', route, `route ${route} returned a stream of items, but fastify-typed-sse was not registered when the route was declared: await app.register(ssePlugin) first, then declare the route`)
}

/** `reply.sse()` on a reply already sent or streaming: logged as a warning, as Fastify does for a second send(). */
export function alreadySent (route: string): SseError {
  return new SseError('FST_SSE_ALREADY_SENT', 'reply', `reply.sse() on ${route}: the reply was already sent`)
}

/** A request to an SSE route whose `Accept` header rules out `text/event-stream`: answered with a 406. */
export function notAcceptable (route: string): SseError {
  return new SseError('FST_SSE_NOT_ACCEPTABLE', 'accept',
    `${route} answers with text/event-stream only, which the request's Accept header rules out`)
}

/** A publish on a channel that was closed (by `channel.close()` or with the app). */
export function channelClosed (name: string): SseRuntimeError {
  return new SseRuntimeError('FST_SSE_CHANNEL_CLOSED', `SSE channel "${name}" is closed`)
}

/** A publish the channel's shared store (Redis) did not take: unreachable, too slow to answer, or an error. */
export function channelUnavailable (name: string, problem: string, cause?: unknown): SseRuntimeError {
  return new SseRuntimeError('FST_SSE_CHANNEL_UNAVAILABLE', `SSE channel "${name}": ${problem}`, causeOf(cause))
}

/** A push source's queue went over its bound: the client fell too far behind, and its stream ends. */
export function pushOverflow (items: number, bytes: number, queueItems: number, queueBytes: number): SseRuntimeError {
  return new SseRuntimeError('FST_SSE_PUSH_OVERFLOW',
    `SSE push source: the client fell ${items} items (${bytes} bytes) behind, over queueItems ${queueItems} or queueBytes ${queueBytes}; stream ended`)
}

/**
 * `; did you mean "history"?` when `name` is a clear typo of exactly one of `known` (another case, or one or two
 * letters off: dropped, added, changed or swapped), else `''`. For the refusals of unknown option and item fields.
 */
export function nearName (name: string, known: Iterable<string>): string {
  const lower = name.toLowerCase()
  let best: string | undefined
  let bestDistance = Infinity
  let ties = 0
  for (const candidate of known) {
    const distance = candidate.toLowerCase() === lower ? 0 : editDistance(lower, candidate.toLowerCase())
    if (distance < bestDistance) [best, bestDistance, ties] = [candidate, distance, 0]
    else if (distance === bestDistance) ties++
  }
  const allowed = Math.min(name.length, best?.length ?? 0) <= 4 ? 1 : 2
  return best !== undefined && ties === 0 && bestDistance <= allowed ? `; did you mean "${best}"?` : ''
}

/** Edits (insert, delete, replace, swap of neighbours) from `a` to `b`; names are short, so the table is small. */
function editDistance (a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return Infinity
  const rows: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i])
  for (let j = 1; j <= b.length; j++) (rows[0] as number[])[j] = j
  for (let i = 1; i <= a.length; i++) {
    const row = rows[i] as number[]
    const above = rows[i - 1] as number[]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let d = Math.min((above[j] as number) + 1, (row[j - 1] as number) + 1, (above[j - 1] as number) + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d = Math.min(d, ((rows[i - 2] as number[])[j - 2] as number) + 1)
      }
      row[j] = d
    }
  }
  return (rows[a.length] as number[])[b.length] as number
}

/** A value as a message shows it: a string quoted and called one (`"1000" (string)`), so it is not read as a number. */
export function shown (value: unknown): string {
  if (typeof value === 'string') return `${JSON.stringify(value)} (string)`
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'object') return 'an object'
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'bigint') return `${value}n (bigint)`
  return String(value)
}
