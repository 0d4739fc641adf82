import { invalidOption, SseClientError, SseError, SseParseError, shown } from '../errors.js'
import type { TypeBoxSchema } from '../typed/static.js'
import type { SseItem } from '../types.js'
import { decoder, type ClientSchema, type ItemsOf, type ReceivedItem } from './decode.js'
import { checkCount, checkHeaders, checkLastEventId, refuseUnknownOptions, type OptionNames } from './options.js'
import { checkParseOptions, parseEventStream } from './parse.js'

// A typed, reconnecting event-stream client for Node, with the reconnection rules of the browser's
// EventSource (WHATWG HTML §9.2): `Last-Event-ID` on every reconnection, the server's `retry:` as the delay,
// 204 to stop, any other failed answer fatal. It runs on `fetch` (Node's own, which is undici), so it adds
// no dependency; give it undici's `fetch` (with a dispatcher for HTTP/2, proxies or test certificates) by
// the `fetch` option.

/** What `connect` needs of a fetch response: Node's global `fetch` and undici's `fetch` both fit. */
export interface FetchResponseLike {
  readonly status: number
  readonly headers: { get (name: string): string | null }
  readonly body: AsyncIterable<Uint8Array> | null
}

/** What `connect` needs of `fetch`. */
export type FetchLike = (url: string, init: { method: 'GET', headers: Record<string, string>, signal: AbortSignal }) => Promise<FetchResponseLike>

/** The options of `connect` but `schema` (overloads add a typed one: an optional one here confuses inference). */
export interface ConnectBaseOptions {
  /** Aborting it ends the iteration (quietly: the loop just ends) and closes the connection. */
  signal?: AbortSignal
  /** Sent as `Last-Event-ID` on the first request (a resumed session); then the last id the server sent. */
  lastEventId?: string
  /** Extra request headers (`accept: text/event-stream` and `cache-control: no-cache` are sent anyway). */
  headers?: Record<string, string>
  /** Reconnection delay in ms until the server sends a `retry:` line. Default 3000, as browsers. */
  retry?: number
  /** `false`: end when the stream ends, and fail on the first connection error (or broken stream). Default `true`. */
  reconnect?: boolean
  /** Connection attempts in a row that may fail (network errors) before the client gives up. Default: no limit. */
  maxRetries?: number
  /**
   * Without a schema: `false` keeps `data` as the received text; `true` decodes it as JSON (data that is not JSON
   * is an error); unset, data that parses as JSON is decoded and any other is kept as text (so a string sent
   * as text comes back as it was sent, unless it reads as JSON, such as `"42"` or `"true"`). Ignored with a schema.
   */
  json?: boolean
  /** Longest line or event accepted, in characters (see `parseEventStream`). Default 4 MiB. */
  maxEventLength?: number
  /**
   * `true`: a `503` answer (a server at its connection limit, or shutting down) is retried after its `Retry-After`
   * (else the reconnection delay), and counts toward `maxRetries`; `false`: it ends the iteration with an error, as
   * any other status. Default `true` (with `reconnect: false`, a 503 is an error anyway).
   */
  retryUnavailable?: boolean
  /** The fetch to use. Default: the global `fetch`. */
  fetch?: FetchLike
}

export interface ConnectOptions extends ConnectBaseOptions {
  /**
   * Decodes each event as the route encoded it (data whose schema admits only strings is the text; anything else
   * JSON) and validates it; an event that does not decode or match, or (event map) whose name is not in the map,
   * ends the iteration with an error.
   */
  schema?: ClientSchema
  /** The TypeBox schemas (with an `$id`) that `Type.Ref`s in `schema` name, as the route's shared schemas. */
  references?: TypeBoxSchema[]
}

/** The names `connect()` takes: any other (a misspelt `retryy`, say) is refused at the call. */
const CONNECT_OPTIONS: OptionNames<ConnectOptions> = {
  signal: true,
  lastEventId: true,
  headers: true,
  retry: true,
  reconnect: true,
  maxRetries: true,
  json: true,
  maxEventLength: true,
  retryUnavailable: true,
  fetch: true,
  schema: true,
  references: true
}

const DEFAULT_RETRY = 3000
/** Internal (lib/testing uses it too): the longest delay a timer holds; a longer one fires at once in Node. */
export const MAX_DELAY = 2 ** 31 - 1

function isDelay (value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0
}

/** Resolves `true` after `ms`, or `false` at once when `signal` aborts first. */
function wait (ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false)
  return new Promise(resolve => {
    const done = (): void => {
      clearTimeout(timer)
      resolve(false)
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', done)
      resolve(true)
    }, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}

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
 * A `Last-Event-ID` header value as `fetch` takes it: the id's UTF-8 bytes, one character per byte (a header is
 * bytes, and fetch sends a string of characters up to U+00FF as those bytes); HTML sends the id as UTF-8.
 */
export function headerValue (text: string): string {
  return Buffer.from(text, 'utf8').toString('latin1')
}

/** Lets go of a body we will not read, so its connection is freed. */
async function discard (response: FetchResponseLike): Promise<void> {
  try {
    await response.body?.[Symbol.asyncIterator]().return?.()
  } catch {
    // a body that fails while being cancelled has nothing more to tell
  }
}

/** Internal: the same headers with lower-case names. */
export function lowerCaseKeys (headers: Record<string, string> = {}): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers)) out[name.toLowerCase()] = value
  return out
}

/** Internal: `text/event-stream` of `Text/Event-Stream; charset=utf-8`. */
export function mimeEssence (contentType: string | null | undefined): string {
  return (contentType ?? '').split(';', 1)[0]!.trim().toLowerCase()
}

/**
 * Opens an event stream and yields its events, decoded (JSON by default) and validated when a schema is
 * given. Reconnects when the connection drops or the server ends the stream, after the server's `retry:` delay,
 * sending `Last-Event-ID`. Ends on a 204 answer or when `signal` aborts; throws an `SseClientError` on any
 * other status than 200, a content type other than `text/event-stream`, data that does not decode or match
 * the schema, or when `maxRetries` connection attempts in a row failed; an `SseParseError` on a line or event
 * longer than `maxEventLength`.
 */
export function connect<S extends ClientSchema> (
  url: string | URL, options: ConnectBaseOptions & { schema: S, references?: TypeBoxSchema[] }
): AsyncGenerator<ItemsOf<S>, void, undefined>
export function connect (
  url: string | URL, options: ConnectBaseOptions & { json: false, schema?: undefined }
): AsyncGenerator<ReceivedItem<string>, void, undefined>
export function connect<T = unknown> (
  url: string | URL, options?: ConnectBaseOptions & { schema?: undefined }
): AsyncGenerator<ReceivedItem<T>, void, undefined>
export function connect (
  url: string | URL, options: ConnectOptions = {}
): AsyncGenerator<SseItem<unknown>, void, undefined> {
  checkConnectOptions(url, options)
  const { retry = DEFAULT_RETRY, maxRetries = Infinity } = options
  return run(String(url), options, retry, maxRetries)
}

const CONNECT = 'connect()'
const FLAGS = ['reconnect', 'json', 'retryUnavailable'] as const

/**
 * Refuses bad arguments at the call. Each of them would otherwise fail inside the loop, most as a fetch error
 * that looks like a network failure and is retried without end (a URL fetch cannot parse, a header it refuses);
 * an unknown option name would be ignored.
 */
function checkConnectOptions (url: unknown, options: ConnectOptions): void {
  if (!URL.canParse(String(url))) {
    throw new SseError('FST_SSE_INVALID_OPTION', 'url', `connect() needs an absolute URL, got ${shown(url)}`)
  }
  refuseUnknownOptions(options, CONNECT_OPTIONS, CONNECT)
  const { retry = DEFAULT_RETRY, maxRetries = Infinity, signal, lastEventId, headers, schema, references } = options
  if (!isDelay(retry)) {
    throw invalidOption('retry', `must be a non-negative whole number of milliseconds, got ${shown(retry)}`, CONNECT)
  }
  checkCount(maxRetries, 'maxRetries', CONNECT)
  for (const name of FLAGS) {
    const flag: unknown = options[name]
    if (flag !== undefined && typeof flag !== 'boolean') {
      throw invalidOption(name, `must be a boolean, got ${shown(flag)}`, CONNECT)
    }
  }
  checkParseOptions({ maxEventLength: options.maxEventLength }, CONNECT)
  // what the loop uses of it: a polyfilled AbortSignal does as well
  if (signal !== undefined && !(isObject(signal) && typeof signal.aborted === 'boolean' &&
    typeof signal.addEventListener === 'function')) {
    throw invalidOption('signal', `must be an AbortSignal, got ${shown(signal)}`, CONNECT)
  }
  checkLastEventId(lastEventId, CONNECT)
  checkHeaders(headers, CONNECT)
  if (options.fetch !== undefined && typeof options.fetch !== 'function') {
    throw invalidOption('fetch', `must be a function (url, init) => Promise<Response>, got ${shown(options.fetch)}`, CONNECT)
  }
  if (schema !== undefined && (typeof schema !== 'object' || schema === null)) {
    throw invalidOption('schema', `must be an sseSchema() or a TypeBox schema, got ${shown(schema)}`, CONNECT)
  }
  if (references !== undefined && !(Array.isArray(references) && references.every(isObject))) {
    throw invalidOption('references', `must be an array of TypeBox schemas, got ${shown(references)}`, CONNECT)
  }
}

function isObject (value: unknown): boolean {
  return typeof value === 'object' && value !== null
}

async function * run (
  url: string,
  options: ConnectOptions,
  initialDelay: number,
  maxRetries: number
): AsyncGenerator<SseItem<unknown>, void, undefined> {
  const fetchImpl: FetchLike = options.fetch ?? globalThis.fetch
  const { signal, reconnect = true } = options
  const controller = new AbortController()
  const onAbort = (): void => controller.abort(signal?.reason)
  if (signal?.aborted === true) return
  // loads the compiler of the schema's TypeBox on first use: on the first `next()`, not at the call
  const decode = await decoder(options)
  signal?.addEventListener('abort', onAbort, { once: true })
  let delay = initialDelay
  let lastEventId = options.lastEventId ?? ''
  let failures = 0
  // lower-cased, so that a caller's `Accept` replaces ours instead of joining it, and `Last-Event-ID` is ours
  const extraHeaders = lowerCaseKeys(options.headers)
  const parseOptions = {
    maxEventLength: options.maxEventLength,
    // a timer longer than 2^31-1 ms fires at once in Node: a huge retry would become a reconnect storm
    onRetry: (ms: number) => { delay = Math.min(ms, MAX_DELAY) },
    onId: (id: string) => { lastEventId = id }
  }

  try {
    for (;;) {
      const headers: Record<string, string> = { accept: 'text/event-stream', 'cache-control': 'no-cache', ...extraHeaders }
      if (lastEventId !== '') headers['last-event-id'] = headerValue(lastEventId)
      let response: FetchResponseLike
      try {
        response = await fetchImpl(url, { method: 'GET', headers, signal: controller.signal })
      } catch (err) {
        if (controller.signal.aborted) return
        failures++
        if (!reconnect || failures > maxRetries) {
          throw new SseClientError('FST_SSE_CLIENT_CONNECT', `could not connect to ${url} (${failures} attempt${failures === 1 ? '' : 's'}): ${(err as Error).message}`, { cause: err })
        }
        if (!await wait(delay, controller.signal)) return
        continue
      }
      if (response.status === 204) {
        await discard(response) // the server's way to say: do not reconnect
        return
      }
      if (response.status === 503 && reconnect && options.retryUnavailable !== false) {
        await discard(response)
        failures++
        if (failures > maxRetries) {
          throw new SseClientError('FST_SSE_CLIENT_STATUS', `${url} answered 503 ${failures} times in a row`, { status: 503 })
        }
        if (!await wait(retryAfterMs(response.headers.get('retry-after')) ?? delay, controller.signal)) return
        continue
      }
      if (response.status !== 200) {
        await discard(response)
        throw new SseClientError('FST_SSE_CLIENT_STATUS', `${url} answered ${response.status} instead of 200`, { status: response.status })
      }
      const type = response.headers.get('content-type')
      if (mimeEssence(type) !== 'text/event-stream') {
        await discard(response)
        throw new SseClientError('FST_SSE_CLIENT_CONTENT_TYPE', `${url} answered with content-type ${type === null ? '(none)' : `"${type}"`} instead of text/event-stream`, { status: 200 })
      }
      failures = 0
      try {
        for await (const item of parseEventStream(response.body ?? [], parseOptions)) {
          if (controller.signal.aborted) return // an abort between two events of one chunk ends it too
          yield decode(item)
        }
      } catch (err) {
        if (controller.signal.aborted) return
        if (err instanceof SseParseError || err instanceof SseClientError) throw err
        // the connection broke in the middle of the stream: reconnect, as a browser does
        if (!reconnect) {
          throw new SseClientError('FST_SSE_CLIENT_CONNECT', `the connection to ${url} broke in the middle of the stream: ${(err as Error).message}`, { cause: err })
        }
      }
      if (!reconnect) return
      if (!await wait(delay, controller.signal)) return
    }
  } finally {
    signal?.removeEventListener('abort', onAbort)
    controller.abort()
  }
}
