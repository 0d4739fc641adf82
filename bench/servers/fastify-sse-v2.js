// fastify-sse-v2: `reply.sse(asyncIterable)` (data must be a string); no broadcast facility, so broadcast is a
// Set of replies, each fed with `reply.sse(event)` (the plugin's per-reply push queue).
import Fastify from 'fastify'
import { FastifySSEPlugin } from 'fastify-sse-v2'
import { MSG, now, ready } from './common.js'

const app = Fastify({ logger: false })
await app.register(FastifySSEPlugin)

async function * events (n) {
  for (let i = 0; i < n; i++) {
    yield { event: 'tick', id: String(i), data: JSON.stringify({ i, ts: Date.now(), msg: MSG }) }
  }
}

app.get('/stream', (request, reply) => {
  reply.sse(events(Number(request.query.n ?? 0)))
})

const subscribers = new Set()
app.get('/sub', (request, reply) => {
  reply.sse({ comment: 'open' })
  subscribers.add(reply)
  reply.raw.once('close', () => subscribers.delete(reply))
})

app.post('/pub', async (request) => {
  const n = Number(request.query.n ?? 1)
  const start = Number(request.query.start ?? 0)
  for (let k = 0; k < n; k++) {
    const i = start + k
    const ev = { event: 'tick', id: String(i), data: JSON.stringify({ i, ts: now(), msg: MSG }) }
    for (const r of subscribers) r.sse(ev)
  }
  return { subscribers: subscribers.size }
})

await app.listen({ port: 0, host: '127.0.0.1', backlog: 4096 })
ready('fastify-sse-v2', app.server.address().port, () => subscribers.size)
