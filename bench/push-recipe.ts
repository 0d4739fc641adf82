// Push from an EventEmitter to a client that never reads (not part of `npm test`):
// `npx tsx bench/push-recipe.ts [events=20000] [bytes=1024]`
// Two routes fed by one emitter: the `events.on(emitter, name, { signal })` recipe in an async generator, and
// `pushSource()` with its default bounds. A raw TCP client connects to each and reads nothing; the emitter then
// emits `events` items of `bytes` characters, 500 per tick. Measured per route: the server's heap growth after a
// full GC (what is held for the stuck client) and, for the push source, what the producer was told.
import { EventEmitter, on } from 'node:events'
import { connect, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import Fastify from 'fastify'
import ssePlugin, { pushSource, type PushSource } from '../lib/index.js'
import { recordFigures, recording, withoutRecord } from './figures.js'

const EVENTS = Number(withoutRecord()[0] ?? 20_000)
const BYTES = Number(withoutRecord()[1] ?? 1024)
const rows: string[] = []

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void
async function heap (): Promise<number> {
  for (let i = 0; i < 3; i++) { gc(); await sleep(20) }
  return process.memoryUsage().heapUsed
}

interface Tick { n: number, text: string }
const ticker = new EventEmitter()
ticker.setMaxListeners(0)
let source: PushSource<{ data?: Tick }> | undefined
let refused = 0

const app = Fastify({ logger: false })
// no `retry:` line (the plugin's default sends one per stream), as when the recorded figures were taken
await app.register(ssePlugin, { heartbeat: false, headersDelay: 0, retry: false })
app.get('/recipe', async function * (request) {
  for await (const [tick] of on(ticker, 'tick', { signal: request.signal })) yield { data: tick as Tick }
})
app.get('/push', (_req, reply) => {
  const pushed = pushSource<Tick>()
  const onTick = (tick: Tick): void => { if (!pushed.push({ data: tick })) refused++ }
  ticker.on('tick', onTick)
  pushed.signal.addEventListener('abort', () => ticker.off('tick', onTick))
  source = pushed
  return reply.sse(pushed)
})
await app.listen({ port: 0, host: '127.0.0.1' })
const { port } = app.server.address() as { port: number }

function stuck (path: string): Socket {
  const socket = connect(port, '127.0.0.1')
  socket.pause()
  socket.on('error', () => {})
  socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`)
  return socket
}

async function run (path: string): Promise<void> {
  refused = 0
  const before = await heap()
  const client = stuck(path)
  while (ticker.listenerCount('tick') === 0) await sleep(5)
  for (let n = 0; n < EVENTS; n++) {
    ticker.emit('tick', { n, text: Buffer.alloc(BYTES, 97 + n % 26).toString('latin1') })
    if (n % 500 === 499) await new Promise(resolve => setImmediate(resolve))
  }
  await sleep(50)
  const held = await heap() - before
  const told = path === '/push'
    ? `; push() false ${refused} times, cut off: ${String(source?.closed)}, listener left: ${ticker.listenerCount('tick')}`
    : `; listener left: ${ticker.listenerCount('tick')}`
  console.log(`${path.padEnd(8)} ${EVENTS} events of ${BYTES} B to a client that reads nothing: heap +${(held / 1048576).toFixed(1)} MiB${told}`)
  rows.push(`| ${path === '/push' ? '`pushSource()`' : '`events.on()` recipe'} | +${(held / 1048576).toFixed(1)} MiB | ${told.slice(2)} |`)
  client.destroy()
  while (ticker.listenerCount('tick') > 0) await sleep(5)
}

await run('/recipe')
await run('/push')
await app.close()
if (recording()) {
  const table = [`${EVENTS} events of ${BYTES} B to a client that reads nothing.`, '',
    '| route | server heap held | what the producer saw |', '|---|---|---|', ...rows].join('\n')
  recordFigures(`push-recipe-${EVENTS}`, table, `npx tsx bench/push-recipe.ts ${EVENTS} ${BYTES}`)
}
