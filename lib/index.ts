import fp from 'fastify-plugin'
import type {
  ContextConfigDefault, FastifyInstance, FastifySchema, FastifyTypeProvider,
  FastifyTypeProviderDefault, RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerBase,
  RawServerDefault, RouteGenericInterface
} from 'fastify'
import { AdmissionGate } from './admission.js'
import { ChannelRegistry, type SseChannels } from './channel/index.js'
import type { FastifyReplyType, ResolveFastifyReplyType } from './fastify-internals.js'
import { StreamRegistry } from './metrics.js'
import { resolvePluginOptions } from './options.js'
import { sseDecorator, type StreamHost } from './reply.js'
import { refuseSerializedStream, routeHook } from './route.js'
import type { SseItemOfReply, WithResetData } from './typed/schema.js'
import type { SseItem, SsePluginOptions, SseRouteOptions, SseSource, SseStreamOptions } from './types.js'

// The plugin: options, the `reply.sse` and `app.sse` decorators, the hook that makes streaming handlers stream,
// and the hooks that end every stream and channel on close. The work is in the modules it wires together.

/**
 * What `reply.sse()` accepts: on a typed SSE route (an `sseSchema()` response with a type provider, or a
 * `Reply: SseStream<Item>` route generic) a source of the route's items, or on a route typed by one data schema a
 * channel subscription of that data; elsewhere a source of any items.
 */
export type SseSourceFor<ReplyType, T> = [SseItemOfReply<ReplyType>] extends [never]
  ? SseSource<T>
  : AsyncIterable<SseItemOfReply<ReplyType>> | Iterable<SseItemOfReply<ReplyType>> |
  AsyncIterableIterator<WithResetData<SseItemOfReply<ReplyType>>>

/** The items of such a source: what `onError` given to `reply.sse()` may return. */
export type SseItemFor<ReplyType, T> = [SseItemOfReply<ReplyType>] extends [never]
  ? SseItem<T>
  : SseItemOfReply<ReplyType>

declare module 'fastify' {
  // The type parameters must be FastifyReply's own (declarations merge); only ReplyType is used.
  /* eslint-disable @typescript-eslint/no-unused-vars */
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
    /* eslint-enable @typescript-eslint/no-unused-vars */
    /**
     * Streams `source` as Server-Sent Events: headers with the first item (or after `headersDelay`), one frame
     * per item, pulled only when the socket takes more, stopped (`return()`) when the client leaves or the
     * server closes. Returns the reply.
     */
    sse<T = unknown>(
      source: SseSourceFor<ReplyType, T>, options?: SseStreamOptions<NoInfer<SseItemFor<ReplyType, T>>>
    ): FastifyReply
  }
  interface FastifyContextConfig {
    /**
     * Options of every stream of this route (an `async function*` handler's, or `reply.sse()`'s), over the
     * plugin's; a `reply.sse()` call's own options win over them; `json` makes the route dual (JSON for a client
     * that does not take an event stream). Checked when the route is declared.
     */
    sse?: SseRouteOptions
  }
  interface FastifyInstance {
    /** Broadcast channels (`app.sse.channel<T>(name, { history })`, closed with the app) and `app.sse.stats()`. */
    sse: SseChannels
  }
}

async function ssePluginCallback (fastify: FastifyInstance, options: SsePluginOptions): Promise<void> {
  const { defaults, limits } = resolvePluginOptions(options)
  const host: StreamHost = {
    defaults,
    limits,
    open: new StreamRegistry(),
    closing: false,
    admission: limits.admission === undefined ? undefined : new AdmissionGate(limits.admission, limits.retryAfter)
  }
  const channels = new ChannelRegistry(fastify.log, host.defaults.serialize, undefined, host.open)

  fastify.decorate('sse', channels)
  fastify.decorateReply('sse', sseDecorator(host))
  fastify.addHook('onRoute', routeHook(defaults))
  fastify.addHook('preSerialization', refuseSerializedStream)

  fastify.addHook('preClose', async () => {
    host.closing = true
    // Streams never end by themselves: without this, server.close() would wait for every client to leave.
    // Each stops its source, so a channel subscription is released here too.
    await Promise.all(Array.from(host.open, stream => stream.close()))
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
export { LAST_EVENT_ID_QUERY, lastEventId, type LastEventIdOptions, type RequestWithHeaders } from './last-event-id.js'
export { pushSource, type PushItemOf, type PushSource, type PushSourceOptions } from './push.js'
export { sseSchema } from './typed/schema.js'
export { sseSwaggerTransform, type SwaggerTransformInput } from './typed/openapi.js'
export type {
  JsonSchema, SseControlItem, SseEventItem, SseEventSchemas, SseGenerator, SseItemOf, SseItemOfReply, SseSchema,
  SseSchemaInfo, SseSchemaOptions, SseStream, WithResetData
} from './typed/schema.js'
export { SseError, SseRuntimeError, SseParseError } from './errors.js'
export type { SseInputErrorCode, SseRuntimeErrorCode } from './errors.js'
export { MAX_LAST_EVENT_ID } from './channel/index.js'
export type {
  Channel, ChannelOptions, ChannelSubscription, SharedChannelOptions, SseChannels, SseResetData, SubscribeOptions,
  TargetOptions
} from './channel/index.js'
export type { ChannelBackendFactory, PublishOptions, ResetReason } from './channel/backend.js'
export { parseEventStream, type ParseOptions } from './client/parse.js'
export type {
  SseAdmissionOptions, SseErrorMapper, SseItem, SseJsonAnswer, SsePluginOptions, SseRouteOptions, SseSerializer,
  SseSource, SseStreamOptions
} from './types.js'
export { SSE_DIAGNOSTICS, subscribeSseDiagnostic } from './diagnostics.js'
export type {
  SseCutOffMessage, SseDiagnosticMessages, SseDiagnosticName, SseItemRefusedMessage, SsePublishFailedMessage,
  SseReaderMessage, SseReplayMessage, SseResetMessage, SseStreamCloseMessage, SseStreamOpenMessage
} from './diagnostics.js'
export type { RejectReason, SseChannelStats, SseStats, SseStatsOptions } from './metrics.js'
export type { EndReason } from './source.js'
