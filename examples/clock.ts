// `npm run demo`: a clock and a stock ticker streamed to a page, on http://127.0.0.1:3000
import Fastify from 'fastify'
import { readFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import ssePlugin from '../lib/index.js'

const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info' } })
await app.register(ssePlugin, { heartbeat: 15_000, retry: 2_000 })

const page = await readFile(new URL('./public/clock.html', import.meta.url), 'utf8')
app.get('/', (_request, reply) => reply.type('text/html; charset=utf-8').send(page))

// An async generator route streams what it yields; request.signal ends the sleep when the tab closes.
app.get('/clock', async function * (request) {
  while (true) {
    yield { event: 'tick', data: { now: new Date().toISOString() } }
    await sleep(1000, undefined, { signal: request.signal })
  }
})

// reply.sse() takes any async iterable; ids let a reconnecting browser say where it was (Last-Event-ID).
interface Quote { symbol: string, price: number }
interface QuoteItem { id: string, event: 'quote', data: Quote }
async function * ticker (signal: AbortSignal, from: number): AsyncGenerator<QuoteItem> {
  const prices: Record<string, number> = { ACME: 100, INIT: 42, TECH: 250 }
  for (let seq = from; ; seq++) {
    for (const symbol of Object.keys(prices)) {
      prices[symbol] = Math.max(1, (prices[symbol] ?? 1) * (1 + (Math.random() - 0.5) / 50))
      yield { id: String(seq), event: 'quote', data: { symbol, price: Number(prices[symbol]?.toFixed(2)) } }
    }
    await sleep(500, undefined, { signal })
  }
}
app.get('/ticker', (request, reply) => {
  const last = Number(request.headers['last-event-id'])
  return reply.sse(ticker(request.signal, Number.isSafeInteger(last) ? last + 1 : 0))
})

const port = Number(process.env.PORT ?? 3000)
await app.listen({ port, host: '127.0.0.1' })
app.log.info(`demo: open http://127.0.0.1:${port}/ in a browser (Ctrl-C to stop)`)
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => { void app.close() })
}
