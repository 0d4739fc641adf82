// `npx tsx examples/redis-chat.ts`: the chat room of examples/chat.ts served by TWO servers sharing one Redis
// stream, on http://127.0.0.1:3000 and http://127.0.0.1:3001 (PORT and PORT+1; REDIS_URL, default
// redis://127.0.0.1:6379). Open one tab on each port: a message sent on one server reaches the tabs of both.
// Stop one server's tab connection (or the server: `kill -USR2 <pid>` restarts server B here) and its
// EventSource reconnects with Last-Event-ID and loses nothing. In production the two would be two processes
// (or machines) behind a load balancer; here they run in one process to keep the example one file.
import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { readFile } from 'node:fs/promises'
import ssePlugin from '../lib/index.js'
import { redisChannels } from '../lib/channel/redis/index.js'

interface Message { name: string, text: string, at: string, server: string }
interface Join { name: string, online: number, server: string }

const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const basePort = Number(process.env.PORT ?? 3000)
const page = await readFile(new URL('./public/chat.html', import.meta.url), 'utf8')
const textSchema = { type: 'string', minLength: 1, maxLength: 1000 } as const
const nameSchema = { type: 'string', maxLength: 40 } as const

/** One server: its own Fastify app and its own Redis client, as a separate process would have. */
async function startServer (label: string, port: number): Promise<{ app: FastifyInstance, redis: Redis }> {
  const redis = new Redis(redisUrl)
  const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info', base: { server: label } } })
  await app.register(ssePlugin, { heartbeat: 15_000, retry: 1_000, maxConnections: 1_000 })
  // The same name and prefix on every server: the same stream (key `sse:chat`), so the same room.
  const room = app.sse.channel<Message | Join>('chat', {
    history: 200,
    backend: redisChannels({ redis, readerName: `chat-${label}` })
  })

  app.get('/', (_request, reply) => reply.type('text/html; charset=utf-8').send(page))

  // publish stores the item in Redis first: it returns a promise of the stream id, and rejects when Redis is down
  const say = (name: string, text: string) => room.publish({
    event: 'message',
    data: { name: name.slice(0, 40) || 'anonymous', text, at: new Date().toISOString(), server: label }
  })
  app.post<{ Body: { name?: string, text: string } }>('/send', {
    schema: { body: { type: 'object', required: ['text'], properties: { name: nameSchema, text: textSchema } } }
  }, async (request) => ({ id: await say(request.body.name ?? '', request.body.text) }))
  app.get<{ Querystring: { m: string, name?: string } }>('/send', {
    schema: { querystring: { type: 'object', required: ['m'], properties: { m: textSchema, name: nameSchema } } }
  }, async (request) => ({ id: await say(request.query.name ?? '', request.query.m) }))

  app.get<{ Querystring: { name?: string } }>('/chat', {
    schema: { querystring: { type: 'object', properties: { name: nameSchema } } }
  }, (request, reply) => {
    const lastEventId = request.headers['last-event-id'] // an id from either server: both read the same stream
    reply.sse(room.subscribe({ lastEventId, signal: request.signal }))
    if (lastEventId === undefined) {
      const data = { name: request.query.name || 'anonymous', online: room.size, server: label }
      room.publish({ event: 'join', data })
        .catch((err: unknown) => request.log.warn({ err }, 'join not announced'))
    }
    return reply
  })
  await app.listen({ port, host: '127.0.0.1' })
  app.log.info(`chat server ${label}: http://127.0.0.1:${port}/`)
  return { app, redis }
}

const servers = [await startServer('A', basePort), await startServer('B', basePort + 1)]
const [first, second] = [basePort, basePort + 1].map(port => `http://127.0.0.1:${port}/`)
servers[0]?.app.log.info(`open ${first} and ${second} side by side (Ctrl-C to stop)`)

// kill -USR2 <pid>: restart server B, as a deploy would; its tabs reconnect and catch up from the stream
process.on('SIGUSR2', () => {
  void (async () => {
    const old = servers[1]
    if (old === undefined) return
    await old.app.close()
    old.redis.disconnect()
    servers[1] = await startServer('B', basePort + 1)
  })()
})

async function stop (): Promise<void> {
  for (const { app, redis } of servers) {
    await app.close() // closes each channel's reader connection
    redis.disconnect() // our own client: the plugin never closes it
  }
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => { void stop() })
