// Type tests of the public API, checked by `npm run typecheck` (tsc): each @ts-expect-error must stay an error.
import Fastify, { type FastifyReply } from 'fastify'
import { expectTypeOf } from 'expect-type'
import ssePlugin, {
  encodeItem, parseEventStream, ssePlugin as named, type SseItem, type SseSource
} from '../lib/index.js'
import { parseEventStream as clientParse } from '../lib/client/index.js'

const app = Fastify()
void app.register(ssePlugin, { heartbeat: 10_000, retry: 1000, serialize: JSON.stringify })
void app.register(named, { heartbeat: false })
// @ts-expect-error heartbeat is a number or false
void app.register(ssePlugin, { heartbeat: true })
// @ts-expect-error serialize returns a string
void app.register(ssePlugin, { serialize: (v: unknown) => v })
// @ts-expect-error unknown option
void app.register(ssePlugin, { heartbeats: 1 })

interface Tick { now: number }
async function * ticks (): AsyncGenerator<SseItem<Tick>> {
  yield { event: 'tick', id: '1', retry: 1000, comment: 'c', data: { now: 1 } }
}

app.get('/a', (_req, reply) => {
  expectTypeOf(reply.sse(ticks())).toEqualTypeOf<FastifyReply>()
  return reply.sse([{ data: 'x' }, { event: 'e' }])
})
app.get('/b', (_req, reply) => {
  // @ts-expect-error an item field of the wrong type
  return reply.sse([{ id: 5 }])
})
app.get('/c', (_req, reply) => {
  // @ts-expect-error not an iterable of items
  return reply.sse({ data: 'x' })
})
app.get('/d', (_req, reply) => {
  // @ts-expect-error per-call options are checked too
  return reply.sse([], { retry: '10' })
})
app.get('/gen', async function * (request) {
  expectTypeOf(request.signal).toEqualTypeOf<AbortSignal>()
  yield { data: 1 }
})

expectTypeOf<SseSource<Tick>>().toMatchTypeOf<AsyncIterable<SseItem<Tick>> | Iterable<SseItem<Tick>>>()
expectTypeOf(encodeItem).returns.toEqualTypeOf<string>()
expectTypeOf(parseEventStream).toEqualTypeOf(clientParse)
expectTypeOf(parseEventStream([])).toEqualTypeOf<AsyncGenerator<SseItem<string>, void, undefined>>()
// @ts-expect-error the body must be an iterable of bytes or strings
parseEventStream([1, 2])
