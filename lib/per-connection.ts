import type { Http2ServerRequest, Http2Session } from 'node:http2'
import type { Socket } from 'node:net'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { onConnectionClose } from './fastify-internals.js'

// The streams one client holds on one connection (`maxStreamsPerConnection`). An HTTP/1.1 connection answers one
// request at a time: it holds the stream being answered and the requests pipelined behind it, which wait for
// their turn here. Node keeps a pipelined request's response in the connection's queue without a socket
// (`res.socket` is null) until every response ahead has finished, then gives it the socket (`assignSocket`
// emits 'socket' on it); it never could have written a byte before. Its source is not started, and it takes no
// `maxConnections` slot, until then. An HTTP/2 session holds the SSE streams open on it.

/** Requests waiting for their turn, by HTTP/1 connection. */
const waitingOn = new WeakMap<Socket, number>()
/** SSE streams open, by HTTP/2 session. */
const openOn = new WeakMap<Http2Session, number>()

function add<K extends object> (counts: WeakMap<K, number>, key: K, delta: number): void {
  const count = (counts.get(key) ?? 0) + delta
  if (count === 0) counts.delete(key)
  else counts.set(key, count)
}

/** Whether this HTTP/1 response waits behind another on its connection (an HTTP/2 one's `socket` is never null). */
export function waitsForTurn (reply: FastifyReply): boolean {
  return reply.raw.socket === null
}

/** The session of an HTTP/2 request whose stream is still open; undefined on HTTP/1, or once the stream closed. */
function sessionOf (request: FastifyRequest): Http2Session | undefined {
  if (request.raw.httpVersionMajor !== 2) return undefined
  return (request.raw as unknown as Http2ServerRequest).stream.session
}

/** Whether the HTTP/2 session of `request` has `max` SSE streams open already (false on HTTP/1). */
export function sessionFull (request: FastifyRequest, max: number): boolean {
  const session = sessionOf(request)
  return session !== undefined && streamsOpenOn(session) >= max
}

/**
 * Whether the HTTP/1 connection of a waiting request holds `max` streams already (answered and waiting). Never
 * once it is closed: the requests Node parsed after that are let go as it closes, not counted again.
 */
export function queueFull (request: FastifyRequest, max: number): boolean {
  const socket = request.raw.socket
  return !socket.destroyed && (waitingOn.get(socket) ?? 0) + 1 >= max
}

/** The SSE streams counted open on an HTTP/2 session. */
export function streamsOpenOn (session: Http2Session): number {
  return openOn.get(session) ?? 0
}

/** Counts an HTTP/2 stream on its session until it closes; nothing on HTTP/1, or without a limit. */
export function countOnSession (reply: FastifyReply, max: number): void {
  if (max === Infinity) return
  const session = sessionOf(reply.request)
  // HTTP/1, or the stream is gone already (the client reset it while the handler ran): nothing to hold
  if (session === undefined) return
  add(openOn, session, 1)
  ;(reply.request.raw as unknown as Http2ServerRequest).stream.once('close', () => { add(openOn, session, -1) })
}

/**
 * Calls `onTurn` when the response of `reply` gets its connection (every response ahead of it has finished),
 * or `onGone` if the connection closes first. One `close` listener per connection serves every request waiting
 * on it (see `onConnectionClose`).
 */
export function waitForTurn (reply: FastifyReply, onTurn: () => void, onGone: () => void): void {
  const socket = reply.request.raw.socket
  const res = reply.raw
  add(waitingOn, socket, 1)
  // whichever comes first, both watchers go
  const done = (): void => {
    unwatch()
    res.removeListener('socket', turn)
    add(waitingOn, socket, -1)
  }
  const turn = (): void => {
    done()
    onTurn()
  }
  const unwatch = onConnectionClose(reply.request, () => {
    done()
    onGone()
  })
  res.once('socket', turn)
}
