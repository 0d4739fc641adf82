// `npx tsx examples/metrics.ts`: SSE streams and a channel, with Prometheus metrics on
// http://127.0.0.1:3000/metrics (open http://127.0.0.1:3000/clock or /news in a few tabs, then scrape).
import Fastify from 'fastify'
import { setTimeout as sleep } from 'node:timers/promises'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import ssePlugin, { SSE_DIAGNOSTICS, subscribeSseDiagnostic, type SseStats } from '../lib/index.js'

const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info' } })
await app.register(ssePlugin, { maxConnections: 1000 })

app.get('/clock', async function * (request) {
  while (true) {
    yield { event: 'tick', data: { now: new Date().toISOString() } }
    await sleep(1000, undefined, { signal: request.signal })
  }
})

const news = app.sse.channel<{ headline: string }>('news', { history: 100 })
app.get('/news', (request, reply) => reply.sse(news.subscribe({ lastEventId: request.headers['last-event-id'], signal: request.signal })))
let n = 0
const publisher = setInterval(() => news.publish({ event: 'headline', data: { headline: `story ${++n}` } }), 1000)
app.addHook('onClose', async () => clearInterval(publisher))

// ---- metrics ---------------------------------------------------------------------------------------------
const registry = new Registry()
collectDefaultMetrics({ register: registry })

// One snapshot per scrape, read by every metric's collect(): app.sse.stats() walks the open channels once.
let stats: SseStats = app.sse.stats()

/** Reads values from the snapshot: `set(value, labels)` once per series. */
type Read = (set: (value: number, labels?: Record<string, string>) => void) => void

/** Series copied from the snapshot at each scrape; a counter mirrors one of the snapshot's, which only grow. */
function fromStats (type: 'gauge' | 'counter', name: string, help: string, labelNames: string[], read: Read): void {
  const config = { name, help, labelNames, registers: [] }
  registry.registerMetric(type === 'gauge'
    ? new Gauge({ ...config, collect () { this.reset(); read((value, labels = {}) => this.set(labels, value)) } })
    : new Counter({ ...config, collect () { this.reset(); read((value, labels = {}) => this.inc(labels, value)) } }))
}

fromStats('gauge', 'sse_streams_open', 'SSE streams open now, by route', ['route'], set => {
  for (const [route, open] of Object.entries(stats.openByRoute)) set(open, { route })
})
fromStats('counter', 'sse_streams_opened_total', 'SSE streams opened', [], set => set(stats.opened))
fromStats('counter', 'sse_streams_closed_total', 'SSE streams closed, by reason', ['reason'], set => {
  for (const [reason, closed] of Object.entries(stats.closed)) set(closed, { reason })
})
fromStats('counter', 'sse_streams_rejected_total', 'SSE requests answered 503 or 406 instead of streamed, by reason', ['reason'], set => {
  for (const [reason, rejected] of Object.entries(stats.rejectedByReason)) set(rejected, { reason })
})
fromStats('counter', 'sse_items_total', 'SSE items written', [], set => set(stats.items))
fromStats('counter', 'sse_bytes_total', 'Bytes of SSE frames written', [], set => set(stats.bytes))
fromStats('counter', 'sse_items_refused_total', 'SSE items refused (each ended its stream)', [], set => set(stats.refused))
fromStats('counter', 'sse_heartbeats_total', 'SSE heartbeat comments written', [], set => set(stats.heartbeats))
fromStats('counter', 'sse_channel_cut_offs_total', 'Channel subscribers cut off as too slow', [], set => set(stats.cutOffs))
fromStats('counter', 'sse_channel_replays_total', 'Reconnections answered with an exact replay', [], set => set(stats.replays))
fromStats('counter', 'sse_channel_resets_total', 'Reconnections answered with sse-reset, by reason', ['reason'], set => {
  for (const [reason, resets] of Object.entries(stats.resets)) set(resets, { reason })
})
fromStats('gauge', 'sse_channel_subscribers', 'Channel subscribers in this process', ['channel'], set => {
  for (const channel of stats.channels) set(channel.subscribers, { channel: channel.name })
})
fromStats('gauge', 'sse_channel_history', 'Items a channel keeps for replay', ['channel'], set => {
  for (const { name, history } of stats.channels) if (history !== undefined) set(history, { channel: name })
})
fromStats('gauge', 'sse_channel_connected', 'Whether a Redis channel\'s reader is connected', ['channel'], set => {
  for (const { name, connected } of stats.channels) {
    if (connected !== undefined) set(connected ? 1 : 0, { channel: name })
  }
})

// What a snapshot cannot show: how long streams lasted. The close event carries it, once per stream.
const durations = new Histogram({
  name: 'sse_stream_duration_seconds',
  help: 'How long SSE streams stayed open, by route and why they closed',
  labelNames: ['route', 'reason'],
  buckets: [1, 10, 60, 300, 1800, 3600, 4 * 3600],
  registers: [registry]
})
const unsubscribe = subscribeSseDiagnostic(SSE_DIAGNOSTICS.streamClose, ({ route, reason, durationMs }) => {
  durations.observe({ route, reason }, durationMs / 1000)
})
app.addHook('onClose', async () => unsubscribe())

app.get('/metrics', async (_request, reply) => {
  stats = app.sse.stats()
  return reply.type(registry.contentType).send(await registry.metrics())
})

const port = Number(process.env.PORT ?? 3000)
await app.listen({ port, host: '127.0.0.1' })
app.log.info(`metrics: streams on /clock and /news, Prometheus text on http://127.0.0.1:${port}/metrics`)
