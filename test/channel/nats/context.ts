// What the NATS channel tests share: the server at NATS_URL (or one of the test's own), a stream and a subject prefix
// of each test's own (deleted at teardown), connections closed at teardown, and one "server": an app with the
// channel `room` on a backend of its own and the route GET /room.
import type { Test } from 'tap'
import { connect, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node'
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream'
import type { FastifyInstance } from 'fastify'
import { natsChannels, type NatsChannels, type NatsChannelsOptions } from '../../../lib/channel/nats/index.js'
import type { Channel } from '../../../lib/index.js'
import { startApp, type LogCapture } from '../../helpers.js'

export const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222'
let tests = 0

export interface NatsContext {
  stream: string
  prefix: string
  url: string
  connection: (options?: ConnectionOptions) => Promise<NatsConnection>
  manager: JetStreamManager
  js: JetStreamClient
}

export interface NatsServer1 {
  app: FastifyInstance
  url: string
  logs: LogCapture
  room: Channel<number, Promise<string>>
  backend: NatsChannels
}

export async function natsContext (t: Test, url = NATS_URL): Promise<NatsContext> {
  const stream = `T${process.pid}_${++tests}`
  const prefix = `t${process.pid}.${tests}`
  const connections: NatsConnection[] = []
  const connection = async (options: ConnectionOptions = {}): Promise<NatsConnection> => {
    const made = await connect({ servers: url, ...options })
    connections.push(made)
    return made
  }
  const admin = await connection()
  const manager = await jetstreamManager(admin)
  t.teardown(async () => {
    await manager.streams.delete(stream).catch(() => false)
    await Promise.all(connections.map(c => c.close()))
  })
  return { stream, prefix, url, connection, manager, js: jetstream(admin) }
}

/** One server: its own connection and backend, the channel `room`, GET /room; closed at teardown. */
export async function natsServer (
  t: Test, ctx: NatsContext, options: Partial<NatsChannelsOptions> = {},
  channel: { history?: number, historyMaxAge?: number, queueItems?: number, queueBytes?: number } = {},
  connection?: ConnectionOptions
): Promise<NatsServer1> {
  const backend = natsChannels({
    connection: await ctx.connection(connection), prefix: ctx.prefix, stream: ctx.stream, ...options
  })
  let room!: NatsServer1['room']
  const started = await startApp(app => {
    room = app.sse.channel<number>('room', { backend, history: 100, ...channel })
    app.get('/room', (req, reply) =>
      reply.sse(room.subscribe({ lastEventId: req.headers['last-event-id'], signal: req.signal })))
  })
  t.teardown(() => started.app.close())
  return { ...started, room, backend }
}

/** Resolves once the room's reader has started (a subscriber gets items from then on). */
export async function started (room: Channel<number, Promise<string>>, app: FastifyInstance): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const stats = app.sse.stats({ channels: Infinity }).channels.find(c => c.name === room.name)
    if (stats?.position !== '' && stats?.connected === true) return
    await new Promise(resolve => setTimeout(resolve, 10))
  }
  throw new Error('timed out: the reader started')
}
