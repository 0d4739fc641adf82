// `npx tsx examples/chat.ts`: a chat room on one broadcast channel, on http://127.0.0.1:3000 (PORT to change).
// POST /send (JSON) or GET /send?m=... (a form or a link) publish; GET /chat streams, replaying what a reconnecting
// browser missed (Last-Event-ID). Named events: `message` and `join`.
import Fastify from 'fastify'
import { readFile } from 'node:fs/promises'
import ssePlugin from '../lib/index.js'

interface Message { name: string, text: string, at: string }
interface Join { name: string, online: number }

const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info' } })
await app.register(ssePlugin, { heartbeat: 15_000, retry: 1_000, maxConnections: 1_000 })

// Keeps the last 200 events for reconnecting clients; a client too far behind gets `sse-reset` instead.
const room = app.sse.channel<Message | Join>('chat', { history: 200 })

const page = await readFile(new URL('./public/chat.html', import.meta.url), 'utf8')
app.get('/', (_request, reply) => reply.type('text/html; charset=utf-8').send(page))

function say (name: string, text: string): string {
  const data = { name: name.slice(0, 40) || 'anonymous', text, at: new Date().toISOString() }
  return room.publish({ event: 'message', data })
}

const textSchema = { type: 'string', minLength: 1, maxLength: 1000 } as const
const nameSchema = { type: 'string', maxLength: 40 } as const

app.post<{ Body: { name?: string, text: string } }>('/send', {
  schema: { body: { type: 'object', required: ['text'], properties: { name: nameSchema, text: textSchema } } }
}, async (request) => ({ id: say(request.body.name ?? '', request.body.text) }))

// A form or a plain link: GET /send?m=hello
app.get<{ Querystring: { m: string, name?: string } }>('/send', {
  schema: { querystring: { type: 'object', required: ['m'], properties: { m: textSchema, name: nameSchema } } }
}, async (request) => ({ id: say(request.query.name ?? '', request.query.m) }))

app.get<{ Querystring: { name?: string } }>('/chat', {
  schema: { querystring: { type: 'object', properties: { name: nameSchema } } }
}, (request, reply) => {
  const lastEventId = request.headers['last-event-id']
  reply.sse(room.subscribe({ lastEventId, signal: request.signal }))
  // announce newcomers, not reconnects (those carry Last-Event-ID)
  if (lastEventId === undefined) {
    room.publish({ event: 'join', data: { name: request.query.name || 'anonymous', online: room.size } })
  }
  return reply
})

const port = Number(process.env.PORT ?? 3000)
await app.listen({ port, host: '127.0.0.1' })
app.log.info(`chat: open http://127.0.0.1:${port}/ in two tabs (Ctrl-C to stop)`)
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => { void app.close() })
}
