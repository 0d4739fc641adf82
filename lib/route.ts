import type { FastifyInstance, FastifyReply, FastifyRequest, RouteHandlerMethod, RouteOptions } from 'fastify'
import { addJsonAnswer } from './dual.js'
import { notAStream, routeName, sentIterator, unseenRoute } from './errors.js'
import { endHandlerSpan } from './fastify-internals.js'
import { resolveRouteOptions, type ResolvedOptions } from './options.js'
import { isSeenRoute, isStreaming, kSeenRoute } from './reply.js'
import { bindStreamSignal } from './signal.js'
import { dropSource, isSource } from './source.js'
import { noteRoute } from './typed/openapi.js'
import { streamAt, streamsOf, type RouteStreams } from './typed/schema.js'

// The onRoute hook: every handler shape streams. An `async function*` or `function*` handler streams what it
// yields; any other handler streams the generator or async iterable it returns (and, on a route with an
// `sseSchema()` response, any iterable). A stream that reaches Fastify's serializer instead (a route declared
// where the plugin could not see it, or `reply.send(generator)`) is an error naming the route, never `{}`.

type Handler = (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) => unknown

function isGeneratorFunction (fn: Handler): boolean {
  const tag = (fn as { [Symbol.toStringTag]?: string })[Symbol.toStringTag]
  return tag === 'AsyncGeneratorFunction' || tag === 'GeneratorFunction'
}

/**
 * What streams when a handler returns it, instead of becoming a JSON body: an iterator (what a generator
 * function returns) or an async iterable that is not a Node or web stream. Arrays, Sets and Maps stay JSON.
 */
export function isItemStream (value: unknown): boolean {
  if (value === null || typeof value !== 'object') return false
  const candidate = value as Record<PropertyKey, unknown>
  if (typeof candidate[Symbol.asyncIterator] === 'function') {
    return typeof candidate.pipe !== 'function' && typeof candidate.getReader !== 'function'
  }
  return typeof candidate.next === 'function' && typeof candidate[Symbol.iterator] === 'function'
}

/** What Fastify sends as a body as it is (a handler may return pre-encoded SSE text), not a source of items. */
function isBody (value: unknown): boolean {
  return typeof value === 'string' || ArrayBuffer.isView(value) || typeof (value as { pipe?: unknown } | null)?.pipe === 'function'
}

/**
 * What a non-generator handler returned, settled: a stream of items streams; on a route with an `sseSchema()`
 * response so does any iterable, and any other value for a status documented as SSE is an error naming the
 * route (rather than a JSON body served as text/event-stream). Undefined once the reply streams: Fastify must
 * not send anything more.
 */
function settle (result: unknown, reply: FastifyReply, streams: RouteStreams | undefined, route: string): unknown {
  if (isStreaming(reply)) {
    if (result !== undefined && result !== reply) reply.log.warn(`${route}: the handler called reply.sse() and returned a value too; the value is ignored`)
    return undefined
  }
  if (result === undefined || result === reply || reply.sent) return result
  if (isItemStream(result) || (streams !== undefined && isSource(result) && !isBody(result))) {
    reply.sse(result as Iterable<never>)
    return undefined
  }
  if (streams === undefined || isBody(result)) return result
  if (streamAt(streams, reply.routeOptions.schema, reply.statusCode) === undefined) return result
  throw notAStream(route, result === null ? 'null' : typeof result)
}

/**
 * The handler's promise, as Fastify reads it (`then()`, then it sends what it got). A promise that resolves
 * with nothing while the headers wait for the first item would make Fastify answer a second time; this
 * thenable passes on what to send, and nothing at all once the reply streams (the handler's tracing span is
 * ended instead, see `endHandlerSpan`).
 */
function settleLater (
  result: PromiseLike<unknown>, reply: FastifyReply, streams: RouteStreams | undefined, route: string
): PromiseLike<unknown> {
  return {
    then (fulfil, reject) {
      result.then(value => {
        let out: unknown
        try {
          out = settle(value, reply, streams, route)
        } catch (err) {
          reject?.(err)
          return
        }
        if (!isStreaming(reply)) fulfil?.(out as never)
        else endHandlerSpan(reply)
      }, (err: unknown) => {
        if (!isStreaming(reply)) {
          reject?.(err)
          return
        }
        // The stream owns the response: an error answer from Fastify now would end it under the stream (whose
        // next write would be after its end), or queue a second answer behind a waiting one. Logged instead.
        reply.log.error({ err }, `${route}: the handler failed after reply.sse(); the stream goes on`)
        endHandlerSpan(reply)
      })
      return undefined as never
    }
  }
}

function isThenable (value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === 'function'
}

/** The route's handler, wrapped so that whatever it yields or returns as items streams. */
function wrapHandler (original: Handler, streams: RouteStreams | undefined, route: string): Handler {
  if (isGeneratorFunction(original)) {
    return function sseGeneratorHandler (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
      reply.sse(original.call(this, request, reply) as Iterable<never>)
      // Not the reply: Fastify would watch a returned reply's end with one more finished() per stream.
    }
  }
  return function sseRouteHandler (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply): unknown {
    const result = original.call(this, request, reply)
    return isThenable(result) ? settleLater(result, reply, streams, route) : settle(result, reply, streams, route)
  }
}

/**
 * The first hook of a route known to stream: `request.signal` is the stream's from here on, before the body is
 * read, so wherever it is read (a later hook, the handler, the generator) it means the stream's life.
 */
function streamSignalHook (request: FastifyRequest, reply: FastifyReply, done: () => void): void {
  bindStreamSignal(request, reply)
  done()
}

/**
 * The onRoute hook of a plugin instance: wraps the route's handler and checks its `config.sse` stream options.
 * (Fastify's automatic HEAD route gets the GET route's options as they were, and its own call.)
 */
export function routeHook (defaults: ResolvedOptions): (this: FastifyInstance, route: RouteOptions) => void {
  return function onRoute (this: FastifyInstance, route: RouteOptions) {
    const original = route.handler as Handler
    const name = routeName(route)
    const json = resolveRouteOptions(route.config, defaults, name)
    if (json !== undefined) addJsonAnswer(route, json)
    noteRoute(route, this, isGeneratorFunction(original))
    const streams = streamsOf(route.schema)
    route.handler = wrapHandler(original, streams, name) as RouteHandlerMethod
    route.config = { ...route.config, [kSeenRoute]: true } as RouteOptions['config']
    if (streams !== undefined || isGeneratorFunction(original)) {
      const hooks = route.onRequest
      route.onRequest = [streamSignalHook, ...(hooks === undefined ? [] : Array.isArray(hooks) ? hooks : [hooks])]
    }
  }
}

/**
 * A preSerialization hook: a stream of items about to be serialized as JSON (which answers `{}`) is refused,
 * naming the route and the fix. The plugin wraps only the routes declared after it was registered.
 */
export function refuseSerializedStream (
  request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (err: Error | null, payload?: unknown) => void
): void {
  if (!isItemStream(payload)) {
    done(null, payload)
    return
  }
  dropSource(reply, payload)
  const route = routeName(request.routeOptions as { method: string, url: string })
  done(isSeenRoute(request.routeOptions.config) ? sentIterator(route) : unseenRoute(route))
}
