import fp from 'fastify-plugin'
import type {
  ContextConfigDefault, FastifyInstance, FastifyReply, FastifyRequest, FastifySchema, FastifyTypeProvider,
  FastifyTypeProviderDefault, RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerBase,
  RawServerDefault, RouteGenericInterface, RouteHandlerMethod
} from 'fastify'
// Not re-exported by fastify's entry, and needed to merge with FastifyReply's exact type parameters.
import type { FastifyReplyType, ResolveFastifyReplyType } from 'fastify/types/type-provider.js'
import { isRetry } from './encode.js'
import { invalidOption, SseError } from './errors.js'
import { itemHook, routeName, routeStreams, streamAt, type RouteStreams, type SseItemOfReply } from './schema.js'
import { EventStream, isSource, startStream, streamController, type ResolvedStreamOptions } from './stream.js'
import type { SsePluginOptions, SseSource, SseStreamOptions } from './types.js'

// The plugin: options, the reply decorator, the hook that turns async generator handlers into streams and the
// one that ends every stream on close. Thin on purpose: the work is in lib/stream and lib/encode.

/**
 * What `reply.sse()` accepts: on a typed SSE route (an `sseSchema()` response with a type provider, or a
 * `Reply: SseStream<Item>` route generic) a source of the route's items; elsewhere a source of any items.
 */
export type SseSourceFor<ReplyType, T> = [SseItemOfReply<ReplyType>] extends [never]
  ? SseSource<T>
  : AsyncIterable<SseItemOfReply<ReplyType>> | Iterable<SseItemOfReply<ReplyType>>

declare module 'fastify' {
  // The type parameters must be FastifyReply's own (declarations merge); only ReplyType is used.
  interface FastifyReply<
    RouteGeneric extends RouteGenericInterface = RouteGenericInterface,
    RawServer extends RawServerBase = RawServerDefault,
    RawRequest extends RawRequestDefaultExpression<RawServer> = RawRequestDefaultExpression<RawServer>,
    RawReply extends RawReplyDefaultExpression<RawServer> = RawReplyDefaultExpression<RawServer>,
    ContextConfig = ContextConfigDefault,
    SchemaCompiler extends FastifySchema = FastifySchema,
    TypeProvider extends FastifyTypeProvider = FastifyTypeProviderDefault,
    ReplyType extends FastifyReplyType = ResolveFastifyReplyType<TypeProvider, SchemaCompiler, RouteGeneric>
  > {
    /**
     * Streams `source` as Server-Sent Events: headers at once, one frame per item, pulled only when the
     * socket takes more, stopped (`return()`) when the client leaves or the server closes. Returns the reply.
     */
    sse<T = unknown>(source: SseSourceFor<ReplyType, T>, options?: SseStreamOptions): FastifyReply
  }
}

const MAX_TIMER = 2 ** 31 - 1

/** Stream options resolved, with what only typed routes use. */
interface ResolvedOptions extends ResolvedStreamOptions {
  validate: boolean
}

function resolveOptions (options: SseStreamOptions, base: ResolvedOptions): ResolvedOptions {
  const { heartbeat = base.heartbeat, retry = base.retry, serialize = base.serialize, validate = base.validate } = options
  if (heartbeat !== false && !(Number.isSafeInteger(heartbeat) && heartbeat > 0 && heartbeat <= MAX_TIMER)) {
    throw invalidOption('heartbeat', `must be a positive whole number of milliseconds or false, got ${String(heartbeat)}`)
  }
  if (retry !== undefined && !isRetry(retry)) {
    throw invalidOption('retry', `must be a non-negative whole number of milliseconds, got ${String(retry)}`)
  }
  if (typeof serialize !== 'function') throw invalidOption('serialize', `must be a function, got ${typeof serialize}`)
  if (typeof validate !== 'boolean') throw invalidOption('validate', `must be a boolean, got ${typeof validate}`)
  return { heartbeat, retry, serialize, validate }
}

const DEFAULTS: ResolvedOptions = { heartbeat: 15_000, retry: undefined, serialize: JSON.stringify, validate: false }

// A route's SSE response schemas, found once per route schema object.
const streamsOfSchema = new WeakMap<FastifySchema, RouteStreams | null>()

function streamsOf (schema: FastifySchema | undefined): RouteStreams | undefined {
  if (schema === undefined) return undefined
  let streams = streamsOfSchema.get(schema)
  if (streams === undefined) {
    streams = routeStreams(schema) ?? null
    streamsOfSchema.set(schema, streams)
  }
  return streams ?? undefined
}

/** The item hook of a stream on a typed route: compiled serializers and, with `validate`, checks. */
function typedStream (reply: FastifyReply, resolved: ResolvedOptions, streamOptions: SseStreamOptions | undefined): ResolvedStreamOptions {
  const { schema, method, url } = reply.routeOptions
  const streams = streamsOf(schema)
  if (streams === undefined) return resolved
  const info = streamAt(streams, schema, reply.statusCode) ?? streams.values().next().value
  // a route with a schema has a url (only the 404 handler has none, and no schema)
  const item = itemHook(info as NonNullable<typeof info>, reply, routeName({ method, url: url as string }), {
    validate: resolved.validate,
    compileSerializers: streamOptions?.serialize === undefined
  })
  return { ...resolved, item }
}

/** What Fastify sends as a body as it is (a handler may return pre-encoded SSE text), not a source of items. */
function isBody (value: unknown): boolean {
  return typeof value === 'string' || ArrayBuffer.isView(value) || typeof (value as { pipe?: unknown } | null)?.pipe === 'function'
}

/**
 * A non-generator handler of a route with an `sseSchema()` response: a returned iterable is streamed; any other
 * value for a status documented as SSE means the handler neither streamed nor called `reply.sse()`: an error
 * naming the route, rather than a JSON body served as text/event-stream.
 */
function settle (result: unknown, reply: FastifyReply, streams: RouteStreams, route: string): unknown {
  if (reply.sent || result === undefined || result === reply || isBody(result)) return result
  if (isSource(result)) return reply.sse(result)
  if (streamAt(streams, reply.routeOptions.schema, reply.statusCode) === undefined) return result
  throw new SseError('FST_SSE_NOT_A_STREAM', route, `route ${route} has an sseSchema() response but its handler neither yields nor calls reply.sse(): it returned ${result === null ? 'null' : typeof result}`)
}

function isAsyncGeneratorFunction (fn: unknown): boolean {
  return typeof fn === 'function' && (fn as { [Symbol.toStringTag]?: string })[Symbol.toStringTag] === 'AsyncGeneratorFunction'
}

type GeneratorHandler = (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) => AsyncIterable<never>

async function ssePluginCallback (fastify: FastifyInstance, options: SsePluginOptions): Promise<void> {
  const defaults = resolveOptions(options, DEFAULTS)
  const open = new Set<EventStream>()

  fastify.decorateReply('sse', function sse (this: FastifyReply, source: unknown, streamOptions?: SseStreamOptions) {
    const resolved = streamOptions === undefined ? defaults : resolveOptions(streamOptions, defaults)
    return startStream(this, source, typedStream(this, resolved, streamOptions), open)
  })

  fastify.addHook('onRoute', (route) => {
    if (!isAsyncGeneratorFunction(route.handler)) {
      const streams = streamsOf(route.schema)
      if (streams === undefined) return
      const name = routeName(route)
      const original = route.handler
      const handler = function sseRouteHandler (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply): unknown {
        const result: unknown = original.call(this, request, reply)
        // a thenable is awaited as Fastify awaits it; a plain value is settled at once
        return typeof (result as PromiseLike<unknown> | null)?.then === 'function'
          ? Promise.resolve(result).then(value => settle(value, reply, streams, name))
          : settle(result, reply, streams, name)
      }
      route.handler = handler as RouteHandlerMethod
      return
    }
    const generator = route.handler as unknown as GeneratorHandler
    const handler = function sseGeneratorHandler (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
      // Before the generator's body runs, so `request.signal` in it is the stream's (see streamController).
      streamController(request, reply)
      return reply.sse(generator.call(this, request, reply))
    }
    route.handler = handler as RouteHandlerMethod
  })

  fastify.addHook('preClose', async () => {
    // Streams never end by themselves: without this, server.close() would wait for every client to leave.
    await Promise.all(Array.from(open, stream => stream.close()))
  })
}

/** The Fastify plugin: `await app.register(ssePlugin, { heartbeat, retry, serialize })`. */
export const ssePlugin = fp(ssePluginCallback, { fastify: '5.x', name: 'fastify-typed-sse' })
export default ssePlugin

export { encodeItem } from './encode.js'
export { sseSchema, sseSwaggerTransform } from './schema.js'
export type {
  JsonSchema, SseControlItem, SseEventItem, SseEventSchemas, SseItemOf, SseItemOfReply, SseSchema,
  SseSchemaInfo, SseSchemaOptions, SseStream, SwaggerTransformInput
} from './schema.js'
export { SseError } from './errors.js'
export { parseEventStream, SseParseError, type ParseOptions } from './parse.js'
export type { SseItem, SsePluginOptions, SseSerializer, SseSource, SseStreamOptions } from './types.js'
