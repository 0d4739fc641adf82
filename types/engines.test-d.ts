// Type tests of the PostgreSQL and NATS channels (fastify-typed-sse/postgres, fastify-typed-sse/nats), checked by
// `npm run typecheck` (tsc), never run.
import Fastify from 'fastify'
import pg from 'pg'
import { connect } from '@nats-io/transport-node'
import { expectTypeOf } from 'expect-type'
import ssePlugin, { type Channel } from '../lib/index.js'
import {
  ensureSchema, postgresChannels, schemaSql, type PostgresChannels, type PostgresChannelsOptions
} from '../lib/channel/postgres/index.js'
import { natsChannels, type NatsChannels, type NatsChannelsOptions } from '../lib/channel/nats/index.js'

const app = Fastify()
void app.register(ssePlugin)
const pool = new pg.Pool()

const onPostgres = postgresChannels({ pool, prefix: 'sse_', publishTimeout: 5000, readerName: 'web-1' })
expectTypeOf(onPostgres).toEqualTypeOf<PostgresChannels>()
async function direct (): Promise<pg.Client> {
  const client = new pg.Client(process.env.DIRECT_URL)
  await client.connect()
  return client
}
postgresChannels({ pool, listener: direct })
postgresChannels({ pool, listener: () => pool.connect() })
// @ts-expect-error the pool is required
postgresChannels({})
// @ts-expect-error not a pg Pool
postgresChannels({ pool: 'postgres://127.0.0.1/test' })
// @ts-expect-error an option it does not take
postgresChannels({ pool, blockTimeout: 5000 })
// @ts-expect-error the listener opens a connection
postgresChannels({ pool, listener: 'postgres://127.0.0.1/test' })
expectTypeOf(ensureSchema(pool, { prefix: 'sse_' })).toEqualTypeOf<Promise<void>>()
// @ts-expect-error an option it does not take
void ensureSchema(pool, { schema: 'public' })
expectTypeOf(schemaSql()).toBeString()
expectTypeOf<PostgresChannelsOptions['pool']>().toEqualTypeOf<pg.Pool>()

const connection = await connect({ servers: '127.0.0.1:4222' })
const onNats = natsChannels({ connection, prefix: 'sse', stream: 'SSE', maxPerChannel: 1000, storage: 'file' })
expectTypeOf(onNats).toEqualTypeOf<NatsChannels>()
// @ts-expect-error the connection is required
natsChannels({ stream: 'SSE' })
// @ts-expect-error storage is 'file' or 'memory'
natsChannels({ connection, storage: 'disk' })
// @ts-expect-error an option it does not take
natsChannels({ connection, replicas: 3 })
expectTypeOf<NatsChannelsOptions['maxAge']>().toEqualTypeOf<number | undefined>()

interface ChatMessage { text: string }
const chat = app.sse.channel<ChatMessage>('chat', { backend: onPostgres })
expectTypeOf(chat).toEqualTypeOf<Channel<ChatMessage, Promise<string>>>()
expectTypeOf(chat.publish({ data: { text: 'hi' } }, { idempotencyKey: 'm-1' })).toEqualTypeOf<Promise<string>>()
// @ts-expect-error no targeting on a shared channel
void chat.publish({ data: { text: 'hi' } }, { to: 'user:1' })
const rooms = app.sse.channel<ChatMessage>('rooms', { backend: onNats, history: 100 })
expectTypeOf(rooms.publish({ data: { text: 'hi' } })).toEqualTypeOf<Promise<string>>()
// @ts-expect-error data must be a ChatMessage
void rooms.publish({ data: 1 })
