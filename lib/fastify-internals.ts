import { tracingChannel } from 'node:diagnostics_channel'
import type { OutgoingHttpHeaders } from 'node:http'
import { constants as http2Constants, type Http2ServerResponse, type ServerHttp2Session } from 'node:http2'
import type { Socket } from 'node:net'
import type { FastifyReply, FastifyRequest } from 'fastify'

// Every place the plugin relies on Fastify's (or Node's) internals or on behaviour that differs between
// versions, each with why it is needed and the versions it was checked on. The file to read after upgrading.
// Checked on Fastify 5.12.8 and Node 20.20; the minimum supported versions are fastify 5.0 and Node 20.19.

/**
 * Types not re-exported by fastify's entry, needed so that `reply.sse()` merges with `FastifyReply`'s exact
 * type parameters and knows the route's reply type. Fastify 5.x: `fastify/types/type-provider.d.ts`.
 */
export type { FastifyReplyType, ResolveFastifyReplyType } from 'fastify/types/type-provider.js'

/**
 * Makes `request.signal` read through `getter` on this request. Fastify's own `request.signal` (5.8 and later: a
 * lazy getter on the Request prototype, created up front when `handlerTimeout` is set; 5.0–5.7 have none) aborts on
 * the raw request's `close`: as soon as a request body has been read (fastify#6725, open in 5.12), and not on
 * `app.close()` once a logger or onResponse hook exists (its listener is removed when the response finishes). An
 * SSE response needs a signal that means the stream's life. An own accessor shadows the prototype's getter (or
 * adds the property before 5.8); it must be defined before the handler reads `request.signal`. The same getter
 * function for every request keeps them all on one hidden class (V8 shares the shape), so the property costs no
 * memory per request until it is read.
 */
export function shadowRequestSignal (request: FastifyRequest, getter: (this: never) => AbortSignal): void {
  Object.defineProperty(request, 'signal', { get: getter, configurable: true, enumerable: true })
}

// Fastify keeps `request.signal`'s controller (made on the first read, or when the request starts on a route
// with `handlerTimeout`) and the request 'close' listener that aborts it under symbols it does not export:
// found by their descriptions (`fastify.request.signal`, `fastify.request.onAbort`, 5.7–5.12).
let kSignal: symbol | undefined
let kOnAbort: symbol | undefined

function findSignalSymbols (request: object): void {
  for (const symbol of Object.getOwnPropertySymbols(request)) {
    if (symbol.description === 'fastify.request.signal') kSignal = symbol
    else if (symbol.description === 'fastify.request.onAbort') kOnAbort = symbol
  }
}

/**
 * The controller behind a Fastify `request.signal` that exists already (it was read in a hook or the handler,
 * or `handlerTimeout` made it), detached from the request's 'close' event, which fires once a request body
 * has been read (fastify#6725); undefined when there is none. Whoever takes it decides when it aborts.
 */
export function takeRequestSignal (request: FastifyRequest): AbortController | undefined {
  if (kSignal === undefined) findSignalSymbols(request)
  const slots = request as unknown as Record<symbol, unknown>
  const controller = slots[kSignal as symbol]
  if (!(controller instanceof AbortController)) return undefined
  // Fastify sets the listener with the controller, and clears it once the response has finished
  const onAbort = slots[kOnAbort as symbol]
  if (typeof onAbort === 'function') {
    request.raw.removeListener('close', onAbort as () => void)
    slots[kOnAbort as symbol] = null
  }
  return controller
}

/**
 * Clears Fastify's `handlerTimeout` timer (server and route option, Fastify >= 5.8). It bounds how long a handler
 * takes to answer; an open stream has answered, and would otherwise be destroyed when the timer fires. Fastify
 * clears it on `reply.hijack()`, when the response finishes and when the request closes: an open stream has done
 * none of these, and there is no public call for a streamed body, so the timer is found by its symbol's
 * description (`fastify.request.timeoutTimer`, 5.8–5.12). Nothing happens if a version stores it differently.
 */
export function clearHandlerTimeout (request: FastifyRequest): void {
  if (!(request.routeOptions.handlerTimeout > 0)) return
  const key = Object.getOwnPropertySymbols(request).find(symbol => symbol.description === 'fastify.request.timeoutTimer')
  if (key !== undefined) clearTimeout((request as unknown as Record<symbol, NodeJS.Timeout | undefined>)[key])
}

/**
 * The body Fastify streams: `reply.send(body)` treats any object with a `pipe()` method as a Node stream (5.x
 * `reply.js`): after every onSend hook it copies the headers onto the response with `setHeader`, calls
 * `body.pipe(res)` (`pipe(res, { end: false })` when trailers are set, then ends the response itself), watches
 * the body's `end`/`close` and the response's `finish`/`close` with `finished()`, and calls `body.destroy()` when
 * the response closes before the body ended. A body that emits `error` before the headers were sent gets the
 * route's error handling (onError hooks, the error handler, the error's status), as a missing file does.
 * `FastifyBody` (lib/fastify-body) implements exactly that much of a Readable.
 */
export interface PipedBody {
  pipe: (dest: never, options?: { end?: boolean }) => unknown
  destroy: () => void
}

/** A symbol of Fastify's found by its description on an object that has it; cached once found. */
const symbols = new Map<string, symbol>()

function fastifySymbol (target: object, description: string): symbol | undefined {
  const known = symbols.get(description)
  if (known !== undefined && known in target) return known
  const found = Object.getOwnPropertySymbols(target).find(symbol => symbol.description === description)
  if (found !== undefined) symbols.set(description, found)
  return found
}

/**
 * Whether Fastify's stream-send path has nothing to do for this reply, so the plugin may write the head and the
 * body itself: the route has no onSend hook (Fastify 5, checked on 5.12.8, keeps them on the request's route
 * context, `request[Symbol(fastify.context)].onSend`, null when there is none) and no trailer was set
 * (`reply[Symbol(fastify.reply.trailers)]`, null when none). That path would otherwise keep two `finished()`
 * watchers and their closures per response (about 3 KB of heap per idle stream). When either cannot be found
 * (another Fastify version), false: the stream takes Fastify's path, as it always did.
 */
export function sendPathIdle (reply: FastifyReply): boolean {
  const contextKey = fastifySymbol(reply.request, 'fastify.context')
  const trailersKey = fastifySymbol(reply, 'fastify.reply.trailers')
  if (contextKey === undefined || trailersKey === undefined) return false
  const context = (reply.request as unknown as Record<symbol, { onSend?: unknown } | undefined>)[contextKey]
  return context?.onSend === null && (reply as unknown as Record<symbol, unknown>)[trailersKey] === null
}

/** Fastify's tracing channel of route handlers (5.x `handle-request.js`, `wrap-thenable.js`; 6.0 alphas too). */
const handlerTracing = tracingChannel<unknown, object>('fastify.request.handler')

/**
 * Ends the `fastify.request.handler` span of an async handler whose reply streams. Fastify publishes its
 * `asyncStart` and `asyncEnd` when the handler's promise fulfils, then sends what it fulfilled with; a streaming
 * handler's promise is never fulfilled for Fastify (it would answer a second time while the head waits for the
 * first item, and publishes nothing once the reply is hijacked), so they are published here, with the store
 * Fastify made for the request: `reply[Symbol(fastify.diagnosticsStore)]`, set only while the channel has
 * subscribers, and only by Fastify 5.9 and later (5.9–5.12, 6.0 alphas). Fastify 5.0–5.8 keep no handle on the
 * store: nothing is published, and a streaming async handler's span stays open, as without the plugin.
 * As for a handler that returns a Node stream, the span ends when the handler has handed the stream over.
 */
export function endHandlerSpan (reply: FastifyReply): void {
  // Fastify made no store without subscribers; looking for its symbol on every stream's reply is a scan of the
  // reply's symbols (about 8 µs per connection, measured by bench/scale at 19,000 connections)
  if (!handlerTracing.hasSubscribers) return
  const key = fastifySymbol(reply, 'fastify.diagnosticsStore')
  const store = key === undefined ? undefined : (reply as unknown as Record<symbol, object | undefined>)[key]
  if (store === undefined) return
  handlerTracing.asyncStart.publish(store)
  handlerTracing.asyncEnd.publish(store)
}

/**
 * Writes the head as Fastify's send path would (the status, and every header set so far by `reply.header()`,
 * hooks or plugins such as cors and helmet) and takes the response over with `reply.hijack()`: Fastify sends
 * nothing more, still runs onResponse hooks and logs the request when the response finishes.
 */
export function writeHeadDirectly (reply: FastifyReply): void {
  const headers = reply.getHeaders()
  reply.hijack()
  reply.raw.writeHead(reply.statusCode, headers as OutgoingHttpHeaders)
  // the client sees the stream open before the first event, as on Fastify's path (lib/head's sendHead)
  reply.raw.flushHeaders()
}

/**
 * Leaves Node's `Keep-Alive: timeout=…` line out of an HTTP/1 event stream's head; Node still writes `Connection:
 * keep-alive` (or `close`) as it should. With the line, an undici client (fetch included) that cancelled a stream
 * keeps the spare connection it opens for that long (72 s with Fastify's defaults, 4 s without the line), and
 * `app.close()` waits for it. Node keeps the timeout it advertises as the response's `_keepAliveTimeout`, read
 * only to write that line (Node 20–24); the server's own idle timeout is its `keepAliveTimeout`, untouched. A
 * `connection: keep-alive` header of our own would leave the line out too, but every header held costs an idle
 * stream on Fastify's send path (about 0.2 KB for that one).
 */
export function omitKeepAliveHint (res: FastifyReply['raw']): void {
  const response = res as { _keepAliveTimeout?: unknown }
  if (typeof response._keepAliveTimeout === 'number') response._keepAliveTimeout = 0
}

/**
 * Whether Node keeps this HTTP/1 response's connection open after it, as it decides when it writes its own
 * `Connection` line: the client's keep-alive (`shouldKeepAlive`), unless the server's `maxRequestsPerSocket` was
 * reached on that connection (`maxRequestsOnConnectionReached`, internal: Node 18–24), then `close`.
 */
export function keepsConnection (res: FastifyReply['raw']): boolean {
  const response = res as { shouldKeepAlive?: boolean, maxRequestsOnConnectionReached?: boolean }
  return response.shouldKeepAlive === true && response.maxRequestsOnConnectionReached !== true
}

/** Hands the stream to Fastify as the reply's body (see `PipedBody`), so onSend hooks and headers work. */
export function sendPipedBody (reply: FastifyReply, body: PipedBody): FastifyReply {
  return reply.send(body)
}

/**
 * On Node < 24 an HTTP/2 server's `close()` waits for its clients' sessions to end, and Fastify closes them only
 * with `forceCloseConnections: true`: the session that carries a stream being closed by the server is closed
 * gracefully, after the streams it carries. A no-op on HTTP/1.
 */
export function closeHttp2Session (res: FastifyReply['raw']): void {
  const session = (res as { stream?: Http2ServerResponse['stream'] }).stream?.session
  if (session !== undefined && !session.closed) session.close()
}

const connectionListeners = new WeakMap<Socket, Set<() => void>>()

function noop (): void {}

/**
 * Calls `listener` once when the HTTP/1 connection a request came on closes (on the next tick if it already
 * has); returns the function that stops listening. Node (checked on 20.20) emits `close` only on the response
 * that is using the connection: responses to requests pipelined behind it wait in the server's queue without a
 * socket and never learn that their client left (nodejs/node#62534 closes them in later releases). An endless
 * stream waiting there would hold its source and its `maxConnections` slot for good. One `close` listener per
 * connection serves every stream waiting on it: one per stream would trip MaxListenersExceeded.
 */
export function onConnectionClose (request: FastifyRequest, listener: () => void): () => void {
  const socket = request.raw.socket
  if (socket.destroyed) {
    process.nextTick(listener)
    return noop
  }
  let listeners = connectionListeners.get(socket)
  if (listeners === undefined) {
    const created = new Set<() => void>()
    listeners = created
    connectionListeners.set(socket, created)
    socket.once('close', () => {
      connectionListeners.delete(socket)
      for (const waiting of created) waiting()
    })
  }
  const set = listeners
  set.add(listener)
  return () => { set.delete(listener) }
}

/** Resets a TCP connection (SO_LINGER 0, then close); over TLS the TCP one underneath. Not TCP: nothing. */
function resetTcp (socket: Socket): void {
  try {
    // Node's TLS socket keeps the TCP socket it wraps as `_parent` (internal, checked on Node 20.20)
    ((socket as unknown as { _parent?: Socket | null })._parent ?? socket).resetAndDestroy()
  } catch {
    // a Unix socket: there is no reset, the caller closes it
  }
}

/**
 * Closes the connection of a response whose client stopped reading, so that the kernel lets go of it too. A
 * plain close (`destroy()`) queues a FIN behind the unsent bytes, and the kernel keeps the orphaned socket with
 * up to its whole send buffer (4 MiB on a default Linux) for as long as the peer keeps the connection open. A
 * reset (`socket.resetAndDestroy()`, Node >= 16.17) drops them at once. Where there is no TCP to reset (a Unix
 * socket) the connection is simply closed.
 *
 * On HTTP/2 the stream is reset (RST_STREAM, CANCEL), and the session's connection, which carries other streams,
 * only when the server is `closing`: Node 20 ends the socket of a session closed gracefully and waits for the
 * client's FIN, which a client that stopped reading never sends (its session waits for it to read the stream
 * out), so the server's close would wait for good. The session's `socket` is a proxy that refuses `destroy()`
 * but passes `resetAndDestroy()` and `_parent` through to the socket (Node 20.20).
 */
export function resetConnection (reply: FastifyReply, closing: boolean): void {
  const request = reply.request.raw
  if (request.httpVersionMajor === 1) {
    resetTcp(request.socket)
    request.socket.destroy()
    return
  }
  // taken first: a destroyed stream no longer knows its session
  const stream = (reply.raw as unknown as Http2ServerResponse).stream
  const session = stream.session as ServerHttp2Session
  // CANCEL: a plain destroy resets with NO_ERROR, which the client reads as the stream's end
  stream.close(http2Constants.NGHTTP2_CANCEL)
  reply.raw.destroy()
  if (closing) resetTcp(session.socket as Socket)
}
