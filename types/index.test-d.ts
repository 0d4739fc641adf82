// Type tests of the public API, checked by `npm run typecheck` (tsc): each @ts-expect-error must stay an error.
import Fastify, { type FastifyReply } from 'fastify'
import { expectTypeOf } from 'expect-type'
import ssePlugin, {
  encodeItem, lastEventId, parseEventStream, ssePlugin as named, type SseItem, type SseSource
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
void app.register(ssePlugin, { retry: 3000, retryJitter: 0.2, writeTimeout: 10_000 })
void app.register(ssePlugin, { retryJitter: 0, writeTimeout: false })
// @ts-expect-error writeTimeout is a number or false
void app.register(ssePlugin, { writeTimeout: true })
// @ts-expect-error retryJitter is a number
void app.register(ssePlugin, { retryJitter: '0.5' })
// retry: false sends no `retry:` line, wherever stream options are given
void app.register(ssePlugin, { retry: false })
// @ts-expect-error retry is a number or false
void app.register(ssePlugin, { retry: true })
app.get('/no-retry', { config: { sse: { retry: false } } }, async function * () {})
app.get('/no-retry-call', (_req, reply) => reply.sse([{ data: 'x' }], { retry: false, retryJitter: 0 }))

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
app.get('/e', (_req, reply) => {
  // onError returns an item of the stream's own type
  return reply.sse(ticks(), { onError: (err, request) => ({ event: 'end', data: { now: request.id.length + String(err).length } }) })
})
app.get('/f', (_req, reply) => {
  // @ts-expect-error onError's item must be the stream's: Tick data, not a string
  return reply.sse(ticks(), { onError: () => ({ data: 'gone' }) })
})
app.get('/g', { config: { sse: { headersDelay: 0, onError: () => ({ event: 'end', data: 'bye' }) } } }, function * () {
  yield { data: 1 }
})
// @ts-expect-error a route's config.sse is checked like any stream options
app.get('/h', { config: { sse: { headersDelay: '0' } } }, async function * () {})
// a dual route: its JSON answer for clients that do not take an event stream, a route option only
app.get('/dual', { config: { sse: { json: async (request, reply) => ({ url: request.url, sent: reply.sent }) } } }, async function * () {})
// @ts-expect-error json is a function of the request
app.get('/dual2', { config: { sse: { json: [1, 2] } } }, async function * () {})
// @ts-expect-error json is a route option, not the plugin's
void app.register(ssePlugin, { json: () => [] })
expectTypeOf(lastEventId({ headers: {}, url: '/x?lastEventId=1' }, { query: 'cursor' })).toEqualTypeOf<string | undefined>()
// @ts-expect-error query is a parameter name or false
lastEventId({ headers: {} }, { query: true })
void app.register(ssePlugin, { headersDelay: 50, onError: () => undefined })
// @ts-expect-error headersDelay is a number of milliseconds
void app.register(ssePlugin, { headersDelay: '50' })
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

// lastEventId(request): the Last-Event-ID decoded as UTF-8, from a Fastify request or a Node IncomingMessage
app.get('/resume', async function * (request) {
  expectTypeOf(lastEventId(request)).toEqualTypeOf<string | undefined>()
  expectTypeOf(lastEventId(request.raw)).toEqualTypeOf<string | undefined>()
  yield { id: lastEventId(request) ?? '0' }
})
// @ts-expect-error it reads a request, not a header value
lastEventId('✓')
// @ts-expect-error a header is text
lastEventId({ headers: { 'last-event-id': 5 } })
