import fp from 'fastify-plugin'
import type {
  ContextConfigDefault, FastifyInstance, FastifyReply, FastifyRequest, FastifySchema, FastifyTypeProvider,
  FastifyTypeProviderDefault, RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerBase,
  RawServerDefault, RouteGenericInterface, RouteHandlerMethod
} from 'fastify'
// Not re-exported by fastify's entry, and needed to merge with FastifyReply's exact type parameters.
import type { FastifyReplyType, ResolveFastifyReplyType } from 'fastify/types/type-provider.js'
import { ChannelRegistry, type SseChannels } from './channel/index.js'
import { isRetry } from './encode.js'
import { invalidOption } from './errors.js'
import { streamingHandler, typedItemHook, type SseItemOfReply } from './typed/schema.js'
import { dropSource, EventStream, startStream, streamController, type ResolvedStreamOptions } from './stream.js'
import type { SsePluginOptions, SseSource, SseStreamOptions } from './types.js'

// The plugin: options, the reply decorator, the hook that turns async generator handlers into streams and the
// one that ends every stream on close. Thin on purpose: the work is in lib/stream, lib/encode and lib/schema.

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
  interface FastifyInstance {
    /** Broadcast channels: `app.sse.channel<T>(name, { history })`, closed with the app. */
    sse: SseChannels
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

function isAsyncGeneratorFunction (fn: unknown): boolean {
  return typeof fn === 'function' && (fn as { [Symbol.toStringTag]?: string })[Symbol.toStringTag] === 'AsyncGeneratorFunction'
}

type GeneratorHandler = (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) => AsyncIterable<never>

function resolveLimits (options: SsePluginOptions): { maxConnections: number, retryAfter: number } {
  const { maxConnections = Infinity, retryAfter = 5 } = options
  if (maxConnections !== Infinity && !(Number.isSafeInteger(maxConnections) && maxConnections >= 0)) {
    throw invalidOption('maxConnections', `must be a whole number of streams >= 0, got ${String(maxConnections)}`)
  }
  if (!(Number.isSafeInteger(retryAfter) && retryAfter >= 0)) {
    throw invalidOption('retryAfter', `must be a whole number of seconds >= 0, got ${String(retryAfter)}`)
  }
  return { maxConnections, retryAfter }
}

/** No stream now (too many open, or the server is closing): 503 with Retry-After, and the source stopped. */
function refuseStream (reply: FastifyReply, source: unknown, why: string, retryAfter: number, context: object = {}): FastifyReply {
  dropSource(reply, source)
  reply.log.warn(context, `SSE stream refused: ${why}`)
  return reply.code(503).header('retry-after', String(retryAfter))
    .send({ statusCode: 503, error: 'Service Unavailable', message: `No event stream now (${why}); retry later` })
}

async function ssePluginCallback (fastify: FastifyInstance, options: SsePluginOptions): Promise<void> {
  const defaults = resolveOptions(options, DEFAULTS)
  const { maxConnections, retryAfter } = resolveLimits(options)
  const open = new Set<EventStream>()
  const channels = new ChannelRegistry(fastify.log, defaults.serialize)

  fastify.decorate('sse', channels)
  let closing = false

  fastify.decorateReply('sse', function sse (this: FastifyReply, source: unknown, streamOptions?: SseStreamOptions) {
    let resolved: ResolvedOptions
    try {
      resolved = streamOptions === undefined ? defaults : resolveOptions(streamOptions, defaults)
    } catch (err) {
      dropSource(this, source)
      throw err
    }
    // a request that reached its handler while app.close() ran: its stream would be left open
    if (closing) return refuseStream(this, source, 'the server is closing', retryAfter)
    if (open.size >= maxConnections) return refuseStream(this, source, `the limit of ${maxConnections} open streams (maxConnections) is reached`, retryAfter, { maxConnections })
    // on a route with an sseSchema() response: compiled serializers, and checks with `validate`
    const item = typedItemHook(this, { validate: resolved.validate, compileSerializers: streamOptions?.serialize === undefined })
    return startStream(this, source, item === undefined ? resolved : { ...resolved, item }, open)
  })

  fastify.addHook('onRoute', (route) => {
    if (!isAsyncGeneratorFunction(route.handler)) {
      // a plain handler of a route with an sseSchema() response: what it returns must stream
      const handler = streamingHandler(route)
      if (handler !== undefined) route.handler = handler
      return
    }
    const generator = route.handler as unknown as GeneratorHandler
    const handler = function sseGeneratorHandler (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
      // Before the generator's body runs, so `request.signal` in it is the stream's (see streamController).
      streamController(request, reply)
      reply.sse(generator.call(this, request, reply))
      // Not the reply: Fastify would watch a returned reply's end with one more finished() per stream.
    }
    route.handler = handler as RouteHandlerMethod
  })

  fastify.addHook('preClose', async () => {
    closing = true
    // Streams never end by themselves: without this, server.close() would wait for every client to leave.
    // Each stops its source, so a channel subscription is released here too.
    await Promise.all(Array.from(open, stream => stream.close()))
  })
  // Channels close last, once the server has: publishing keeps working while in-flight requests finish
  // (a timer that publishes until the app's own onClose hook clears it must not throw in between).
  fastify.addHook('onClose', async () => {
    await channels.close()
  })
}

/** The Fastify plugin: `await app.register(ssePlugin, { heartbeat, retry, serialize, maxConnections })`. */
export const ssePlugin = fp(ssePluginCallback, { fastify: '5.x', name: 'fastify-typed-sse' })
export default ssePlugin

export { encodeItem } from './encode.js'
export { sseSchema, sseSwaggerTransform } from './typed/schema.js'
export type {
  JsonSchema, SseControlItem, SseEventItem, SseEventSchemas, SseItemOf, SseItemOfReply, SseSchema,
  SseSchemaInfo, SseSchemaOptions, SseStream, SwaggerTransformInput
} from './typed/schema.js'
export { SseError } from './errors.js'
export { MAX_LAST_EVENT_ID } from './channel/index.js'
export type { Channel, ChannelOptions, ChannelSubscription, SharedChannelOptions, SseChannels, SseResetData, SubscribeOptions } from './channel/index.js'
export type { ChannelBackendFactory, ResetReason } from './channel/backend.js'
export { parseEventStream, SseParseError, type ParseOptions } from './client/parse.js'
export type { SseItem, SsePluginOptions, SseSerializer, SseSource, SseStreamOptions } from './types.js'
