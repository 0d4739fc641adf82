// Type tests (checked by `npm run typecheck` and `npm run typecheck:ts7`, never run): typed routes, the client and
// the test helpers with typebox 1.x and @fastify/type-provider-typebox 6, what `npm i` gives today. The other type
// tests use @sinclair/typebox 0.34 with provider 5; both must type every handler shape alike.
import { Type as SinclairType } from '@sinclair/typebox'
import type { TypeBoxTypeProvider as SinclairProvider } from '@fastify/type-provider-typebox'
import Fastify from 'fastify'
import { expectTypeOf } from 'expect-type'
import { Type, type Static } from 'typebox'
import type { TypeBoxTypeProvider } from 'type-provider-typebox-6'
import { connect, type ReceivedEvent, type ReceivedItem } from '../lib/client/index.js'
import { sseSchema, type SseGenerator, type SseItem, type SseItemOf, type SseStream } from '../lib/index.js'
import { collect } from '../lib/testing.js'

const app = Fastify().withTypeProvider<TypeBoxTypeProvider>()

const Tick = Type.Object({ at: Type.String(), n: Type.Optional(Type.Integer()) })
const ticks = sseSchema(Tick)
const feed = sseSchema({ moved: Type.Object({ x: Type.Number() }), said: Type.String() })

expectTypeOf<SseItemOf<typeof ticks>>().toEqualTypeOf<SseItem<{ at: string, n?: number }>>()
expectTypeOf<Extract<SseItemOf<typeof feed>, { event: 'said' }>['data']>().toEqualTypeOf<string | undefined>()

// ---- every handler shape the run time streams, typed by the route's schema
app.get('/async-generator', { schema: { response: { 200: ticks } } }, async function * () {
  yield { data: { at: 'now' } }
})
app.get('/generator', { schema: { response: { 200: ticks } } }, function * () {
  yield { data: { at: 'now', n: 1 } }
})
app.get('/array', { schema: { response: { 200: ticks } } }, () => [{ data: { at: 'now' } }, { comment: 'x' }])
app.get('/async-array', { schema: { response: { 200: ticks } } }, async () => [{ data: { at: 'now' } }])
app.get('/set', { schema: { response: { 200: ticks } } }, () => new Set([{ data: { at: 'now' } }]))
app.get('/reply', { schema: { response: { 200: ticks } } }, (request, reply) => reply.sse([{ data: { at: 'now' } }]))

// @ts-expect-error an array of the wrong data
app.get('/array-bad', { schema: { response: { 200: ticks } } }, () => [{ data: { at: 1 } }])
// @ts-expect-error a sync generator of the wrong data
app.get('/generator-bad', { schema: { response: { 200: ticks } } }, function * () { yield { data: { at: 1 } } })
app.get('/reply-bad', { schema: { response: { 200: ticks } } }, (request, reply) =>
  // @ts-expect-error the wrong data to reply.sse()
  reply.sse([{ data: { at: 1 } }]))

// ---- annotated: a wrong yield fails on its own line
app.get('/annotated', { schema: { response: { 200: ticks } } }, async function * (): SseGenerator<typeof ticks> {
  yield { data: { at: 'now' } }
  // @ts-expect-error a number where the schema says string
  yield { data: { at: 42 } }
  // @ts-expect-error a misspelt field
  yield { data: { at: 'now' }, evnt: 'tick' }
})
app.get('/feed', { schema: { response: { 200: feed } } }, async function * (): SseGenerator<typeof feed> {
  yield { event: 'moved', data: { x: 1 } }
  yield { event: 'said', data: 'hi' }
  // @ts-expect-error "said" carries a string
  yield { event: 'said', data: { x: 1 } }
  // @ts-expect-error not an event of the map
  yield { event: 'left', data: 'bye' }
})

// ---- route generics with typebox 1.x's Static, no type provider
const plain = Fastify()
plain.get<{ Reply: SseStream<SseItem<Static<typeof Tick>>> }>('/plain', async function * () {
  yield { data: { at: 'now' } }
})
// @ts-expect-error data does not match the Reply generic
plain.get<{ Reply: SseStream<SseItem<Static<typeof Tick>>> }>('/plain-bad', () => [{ data: { at: 1 } }])

// ---- the two TypeBoxes crossed: provider 6 reads a response built from @sinclair/typebox schemas as well
const sinclairTicks = sseSchema(SinclairType.Object({ at: SinclairType.String() }))
app.get('/crossed', { schema: { response: { 200: sinclairTicks } } }, async function * () {
  yield { data: { at: 'now' } }
})
// @ts-expect-error still checked: a number where the schema says string
app.get('/crossed-bad', { schema: { response: { 200: sinclairTicks } } }, () => [{ data: { at: 1 } }])
// provider 5 reads a response built from @sinclair/typebox schemas (types/schema.test-d.ts has the rest)
Fastify().withTypeProvider<SinclairProvider>().get('/sinclair', { schema: { response: { 200: sinclairTicks } } },
  // @ts-expect-error a number where the schema says string
  () => [{ data: { at: 1 } }])

// ---- the client and the test helpers
export async function client (): Promise<void> {
  for await (const item of connect('http://127.0.0.1/feed', { schema: feed })) {
    expectTypeOf(item).toEqualTypeOf<ReceivedEvent<'moved', { x: number }> | ReceivedEvent<'said', string>>()
  }
  for await (const item of connect('http://127.0.0.1/ticks', { schema: Tick, references: [Tick] })) {
    expectTypeOf(item).toEqualTypeOf<ReceivedItem<{ at: string, n?: number }>>()
  }
  expectTypeOf(await collect(Fastify(), { url: '/ticks', schema: ticks }))
    .toEqualTypeOf<Array<ReceivedItem<{ at: string, n?: number }>>>()
}
