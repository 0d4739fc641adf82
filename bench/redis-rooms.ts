// Many Redis channels benchmark (not part of `npm test`):
//   npx tsx bench/redis-rooms.ts [rooms = 10000] [rounds = 3] [--cluster]
// `rooms` channels with one subscriber each, spread over two server processes that share one Redis (REDIS_URL,
// default redis://127.0.0.1:6379): rooms 0, 2, 4… have their subscriber on server A, 1, 3, 5… on server B. A
// client process opens them all as raw TCP connections on loopback and timestamps every delivery. Each round,
// server A publishes one item to every room (at most 256 publishes in flight); half of them reach server B's
// subscribers through its reader. Measured: Redis connections per server process (`CLIENT LIST`), delivery
// latency p50/p99/max (publish() called → parsed by the client process), and each server's heap per channel —
// idle (created, no subscriber) and with its subscriber connected (the channel, its subscription, the SSE stream
// and its socket). With `--cluster`, the Redis is a 3-node Redis Cluster the bench starts on free loopback ports
// (redis-server and redis-cli on PATH) and stops at the end; connections are then counted on every node.
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
const IN_FLIGHT = 256

type ToServer =
  | { type: 'open', rooms: number[] }
  | { type: 'heap' }
  | { type: 'size' }
  | { type: 'publish', round: number, rooms: number }
  | { type: 'stop' }
type FromServer =
  | { type: 'ready', port: number }
  | { type: 'heap', bytes: number }
  | { type: 'size', subscribed: number }
  | { type: 'published', ms: number }
  | { type: 'stopped' }
type ToClient = { type: 'connect', ports: number[], rooms: number, rounds: number }
type FromClient =
  | { type: 'connected', errors: number }
  | { type: 'delivered', round: number }
  | { type: 'done', latencies: number[], errors: number }

const self = fileURLToPath(import.meta.url)
if (process.argv[2] === 'server') await server(process.argv[3] as string, process.argv[4] as string, process.argv[5])
else if (process.argv[2] === 'client') await client()
else {
  const args = withoutRecord().filter(arg => arg !== '--cluster')
  await main(Number(args[0] ?? 10_000), Number(args[1] ?? 3), process.argv.includes('--cluster'))
}

async function main (rooms: number, rounds: number, onCluster: boolean): Promise<void> {
  const { Redis } = await import('ioredis')
  const cluster = onCluster ? await (await import('../test/support/redis-cluster.js')).startCluster() : undefined
  // every node of the cluster, or the one Redis
  const admins = cluster === undefined ? [new Redis(REDIS_URL)] : Array.from(cluster.admin.values())
  const admin = admins[0] as InstanceType<typeof Redis>
  const tag = `bench-rooms-${process.pid}`
  const prefix = `bench:fastify-typed-sse:${process.pid}:`
  const names = ['a', 'b']
  const nodes = cluster?.nodes.map(node => node.port).join(',')
  const servers = names.map(name =>
    child<FromServer>(self, ['server', prefix, `${tag}-${name}`, ...(nodes === undefined ? [] : [nodes])], {
      execArgv: ['--expose-gc'], timeout: 300_000
    }))
  const ports = await Promise.all(servers.map(async s => (await s.next('ready')).port))
  // on a cluster, per node: `n1+n2+n3`
  const connections = async (name: string): Promise<string> => (await Promise.all(admins.map(async node =>
    (await node.call('CLIENT', 'LIST') as string).split('\n')
      .filter(line => line.includes(` name=${tag}-${name}`)).length))).join('+')

  // heap: empty app → every room's channel created (idle) → a subscriber on each
  const heap = async (): Promise<number[]> => Promise.all(servers.map(async s => {
    s.send({ type: 'heap' })
    return (await s.next('heap')).bytes
  }))
  const empty = await heap()
  const all = Array.from({ length: rooms }, (_, n) => n)
  servers.forEach((s, i) => s.send({ type: 'open', rooms: all.filter(n => n % 2 === i) }))
  const idle = await heap()
  const idleConnections = await Promise.all(names.map(connections))
  const clients = child<FromClient>(self, ['client'], { timeout: 300_000 })
  clients.send({ type: 'connect', ports, rooms, rounds })
  const { errors: connectErrors } = await clients.next('connected')
  for (const s of servers) {
    for (let i = 0; i < 600; i++) {
      s.send({ type: 'size' })
      if ((await s.next('size')).subscribed >= Math.floor(rooms / 2)) break
      await sleep(100)
    }
  }
  const subscribed = await heap()
  const subscribedConnections = await Promise.all(names.map(connections))

  const publisher = servers[0] as (typeof servers)[number]
  let publishMs = 0
  for (let round = 0; round < rounds; round++) {
    publisher.send({ type: 'publish', round, rooms })
    publishMs += (await publisher.next('published')).ms
    await clients.next('delivered')
    await sleep(200)
  }
  const { latencies, errors } = await clients.next('done')
  for (const s of servers) {
    s.send({ type: 'stop' })
    await s.next('stopped')
  }
  clients.proc.kill()
  if (cluster === undefined) {
    const keys = await admin.keys(prefix + '*')
    for (let i = 0; i < keys.length; i += 1000) await admin.del(...keys.slice(i, i + 1000))
    await admin.quit()
  } else {
    await cluster.stop()
  }

  latencies.sort((a, b) => a - b)
  const pct = (p: number): string =>
    (latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN).toFixed(1) + ' ms'
  const perChannel = (after: number[], before: number[]): string =>
    after.map((bytes, i) => ((bytes - (before[i] as number)) / Math.floor(rooms / 2) / 1024).toFixed(2) + ' KiB')
      .join(' / ')
  const machine = `Node ${process.version}, ${cpus().length} cores`
  const redis = cluster === undefined ? 'one Redis' : 'a 3-master Redis Cluster (connections per node: n1+n2+n3)'
  const table = [
    `${rooms} channels × 1 subscriber over 2 server processes on ${redis}, ${machine}, ${rounds} rounds.`,
    '',
    '| | server A / server B |',
    '|---|---|',
    `| Redis connections, channels created, no subscriber | ${idleConnections.join(' / ')} |`,
    `| Redis connections, every channel subscribed | ${subscribedConnections.join(' / ')} |`,
    `| heap per idle channel | ${perChannel(idle, empty)} |`,
    `| heap per subscribed channel (channel, subscription, stream, socket) | ${perChannel(subscribed, idle)} |`,
    `| deliveries | ${rooms * rounds} (${latencies.length} timed, ${errors + connectErrors} errors) |`,
    `| latency p50 | ${pct(0.5)} |`,
    `| latency p99 | ${pct(0.99)} |`,
    `| latency max | ${(latencies.at(-1) ?? NaN).toFixed(1)} ms |`,
    `| one round (${rooms} publishes, ${IN_FLIGHT} in flight) on server A | ${(publishMs / rounds).toFixed(0)} ms |`
  ].join('\n')
  console.log('\n' + table)
  if (recording()) {
    recordFigures(cluster === undefined ? 'redis-rooms' : 'redis-rooms-cluster', table,
      `npx tsx bench/redis-rooms.ts ${rooms} ${rounds}${cluster === undefined ? '' : ' --cluster'}`)
  }
}

async function server (prefix: string, name: string, nodes: string | undefined): Promise<void> {
  const { default: Fastify } = await import('fastify')
  const { default: ssePlugin } = await import('../lib/index.js')
  const { Cluster, Redis } = await import('ioredis')
  const { redisChannels } = await import('../lib/channel/redis/index.js')
  const redis = nodes === undefined
    ? new Redis(REDIS_URL, { connectionName: `${name}-client` })
    : new Cluster(nodes.split(',').map(port => ({ host: '127.0.0.1', port: Number(port) })),
      { redisOptions: { connectionName: `${name}-client` } })
  const backend = redisChannels({ redis, prefix, readerName: name })
  const app = Fastify({ logger: false })
  // no `retry:` line (the plugin's default sends one per stream), as when the recorded figures were taken
  await app.register(ssePlugin, { heartbeat: 60_000, retry: false })
  const room = (n: number | string) => app.sse.channel<{ t: number, n: number }>(`room:${n}`, { history: 10, backend })
  let mine: number[] = []
  app.get<{ Params: { n: string } }>('/room/:n', (request, reply) =>
    reply.sse(room(request.params.n).subscribe({
      lastEventId: request.headers['last-event-id'],
      signal: request.signal
    })))
  await app.listen({ port: 0, host: '127.0.0.1' })
  const gc = (globalThis as { gc?: () => void }).gc as () => void
  process.on('message', (m: ToServer) => {
    void (async () => {
      if (m.type === 'heap') {
        gc()
        process.send?.({ type: 'heap', bytes: process.memoryUsage().heapUsed } satisfies FromServer)
      } else if (m.type === 'open') {
        mine = m.rooms
        for (const n of mine) room(n)
      } else if (m.type === 'size') {
        let subscribed = 0
        for (const n of mine) subscribed += room(n).size
        process.send?.({ type: 'size', subscribed } satisfies FromServer)
      } else if (m.type === 'publish') {
        const t0 = now()
        let next = 0
        await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
          while (next < m.rooms) {
            const n = next++
            await room(n).publish({ event: 'tick', data: { t: now(), n: m.round } })
          }
        }))
        process.send?.({ type: 'published', ms: now() - t0 } satisfies FromServer)
      } else {
        await app.close()
        await redis.quit()
        process.send?.({ type: 'stopped' } satisfies FromServer, () => process.exit(0))
      }
    })()
  })
  process.send?.({ type: 'ready', port: (app.server.address() as { port: number }).port } satisfies FromServer)
}

async function client (): Promise<void> {
  const [message] = await once(process, 'message') as [ToClient]
  const { ports, rooms, rounds } = message
  const latencies: number[] = []
  const delivered = new Array<number>(rounds).fill(0)
  let errors = 0
  const onData = stampedFrameReader(now, (round, latency) => {
    latencies.push(latency)
    if (++(delivered[round] as number) === rooms) process.send?.({ type: 'delivered', round } satisfies FromClient)
  })

  const sockets: Socket[] = []
  const BATCH = 250
  for (let i = 0; i < rooms; i += BATCH) {
    await Promise.all(Array.from({ length: Math.min(BATCH, rooms - i) }, (_, j) => new Promise<void>((resolve) => {
      const n = i + j
      const socket = connect(ports[n % 2] as number, '127.0.0.1')
      sockets.push(socket)
      socket.on('error', () => { errors++; resolve() })
      socket.write(`GET /room/${n} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`)
      socket.once('data', (head: Buffer) => {
        if (!head.toString('latin1').startsWith('HTTP/1.1 200')) errors++
        socket.on('data', onData)
        resolve()
      })
    })))
  }
  process.send?.({ type: 'connected', errors } satisfies FromClient)
  for (let i = 0; i < 6000 && (delivered[rounds - 1] as number) < rooms; i++) await sleep(50)
  process.send?.({ type: 'done', latencies, errors } satisfies FromClient)
  for (const s of sockets) s.destroy()
}
