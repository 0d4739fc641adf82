import type { Static, TSchema } from '@sinclair/typebox'
import { TypeCompiler, type TypeCheck, type ValueError } from '@sinclair/typebox/compiler'
import { invalidOption, SseClientError, SseParseError } from '../errors.js'
import { parseEventStream } from './parse.js'
import type { SseItem } from '../types.js'

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

/**
 * The schemas `connect` validates `data` with: a TypeBox schema of the data (the one a route gives to
 * `sseSchema()`, so the route and its client share one type).
 */
export type ClientSchema = TSchema

/** The type of `data` a schema describes. */
export type DataOf<S extends ClientSchema> = Static<S>

/** An event as the client yields it: always with `data`, decoded. */
export type ReceivedItem<T> = SseItem<T> & { data: T }

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
  /** `false` keeps `data` as the received string instead of decoding it as JSON. Default `true`. */
  json?: boolean
  /** Longest line or event accepted, in characters (see `parseEventStream`). Default 4 MiB. */
  maxEventLength?: number
  /** The fetch to use. Default: the global `fetch`. */
  fetch?: FetchLike
}

export interface ConnectOptions extends ConnectBaseOptions {
  /** Validates each event's decoded `data`; an event that does not match ends the iteration with an error. */
  schema?: ClientSchema
}

const DEFAULT_RETRY = 3000
const MAX_DELAY = 2 ** 31 - 1

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

/** Lets go of a body we will not read, so its connection is freed. */
async function discard (response: FetchResponseLike): Promise<void> {
  try {
    await response.body?.[Symbol.asyncIterator]().return?.()
  } catch {
    // a body that fails while being cancelled has nothing more to tell
  }
}

function describeEvent (item: SseItem<string>): string {
  return (item.event === undefined ? 'message event' : `"${item.event}" event`) + (item.id === undefined ? '' : ` (id "${item.id}")`)
}

/** Internal (lib/testing uses it too): decodes and checks one parsed event. */
export function decoder<T> (
  json: boolean, check: TypeCheck<TSchema> | undefined
): (item: SseItem<string>) => ReceivedItem<T> {
  return item => {
    let data: unknown = item.data
    if (json) {
      try {
        data = JSON.parse(item.data as string)
      } catch (err) {
        throw new SseClientError('FST_SSE_CLIENT_DATA', `${describeEvent(item)} data is not JSON: ${(err as Error).message}`, { cause: err })
      }
    }
    if (check !== undefined && !check.Check(data)) {
      // TypeBox reports at least one error for a value that fails Check
      const first = check.Errors(data).First() as ValueError
      const where = first.path === '' ? 'data' : `data${first.path}`
      throw new SseClientError('FST_SSE_CLIENT_DATA', `${describeEvent(item)} does not match the schema: ${where} ${first.message}`)
    }
    return { ...item, data: data as T }
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
  url: string | URL, options: ConnectBaseOptions & { schema: S }
): AsyncGenerator<ReceivedItem<DataOf<S>>, void, undefined>
export function connect (
  url: string | URL, options: ConnectBaseOptions & { json: false, schema?: undefined }
): AsyncGenerator<ReceivedItem<string>, void, undefined>
export function connect<T = unknown> (
  url: string | URL, options?: ConnectBaseOptions & { schema?: undefined }
): AsyncGenerator<ReceivedItem<T>, void, undefined>
export function connect (
  url: string | URL, options: ConnectOptions = {}
): AsyncGenerator<ReceivedItem<unknown>, void, undefined> {
  const { retry = DEFAULT_RETRY, maxRetries = Infinity } = options
  if (!isDelay(retry)) {
    throw invalidOption('retry', `must be a non-negative whole number of milliseconds, got ${String(retry)}`, 'connect()')
  }
  if (maxRetries !== Infinity && !isDelay(maxRetries)) {
    const problem = `must be a non-negative whole number or Infinity, got ${String(maxRetries)}`
    throw invalidOption('maxRetries', problem, 'connect()')
  }
  const check = options.schema === undefined ? undefined : TypeCompiler.Compile(options.schema)
  return run(String(url), options, retry, maxRetries, decoder(options.json !== false, check))
}

async function * run (
  url: string,
  options: ConnectOptions,
  initialDelay: number,
  maxRetries: number,
  decode: (item: SseItem<string>) => ReceivedItem<unknown>
): AsyncGenerator<ReceivedItem<unknown>, void, undefined> {
  const fetchImpl: FetchLike = options.fetch ?? globalThis.fetch
  const { signal, reconnect = true } = options
  const controller = new AbortController()
  const onAbort = (): void => controller.abort(signal?.reason)
  if (signal?.aborted === true) return
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
      if (lastEventId !== '') headers['last-event-id'] = lastEventId
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
