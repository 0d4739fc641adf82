// Type tests of push sources and targeted publish, checked by `npm run typecheck` (tsc), never run: every
// expected error below must stay an error.
import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify from 'fastify'
import { EventEmitter } from 'node:events'
import { Redis } from 'ioredis'
import { expectTypeOf } from 'expect-type'
import ssePlugin, {
  pushSource, sseSchema, type Channel, type PushSource, type SseItem, type SseItemOf, type TargetOptions
} from '../lib/index.js'
import { redisChannels } from '../lib/channel/redis/index.js'

const app = Fastify().withTypeProvider<TypeBoxTypeProvider>()
void app.register(ssePlugin)

interface Tick { now: number }

// ---- pushSource<T>(): items are SseItem<T>
const ticks = pushSource<Tick>({ queueItems: 100, queueBytes: 1 << 16 })
expectTypeOf(ticks).toEqualTypeOf<PushSource<SseItem<Tick>>>()
expectTypeOf(ticks.push({ event: 'tick', id: '1', data: { now: 1 } })).toEqualTypeOf<boolean>()
// @ts-expect-error data must be a Tick
ticks.push({ data: { now: 'soon' } })
// @ts-expect-error an item field of the wrong type
ticks.push({ retry: '10' })
// @ts-expect-error queueItems is a number
pushSource({ queueItems: '10' })
expectTypeOf(ticks.drained()).toEqualTypeOf<Promise<void>>()
expectTypeOf(ticks.signal).toEqualTypeOf<AbortSignal>()
expectTypeOf(ticks.closed).toEqualTypeOf<boolean>()
ticks.end({ data: { now: 2 } })
ticks.end()
ticks.fail(new Error('gone'))
// @ts-expect-error closed is read-only
ticks.closed = true
expectTypeOf(pushSource()).toEqualTypeOf<PushSource<SseItem<unknown>>>()

app.get('/untyped', (_req, reply) => {
  const source = pushSource<Tick>()
  new EventEmitter().on('tick', (now: number) => source.push({ data: { now } }))
  return reply.sse(source, { onError: () => ({ data: { now: -1 } }) })
})

// ---- on a typed route: the route's items
const clock = sseSchema(Type.Object({ now: Type.Number() }))
const chat = sseSchema({ message: Type.Object({ text: Type.String() }), joined: Type.Object({ user: Type.String() }) })
expectTypeOf(pushSource<typeof chat>()).toEqualTypeOf<PushSource<SseItemOf<typeof chat>>>()

app.get('/clock', { schema: { response: { 200: clock } } }, (_req, reply) => reply.sse(pushSource<Tick>()))
app.get('/clock-returned', { schema: { response: { 200: clock } } }, async () => pushSource<typeof clock>())
app.get('/clock-wrong', { schema: { response: { 200: clock } } }, (_req, reply) =>
  // @ts-expect-error a source of other data than the route's
  reply.sse(pushSource<{ later: string }>()))
app.get('/chat', { schema: { response: { 200: chat } } }, (_req, reply) => {
  const source = pushSource<typeof chat>()
  source.push({ event: 'message', data: { text: 'hi' } })
  source.push({ comment: 'keep-alive' })
  // @ts-expect-error "left" is not an event of the map
  source.push({ event: 'left', data: { user: 'ann' } })
  // @ts-expect-error the data of "joined" is { user }
  source.push({ event: 'joined', data: { text: 'hi' } })
  return reply.sse(source)
})

// ---- targeted publish
const room = app.sse.channel<string>('room')
expectTypeOf(room.publish({ data: 'hi' }, { to: 'user:1', exclude: ['user:2'] })).toEqualTypeOf<string>()
room.publish({ data: 'hi' }, { to: [] })
// @ts-expect-error tags are strings
room.publish({ data: 'hi' }, { to: 42 })
// @ts-expect-error unknown option
room.publish({ data: 'hi' }, { only: 'user:1' })
room.subscribe({ tags: ['user:1', 'role:admin'] })
room.subscribe({ tags: 'user:1' })
// @ts-expect-error tags are strings
room.subscribe({ tags: [1] })
expectTypeOf<TargetOptions['to']>().toEqualTypeOf<string | readonly string[] | undefined>()
const shared: Channel<string, Promise<string>> = app.sse.channel<string>('shared', { backend: redisChannels({ redis: new Redis() }) })
void shared.publish({ data: 'x' }, { idempotencyKey: 'k1' })
// @ts-expect-error a shared (Redis) channel keeps no targeting
void shared.publish({ data: 'x' }, { to: 'user:1' })
