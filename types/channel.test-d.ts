// Type tests of the channel API, checked by `npm run typecheck` (tsc), never run: each @ts-expect-error must stay
// an error.
import Fastify from 'fastify'
import { expectTypeOf } from 'expect-type'
import ssePlugin, {
  type Channel, type ChannelBackendFactory, type ChannelSubscription, type ResetReason, type SseItem, type SseResetData
} from '../lib/index.js'

const app = Fastify()
void app.register(ssePlugin, { maxConnections: 1000, retryAfter: 5 })
// @ts-expect-error maxConnections is a number
void app.register(ssePlugin, { maxConnections: '1000' })

interface ChatMessage { name: string, text: string }
const chat = app.sse.channel<ChatMessage>('chat', {
  history: 1000, historyMaxAge: 60_000, queueItems: 512, queueBytes: 1 << 20
})
expectTypeOf(chat).toEqualTypeOf<Channel<ChatMessage>>()
expectTypeOf(app.sse.channel('other')).toEqualTypeOf<Channel<unknown>>()
// @ts-expect-error history is a number
app.sse.channel('bad', { history: '10' })
// @ts-expect-error unknown option
app.sse.channel('bad', { histroy: 10 })

expectTypeOf(chat.publish({ event: 'message', data: { name: 'a', text: 'b' } })).toEqualTypeOf<string>()
chat.publish({ id: 'own-id', comment: 'no data is fine' })
// @ts-expect-error data must be a ChatMessage
chat.publish({ data: 'text' })
// @ts-expect-error id is a string
chat.publish({ id: 1 })
expectTypeOf(chat.size).toEqualTypeOf<number>()
// @ts-expect-error size is read-only
chat.size = 1
expectTypeOf(chat.name).toEqualTypeOf<string>()
chat.close()

// what a route passes: the header as Node types it, and the request's signal
app.get('/chat', (req, reply) => {
  const subscription = chat.subscribe({ lastEventId: req.headers['last-event-id'], signal: req.signal })
  expectTypeOf(subscription).toEqualTypeOf<ChannelSubscription<ChatMessage>>()
  return reply.sse(subscription)
})
chat.subscribe()
// @ts-expect-error unknown option (tags)
chat.subscribe({ tag: 'user:1' })
// @ts-expect-error unknown option (lastEventId)
chat.subscribe({ lastEventID: '1' })
app.sse.channel('rooms', { idleTimeout: 60_000 })
app.sse.channel('kept', { idleTimeout: Infinity })
// @ts-expect-error idleTimeout is a number
app.sse.channel('bad', { idleTimeout: '1m' })
// @ts-expect-error not an item field
chat.publish({ dat: { name: 'a', text: 'b' } })
// @ts-expect-error lastEventId is a string
chat.subscribe({ lastEventId: 42 })

// iterating a subscription yourself: the one sse-reset item carries SseResetData
async function consume (): Promise<void> {
  for await (const item of chat.subscribe()) {
    expectTypeOf(item).toEqualTypeOf<SseItem<ChatMessage | SseResetData>>()
    if (item.event === 'sse-reset') continue
  }
}
void consume

// A backend factory is told how to reset the live subscribers (a Redis stream that lost items); one that never
// needs to (it keeps what it delivered) may leave that argument out.
expectTypeOf<Parameters<ChannelBackendFactory>[4]>().toEqualTypeOf<(reason: ResetReason, position: string) => void>()
const keepsAll: ChannelBackendFactory<string> = (_name, _options, deliver) => ({
  append: (item, encode) => {
    const stored = encode.item({ ...item, id: '1' })
    deliver(stored)
    return stored.id
  },
  replay: () => ({ items: [], position: '1' }),
  position: () => '1',
  close: () => {}
})
app.sse.channel('kept', { backend: keepsAll })
