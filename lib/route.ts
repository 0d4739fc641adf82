import type { FastifyInstance, FastifyReply, FastifyRequest, RouteHandlerMethod, RouteOptions } from 'fastify'
import { notAStream, routeName } from './errors.js'
import { bindStreamSignal } from './signal.js'
import { isSource } from './stream.js'
import { noteRoute } from './typed/openapi.js'
import { streamAt, streamsOf, type RouteStreams } from './typed/schema.js'

// The onRoute hook: the handlers that stream. An `async function*` handler becomes a stream of what it yields;
// a plain handler of a route with an `sseSchema()` response streams what it returns. On both, `request.signal`
// is the stream's (lib/signal) before the handler runs.

function isAsyncGeneratorFunction (fn: unknown): boolean {
  return typeof fn === 'function' &&
    (fn as { [Symbol.toStringTag]?: string })[Symbol.toStringTag] === 'AsyncGeneratorFunction'
}

type GeneratorHandler = (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) => AsyncIterable<never>

/** The handler that streams what an `async function*` handler yields. */
function generatorHandler (generator: GeneratorHandler): RouteHandlerMethod {
  const handler = function sseGeneratorHandler (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
    // Before the generator's body runs, so `request.signal` in it is the stream's.
    bindStreamSignal(request, reply)
    reply.sse(generator.call(this, request, reply))
    // Not the reply: Fastify would watch a returned reply's end with one more finished() per stream.
  }
  return handler as RouteHandlerMethod
}

/** Wraps the route's handler when it streams; leaves every other route alone. */
export function wrapStreamingRoute (this: FastifyInstance, route: RouteOptions): void {
  const generator = isAsyncGeneratorFunction(route.handler)
  noteRoute(route, this, generator)
  if (generator) {
    route.handler = generatorHandler(route.handler as unknown as GeneratorHandler)
    return
  }
  const handler = streamingHandler(route)
  if (handler !== undefined) route.handler = handler
}

/** What Fastify sends as a body as it is (a handler may return pre-encoded SSE text), not a source of items. */
function isBody (value: unknown): boolean {
  return typeof value === 'string' || ArrayBuffer.isView(value) || typeof (value as { pipe?: unknown } | null)?.pipe === 'function'
}

/**
 * What a non-generator handler of a route with an `sseSchema()` response returned: an iterable is streamed; any
 * other value for a status documented as SSE means the handler neither streamed nor called `reply.sse()`: an
 * error naming the route, rather than a JSON body served as text/event-stream.
 */
function settle (result: unknown, reply: FastifyReply, streams: RouteStreams, route: string): unknown {
  if (reply.sent || result === undefined || result === reply || isBody(result)) return result
  if (isSource(result)) return reply.sse(result)
  if (streamAt(streams, reply.routeOptions.schema, reply.statusCode) === undefined) return result
  throw notAStream(route, result === null ? 'null' : typeof result)
}

/** The handler that wraps a non-generator handler of a route with an `sseSchema()` response; undefined elsewhere. */
function streamingHandler (route: RouteOptions): RouteHandlerMethod | undefined {
  const streams = streamsOf(route.schema)
  if (streams === undefined) return undefined
  const name = routeName(route)
  const original = route.handler
  const handler = function sseRouteHandler (
    this: FastifyInstance, request: FastifyRequest, reply: FastifyReply
  ): unknown {
    // Before the handler reads request.signal (for a subscription, say): on an SSE route it is the stream's.
    bindStreamSignal(request, reply)
    const result: unknown = original.call(this, request, reply)
    // a thenable is awaited as Fastify awaits it; a plain value is settled at once
    return typeof (result as PromiseLike<unknown> | null)?.then === 'function'
      ? Promise.resolve(result).then(value => settle(value, reply, streams, name))
      : settle(result, reply, streams, name)
  }
  return handler as RouteHandlerMethod
}
