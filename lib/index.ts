import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteHandlerMethod } from 'fastify'
import { ChannelRegistry, type SseChannels } from './channel.js'
import { isRetry } from './encode.js'
import { invalidOption } from './errors.js'
import { EventStream, startStream, stopIterator, streamController, type ResolvedStreamOptions } from './stream.js'
import type { SsePluginOptions, SseSource, SseStreamOptions } from './types.js'

// The plugin: options, the reply decorator, the hook that turns async generator handlers into streams and the
// one that ends every stream on close. Thin on purpose: the work is in lib/stream and lib/encode.

declare module 'fastify' {
  interface FastifyReply {
    /**
     * Streams `source` as Server-Sent Events: headers at once, one frame per item, pulled only when the
     * socket takes more, stopped (`return()`) when the client leaves or the server closes. Returns the reply.
     */
    sse<T>(source: SseSource<T>, options?: SseStreamOptions): FastifyReply
  }
  interface FastifyInstance {
    /** Broadcast channels: `app.sse.channel<T>(name, { history })`, closed with the app. */
    sse: SseChannels
  }
}

const MAX_TIMER = 2 ** 31 - 1

function resolveOptions (options: SseStreamOptions, base: ResolvedStreamOptions): ResolvedStreamOptions {
  const { heartbeat = base.heartbeat, retry = base.retry, serialize = base.serialize } = options
  if (heartbeat !== false && !(Number.isSafeInteger(heartbeat) && heartbeat > 0 && heartbeat <= MAX_TIMER)) {
    throw invalidOption('heartbeat', `must be a positive whole number of milliseconds or false, got ${String(heartbeat)}`)
  }
  if (retry !== undefined && !isRetry(retry)) {
    throw invalidOption('retry', `must be a non-negative whole number of milliseconds, got ${String(retry)}`)
  }
  if (typeof serialize !== 'function') throw invalidOption('serialize', `must be a function, got ${typeof serialize}`)
  return { heartbeat, retry, serialize }
}

const DEFAULTS: ResolvedStreamOptions = { heartbeat: 15_000, retry: undefined, serialize: JSON.stringify }

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

/** Too many open streams: 503 with Retry-After, and the source (a generator, a subscription) is stopped. */
function refuseStream (reply: FastifyReply, source: unknown, maxConnections: number, retryAfter: number): FastifyReply {
  if (typeof (source as Partial<AsyncIterator<unknown>> | null)?.return === 'function') stopIterator(source as AsyncIterator<unknown>, reply)
  reply.log.warn({ maxConnections }, 'SSE stream refused: maxConnections streams are open')
  return reply.code(503).header('retry-after', String(retryAfter))
    .send({ statusCode: 503, error: 'Service Unavailable', message: 'Too many open event streams; retry later' })
}

async function ssePluginCallback (fastify: FastifyInstance, options: SsePluginOptions): Promise<void> {
  const defaults = resolveOptions(options, DEFAULTS)
  const { maxConnections, retryAfter } = resolveLimits(options)
  const open = new Set<EventStream>()
  const channels = new ChannelRegistry(fastify.log, defaults.serialize)

  fastify.decorate('sse', channels)
  fastify.decorateReply('sse', function sse (this: FastifyReply, source: unknown, streamOptions?: SseStreamOptions) {
    const resolved = streamOptions === undefined ? defaults : resolveOptions(streamOptions, defaults)
    if (open.size >= maxConnections) return refuseStream(this, source, maxConnections, retryAfter)
    return startStream(this, source, resolved, open)
  })

  fastify.addHook('onRoute', (route) => {
    if (!isAsyncGeneratorFunction(route.handler)) return
    const generator = route.handler as unknown as GeneratorHandler
    const handler = function sseGeneratorHandler (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
      // Before the generator's body runs, so `request.signal` in it is the stream's (see streamController).
      streamController(request, reply)
      return reply.sse(generator.call(this, request, reply))
    }
    route.handler = handler as RouteHandlerMethod
  })

  fastify.addHook('preClose', async () => {
    // Channels first: their subscriptions end, so those streams end as their sources do.
    channels.close()
    // Streams never end by themselves: without this, server.close() would wait for every client to leave.
    await Promise.all(Array.from(open, stream => stream.close()))
  })
}

/** The Fastify plugin: `await app.register(ssePlugin, { heartbeat, retry, serialize, maxConnections })`. */
export const ssePlugin = fp(ssePluginCallback, { fastify: '5.x', name: 'fastify-typed-sse' })
export default ssePlugin

export { encodeItem } from './encode.js'
export { SseError } from './errors.js'
export { MAX_LAST_EVENT_ID } from './channel.js'
export type { Channel, ChannelOptions, ChannelSubscription, SseChannels, SseResetData, SubscribeOptions } from './channel.js'
export type { ResetReason } from './channel-backend.js'
export { parseEventStream, SseParseError, type ParseOptions } from './parse.js'
export type { SseItem, SsePluginOptions, SseSerializer, SseSource, SseStreamOptions } from './types.js'
