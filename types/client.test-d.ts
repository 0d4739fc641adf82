// Type tests: the client and the test helpers take the route's own schema and type what they yield from it.
import { Type } from '@sinclair/typebox'
import Fastify from 'fastify'
import { expectTypeOf } from 'expect-type'
import { sseSchema, type SseItem } from '../lib/index.js'
import { connect, type ReceivedEvent, type ReceivedItem } from '../lib/client/index.js'
import { collect, injectSse } from '../lib/testing.js'

const chat = sseSchema({ message: Type.Object({ text: Type.String() }), joined: Type.Object({ user: Type.String() }) })
const clock = sseSchema(Type.Object({ now: Type.Number() }))
const status = sseSchema(Type.Union([Type.Literal('up'), Type.Literal('down')]))

type Chat = ReceivedEvent<'message', { text: string }> | ReceivedEvent<'joined', { user: string }>

export async function client (): Promise<void> {
  for await (const item of connect('http://127.0.0.1/chat', { schema: chat })) {
    expectTypeOf(item).toEqualTypeOf<Chat>()
    if (item.event === 'joined') expectTypeOf(item.data).toEqualTypeOf<{ user: string }>()
    else expectTypeOf(item.data).toEqualTypeOf<{ text: string }>()
    // @ts-expect-error narrowed to "message": no user
    if (item.event === 'message') console.log(item.data.user)
  }
  for await (const item of connect('http://127.0.0.1/clock', { schema: clock })) {
    expectTypeOf(item).toEqualTypeOf<ReceivedItem<{ now: number }>>()
  }
  for await (const item of connect('http://127.0.0.1/status', { schema: status })) {
    expectTypeOf(item.data).toEqualTypeOf<'up' | 'down'>()
  }
  for await (const item of connect('http://127.0.0.1/tick', { schema: Type.Object({ n: Type.Number() }) })) {
    expectTypeOf(item).toEqualTypeOf<ReceivedItem<{ n: number }>>()
  }
  const tick = Type.Object({ n: Type.Integer(), label: Type.Optional(Type.String()) })
  for await (const item of connect('http://127.0.0.1/tick', { schema: tick })) {
    expectTypeOf(item.data).toEqualTypeOf<{ n: number, label?: string }>()
  }
  for await (const item of connect<{ a: string }>('http://127.0.0.1/a')) expectTypeOf(item.data).toEqualTypeOf<{ a: string }>()
  for await (const item of connect('http://127.0.0.1/text', { json: false })) expectTypeOf(item.data).toEqualTypeOf<string>()
  for await (const item of connect('http://127.0.0.1/any')) expectTypeOf(item.data).toEqualTypeOf<unknown>()
  expectTypeOf<ReceivedItem<number>>().toMatchTypeOf<SseItem<number>>()
  expectTypeOf<ReceivedItem<number>['data']>().toEqualTypeOf<number>()
}

export async function testing (): Promise<void> {
  const app = Fastify()
  expectTypeOf(await collect(app, { url: '/chat', schema: chat })).toEqualTypeOf<Chat[]>()
  expectTypeOf(await collect(app, { url: '/clock', count: 1, schema: clock })).toEqualTypeOf<Array<ReceivedItem<{ now: number }>>>()
  expectTypeOf(await collect(app, { url: '/list', json: false })).toEqualTypeOf<Array<ReceivedItem<string>>>()
  const stream = await injectSse(app, { url: '/chat', schema: chat })
  expectTypeOf(await stream.take(1)).toEqualTypeOf<Chat[]>()
  for await (const item of stream.events) expectTypeOf(item).toEqualTypeOf<Chat>()
}

// The browser entry types what it yields exactly as the Node entry does; the request and reconnection options are
// fetch's names with fetch's values, and a mistake in them fails to compile.
export async function browserClient (): Promise<void> {
  const { connect: inPage } = await import('../lib/client/browser.js')
  const { validator } = await import('../lib/client/validate.js')
  for await (const item of inPage('/chat', {
    schema: chat,
    validate: await validator(chat),
    method: 'POST',
    headers: { authorization: 'Bearer x' },
    body: JSON.stringify({ prompt: 'hi' }),
    credentials: 'include',
    mode: 'cors',
    maxRetryDelay: 10_000,
    inactivityTimeout: false,
    onState: (state, info) => {
      expectTypeOf(state).toEqualTypeOf<'connecting' | 'open' | 'reconnecting' | 'closed'>()
      expectTypeOf(info.delay).toEqualTypeOf<number | undefined>()
      expectTypeOf(info.failures).toEqualTypeOf<number>()
    }
  })) {
    expectTypeOf(item).toEqualTypeOf<Chat>()
  }
  const bytes = new TextEncoder().encode('x')
  const bodies = [bytes, bytes.buffer, new Blob(['x']), new URLSearchParams({ a: '1' }), 'x']
  for (const body of bodies) void inPage('/x', { method: 'POST', body })
  void inPage('/x', { validate: (data, event) => typeof data === 'object' ? undefined : `${event}: not an object` })
  void inPage('/x', { validate: false })
  // @ts-expect-error validation is a function or false, not a flag
  void inPage('/x', { validate: true })
  // @ts-expect-error a stream cannot be sent again on a reconnection
  void inPage('/x', { method: 'POST', body: new ReadableStream() })
  // @ts-expect-error no-cors answers cannot be read
  void inPage('/x', { mode: 'no-cors' })
  // @ts-expect-error fetch's credentials values only
  void inPage('/x', { credentials: 'always' })
  // @ts-expect-error a number of milliseconds or false
  void inPage('/x', { inactivityTimeout: '30s' })
  // @ts-expect-error a validator returns a problem (a string) or undefined
  void inPage('/x', { validate: () => 1 })
}
