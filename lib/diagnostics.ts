import dc from 'node:diagnostics_channel'
import type { FastifyRequest } from 'fastify'
import type { ResetReason } from './channel/backend.js'
import type { EndReason } from './source.js'

// What the plugin tells `node:diagnostics_channel` subscribers (APM agents, OpenTelemetry, a Prometheus
// exporter). Every call site checks `hasSubscribers` before it builds a message: nobody listening, nothing built.

/** The name of every diagnostics channel the plugin publishes on. */
export const SSE_DIAGNOSTICS = {
  streamOpen: 'fastify-typed-sse:stream:open',
  streamClose: 'fastify-typed-sse:stream:close',
  itemRefused: 'fastify-typed-sse:stream:item-refused',
  cutOff: 'fastify-typed-sse:channel:cut-off',
  replay: 'fastify-typed-sse:channel:replay',
  reset: 'fastify-typed-sse:channel:reset',
  publishFailed: 'fastify-typed-sse:channel:publish-failed',
  readerDown: 'fastify-typed-sse:redis:reader-down',
  readerUp: 'fastify-typed-sse:redis:reader-up'
} as const

/** A stream opened: its headers are about to go out. */
export interface SseStreamOpenMessage {
  request: FastifyRequest
  /** The route's URL pattern (`/rooms/:room`), the same for every stream of the route. */
  route: string
}

/** A stream closed, for whatever reason. */
export interface SseStreamCloseMessage extends SseStreamOpenMessage {
  reason: EndReason
  /** Items written. */
  items: number
  /** Bytes of frames written (the event stream's own bytes: before compression, TLS or HTTP framing). */
  bytes: number
  /** Milliseconds the stream was open. */
  durationMs: number
}

/** An item the stream's encoder (or its route's schema) refused: nothing of it was written, the stream ends. */
export interface SseItemRefusedMessage extends SseStreamOpenMessage {
  error: Error
}

/** A channel subscriber fell too far behind and was cut off (its client resumes with Last-Event-ID). */
export interface SseCutOffMessage {
  channel: string
  /** Items and bytes it had waiting when the next one did not fit. */
  queuedItems: number
  queuedBytes: number
}

/** A subscriber that came with a Last-Event-ID got exactly what it missed. */
export interface SseReplayMessage {
  channel: string
  /** Items replayed (0: it had missed nothing). */
  items: number
  /** The id the replay ends at. */
  position: string
}

/**
 * A subscriber that came with a Last-Event-ID could not resume, or a connected one's Redis stream lost items: it got
 * one `sse-reset` item.
 */
export interface SseResetMessage {
  channel: string
  reason: ResetReason
  /** The `sse-reset` item's id: the channel's position. */
  position: string
}

/** A publish on a shared channel (Redis) was not stored; the promise `publish` returned rejects with `error`. */
export interface SsePublishFailedMessage {
  channel: string
  error: Error
}

/** A Redis channel's reader lost its connection, or has it back (it then resumes after `after`). */
export interface SseReaderMessage {
  channel: string
  /** The id of the last entry it handed on (undefined before its first read). */
  after: string | undefined
}

/** The message each diagnostics channel carries, by channel name. */
export interface SseDiagnosticMessages {
  'fastify-typed-sse:stream:open': SseStreamOpenMessage
  'fastify-typed-sse:stream:close': SseStreamCloseMessage
  'fastify-typed-sse:stream:item-refused': SseItemRefusedMessage
  'fastify-typed-sse:channel:cut-off': SseCutOffMessage
  'fastify-typed-sse:channel:replay': SseReplayMessage
  'fastify-typed-sse:channel:reset': SseResetMessage
  'fastify-typed-sse:channel:publish-failed': SsePublishFailedMessage
  'fastify-typed-sse:redis:reader-down': SseReaderMessage
  'fastify-typed-sse:redis:reader-up': SseReaderMessage
}

export type SseDiagnosticName = keyof SseDiagnosticMessages

/**
 * Subscribes to one of the plugin's diagnostics channels with its message typed; returns the unsubscribe
 * function. The same as `diagnostics_channel.subscribe(name, listener)`, which works as well.
 */
export function subscribeSseDiagnostic<N extends SseDiagnosticName> (
  name: N, listener: (message: SseDiagnosticMessages[N]) => void
): () => void {
  const onMessage = (message: unknown): void => listener(message as SseDiagnosticMessages[N])
  dc.subscribe(name, onMessage)
  return () => { dc.unsubscribe(name, onMessage) }
}

// Made once, here: `dc.channel()` on a hot path would look the name up every time.
export const streamOpen = dc.channel(SSE_DIAGNOSTICS.streamOpen)
export const streamClose = dc.channel(SSE_DIAGNOSTICS.streamClose)
export const itemRefused = dc.channel(SSE_DIAGNOSTICS.itemRefused)
export const cutOff = dc.channel(SSE_DIAGNOSTICS.cutOff)
export const replayServed = dc.channel(SSE_DIAGNOSTICS.replay)
export const resetServed = dc.channel(SSE_DIAGNOSTICS.reset)
export const publishFailed = dc.channel(SSE_DIAGNOSTICS.publishFailed)
export const readerDown = dc.channel(SSE_DIAGNOSTICS.readerDown)
export const readerUp = dc.channel(SSE_DIAGNOSTICS.readerUp)
