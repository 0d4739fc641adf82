// fastify-typed-sse, loaded from the repository's built dist/ (`npm run build` at the root).
import Fastify from 'fastify'
import ssePlugin from '../../dist/index.js'
import { item, now, ready } from './common.js'

const app = Fastify({ logger: false })
await app.register(ssePlugin)

app.get('/stream', async function * (request) {
  const n = Number(request.query.n ?? 0)
  for (let i = 0; i < n; i++) yield item(i, Date.now())
})

// ---- broadcast -------------------------------------------------------------------------------------------
// TODO(issue 4): when `app.sse.channel()` lands, replace the Hub below with
//   const channel = app.sse.channel('bench')
//   const subscribe = (request) => channel.subscribe({ signal: request.signal })
//   const publish = (it) => channel.publish(it)
//   const size = () => channel.size
// Until then: a Set of subscribers, each an async iterator fed by publish(). The data is serialized once per
// publish (a string `data` is written as is), the frame is still built per subscriber by the plugin.

/** One subscriber: a queue of items and, while the stream waits for the next one, its pending `next()`. */
class Subscriber {
  #hub
  #queue = []
  #pending = null
  #done = false
  constructor (hub) {
    this.#hub = hub
    hub.add(this)
  }

  push (it) {
    if (this.#pending !== null) {
      const resolve = this.#pending
      this.#pending = null
      resolve({ value: it, done: false })
    } else {
      this.#queue.push(it)
    }
  }

  next () {
    if (this.#queue.length > 0) return Promise.resolve({ value: this.#queue.shift(), done: false })
    if (this.#done) return Promise.resolve({ value: undefined, done: true })
    return new Promise(resolve => { this.#pending = resolve })
  }

  // The plugin calls return() when the client goes away or the server closes.
  return () {
    this.#done = true
    this.#hub.delete(this)
    this.#queue.length = 0
    if (this.#pending !== null) this.#pending({ value: undefined, done: true })
    this.#pending = null
    return Promise.resolve({ value: undefined, done: true })
  }

  [Symbol.asyncIterator] () {
    return this
  }
}

const hub = new Set()
const subscribe = (_request) => new Subscriber(hub)
const publish = (it) => {
  const shared = { event: it.event, id: it.id, data: JSON.stringify(it.data) }
  for (const s of hub) s.push(shared)
}
const size = () => hub.size
// ---- end broadcast ---------------------------------------------------------------------------------------

app.get('/sub', (request, reply) => reply.sse(subscribe(request)))

app.post('/pub', async (request) => {
  const n = Number(request.query.n ?? 1)
  const start = Number(request.query.start ?? 0)
  for (let k = 0; k < n; k++) publish(item(start + k, now()))
  return { subscribers: size() }
})

await app.listen({ port: 0, host: '127.0.0.1', backlog: 4096 })
ready('ours', app.server.address().port, size)
