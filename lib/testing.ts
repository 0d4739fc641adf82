import type { FastifyInstance, HTTPMethods, InjectOptions } from 'fastify'
import { METHODS, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http'
import { MAX_DELAY } from './client/backoff.js'
import type { ClientSchema, ItemsOf, ReceivedItem } from './client/connect.js'
import { decoder } from './client/decode.js'
import { headerValue, lowerCaseKeys, mimeEssence } from './client/http.js'
import { schemaValidator } from './client/validate.js'
import { invalidOption, SseClientError, SseRuntimeError, shown } from './errors.js'
import {
  checkCount, checkHeaders, checkLastEventId, checkStringValues, refuseUnknownOptions, type OptionNames
} from './client/options.js'
import { checkParseOptions, parseEventStream } from './client/parse.js'
import type { TypeBoxSchema } from './typed/static.js'

// `fastify-typed-sse/testing`: test an SSE route in three lines, through `app.inject` (no port, no socket):
//   const events = await collect(app, { url: '/clock', count: 3 })
// The stream is read as it is written and closed (the route's generator stopped, as when a browser leaves)
// once enough events came, so endless routes can be tested too.

/** The options of `injectSse` but `schema` (overloads add a typed one). */
export interface InjectSseBaseOptions {
  /** Path (and query string) of the route, starting with `/`; or an absolute `http(s)` URL (its host is `Host`). */
  url: string
  /** Default `GET`. */
  method?: HTTPMethods
  headers?: Record<string, string>
  query?: Record<string, string>
  payload?: InjectOptions['payload']
  /** Sent as the `Last-Event-ID` header, as a reconnecting browser does. */
  lastEventId?: string
  /**
   * Without a schema: `false` keeps `data` as the received text; `true` decodes it as JSON (data that is not JSON
   * is an error); unset, data that parses as JSON is decoded and any other is kept as text. Ignored with a schema.
   */
  json?: boolean
  /** Longest line or event accepted, in characters. Default 4 MiB. */
  maxEventLength?: number
}

export interface InjectSseOptions extends InjectSseBaseOptions {
  /** Decodes and validates each event as `connect` does: the route's `sseSchema(…)`, or a TypeBox data schema. */
  schema?: ClientSchema
  /** The TypeBox schemas (with an `$id`) that `Type.Ref`s in `schema` name. */
  references?: TypeBoxSchema[]
}

/** The names `injectSse()` takes: any other is refused at the call. */
const INJECT_SSE_OPTIONS: OptionNames<InjectSseOptions> = {
  url: true,
  method: true,
  headers: true,
  query: true,
  payload: true,
  lastEventId: true,
  json: true,
  maxEventLength: true,
  schema: true,
  references: true
}

/** The options of `collect` but `schema`. */
export interface CollectBaseOptions extends InjectSseBaseOptions {
  /** Events to wait for before the stream is closed. Default: all, until the route ends the stream. */
  count?: number
  /** Milliseconds (a whole number, 1 to 2^31-1) to wait for them before failing with what did arrive. Default 5000. */
  timeout?: number
}

export interface CollectOptions extends CollectBaseOptions {
  /** Decodes and validates each event as `connect` does: the route's `sseSchema(…)`, or a TypeBox data schema. */
  schema?: ClientSchema
  /** The TypeBox schemas (with an `$id`) that `Type.Ref`s in `schema` name. */
  references?: TypeBoxSchema[]
}

/** The names `collect()` takes: `injectSse()`'s and its own. */
const COLLECT_OPTIONS: OptionNames<CollectOptions> = { ...INJECT_SSE_OPTIONS, count: true, timeout: true }

/** An open SSE response of an injected request; `Item` is what it yields (by default, items whose `data` is a `T`). */
export interface InjectedStream<T, Item = ReceivedItem<T>> {
  statusCode: number
  headers: OutgoingHttpHeaders | IncomingHttpHeaders
  /** The stream's events, decoded, in order; ends when the route ends the stream or `close()` is called. */
  events: AsyncIterableIterator<Item>
  /** The text of every `:` comment line read so far (heartbeats are empty strings). */
  comments: string[]
  /**
   * Reads `count` more events (`Infinity`: all until the stream ends); fails, and closes the stream, when they
   * do not come within `timeout` ms (default 5000) or the stream ends first. A `count` that is not a whole number
   * >= 0 or Infinity, or a `timeout` that is not a whole number from 1 to 2^31-1, rejects with an `SseError`.
   */
  take (count: number, timeout?: number): Promise<Item[]>
  /** Closes the response as a client leaving would: the route's generator is stopped (its `finally` runs). */
  close (): void
}

const DEFAULT_TIMEOUT = 5000

/**
 * Refuses bad options where they are given, before a request is injected: each would otherwise fail later with a
 * message about something else (inject's own validation, a header Node refuses), or be sent as a guess (a number
 * as a query value, `[object Object]` as a URL).
 */
function checkOptions (options: unknown, known: Readonly<Record<string, true>>, owner: string): void {
  refuseUnknownOptions(options, known, owner)
  const { url, method, headers, query, lastEventId, maxEventLength } = options as InjectSseOptions
  checkParseOptions({ maxEventLength }, owner)
  if (!isRequestUrl(url)) {
    const problem = `must be a path starting with "/" (or an absolute http(s) URL), got ${shown(url)}`
    throw invalidOption('url', problem, owner)
  }
  if (method !== undefined && !(typeof method === 'string' && METHODS.includes(method.toUpperCase()))) {
    const problem = `must be an HTTP method (one of node:http's METHODS, in any case), got ${shown(method)}`
    throw invalidOption('method', problem, owner)
  }
  checkHeaders(headers, owner)
  if (query !== undefined) checkStringValues(query, 'query', 'parameter names', owner)
  checkLastEventId(lastEventId, owner)
}

function isRequestUrl (url: unknown): boolean {
  if (typeof url !== 'string') return false
  if (url.startsWith('/')) return true
  return URL.canParse(url) && /^https?:$/.test(new URL(url).protocol)
}

/** Refuses a timeout (`collect()`'s, `take()`'s) that is not whole ms a timer holds: a longer one fires at once. */
function checkTimeout (timeout: unknown, owner: string): void {
  if (!(Number.isSafeInteger(timeout) && (timeout as number) >= 1 && (timeout as number) <= MAX_DELAY)) {
    throw invalidOption('timeout', `must be a whole number of milliseconds from 1 to ${MAX_DELAY}, got ${shown(timeout)}`, owner)
  }
}

function describeRequest (options: InjectSseOptions): string {
  return `${options.method ?? 'GET'} ${options.url}`
}

/**
 * Injects a request into `app` (no listening needed) and returns its event stream as it is written. Fails
 * when the answer is not a 200 `text/event-stream` response (its status and body are in the message).
 */
export async function injectSse<S extends ClientSchema> (
  app: FastifyInstance, options: InjectSseBaseOptions & { schema: S, references?: TypeBoxSchema[] }
): Promise<InjectedStream<unknown, ItemsOf<S>>>
export async function injectSse (
  app: FastifyInstance, options: InjectSseBaseOptions & { json: false, schema?: undefined }
): Promise<InjectedStream<string>>
export async function injectSse<T = unknown> (
  app: FastifyInstance, options: InjectSseBaseOptions & { schema?: undefined }
): Promise<InjectedStream<T>>
export async function injectSse (app: FastifyInstance, options: InjectSseOptions): Promise<InjectedStream<unknown>> {
  checkOptions(options, INJECT_SSE_OPTIONS, 'injectSse()')
  return openStream(app, options)
}

/** Injects the request of checked options. */
async function openStream (app: FastifyInstance, options: InjectSseOptions): Promise<InjectedStream<unknown>> {
  const headers: Record<string, string> = { accept: 'text/event-stream', ...lowerCaseKeys(options.headers) }
  if (options.lastEventId !== undefined) headers['last-event-id'] = headerValue(options.lastEventId)
  const request: InjectOptions = { method: options.method ?? 'GET', url: options.url, headers, payloadAsStream: true }
  if (options.query !== undefined) request.query = options.query
  if (options.payload !== undefined) request.payload = options.payload
  const { schema, references } = options
  // before the request: nothing to clean up if the schema's TypeBox fails to load
  const decode = decoder(options, schema === undefined ? undefined : await schemaValidator(schema, references))
  const response = await app.inject(request)
  const body = response.stream()
  const what = describeRequest(options)
  if (response.statusCode !== 200 || mimeEssence(response.headers['content-type'] as string | undefined) !== 'text/event-stream') {
    let text = ''
    for await (const chunk of body) {
      text += String(chunk)
      if (text.length > 500) break // enough to say what it is; and a body that never ends cannot hold the test
    }
    response.raw.res.destroy()
    throw new SseClientError(
      response.statusCode !== 200 ? 'FST_SSE_CLIENT_STATUS' : 'FST_SSE_CLIENT_CONTENT_TYPE',
      `${what} answered ${response.statusCode} with content-type ${String(response.headers['content-type'])}, not an event stream${text === '' ? '' : `: ${text.slice(0, 500)}`}`,
      { status: response.statusCode }
    )
  }

  let closed = false
  const comments: string[] = []
  const close = (): void => {
    closed = true
    response.raw.res.destroy() // the 'close' a leaving client causes: the plugin stops the source
  }
  async function * read (): AsyncGenerator<ReceivedItem<unknown>, void, undefined> {
    try {
      const parsing = { maxEventLength: options.maxEventLength, onComment: (c: string) => comments.push(c) }
      for await (const item of parseEventStream(body, parsing)) {
        yield decode(item)
      }
    } catch (err) {
      if (!closed) throw err // after close() the body fails with "response destroyed": that is the end
    } finally {
      close()
    }
  }
  const events = read()

  /** `count` events, or (`Infinity`) all of them until the stream ends, within `timeout` ms. */
  async function take (count: number, timeout = DEFAULT_TIMEOUT): Promise<Array<ReceivedItem<unknown>>> {
    checkCount(count, 'count', 'take()')
    checkTimeout(timeout, 'take()')
    const out: Array<ReceivedItem<unknown>> = []
    let timer: NodeJS.Timeout | undefined
    const expired = new Promise<'timeout'>(resolve => { timer = setTimeout(resolve, timeout, 'timeout') })
    const wanted = count === Infinity ? 'the end of the stream (give `count` for an endless route)' : `${count} events`
    try {
      while (out.length < count) {
        const step = await Promise.race([events.next(), expired])
        if (step === 'timeout') {
          close()
          const message = `${what}: waited ${timeout} ms for ${wanted}; got ${out.length}: ${JSON.stringify(out)}`
          throw new SseRuntimeError('FST_SSE_COLLECT_TIMEOUT', message)
        }
        if (step.done === true) {
          if (count === Infinity) break
          const message = `${what}: the stream ended after ${out.length} of ${count} events: ${JSON.stringify(out)}`
          throw new SseRuntimeError('FST_SSE_COLLECT_ENDED', message)
        }
        out.push(step.value)
      }
      return out
    } finally {
      clearTimeout(timer)
    }
  }

  return { statusCode: response.statusCode, headers: response.headers, events, comments, take, close }
}

/**
 * Injects a request into `app` and collects its events: `count` of them (then the stream is closed), or all
 * until the route ends the stream. Fails with the events that did come when they take longer than `timeout`.
 */
export async function collect<S extends ClientSchema> (
  app: FastifyInstance, options: CollectBaseOptions & { schema: S, references?: TypeBoxSchema[] }
): Promise<Array<ItemsOf<S>>>
export async function collect (
  app: FastifyInstance, options: CollectBaseOptions & { json: false, schema?: undefined }
): Promise<Array<ReceivedItem<string>>>
export async function collect<T = unknown> (
  app: FastifyInstance, options: CollectBaseOptions & { schema?: undefined }
): Promise<Array<ReceivedItem<T>>>
export async function collect (app: FastifyInstance, options: CollectOptions): Promise<Array<ReceivedItem<unknown>>> {
  checkOptions(options, COLLECT_OPTIONS, 'collect()')
  if (options.count !== undefined) checkCount(options.count, 'count', 'collect()')
  if (options.timeout !== undefined) checkTimeout(options.timeout, 'collect()')
  const stream = await openStream(app, options)
  try {
    return await stream.take(options.count ?? Infinity, options.timeout)
  } finally {
    stream.close()
  }
}

export type { ReceivedItem } from './client/connect.js'
