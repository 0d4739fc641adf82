import type { FastifyReply } from 'fastify'
import type { Frame } from './encode.js'
import type { SseItem, SseSource } from './types.js'

// What a stream reads, and how. Any async or sync iterable is pulled one item at a time (`openSource`). A source
// that needs to act on the connection it is written to (a channel subscription, a push source) takes part in the
// attach handshake: it offers a method under `kAttachStream`, which the stream calls once, before the first pull,
// with its `StreamLink`. A source that answers with a `SyncSource` is then read through it, synchronously, instead
// of through its async iterator: an item it has is written at once, and when it has none the stream waits, holding
// no promise, until the source hands one over with `deliver()`. That is how a channel writes a published item into
// every idle subscriber's socket within the publish call, as a hand-written server loops over its responses.

/** Why a stream ended, as logged and as seen by `close()` callers. */
export type EndReason = 'source ended' | 'source failed' | 'item refused' | 'client closed' | 'server closing' | 'too slow'

/** The method a source offers to learn about the stream that writes it. */
export const kAttachStream = Symbol('fastify-typed-sse.attachStream')

/** What `SyncSource.take()` returns when the source has no item yet: it will call `deliver()` when it has. */
export const WAIT = Symbol('fastify-typed-sse.wait')

/** What a stream offers the source it writes. */
export interface StreamLink {
  /**
   * The source gave up on a client that reads too slowly: when the client is stuck (its socket full) the
   * connection is closed now and this returns true; otherwise false, and the source should end after what is
   * queued (the stream then ends by itself once the socket takes it).
   */
  disconnect: () => boolean
  /**
   * The item's frame as this stream writes it: checked and encoded by the stream's own rules (a typed route's
   * serializer, and its schema with `validate`). Throws the `SseError` that would refuse the item.
   */
  encode: (item: unknown) => Frame
  /**
   * For a `SyncSource` only, once after each `take()` that answered `WAIT`: the next item, written at once,
   * within the call; or nothing, when the source ended or failed (the stream then calls `take()` to learn which).
   */
  deliver: (item?: SseItem<unknown>) => void
  /**
   * Whether `signal` is this stream's `request.signal`: it aborts when the stream stops its source, which the
   * stream does itself (`return()`), so a source need not listen to it.
   */
  stopsWith: (signal: AbortSignal) => boolean
}

/**
 * True on a source that runs no user code before its first item (a channel subscription): nothing can fail
 * early, so its stream sends the headers at once instead of waiting `headersDelay` for the first item.
 */
export const kOpensAtOnce = Symbol('fastify-typed-sse.opensAtOnce')

/** A source the stream reads synchronously (see above). */
export interface SyncSource {
  /**
   * The next item; `WAIT` when there is none yet; `undefined` once the source has ended. Throws once the source
   * failed, as a generator's throw.
   */
  take: () => SseItem<unknown> | typeof WAIT | undefined
}

/** A source that takes part in the attach handshake; it may ask to be read synchronously. */
export interface AttachableSource {
  [kAttachStream]: (stream: StreamLink) => SyncSource | undefined
}

/** The attach handshake: what the source answers (a `SyncSource` to read it by), or undefined for most sources. */
export function attach (source: object, stream: StreamLink): SyncSource | undefined {
  const method = (source as Partial<AttachableSource>)[kAttachStream]
  return typeof method === 'function' ? method.call(source, stream) : undefined
}

/** Whether the source runs no user code before its first item (see `kOpensAtOnce`). */
export function opensAtOnce (source: object): boolean {
  return (source as { [kOpensAtOnce]?: boolean })[kOpensAtOnce] === true
}

async function * fromSync<T> (iterable: Iterable<SseItem<T>>): AsyncGenerator<SseItem<T>, void, undefined> {
  yield * iterable
}

/** The iterator a stream pulls: the source's own async one, or a sync iterable's items through an async generator. */
export function openSource (source: SseSource<unknown>): AsyncIterator<SseItem<unknown>> {
  return Symbol.asyncIterator in source
    ? source[Symbol.asyncIterator]()
    : fromSync(source)[Symbol.asyncIterator]()
}

function noop (): void {}

/**
 * Asks a source to stop (a generator runs its `finally`). Not awaited: a generator busy in an await that
 * ignores the signal stops when it next yields, and nobody (least of all app.close) waits for that.
 */
export function stopIterator (iterator: AsyncIterator<unknown> | Iterator<unknown>, reply: FastifyReply): void {
  try {
    Promise.resolve(iterator.return?.()).then(noop, (err: unknown) => reply.log.error({ err }, 'SSE source failed while stopping'))
  } catch (err) {
    reply.log.error({ err }, 'SSE source failed while stopping')
  }
}

function iteratorOf (source: SseSource<unknown>): AsyncIterator<unknown> | Iterator<unknown> {
  return Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : source[Symbol.iterator]()
}

/** Stops a source that will not be streamed (a generator runs its finally, a subscription is released). */
export function dropSource (reply: FastifyReply, source: unknown): void {
  if (isSource(source)) stopIterator(iteratorOf(source), reply)
}

/** An async or sync iterable that is not a string (what `reply.sse()` accepts). */
export function isSource (value: unknown): value is SseSource<unknown> {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return false
  const candidate = value as Partial<Record<symbol, unknown>>
  return typeof candidate[Symbol.asyncIterator] === 'function' || typeof candidate[Symbol.iterator] === 'function'
}
