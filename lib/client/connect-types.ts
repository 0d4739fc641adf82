import type { SseItem } from '../types.js'
import type { SseControlItem, SseSchema } from '../typed/schema.js'
import type { StaticOf, TypeBoxSchema } from '../typed/static.js'
import type { DataValidator } from './decode.js'
import type { ConnectBody, FetchLike } from './http.js'
import type { ConnectionState, ConnectionStateInfo } from './session.js'

// The types of `connect()`: its options, and the events it yields given the route's schema (lib/client/connect
// makes the function; lib/client/settings checks the options at run time).

/**
 * What `connect` decodes and validates `data` with: the route's own response schema (`sseSchema(data)` or an
 * `sseSchema({ event: data, … })` event map), or a TypeBox schema of the data (of either TypeBox).
 */
export type ClientSchema = TypeBoxSchema | SseSchema<unknown, unknown>

/** The type of `data` a TypeBox schema describes. */
export type DataOf<S extends TypeBoxSchema> = StaticOf<S>

/** An event as the client yields it: always with `data`, decoded. */
export type ReceivedItem<T> = SseItem<T> & { data: T }

/** An event of an event map as the client yields it: `event` names it (absent on the wire: `message`). */
export interface ReceivedEvent<E extends string, D> {
  event: E
  data: D
  id?: string
  retry?: number
}

/** What the client yields for one item type a route may send (items without data are never yielded). */
export type ReceivedOf<Item> = Item extends SseControlItem
  ? never
  : Item extends { event: infer E extends string, data?: infer D }
    ? ReceivedEvent<E, Exclude<D, undefined>>
    : Item extends SseItem<infer T> ? ReceivedItem<T> : never

/**
 * The events a client reads given a schema: for an event map, a union discriminated on `event` (narrow it with
 * `if (item.event === 'tick')`); for one data schema, items whose `data` has its type.
 */
export type ItemsOf<S extends ClientSchema> = S extends SseSchema<infer Item, unknown>
  ? ReceivedOf<Item>
  : S extends TypeBoxSchema ? ReceivedItem<StaticOf<S>> : never

/** The options of `connect` but `schema` (overloads add a typed one: an optional one here confuses inference). */
export interface ConnectBaseOptions {
  /** Aborting it ends the iteration (quietly: the loop just ends) and closes the connection. */
  signal?: AbortSignal
  /** Sent as `Last-Event-ID` on the first request (a resumed session); then the last id the server sent. */
  lastEventId?: string
  /**
   * Request headers, `authorization` say, sent on every attempt (`accept: text/event-stream` and `cache-control:
   * no-cache` are sent anyway; a caller's `accept` replaces ours). In a browser, a cross-origin request with headers
   * beyond `accept` is preflighted: the server's CORS must allow them (`cache-control` and `last-event-id` too).
   */
  headers?: Record<string, string>
  /** The request method, as `fetch` takes it (not `HEAD`, `CONNECT`, `TRACE` or `TRACK`). Default `GET`. */
  method?: string
  /**
   * The request body (a prompt, say), sent again on every reconnection: a string, a `Uint8Array`, an `ArrayBuffer`, a
   * `Blob` or `URLSearchParams` (not a stream: it can be read once). Needs a `method` other than `GET`. Default: none.
   */
  body?: ConnectBody
  /** `fetch`'s `credentials` (cookies on a cross-origin request: `include`). Default: fetch's (`same-origin`). */
  credentials?: 'omit' | 'same-origin' | 'include'
  /** `fetch`'s `mode` (`no-cors` is refused: its answers cannot be read). Default: fetch's (`cors`). */
  mode?: 'cors' | 'same-origin'
  /** Reconnection delay in ms until the server sends a `retry:` line: the least a reconnection waits. Default 3000. */
  retry?: number
  /**
   * Most ms a reconnection waits, unless the server asked for longer (a `retry:` or `Retry-After` above it). Each wait
   * is the delay plus a random share of a window that doubles with each failed attempt in a row. Default 30000.
   */
  maxRetryDelay?: number
  /**
   * Ms without a byte (event or heartbeat) after which the connection is given up as dead and a new one made
   * (with `reconnect: false`, an error); `false`: wait for ever, as EventSource. Keep it above the server's
   * heartbeat: 2.5 times it leaves room for a late one. Default 37500 (2.5 × the plugin's default heartbeat).
   */
  inactivityTimeout?: number | false
  /** `false`: end when the stream ends, and fail on the first connection error (or broken stream). Default `true`. */
  reconnect?: boolean
  /** Attempts in a row that may fail (network errors, 408, 429, 503) before the client gives up. Default: no limit. */
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
   * `true`: a `503` answer (a server at its connection limit, or shutting down), a `429` or a `408` is retried after
   * its `Retry-After` (else the reconnection delay), and counts toward `maxRetries`; `false`: it ends the iteration
   * with an error, as any other status. Default `true` (with `reconnect: false`, such an answer is an error anyway).
   */
  retryUnavailable?: boolean
  /**
   * Checks each event's decoded data: a function `(data, event) => problem | undefined` (`validator(schema)` from
   * `fastify-typed-sse/client/validate` compiles one from the route's TypeBox schemas), or `false` for no check.
   * An event it refuses ends the iteration with an `FST_SSE_CLIENT_DATA` error. Default: in Node, the check of a
   * TypeBox `schema`; in a browser bundle (the `browser` export condition), none.
   */
  validate?: false | DataValidator
  /** Called as the connection changes state: `connecting`, `open`, `reconnecting` (with the delay), `closed`. */
  onState?: (state: ConnectionState, info: ConnectionStateInfo) => void
  /** The fetch to use. Default: the global `fetch`. */
  fetch?: FetchLike
}

export interface ConnectOptions extends ConnectBaseOptions {
  /**
   * Decodes each event as the route encoded it (data whose schema admits only strings is the text; anything else
   * JSON) and, unless `validate` says otherwise, validates it; an event that does not decode or match, or (event
   * map) whose name is not in the map, ends the iteration with an error.
   */
  schema?: ClientSchema
  /** The TypeBox schemas (with an `$id`) that `Type.Ref`s in `schema` name, as the route's shared schemas. */
  references?: TypeBoxSchema[]
}

/**
 * Opens an event stream and yields its events, decoded (JSON by default) and validated when a schema is
 * given. Reconnects when the connection drops, goes silent or the server ends the stream, after the server's
 * `retry:` delay plus a random share of a backoff window, repeating the request (method, headers, body) with
 * `Last-Event-ID`. Ends on a 204 answer or when `signal` aborts; throws an `SseClientError` on any other status
 * than 200 (but 408, 429 and 503, waited out), a content type other than `text/event-stream`, data that does not
 * decode or match the schema, or when `maxRetries` attempts in a row failed; an `SseParseError` on a line or
 * event longer than `maxEventLength`. A bad option, or a name it does not take, throws at the call.
 */
export interface Connect {
  <S extends ClientSchema>(
    url: string | URL, options: ConnectBaseOptions & { schema: S, references?: TypeBoxSchema[] }
  ): AsyncGenerator<ItemsOf<S>, void, undefined>
  (
    url: string | URL, options: ConnectBaseOptions & { json: false, schema?: undefined }
  ): AsyncGenerator<ReceivedItem<string>, void, undefined>
  <T = unknown>(
    url: string | URL, options?: ConnectBaseOptions & { schema?: undefined }
  ): AsyncGenerator<ReceivedItem<T>, void, undefined>
}
