import type { FastifyReply, FastifyRequest } from 'fastify'

/** One Server-Sent Event. Every present field is written on its own line(s); `data` is JSON unless a string. */
export interface SseItem<T = unknown> {
  /** A string is written as is (split on CR/LF into several `data:` lines); anything else is serialized. */
  data?: T
  /** The `event:` line; absent means the client's default `message` event. No CR or LF. */
  event?: string
  /** The `id:` line, which becomes the client's Last-Event-ID. `''` is written (it resets it). No CR, LF or NUL. */
  id?: string
  /** The `retry:` line: the client's reconnection delay in whole milliseconds, >= 0. */
  retry?: number
  /** `:` comment line(s), ignored by clients (useful for padding and keep-alive). */
  comment?: string
}

/** What `reply.sse()` accepts: any async or sync iterable of items; an async generator is the usual one. */
export type SseSource<T = unknown> = AsyncIterable<SseItem<T>> | Iterable<SseItem<T>>

/** Turns non-string `data` into the text of its `data:` lines. */
export type SseSerializer = (data: unknown) => string

/**
 * Maps a failure of a stream that is already open (its source threw, or an item was refused) to a last item
 * for the client, say `{ event: 'error', data: { reason } }`; `undefined` writes nothing. The stream ends after it.
 */
export type SseErrorMapper<Item = SseItem> = (error: unknown, request: FastifyRequest) => Item | undefined

/** Options of one stream; the plugin's options, then a route's `config.sse`, are their defaults. */
export interface SseStreamOptions<Item = SseItem> {
  /** Milliseconds of silence after which a `:` comment is written; `false` turns the heartbeat off. Default 15000. */
  heartbeat?: number | false
  /**
   * Reconnection delay (ms) sent as a `retry:` line when the stream opens, varied per stream by `retryJitter`, so
   * that clients dropped together (a restart) come back spread out. `false` sends no `retry:` line (the client's own
   * default applies, the same for every client of a browser: 3 s in Chromium and Safari, 5 s in Firefox). A whole
   * number >= 0 or false; default 3000.
   */
  retry?: number | false
  /**
   * How far each stream's `retry:` line may differ from `retry`, as a share of it: each stream sends a whole
   * number drawn evenly from `retry × (1 − retryJitter)` to `retry × (1 + retryJitter)`, so that clients dropped
   * together (a restart) do not all come back at once. 0 sends `retry` exactly; unused with `retry: false`. From 0
   * to 1; default 0.5.
   */
  retryJitter?: number
  /**
   * Longest time (ms) output may wait without the socket draining (a write was told to wait, and the socket has
   * not drained since): past it, the connection is reset (HTTP/2: the stream) and the source stopped; the stream
   * ends as `'too slow'`. Bytes the kernel already took do not count. `false`: no limit. Default 30000.
   */
  writeTimeout?: number | false
  /**
   * Serializer for non-string `data`. Default: on a route with an `sseSchema()` response, the serializer compiled
   * from the data schema (fast-json-stringify, through Fastify's serializer compiler), else `JSON.stringify`.
   * Given per call, it is used even where a schema is known.
   */
  serialize?: SseSerializer
  /**
   * On a route with an `sseSchema()` response, check each item against the schema before it is written: data
   * that does not match, or (for an event map) an event the map does not name, is refused like any bad item.
   * Uses the route's validator compiler (Fastify's ajv by default) on a copy of the data. Default false.
   */
  validate?: boolean
  /**
   * Longest wait (ms) for the first item before the headers are sent without it. Until they are sent, a failure
   * of the source is the route's ordinary error (its status, the error handler, onError hooks); once they are,
   * the stream is open and a failure can only end it. 0 sends the headers at once. Default 100.
   */
  headersDelay?: number
  /** A last item for the client when the stream fails after it opened (see `SseErrorMapper`). Default: none. */
  onError?: SseErrorMapper<Item>
}

/**
 * What a dual route answers a client whose `Accept` rules out `text/event-stream`: the value (or what the promise
 * resolves to) is sent as JSON, through the route's `application/json` response schema when it has one.
 */
export type SseJsonAnswer = (request: FastifyRequest, reply: FastifyReply) => unknown

/** A route's `config.sse`: the options of its streams, and what makes it dual. */
export interface SseRouteOptions extends SseStreamOptions {
  /**
   * Makes the route dual: a request whose `Accept` rules out `text/event-stream` but takes JSON gets what this
   * returns (a snapshot, or a finite array) as JSON, instead of a 406; the handler does not run for it. Document the
   * second media type with `sseSchema(data, { json: schema })`. Default: none (such a request is answered 406).
   */
  json?: SseJsonAnswer
}

/** Options of `fastify.register(ssePlugin, options)`. */
export interface SsePluginOptions extends SseStreamOptions {
  /**
   * Most SSE streams open at once, plugin-wide; a new stream beyond it is answered 503 with `Retry-After`
   * (and its source stopped) instead of piling up. Default: no limit.
   */
  maxConnections?: number
  /** Seconds sent in the `Retry-After` header of those 503 answers. Default 5. */
  retryAfter?: number
  /**
   * Most SSE streams on one connection: on HTTP/1.1 the one being answered and the requests pipelined behind it
   * (which wait, their sources not started, until Node can write their responses); on HTTP/2 the streams open on
   * one session. Beyond it, on HTTP/2 a new stream is answered 503; on HTTP/1.1 the connection is closed (a 503
   * queued behind an endless stream would never be read). Default 100.
   */
  maxStreamsPerConnection?: number
  /**
   * Limits the rate new streams are admitted at (a reconnection storm): beyond it, 503 with a jittered
   * `Retry-After`. Default: none.
   */
  admission?: SseAdmissionOptions
}

/** The plugin's `admission` option: a token bucket of new streams, per plugin instance (so per process). */
export interface SseAdmissionOptions {
  /** New streams admitted per second, sustained (> 0; 0.5 is one every two seconds). */
  rate: number
  /** New streams admitted at once after a quiet time (the bucket's size, >= 1). Default: `rate`, rounded up. */
  burst?: number
  /**
   * Seconds over which refused clients are spread: their `Retry-After` is the plugin's `retryAfter` plus a whole
   * number of seconds drawn uniformly from 0 to `spread`. Default: `retryAfter` (at least 1).
   */
  spread?: number
}
