// Channel engines side by side (not part of `npm test`):
//   npx tsx bench/engines.ts [--engine=memory,redis,postgres,nats] [--fanout=1000x10] [--rooms=2000x2]
// For each engine, two scenarios over two server processes sharing the engine (the in-memory channel: one server
// process, since it reaches no other), with raw TCP clients in a third process timestamping every delivery:
// - fan-out: one channel, `<subscribers>` per server process, `<publishes>` items published on the first server,
//   each once every subscriber has the previous one (latency, not throughput);
// - rooms: `<rooms>` channels with one subscriber each, even rooms on server A and odd on server B; each round,
//   server A publishes one item to every room, at most 256 in flight.
// Measured: delivery latency p50/p99/max (publish() called → parsed by the client process), `publish()` until its
// id is known, server CPU per delivery, one round of publishes, and the store connections each server holds.
// Stores: REDIS_URL, PG_URL (tables of their own, dropped at the end), NATS_URL (a stream of its own, deleted).
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { cpus, loadavg } from 'node:os'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { child } from './child-process.js'
import { recordFigures, recording } from './figures.js'
import { stampedFrameReader } from './stamped-frames.js'

const URLS = {
  redis: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  postgres: process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
  nats: process.env.NATS_URL ?? 'nats://127.0.0.1:4222'
}
const ENGINES = ['memory', 'redis', 'postgres', 'nats'] as const
type Engine = typeof ENGINES[number]
const IN_FLIGHT = 256
const now = (): number => performance.timeOrigin + performance.now()

type ToServer =
  | { type: 'open', rooms: number[] }
  | { type: 'size' }
  | { type: 'mark' }
  | { type: 'publish', n: number, rooms: number }
  | { type: 'held' }
  | { type: 'stop' }
type FromServer =
  | { type: 'ready', port: number }
  | { type: 'size', subscribed: number }
  | { type: 'published', ms: number }
  | { type: 'held', connections: string }
  | { type: 'stopped', cpuUs: number }
type ToClient = { type: 'connect', paths: Array<[port: number, path: string]>, rounds: number }
type FromClient =
  | { type: 'connected', errors: number }
  | { type: 'delivered', round: number }
  | { type: 'done', latencies: number[], errors: number }

const self = fileURLToPath(import.meta.url)
const arg = (name: string, fallback: string): string =>
  process.argv.find(a => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
if (process.argv[2] === 'server') await server(process.argv[3] as Engine, process.argv[4] as string)
else if (process.argv[2] === 'client') await client()
else await main()

interface Result { p50: number, p99: number, max: number, publish: number, cpu: number, held: string, errors: number }

/** One scenario on one engine: `rooms` 0 is the fan-out (one channel, `count` subscribers per server). */
async function scenario (engine: Engine, rooms: number, count: number, rounds: number): Promise<Result> {
  const tag = `bench-${engine}-${process.pid}`
  const servers = Array.from({ length: engine === 'memory' ? 1 : 2 }, (_, i) =>
    child<FromServer>(self, ['server', engine, `${tag}-${'ab'[i] as string}`], { timeout: 300_000 }))
  const ports = await Promise.all(servers.map(async s => (await s.next('ready')).port))
  const paths: Array<[number, string]> = rooms === 0
    ? ports.flatMap(port => Array.from({ length: count }, (): [number, string] => [port, '/fan']))
    : Array.from({ length: rooms }, (_, n): [number, string] => [ports[n % ports.length] as number, `/room/${n}`])
  servers.forEach((s, i) => s.send({
    type: 'open', rooms: Array.from({ length: rooms }, (_, n) => n).filter(n => n % servers.length === i)
  } satisfies ToServer))
  const clients = child<FromClient>(self, ['client'], { timeout: 300_000 })
  clients.send({ type: 'connect', paths, rounds } satisfies ToClient)
  const { errors: connectErrors } = await clients.next('connected')
  const expected = rooms === 0 ? count : Math.floor(rooms / servers.length)
  for (const s of servers) {
    for (let i = 0; i < 600; i++) {
      s.send({ type: 'size' } satisfies ToServer)
      if ((await s.next('size')).subscribed >= expected) break
      await sleep(100)
    }
  }
  // untimed items until every client has one: no reader is still finding where its channel is
  const publisher = servers[0] as (typeof servers)[number]
  for (let warm = 0; ; warm++) {
    publisher.send({ type: 'publish', n: rounds, rooms } satisfies ToServer)
    await publisher.next('published')
    const reached = await clients.next('delivered', 1000).then(() => true, () => false)
    if (reached) break
    if (warm === 30) throw new Error(`${engine}: not every client got an item`)
  }
  for (const s of servers) s.send({ type: 'mark' } satisfies ToServer)
  let publishMs = 0
  for (let n = 0; n < rounds; n++) {
    publisher.send({ type: 'publish', n, rooms } satisfies ToServer)
    publishMs += (await publisher.next('published')).ms
    await clients.next('delivered')
    await sleep(50)
  }
  const { latencies, errors } = await clients.next('done')
  const held: string[] = []
  let cpuUs = 0
  for (const s of servers) {
    s.send({ type: 'held' } satisfies ToServer)
    held.push((await s.next('held')).connections)
  }
  for (const s of servers) {
    s.send({ type: 'stop' } satisfies ToServer)
    cpuUs += (await s.next('stopped')).cpuUs
  }
  clients.proc.kill()
  latencies.sort((a, b) => a - b)
  const pct = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN
  return {
    p50: pct(0.5),
    p99: pct(0.99),
    max: latencies.at(-1) ?? NaN,
    publish: publishMs / rounds / (rooms === 0 ? 1 : rooms),
    cpu: cpuUs / latencies.length,
    held: held.join(' / '),
    errors: errors + connectErrors + (latencies.length === paths.length * rounds ? 0 : 1)
  }
}

async function main (): Promise<void> {
  const engines = arg('engine', ENGINES.join(',')).split(',') as Engine[]
  for (const engine of engines) if (!ENGINES.includes(engine)) throw new Error(`unknown engine ${engine}`)
  const [subscribers, publishes] = arg('fanout', '1000x10').split('x').map(Number) as [number, number]
  const [rooms, rounds] = arg('rooms', '2000x2').split('x').map(Number) as [number, number]
  const load = loadavg().map(l => l.toFixed(2)).join(', ')
  const fanout: Result[] = []
  const many: Result[] = []
  for (const engine of engines) {
    fanout.push(await scenario(engine, 0, subscribers, publishes))
    many.push(await scenario(engine, rooms, 0, rounds))
  }
  const out = [`Channel engines on loopback, ${cpus().length} cores, load average ${load} before the run ` +
    `(now ${loadavg().map(l => l.toFixed(2)).join(', ')}).`, '']
  const table = (title: string, results: Result[], rows: Array<[string, (r: Result) => string]>): void => {
    out.push(title, '', `| | ${engines.join(' | ')} |`, `|---|${engines.map(() => '---').join('|')}|`)
    for (const [name, cell] of rows) out.push(`| ${name} | ${results.map(cell).join(' | ')} |`)
    out.push('')
  }
  const ms = (n: number): string => `${n.toFixed(1)} ms`
  table(`Fan-out: one channel, ${subscribers} subscribers per server process (memory: one process), ` +
    `${publishes} publishes`, fanout, [
    ['delivery latency p50', r => ms(r.p50)],
    ['delivery latency p99', r => ms(r.p99)],
    ['delivery latency max', r => ms(r.max)],
    ['`publish()` until its id is known', r => `${r.publish.toFixed(2)} ms`],
    ['server CPU per delivery', r => `${r.cpu.toFixed(1)} µs`],
    ['errors', r => String(r.errors)]
  ])
  table(`Rooms: ${rooms} channels × 1 subscriber over two server processes (memory: one), ${rounds} rounds of ` +
    `a publish to every room (${IN_FLIGHT} in flight)`, many, [
    ['delivery latency p50', r => ms(r.p50)],
    ['delivery latency p99', r => ms(r.p99)],
    ['delivery latency max', r => ms(r.max)],
    ['one round on server A, per publish', r => `${r.publish.toFixed(3)} ms`],
    ['server CPU per delivery', r => `${r.cpu.toFixed(1)} µs`],
    ['store connections per server process (A / B)', r => r.held],
    ['errors', r => String(r.errors)]
  ])
  console.log('\n' + out.join('\n'))
  if (recording()) {
    recordFigures('engines', out.join('\n'), `npx tsx bench/engines.ts ${process.argv.slice(2).filter(a => a !== '--record').join(' ')}`.trim())
  }
}

/** A server process: its app with the channel `fan` and the rooms, on `engine`. */
async function server (engine: Engine, name: string): Promise<void> {
  const { default: Fastify } = await import('fastify')
  const { default: ssePlugin } = await import('../lib/index.js')
  const app = Fastify({ logger: false })
  // no `retry:` line (the plugin's default sends one per stream), as when the recorded figures were taken
  await app.register(ssePlugin, { heartbeat: 60_000, retry: false })
  const { backend, held, close } = await store(engine, name)
  type Data = { t: number, n: number }
  const channel = (channelName: string) => backend === undefined
    ? app.sse.channel<Data>(channelName, { history: 10 })
    : app.sse.channel<Data>(channelName, { history: 10, backend })
  const fan = channel('fan')
  let mine: number[] = []
  app.get('/fan', (request, reply) => reply.sse(fan.subscribe({ signal: request.signal })))
  app.get<{ Params: { n: string } }>('/room/:n', (request, reply) =>
    reply.sse(channel(`room:${request.params.n}`).subscribe({ signal: request.signal })))
  await app.listen({ port: 0, host: '127.0.0.1' })
  let cpu = process.cpuUsage()
  process.on('message', (m: ToServer) => {
    void (async () => {
      if (m.type === 'open') {
        mine = m.rooms
      } else if (m.type === 'size') {
        let subscribed = fan.size
        for (const n of mine) subscribed += channel(`room:${n}`).size
        process.send?.({ type: 'size', subscribed } satisfies FromServer)
      } else if (m.type === 'mark') {
        cpu = process.cpuUsage()
      } else if (m.type === 'publish') {
        const t0 = now()
        if (m.rooms === 0) {
          await fan.publish({ event: 'tick', data: { t: t0, n: m.n } })
        } else {
          let next = 0
          await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
            while (next < m.rooms) {
              await channel(`room:${next++}`).publish({ event: 'tick', data: { t: now(), n: m.n } })
            }
          }))
        }
        process.send?.({ type: 'published', ms: now() - t0 } satisfies FromServer)
      } else if (m.type === 'held') {
        process.send?.({ type: 'held', connections: await held() } satisfies FromServer)
      } else {
        const used = process.cpuUsage(cpu)
        await app.close()
        await close()
        process.send?.({ type: 'stopped', cpuUs: used.user + used.system } satisfies FromServer, () => process.exit(0))
      }
    })()
  })
  process.send?.({ type: 'ready', port: (app.server.address() as { port: number }).port } satisfies FromServer)
}

type Backend = import('../lib/channel/backend.js').ChannelBackendFactory<Promise<string>>

/** The engine's backend for a server named `name`, what it holds in the store, and how to let it go. */
async function store (engine: Engine, name: string): Promise<{
  backend: Backend | undefined, held: () => Promise<string>, close: () => Promise<void>
}> {
  // the run's own names: both servers of a scenario share them (the name ends with -a or -b)
  const run = name.slice(0, -2)
  if (engine === 'redis') {
    const { Redis } = await import('ioredis')
    const { redisChannels } = await import('../lib/channel/redis/index.js')
    const prefix = `${run}:`
    const redis = new Redis(URLS.redis, { connectionName: `${name}-client` })
    return {
      backend: redisChannels({ redis, prefix, readerName: name }),
      held: async () => String(String(await redis.call('CLIENT', 'LIST')).split('\n')
        .filter(line => line.includes(` name=${name}-`) || line.includes(` name=${name}:`)).length),
      close: async () => {
        const keys = await redis.keys(prefix + '*')
        for (let i = 0; i < keys.length; i += 1000) await redis.del(...keys.slice(i, i + 1000))
        await redis.quit()
      }
    }
  }
  if (engine === 'postgres') {
    const { default: pg } = await import('pg')
    const { ensureSchema, postgresChannels } = await import('../lib/channel/postgres/index.js')
    const prefix = `${run.replace(/-/g, '_')}_`
    const pool = new pg.Pool({ connectionString: URLS.postgres, max: 10, application_name: `${name}-pool` })
    await ensureSchema(pool, { prefix })
    const readerName = name
    return {
      backend: postgresChannels({ pool, prefix, readerName }),
      held: async () => (await pool.query('SELECT count(*) AS n FROM pg_stat_activity ' +
        'WHERE application_name IN ($1, $2)', [`${name}-pool`, `${readerName}:${prefix}`])).rows[0].n as string,
      close: async () => {
        await pool.query(`DROP TABLE IF EXISTS ${prefix}items, ${prefix}keys, ${prefix}channels CASCADE;
          DROP FUNCTION IF EXISTS ${prefix}append, ${prefix}channel`)
        await pool.end()
      }
    }
  }
  if (engine === 'nats') {
    const { connect } = await import('@nats-io/transport-node')
    const { jetstreamManager } = await import('@nats-io/jetstream')
    const { natsChannels } = await import('../lib/channel/nats/index.js')
    const connection = await connect({ servers: URLS.nats })
    const stream = run.replace(/-/g, '_').toUpperCase()
    const prefix = run.replace(/-/g, '_')
    const manager = await jetstreamManager(connection)
    return {
      backend: natsChannels({ connection, prefix, stream, storage: 'memory', maxPerChannel: 100 }),
      held: async () => `1 + ${(await manager.streams.info(stream)).state.consumer_count} consumers (both)`,
      close: async () => {
        await manager.streams.delete(stream).catch(() => false)
        await connection.close()
      }
    }
  }
  return { backend: undefined, held: async () => '0', close: async () => {} }
}

async function client (): Promise<void> {
  const [message] = await once(process, 'message') as [ToClient]
  const { paths, rounds } = message
  const latencies: number[] = []
  // the untimed round that reaches every channel first is `rounds`
  const delivered = new Array<number>(rounds).fill(0)
  /** The clients that got an untimed item (`rounds`), which may come more than once. */
  const warm = new Set<Socket>()
  let errors = 0
  const reader = (socket: Socket) => stampedFrameReader(now, (round, latency) => {
    if (round === rounds) {
      if (warm.size < paths.length && warm.add(socket).size === paths.length) {
        process.send?.({ type: 'delivered', round } satisfies FromClient)
      }
      return
    }
    latencies.push(latency)
    if (++(delivered[round] as number) === paths.length) process.send?.({ type: 'delivered', round } satisfies FromClient)
  })
  const sockets: Socket[] = []
  const BATCH = 250
  for (let i = 0; i < paths.length; i += BATCH) {
    await Promise.all(paths.slice(i, i + BATCH).map(([port, path]) => new Promise<void>((resolve) => {
      const socket = connect(port, '127.0.0.1')
      sockets.push(socket)
      socket.on('error', () => { errors++; resolve() })
      socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`)
      socket.once('data', (head: Buffer) => {
        if (!head.toString('latin1').startsWith('HTTP/1.1 200')) errors++
        socket.on('data', reader(socket))
        resolve()
      })
    })))
  }
  process.send?.({ type: 'connected', errors } satisfies FromClient)
  for (let i = 0; i < 6000 && (delivered[rounds - 1] as number) < paths.length; i++) await sleep(50)
  process.send?.({ type: 'done', latencies, errors } satisfies FromClient)
  for (const s of sockets) s.destroy()
}
