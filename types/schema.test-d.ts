// Type tests (checked by `npm run typecheck`, never run): what a typed SSE route may yield or stream.
import { Type, type Static, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { type FastifyReply } from 'fastify'
import { expectTypeOf } from 'expect-type'
import { sseSchema, type SseGenerator, type SseItem, type SseItemOf, type SseResetData, type SseStream } from '../lib/index.js'

const app = Fastify().withTypeProvider<TypeBoxTypeProvider>()

const Tick = Type.Object({ now: Type.Number() })
const clock = sseSchema(Tick)
const chat = sseSchema({ message: Type.Object({ text: Type.String() }), joined: Type.Object({ user: Type.String() }) })

// ---- the item types
expectTypeOf<SseItemOf<typeof clock>>().toEqualTypeOf<SseItem<{ now: number }>>()
type ChatItem = SseItemOf<typeof chat>
expectTypeOf<Extract<ChatItem, { event: 'message' }>['data']>().toEqualTypeOf<{ text: string } | undefined>()

// ---- async generator handlers, with the TypeBox type provider
app.get('/clock', { schema: { response: { 200: clock } } }, async function * () {
  yield { event: 'tick', data: { now: 1 } }
  yield { comment: 'padding' }
})

app.get('/clock-bad-data', { schema: { response: { 200: clock } } },
  // @ts-expect-error data does not match the schema
  async function * () {
    yield { data: { now: 'one' } }
  })

// TypeScript gives no contextual type to a generator's yields while it still infers the route's schema, so an
// event name is written `as const` there (plain route generics and reply.sse() need no such help).
app.get('/chat', { schema: { response: { 200: chat } } }, async function * () {
  yield { event: 'message' as const, data: { text: 'hi' } }
  yield { event: 'joined' as const, data: { user: 'ann' }, id: '1' }
  yield { comment: 'keep-alive' }
})

app.get('/chat-inline', { schema: { response: { 200: chat } } }, (request, reply) =>
  reply.sse((async function * () { yield { event: 'message', data: { text: 'no as const needed' } } })()))

app.get('/chat-unknown-event', { schema: { response: { 200: chat } } },
  // @ts-expect-error "left" is not an event of the map
  async function * () {
    yield { event: 'left' as const, data: { user: 'ann' } }
  })

app.get('/chat-wrong-data', { schema: { response: { 200: chat } } },
  // @ts-expect-error the data of "joined" is { user }, not { text }
  async function * () {
    yield { event: 'joined' as const, data: { text: 'hi' } }
  })

// ---- reply.sse on a typed route
app.get('/clock-reply', { schema: { response: { 200: clock } } }, async (request, reply) => {
  async function * ticks () { yield { data: { now: Date.now() } } }
  return reply.sse(ticks())
})

app.get('/clock-reply-bad', { schema: { response: { 200: clock } } }, async (request, reply) => {
  async function * ticks () { yield { data: { now: 'later' } } }
  // @ts-expect-error the source's data does not match the schema
  return reply.sse(ticks())
})

app.get('/chat-reply', { schema: { response: { 200: chat } } }, (request, reply) => {
  return reply.sse([{ event: 'message', data: { text: 'hi' } }])
})

app.get('/chat-reply-bad', { schema: { response: { 200: chat } } }, (request, reply) => {
  // @ts-expect-error "left" is not an event of the map
  return reply.sse([{ event: 'left', data: { user: 'x' } }])
})

// ---- plain route generics, no type provider
const plain = Fastify()
interface Tock { n: number }
plain.get<{ Reply: SseStream<SseItem<Tock>> }>('/tock', async function * () {
  yield { data: { n: 1 } }
})
type Move = { event: 'move', data: { x: number } } | { event: 'stop', data: { at: number } }
plain.get<{ Reply: SseStream<Move> }>('/moves', async function * () {
  yield { event: 'move', data: { x: 1 } }
  yield { event: 'stop', data: { at: 2 } }
})
// @ts-expect-error "jump" is not a Move event
plain.get<{ Reply: SseStream<Move> }>('/moves-bad', async function * () {
  yield { event: 'jump', data: { x: 1 } }
})
// @ts-expect-error data does not match the Reply generic
plain.get<{ Reply: SseStream<SseItem<Tock>> }>('/tock-bad', async function * () {
  yield { data: { n: '1' } }
})
plain.get<{ Reply: SseStream<SseItem<Tock>> }>('/tock-reply', (request, reply) => reply.sse([{ data: { n: 1 } }]))
plain.get<{ Reply: SseStream<SseItem<Tock>> }>('/tock-reply-bad', (request, reply) => {
  // @ts-expect-error data does not match the Reply generic
  return reply.sse([{ data: { n: 'x' } }])
})

// ---- every source the run time streams: sync generators, arrays and other iterables too
app.get('/clock-generator', { schema: { response: { 200: clock } } }, function * () {
  yield { data: { now: 1 } }
})
app.get('/clock-array', { schema: { response: { 200: clock } } }, () => [{ data: { now: 1 } }])
app.get('/clock-async-array', { schema: { response: { 200: clock } } }, async () => [{ data: { now: 1 } }])
// @ts-expect-error an array of the wrong data
app.get('/clock-array-bad', { schema: { response: { 200: clock } } }, () => [{ data: { now: 'one' } }])
plain.get<{ Reply: SseStream<SseItem<Tock>> }>('/tock-array', () => [{ data: { n: 1 } }])

// ---- untyped use is unchanged
plain.get('/any', (request, reply) => reply.sse([{ data: { anything: true } }]))
plain.get('/any-mixed', (request, reply) => reply.sse<unknown>([{ data: { anything: true } }, { data: 'text' }]))
plain.get('/any-gen-reply', async (request, reply) => {
  async function * items () { yield { event: 'x', data: 1 } }
  await Promise.resolve()
  return reply.sse(items())
})
plain.get('/any-gen', async function * () { yield { data: 1 } })
// annotated with plain SseGenerator, an untyped generator's items are checked field by field
plain.get('/any-gen-annotated', async function * (): SseGenerator {
  yield { data: { anything: true }, event: 'x', id: '1', retry: 10, comment: 'c' }
  // @ts-expect-error a misspelt field: "evnt" is not a field of SseItem
  yield { data: 1, evnt: 'x' }
})

// ---- the README's route generic forms
const readmePlain = Fastify()
readmePlain.get<{ Reply: SseStream<SseItem<Static<typeof Tick>>> }>('/readme-tick', async function * () {
  yield { data: { now: 1 } }
})
readmePlain.get<{ Reply: SseStream<SseItemOf<typeof chat>> }>('/readme-chat', async function * () {
  yield { event: 'joined', data: { user: 'ann' } }
})
readmePlain.get<{ Reply: SseStream<SseItemOf<typeof chat>> }>('/readme-chat-reply', (request, reply) => {
  expectTypeOf(reply.sse([{ event: 'message', data: { text: 'hi' } }])).toEqualTypeOf<FastifyReply>()
  return reply.sse([{ event: 'message', data: { text: 'hi' } }])
})

// ---- annotated generators: each wrong yield fails on its own line, and event names need no `as const`
app.get('/chat-annotated', { schema: { response: { 200: chat } } }, async function * (request): SseGenerator<typeof chat> {
  expectTypeOf(request.signal).toEqualTypeOf<AbortSignal>()
  yield { event: 'message', data: { text: 'hi' } }
  yield { event: 'joined', data: { user: 'ann' }, id: '1' }
  yield { comment: 'keep-alive' }
  // @ts-expect-error the data of "joined" is { user }, not { text }
  yield { event: 'joined', data: { text: 'hi' } }
  // @ts-expect-error "left" is not an event of the map
  yield { event: 'left', data: { user: 'ann' } }
  // @ts-expect-error an event of the map needs its name: an item with data but no event is refused
  yield { data: { text: 'hi' } }
  yield { event: 'message', data: { text: 'still fine after the errors above' } }
})

app.get('/clock-annotated', { schema: { response: { 200: clock } } }, async function * (): SseGenerator<typeof clock> {
  yield { data: { now: 1 } }
  // @ts-expect-error data does not match the schema
  yield { data: { now: 'one' } }
})

// @ts-expect-error the annotation must name the route's schema: a clock generator on a chat route
app.get('/chat-as-clock', { schema: { response: { 200: chat } } }, async function * (): SseGenerator<typeof clock> {
  yield { data: { now: 1 } }
})

// @ts-expect-error SseGenerator takes an sseSchema(), not a data schema
export type NotASchema = SseGenerator<typeof Tick>

// ---- channel subscriptions on a route typed by a data schema: the `sse-reset` item a subscription may start
// with needs no cast; a subscription of another data type is still refused
const ticks = app.sse.channel<Static<typeof Tick>>('ticks')
const notes = app.sse.channel<{ text: string }>('notes')
app.get('/clock-channel', { schema: { response: { 200: clock } } }, (request, reply) =>
  reply.sse(ticks.subscribe({ lastEventId: request.headers['last-event-id'], signal: request.signal })))
app.get('/clock-channel-async', { schema: { response: { 200: clock } } }, async (request, reply) => {
  return reply.sse(ticks.subscribe(), { retry: 1000 })
})
app.get('/clock-channel-no-retry', { schema: { response: { 200: clock } }, config: { sse: { retry: false } } }, (request, reply) =>
  reply.sse(ticks.subscribe(), { retry: false }))
app.get('/clock-channel-returned', { schema: { response: { 200: clock } } }, () => ticks.subscribe())
app.get('/clock-channel-generator', { schema: { response: { 200: clock } } }, async function * () {
  yield { data: { now: 0 } }
  yield * ticks.subscribe()
})
app.get('/clock-channel-bad', { schema: { response: { 200: clock } } }, (request, reply) => {
  // @ts-expect-error a subscription of another data type
  return reply.sse(notes.subscribe())
})
// @ts-expect-error a subscription of another data type, returned
app.get('/clock-channel-returned-bad', { schema: { response: { 200: clock } } }, () => notes.subscribe())
app.get('/clock-channel-generator-bad', { schema: { response: { 200: clock } } },
  // @ts-expect-error a subscription of another data type, yielded
  async function * () {
    yield * notes.subscribe()
  })
app.get('/clock-reset-data', { schema: { response: { 200: clock } } }, (request, reply) => {
  // @ts-expect-error the reset item's data is the channel's to send, not an item of the route
  return reply.sse([{ data: { reason: 'expired' } }])
})
const tocks = plain.sse.channel<Tock>('tocks')
plain.get<{ Reply: SseStream<SseItem<Tock>> }>('/tock-channel', (request, reply) => reply.sse(tocks.subscribe()))
plain.get<{ Reply: SseStream<SseItem<Tock>> }>('/tock-channel-bad', (request, reply) => {
  // @ts-expect-error a subscription of another data type
  return reply.sse(notes.subscribe())
})
// the route's own items are unchanged by it: what reply.sse() takes item by item, and what a generator yields
expectTypeOf<SseStream<SseItem<Tock>>>().toEqualTypeOf<
  AsyncIterable<SseItem<Tock>> | Iterable<SseItem<Tock>> | AsyncIterableIterator<SseItem<Tock | SseResetData>> |
  FastifyReply
>()
app.get('/clock-channel-annotated', { schema: { response: { 200: clock } } },
  async function * (): SseGenerator<typeof clock> {
    // @ts-expect-error an annotated generator yields the route's items only: hand the subscription to reply.sse()
    yield * ticks.subscribe()
  })
// an event map's items name their events, a subscription's do not: it does not fit a map route
app.get('/chat-channel', { schema: { response: { 200: chat } } }, (request, reply) => {
  // @ts-expect-error a subscription names no event of the map
  return reply.sse(notes.subscribe())
})
