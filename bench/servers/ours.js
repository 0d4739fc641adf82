// fastify-typed-sse, loaded from the repository's built dist/ (`npm run build` at the root), or from the build in
// BENCH_DIST (bench/run.js --baseline).
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import Fastify from 'fastify'
import { item, noRetry, now, ready } from './common.js'

const dist = process.env.BENCH_DIST ?? fileURLToPath(new URL('../../dist/', import.meta.url))
const { default: ssePlugin } = await import(pathToFileURL(join(dist, 'index.js')).href)

const app = Fastify({ logger: false })
// no `retry:` line (the plugin's default sends one per stream): every server here sends the same bytes
await app.register(ssePlugin, await noRetry(Fastify, ssePlugin))
// BENCH_ONSEND=1: a do-nothing onSend hook, so every stream takes Fastify's stream-send path instead of writing
// its head itself (bench/README.md, "Fastify's stream path")
if (process.env.BENCH_ONSEND === '1') app.addHook('onSend', async (request, reply, payload) => payload)

app.get('/stream', async function * (request) {
  const n = Number(request.query.n ?? 0)
  for (let i = 0; i < n; i++) yield item(i, Date.now())
})

// ---- broadcast -------------------------------------------------------------------------------------------
// The plugin's own broadcast facility: each publish is encoded once into a shared Buffer that is
// written as is to every subscriber. The bench needs no replay, so `history: 0` (a publish is not kept); the
// bench publishes one item per POST 50 ms apart, and a queue of 64 items / 1 MiB per subscriber leaves room
// for a burst of all 23 of them, so a subscriber is never cut off as "too slow" on this loopback run.
// No `signal`: reply.sse() releases the subscription when the client leaves (README, "Broadcast channels"),
// and reading Fastify's `request.signal` in a plain handler costs an AbortController per request.
const channel = app.sse.channel('bench', { history: 0, queueItems: 64, queueBytes: 1024 * 1024 })
const subscribe = (request) => channel.subscribe({ lastEventId: request.headers['last-event-id'] })
const publish = (it) => channel.publish(it)
const size = () => channel.size
// ---- end broadcast ---------------------------------------------------------------------------------------

app.get('/sub', (request, reply) => reply.sse(subscribe(request)))

app.post('/pub', async (request) => {
  const n = Number(request.query.n ?? 1)
  const start = Number(request.query.start ?? 0)
  for (let k = 0; k < n; k++) publish(item(start + k, now()))
  return { subscribers: size() }
})

await app.listen({ port: 0, host: '127.0.0.1', backlog: 4096 })
ready(process.env.BENCH_DIST === undefined ? 'ours' : 'ours-before', app.server.address().port, size)
