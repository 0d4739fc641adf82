// @fastify/sse (the Fastify organisation's plugin): `reply.sse.send(asyncIterable)`; no broadcast facility,
// so broadcast is a Set of `reply.sse` contexts kept open with keepAlive().
import Fastify from 'fastify'
import fastifySse from '@fastify/sse'
import { item, now, ready } from './common.js'

const app = Fastify({ logger: false })
await app.register(fastifySse)

async function * events (n) {
  for (let i = 0; i < n; i++) yield item(i, Date.now())
}

app.get('/stream', { sse: 'only' }, async (request, reply) => {
  await reply.sse.send(events(Number(request.query.n ?? 0)))
})

const subscribers = new Set()
app.get('/sub', { sse: 'only' }, async (request, reply) => {
  const sse = reply.sse
  sse.keepAlive()
  sse.sendHeaders()
  reply.raw.flushHeaders() // writeHead alone sends nothing until the first event
  subscribers.add(sse)
  sse.onClose(() => subscribers.delete(sse))
})

function noop () {}
app.post('/pub', async (request) => {
  const n = Number(request.query.n ?? 1)
  const start = Number(request.query.start ?? 0)
  for (let k = 0; k < n; k++) {
    const it = item(start + k, now())
    for (const s of subscribers) s.send(it).catch(noop)
  }
  return { subscribers: subscribers.size }
})

await app.listen({ port: 0, host: '127.0.0.1', backlog: 4096 })
ready('@fastify/sse', app.server.address().port, () => subscribers.size)
