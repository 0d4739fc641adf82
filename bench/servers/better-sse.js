// better-sse on Fastify through reply.raw (after reply.hijack()): sessions and its Channel for broadcast.
// better-sse has no backpressure (session.push writes regardless), so /stream waits for 'drain' by hand,
// which is what a careful user has to do to stream 200,000 events without buffering them all.
import { once } from 'node:events'
import Fastify from 'fastify'
import { createChannel, createSession } from 'better-sse'
import { MSG, now, ready } from './common.js'

const app = Fastify({ logger: false })

app.get('/stream', async (request, reply) => {
  reply.hijack()
  const n = Number(request.query.n ?? 0)
  const res = reply.raw
  const session = await createSession(request.raw, res, { retry: null })
  for (let i = 0; i < n && session.isConnected; i++) {
    session.push({ i, ts: Date.now(), msg: MSG }, 'tick', String(i))
    if (res.writableNeedDrain) await Promise.race([once(res, 'drain'), once(res, 'close')])
  }
  res.end()
})

const channel = createChannel()
app.get('/sub', async (request, reply) => {
  reply.hijack()
  const session = await createSession(request.raw, reply.raw, { retry: null })
  channel.register(session)
})

app.post('/pub', async (request) => {
  const n = Number(request.query.n ?? 1)
  const start = Number(request.query.start ?? 0)
  for (let k = 0; k < n; k++) {
    const i = start + k
    channel.broadcast({ i, ts: now(), msg: MSG }, 'tick', { eventId: String(i) })
  }
  return { subscribers: channel.sessionCount }
})

await app.listen({ port: 0, host: '127.0.0.1', backlog: 4096 })
ready('better-sse', app.server.address().port, () => channel.sessionCount)
