// Type tests of the Redis channels (fastify-typed-sse/redis), checked by `npm run typecheck` (tsc), never run.
import Fastify from 'fastify'
import { Cluster, Redis } from 'ioredis'
import { expectTypeOf } from 'expect-type'
import ssePlugin, { type Channel, type ChannelSubscription, type SharedChannelOptions } from '../lib/index.js'
import { redisChannels, type RedisChannels, type RedisChannelsOptions } from '../lib/channel/redis/index.js'

const app = Fastify()
void app.register(ssePlugin)
const redis = new Redis()

const shared = redisChannels({ redis, prefix: 'sse:', publishTimeout: 5000, blockTimeout: 5000, readerName: 'web-1' })
expectTypeOf(shared).toEqualTypeOf<RedisChannels>()
redisChannels({ redis })
// @ts-expect-error the client is required
redisChannels({})
// @ts-expect-error not an ioredis client
redisChannels({ redis: 'redis://127.0.0.1' })
// @ts-expect-error publishTimeout is a number
redisChannels({ redis, publishTimeout: '5s' })
expectTypeOf<RedisChannelsOptions['redis']>().toEqualTypeOf<Redis | Cluster>()
// a Redis Cluster: the same backend type, channels spread over slot groups
const onCluster = redisChannels({ redis: new Cluster([{ host: '127.0.0.1', port: 7000 }]), slotGroups: 32 })
expectTypeOf(onCluster).toEqualTypeOf<RedisChannels>()
// @ts-expect-error slotGroups is a number
redisChannels({ redis, slotGroups: '32' })

interface ChatMessage { name: string, text: string }
const chat = app.sse.channel<ChatMessage>('chat', { backend: shared, history: 1000 })
expectTypeOf(chat).toEqualTypeOf<Channel<ChatMessage, Promise<string>>>()
// publish stores first: a promise of the stream id, which the caller must await
expectTypeOf(chat.publish({ event: 'message', data: { name: 'a', text: 'b' } })).toEqualTypeOf<Promise<string>>()
// @ts-expect-error data must be a ChatMessage
void chat.publish({ data: 'text' })
async function send (): Promise<string> {
  const id: string = await chat.publish({ data: { name: 'a', text: 'b' } })
  // @ts-expect-error not a string until awaited
  const notYet: string = chat.publish({ data: { name: 'a', text: 'b' } })
  return id + notYet
}
void send

// everything else is the channel API as it is
expectTypeOf(chat.subscribe({ lastEventId: 'x' })).toEqualTypeOf<ChannelSubscription<ChatMessage>>()
expectTypeOf(chat.size).toEqualTypeOf<number>()
chat.close()

// an in-memory channel keeps returning the id itself
expectTypeOf(app.sse.channel<ChatMessage>('memory').publish({ data: { name: 'a', text: 'b' } })).toEqualTypeOf<string>()
expectTypeOf(app.sse.channel('memory', { history: 10 })).toEqualTypeOf<Channel<unknown>>()
const options: SharedChannelOptions = { backend: shared, queueItems: 100 }
expectTypeOf(app.sse.channel('x', options)).toEqualTypeOf<Channel<unknown, Promise<string>>>()
// @ts-expect-error a backend is a factory such as redisChannels({ redis })
app.sse.channel('bad', { backend: 'redis' })

// a shared channel's publish takes an idempotency key, to retry safely; an in-memory one has nothing to retry
const once = chat.publish({ data: { name: 'a', text: 'b' } }, { idempotencyKey: 'message-42' })
expectTypeOf(once).toEqualTypeOf<Promise<string>>()
// @ts-expect-error the key is a string
void chat.publish({ data: { name: 'a', text: 'b' } }, { idempotencyKey: 42 })
// @ts-expect-error an in-memory publish takes no options
app.sse.channel<ChatMessage>('memory').publish({ data: { name: 'a', text: 'b' } }, { idempotencyKey: 'k' })
redisChannels({ redis, idempotencyWindow: 60_000 })
// @ts-expect-error idempotencyWindow is a number of milliseconds
redisChannels({ redis, idempotencyWindow: '1m' })

// every option name is checked: a misspelt one fails to compile, in an object literal or one built beforehand
// @ts-expect-error prefx is no option (prefix is)
redisChannels({ redis, prefx: 'app:' })
// @ts-expect-error publishTimout is no option (publishTimeout is)
redisChannels({ redis, publishTimout: 1000 })
const built = { redis, prefix: 'app:', blockTimout: 1000 }
// @ts-expect-error blockTimout is no option, also in an object built beforehand
redisChannels(built)
const exact: RedisChannelsOptions = { redis, prefix: 'app:', readerIdleTimeout: 60_000 }
expectTypeOf(redisChannels(exact)).toEqualTypeOf<RedisChannels>()
const inferred = { redis, slotGroups: 8 }
expectTypeOf(redisChannels(inferred)).toEqualTypeOf<RedisChannels>()
// @ts-expect-error readerIdleTimeout is a number of milliseconds
redisChannels({ redis, readerIdleTimeout: '30s' })
