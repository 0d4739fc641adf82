// Redis channel fan-out benchmark (not part of `npm test`):
//   npx tsx bench/redis-fanout.ts [subscribers per server = 2500] [publishes = 20]
// Two server processes share one channel through Redis (REDIS_URL, default redis://127.0.0.1:6379), each with
// that many subscribers; a client process opens them all as raw TCP connections on loopback and timestamps every
// delivery; items are published on the first server. Then, for comparison, one server process with the same
// number of subscribers on the in-memory channel. Measured: delivery latency p50/p99/max (publish() called →
// parsed by the client process), the publish call, and each server's CPU per delivery. Publishes are spaced
// (each starts once every subscriber has the previous one), so this measures latency, not throughput.
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { cpus } from 'node:os'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { child } from './child-process.js'
import { recordFigures, recording, withoutRecord } from './figures.js'
import { stampedFrameReader } from './stamped-frames.js'

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const now = (): number => performance.timeOrigin + performance.now()

type Backend = 'redis' | 'memory'
type ToServer = { type: 'publish', n: number } | { type: 'size' } | { type: 'mark' } | { type: 'stop' }
type FromServer =
  | { type: 'ready', port: number }
  | { type: 'published', n: number, ms: number }
  | { type: 'size', size: number }
  | { type: 'stopped', cpuUs: number }
type ToClient = { type: 'connect', ports: number[], subscribers: number, publishes: number }
type FromClient = { type: 'connected', errors: number } | { type: 'delivered', n: number } | { type: 'done', latencies: number[], errors: number }

const self = fileURLToPath(import.meta.url)
if (process.argv[2] === 'server') await server(process.argv[3] as Backend, process.argv[4] as string)
else if (process.argv[2] === 'client') await client()
else await main(Number(withoutRecord()[0] ?? 2500), Number(withoutRecord()[1] ?? 20))

async function scenario (backend: Backend, servers: number, subscribers: number, publishes: number) {
  const prefix = `bench:fastify-typed-sse:${process.pid}:`
  const procs = Array.from({ length: servers }, () => child<FromServer>(self, ['server', backend, prefix]))
  const ports = await Promise.all(procs.map(async p => (await p.next('ready')).port))
  const clients = child<FromClient>(self, ['client'])
  clients.send({ type: 'connect', ports, subscribers, publishes } satisfies ToClient)
  const { errors: connectErrors } = await clients.next('connected')
  for (const p of procs) {
    for (;;) {
      p.send({ type: 'size' } satisfies ToServer)
      if ((await p.next('size')).size >= subscribers) break
      await sleep(20)
    }
  }
  for (const p of procs) p.send({ type: 'mark' } satisfies ToServer) // CPU counted from here
  const publisher = procs[0] as (typeof procs)[number]
  let publishMs = 0
  for (let n = 0; n < publishes; n++) {
    publisher.send({ type: 'publish', n } satisfies ToServer)
    publishMs += (await publisher.next('published')).ms
    await clients.next('delivered')
    await sleep(20)
  }
  const { latencies, errors } = await clients.next('done')
  let cpuUs = 0
  for (const p of procs) {
    p.send({ type: 'stop' } satisfies ToServer)
    cpuUs += (await p.next('stopped')).cpuUs
  }
  clients.proc.kill()
  latencies.sort((a, b) => a - b)
  const pct = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN
  const deliveries = servers * subscribers * publishes
  return {
    label: `${backend === 'redis' ? 'Redis stream' : 'in-memory'}, ${servers} server process${servers > 1 ? 'es' : ''} × ${subscribers}`,
    deliveries: `${deliveries} (${latencies.length} timed, ${errors + connectErrors} errors)`,
    p50: pct(0.5),
    p99: pct(0.99),
    max: latencies.at(-1) ?? NaN,
    publish: publishMs / publishes,
    cpu: cpuUs / deliveries
  }
}

async function main (subscribers: number, publishes: number): Promise<void> {
  const results = [
    await scenario('redis', 2, subscribers, publishes),
    await scenario('memory', 1, subscribers, publishes)
  ]
  const lines = [
    `Redis vs in-memory channel fan-out on loopback, ${cpus().length} cores, ${subscribers} subscribers per server process, ${publishes} publishes.`,
    '',
    '| | ' + results.map(r => r.label).join(' | ') + ' |',
    '|---|' + results.map(() => '---').join('|') + '|'
  ]
  const row = (name: string, f: (r: typeof results[number]) => string): void => { lines.push(`| ${name} | ${results.map(f).join(' | ')} |`) }
  row('deliveries', r => r.deliveries)
  row('delivery latency p50', r => `${r.p50.toFixed(1)} ms`)
  row('delivery latency p99', r => `${r.p99.toFixed(1)} ms`)
  row('delivery latency max', r => `${r.max.toFixed(1)} ms`)
  row('`publish()` (until its id is known)', r => `${r.publish.toFixed(2)} ms`)
  row('server CPU per delivery (all servers, while publishing)', r => `${r.cpu.toFixed(1)} µs`)
  console.log('\n' + lines.join('\n'))
  if (recording()) recordFigures('redis-fanout', lines.join('\n'), `npx tsx bench/redis-fanout.ts ${subscribers} ${publishes}`)
}

async function server (backend: Backend, prefix: string): Promise<void> {
  const { default: Fastify } = await import('fastify')
  const { default: ssePlugin } = await import('../lib/index.js')
  let cpu = process.cpuUsage()
  const app = Fastify({ logger: false })
  // no `retry:` line (the plugin's default sends one per stream), as when the recorded figures were taken
  await app.register(ssePlugin, { heartbeat: 15_000, retry: false })
  let publish: (item: { event: string, data: { t: number, n: number } }) => string | Promise<string>
  let size: () => number
  let redis: import('ioredis').Redis | undefined
  if (backend === 'redis') {
    const { Redis } = await import('ioredis')
    const { redisChannels } = await import('../lib/channel/redis/index.js')
    redis = new Redis(REDIS_URL)
    const channel = app.sse.channel<{ t: number, n: number }>('bench', { history: 100, backend: redisChannels({ redis, prefix }) })
    publish = item => channel.publish(item)
    size = () => channel.size
    app.get('/sub', (request, reply) => reply.sse(channel.subscribe({ lastEventId: request.headers['last-event-id'], signal: request.signal })))
  } else {
    const channel = app.sse.channel<{ t: number, n: number }>('bench', { history: 100 })
    publish = item => channel.publish(item)
    size = () => channel.size
    app.get('/sub', (request, reply) => reply.sse(channel.subscribe({ lastEventId: request.headers['last-event-id'], signal: request.signal })))
  }
  await app.listen({ port: 0, host: '127.0.0.1' })
  process.on('message', (m: ToServer) => {
    void (async () => {
      if (m.type === 'size') process.send?.({ type: 'size', size: size() } satisfies FromServer)
      else if (m.type === 'mark') cpu = process.cpuUsage()
      else if (m.type === 'publish') {
        const t0 = now()
        await publish({ event: 'tick', data: { t: t0, n: m.n } })
        process.send?.({ type: 'published', n: m.n, ms: now() - t0 } satisfies FromServer)
      } else {
        await app.close()
        if (redis !== undefined) {
          await redis.del(prefix + 'bench')
          await redis.quit()
        }
        const used = process.cpuUsage(cpu)
        process.send?.({ type: 'stopped', cpuUs: used.user + used.system } satisfies FromServer, () => process.exit(0))
      }
    })()
  })
  process.send?.({ type: 'ready', port: (app.server.address() as { port: number }).port } satisfies FromServer)
}

async function client (): Promise<void> {
  const [message] = await once(process, 'message') as [ToClient]
  const { ports, subscribers, publishes } = message
  const total = ports.length * subscribers
  const latencies: number[] = []
  const delivered = new Array<number>(publishes).fill(0)
  let errors = 0
  const onData = stampedFrameReader(now, (n, latency) => {
    latencies.push(latency)
    if (++delivered[n]! === total) process.send?.({ type: 'delivered', n } satisfies FromClient)
  })

  const sockets: Socket[] = []
  const BATCH = 250
  for (const port of ports) {
    for (let i = 0; i < subscribers; i += BATCH) {
      await Promise.all(Array.from({ length: Math.min(BATCH, subscribers - i) }, () => new Promise<void>((resolve) => {
        const socket = connect(port, '127.0.0.1')
        sockets.push(socket)
        socket.on('error', () => { errors++; resolve() })
        socket.write('GET /sub HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n')
        socket.once('data', (head: Buffer) => {
          if (!head.toString('latin1').startsWith('HTTP/1.1 200')) errors++
          socket.on('data', onData)
          resolve()
        })
      })))
    }
  }
  process.send?.({ type: 'connected', errors } satisfies FromClient)
  while (delivered[publishes - 1]! < total) await sleep(20)
  process.send?.({ type: 'done', latencies, errors } satisfies FromClient)
  for (const s of sockets) s.destroy()
}
