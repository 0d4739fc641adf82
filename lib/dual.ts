import type { FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import { acceptsEventStream, acceptsJson } from './reply.js'
import type { SseJsonAnswer } from './types.js'

// Dual routes (`config.sse.json`): a client that does not take text/event-stream (a script that wants the state
// now, a cache, a search engine) gets the route's JSON answer instead of a 406. Decided before the handler runs, so
// a stream is never started (no generator, no channel subscription) for a request that will not read one.

/** The preHandler of a dual route: answers JSON when the request's `Accept` rules the stream out but takes JSON. */
function jsonAnswerHook (answer: SseJsonAnswer) {
  return async function sseJsonAnswer (request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
    const accept = request.headers.accept
    if (acceptsEventStream(accept) || !acceptsJson(accept)) return undefined // the handler streams, or answers 406
    const body = await answer(request, reply)
    if (reply.sent) return reply
    // Fastify serializes it with the route's application/json response schema (sseSchema's `json` option) if any
    return reply.type('application/json; charset=utf-8').send(body)
  }
}

/** Puts the JSON answer of a dual route after the route's own preHandler hooks (its auth, say). */
export function addJsonAnswer (route: RouteOptions, answer: SseJsonAnswer): void {
  const hooks = route.preHandler
  route.preHandler = [...(hooks === undefined ? [] : Array.isArray(hooks) ? hooks : [hooks]), jsonAnswerHook(answer)]
}
