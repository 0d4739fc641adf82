import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteHandlerMethod } from 'fastify'
import { isRetry } from './encode.js'
import { invalidOption } from './errors.js'
import { EventStream, startStream, streamController, type ResolvedStreamOptions } from './stream.js'
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

async function ssePluginCallback (fastify: FastifyInstance, options: SsePluginOptions): Promise<void> {
  const defaults = resolveOptions(options, DEFAULTS)
  const open = new Set<EventStream>()

  fastify.decorateReply('sse', function sse (this: FastifyReply, source: unknown, streamOptions?: SseStreamOptions) {
    const resolved = streamOptions === undefined ? defaults : resolveOptions(streamOptions, defaults)
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
    // Streams never end by themselves: without this, server.close() would wait for every client to leave.
    await Promise.all(Array.from(open, stream => stream.close()))
  })
}

/** The Fastify plugin: `await app.register(ssePlugin, { heartbeat, retry, serialize })`. */
export const ssePlugin = fp(ssePluginCallback, { fastify: '5.x', name: 'fastify-typed-sse' })
export default ssePlugin

export { encodeItem } from './encode.js'
export { SseError } from './errors.js'
export { parseEventStream, SseParseError, type ParseOptions } from './parse.js'
export type { SseItem, SsePluginOptions, SseSerializer, SseSource, SseStreamOptions } from './types.js'
