// Channel fan-out benchmark (not part of `npm test`):
//   npx tsx bench/channel-fanout.ts [subscribers] [publishes] [--dist=path/to/index.js] [--record]
// The server (this process) has one channel; a child process opens the subscribers as raw TCP connections on
// loopback and timestamps every delivery. Measured: delivery latency p50/p99 (publish → parsed by the client),
// server CPU per delivery, server heap per idle subscriber. Defaults: 5,000 subscribers, 20 publishes. `--dist`:
// the plugin of a build (another version's dist/index.js, to compare with), instead of lib/.
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { PassThrough } from 'node:stream'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { recordFigures, recording, withoutRecord } from './figures.js'
import { stampedFrameReader } from './stamped-frames.js'
import { noRetry } from './servers/common.js'

const DIST = process.argv.find(a => a.startsWith('--dist='))?.slice('--dist='.length)
const positional = withoutRecord().filter(a => !a.startsWith('--dist='))
const SUBSCRIBERS = Number(positional[0] ?? 5000) // server side only; the client is told
const PUBLISHES = Number(positional[1] ?? 20)
const now = (): number => performance.timeOrigin + performance.now()

type ToClient = { type: 'connect', port: number, path: string, subscribers: number, publishes: number }
type ToServer =
  | { type: 'connected' }
  | { type: 'delivered', n: number }
  | { type: 'done', latencies: number[], errors: number }

if (process.argv[2] === 'client') await client()
else await server()

async function server (): Promise<void> {
  const { default: Fastify } = await import('fastify')
  const { default: ssePlugin } = DIST === undefined
    ? await import('../lib/index.js')
    : await import(pathToFileURL(resolve(DIST)).href) as typeof import('../lib/index.js')
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const heap = async (): Promise<number> => {
    for (let i = 0; i < 3; i++) { gc(); await sleep(50) }
    return process.memoryUsage().heapUsed
  }

  const app = Fastify({ logger: false })
  // no `retry:` line (the plugin's default sends one per stream), as /raw and /passthrough, and as --dist builds
  // from before it and the recorded figures
  await app.register(ssePlugin, { heartbeat: 15_000, ...await noRetry(Fastify, ssePlugin) })
  const channel = app.sse.channel<{ t: number, n: number }>('bench', { history: 100 })
  app.get('/sub', (request, reply) => reply.sse(channel.subscribe({ lastEventId: request.headers['last-event-id'], signal: request.signal })))
  // BENCH_PATH=/nosignal: the same subscription without request.signal
  app.get('/nosignal', (request, reply) => reply.sse(channel.subscribe({ lastEventId: request.headers['last-event-id'] })))
  // comparison points for the heap per idle stream (BENCH_PATH=/gen or /passthrough): the plugin's stream with
  // a generator that never yields, and Fastify sending a plain stream body without the plugin
  app.get('/gen', async function * () { await new Promise(() => {}); yield {} })
  app.get('/passthrough', (_request, reply) => {
    const body = new PassThrough()
    body.write(':\n\n')
    return reply.type('text/event-stream').send(body)
  })
  // the floor: an open response held by Fastify without this plugin (no stream, no channel)
  let rawOpen = 0
  const rawResponses = new Set<import('node:http').ServerResponse>()
  app.get('/raw', (request, reply) => {
    reply.hijack()
    rawResponses.add(reply.raw)
    reply.raw.once('close', () => rawResponses.delete(reply.raw))
    reply.raw.writeHead(200, { 'content-type': 'text/event-stream' })
    reply.raw.write(':\n\n')
    rawOpen++
    request.raw.socket.once('close', () => { rawOpen-- })
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }

  // warm the route up so the first-use costs are not counted as per-subscriber heap
  const warm = await import('undici').then(u => u.request(`http://127.0.0.1:${port}/sub`))
  warm.body.destroy()
  while (channel.size > 0) await sleep(10)

  function startClients (path: string) {
    const child = fork(fileURLToPath(import.meta.url), ['client'], { stdio: 'inherit' })
    const messages: ToServer[] = []
    let wake: (() => void) | undefined
    child.on('message', (m: ToServer) => { messages.push(m); wake?.() })
    const next = async <K extends ToServer['type']>(type: K): Promise<Extract<ToServer, { type: K }>> => {
      for (;;) {
        const i = messages.findIndex(m => m.type === type)
        if (i !== -1) return messages.splice(i, 1)[0] as Extract<ToServer, { type: K }>
        await new Promise<void>(resolve => { wake = resolve })
      }
    }
    child.send({ type: 'connect', port, path, subscribers: SUBSCRIBERS, publishes: PUBLISHES } satisfies ToClient)
    return { child, next }
  }

  // 1. the channel subscription alone (no socket): what lib/channel costs per subscriber
  const heapBeforeBare = await heap()
  const bare = Array.from({ length: SUBSCRIBERS }, () => channel.subscribe())
  const heapBare = await heap()
  // …and its share of a delivery: publish → every subscriber's pending next() resolved and its loop run
  let consumed = 0
  // eslint-disable-next-line @typescript-eslint/no-unused-vars -- only the count matters
  const loops = bare.map(async sub => { for await (const _ of sub) consumed++ })
  const bareCpu = process.cpuUsage()
  for (let n = 0; n < PUBLISHES; n++) {
    channel.publish({ event: 'tick', data: { t: now(), n } })
    while (consumed < SUBSCRIBERS * (n + 1)) await new Promise(resolve => setImmediate(resolve))
  }
  const bareCpuUs = process.cpuUsage(bareCpu)
  // return() is optional on an AsyncIterator; a subscription has one (and ends its loop)
  for (const sub of bare) await sub.return?.()
  await Promise.all(loops)

  // 2. the floor: idle open responses without the plugin
  const heapBeforeRaw = await heap()
  const raw = startClients('/raw')
  await raw.next('connected')
  while (rawOpen < SUBSCRIBERS) await sleep(10)
  const heapRaw = await heap()
  // …and the floor of a delivery: the same bytes written to every one of those responses (chunked), no plugin
  const rawFrame = Buffer.from('event: tick\ndata: {"t":0,"n":0}\n\n')
  const rawCpu = process.cpuUsage()
  let rawMs = 0
  for (let n = 0; n < PUBLISHES; n++) {
    const t0 = now()
    for (const res of rawResponses) res.write(rawFrame)
    await new Promise(resolve => setImmediate(resolve))
    rawMs += now() - t0
    await sleep(20)
  }
  const rawCpuUs = process.cpuUsage(rawCpu)
  raw.child.kill()
  while (rawOpen > 0) await sleep(10)

  // 3. idle SSE subscribers: reply.sse(channel.subscribe()) over HTTP
  const heapBefore = await heap()
  const rssBefore = process.memoryUsage().rss
  const started = Date.now()
  const { child, next } = startClients(process.env.BENCH_PATH ?? '/sub')
  await next('connected')
  const comparing = process.env.BENCH_PATH !== undefined && process.env.BENCH_PATH !== '/sub'
  while (channel.size < SUBSCRIBERS && !comparing) await sleep(10)
  const connectMs = Date.now() - started
  const heapIdle = await heap()
  const rssIdle = process.memoryUsage().rss
  if (comparing) {
    console.log(`idle ${SUBSCRIBERS} × ${process.env.BENCH_PATH}: ${((heapIdle - heapBefore) / SUBSCRIBERS / 1024).toFixed(1)} KiB heap per stream`)
    child.kill()
    await app.close()
    return
  }

  // 4. fan-out
  const cpuBefore = process.cpuUsage()
  const wallBefore = now()
  let publishMs = 0
  let fanoutMs = 0
  for (let n = 0; n < PUBLISHES; n++) {
    const t0 = now()
    channel.publish({ event: 'tick', data: { t: now(), n } })
    publishMs += now() - t0
    await new Promise(resolve => setImmediate(resolve)) // every subscriber's stream has written it
    fanoutMs += now() - t0
    await next('delivered') // every client has it: the next publish starts from quiet
  }
  const cpu = process.cpuUsage(cpuBefore)
  const wall = now() - wallBefore
  const { latencies, errors } = await next('done')
  await app.close()
  child.kill()

  latencies.sort((a, b) => a - b)
  const pct = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN
  const deliveries = SUBSCRIBERS * PUBLISHES
  const cpuUs = cpu.user + cpu.system
  const rows: Array<[string, string]> = [
    ['subscribers × publishes', `${SUBSCRIBERS} × ${PUBLISHES} = ${deliveries} deliveries (${latencies.length} timed, ${errors} errors)`],
    ['delivery latency p50', `${pct(0.5).toFixed(1)} ms`],
    ['delivery latency p99', `${pct(0.99).toFixed(1)} ms`],
    ['delivery latency max', `${(latencies.at(-1) ?? NaN).toFixed(1)} ms`],
    ['server CPU per delivery', `${(cpuUs / deliveries).toFixed(1)} µs (${(cpuUs / 1000).toFixed(0)} ms CPU over ${wall.toFixed(0)} ms)`],
    ['… of which the channel (no socket: publish → next() resolved)', `${((bareCpuUs.user + bareCpuUs.system) / deliveries).toFixed(2)} µs`],
    ['publish() call (encode once, hand to every subscriber)', `${(publishMs / PUBLISHES).toFixed(2)} ms per publish`],
    ['… floor: res.write of the same bytes to as many plain responses', `${((rawCpuUs.user + rawCpuUs.system) / deliveries).toFixed(1)} µs`],
    ['server: publish → written to every socket', `${(fanoutMs / PUBLISHES).toFixed(1)} ms per publish (floor: ${(rawMs / PUBLISHES).toFixed(1)} ms)`],
    ['server heap per idle subscriber (HTTP + stream + subscription)', `${((heapIdle - heapBefore) / SUBSCRIBERS / 1024).toFixed(1)} KiB`],
    ['… of which the channel subscription alone', `${((heapBare - heapBeforeBare) / SUBSCRIBERS / 1024).toFixed(2)} KiB`],
    ['… floor: an idle open Fastify response without the plugin', `${((heapRaw - heapBeforeRaw) / SUBSCRIBERS / 1024).toFixed(1)} KiB`],
    ['server RSS per idle subscriber', `${((rssIdle - rssBefore) / SUBSCRIBERS / 1024).toFixed(1)} KiB`],
    ['time to connect all', `${connectMs} ms`]
  ]
  const table = ['| measure | value |', '|---|---|', ...rows.map(([k, v]) => `| ${k} | ${v} |`)].join('\n')
  console.log(`\nChannel fan-out on loopback (${DIST ?? 'lib/'}), Node ${process.version}, ${(await import('node:os')).cpus().length} cores\n\n${table}`)
  const dist = DIST === undefined ? '' : ` --dist=${DIST}`
  if (recording()) recordFigures('channel-fanout', table, `npx tsx bench/channel-fanout.ts ${SUBSCRIBERS} ${PUBLISHES}${dist}`)
}

async function client (): Promise<void> {
  const [message] = await once(process, 'message') as [ToClient]
  const { port, path, subscribers, publishes } = message
  const latencies: number[] = []
  const delivered = new Array<number>(publishes).fill(0)
  let errors = 0
  const onData = stampedFrameReader(now, (n, latency) => {
    latencies.push(latency)
    if (++delivered[n]! === subscribers) process.send?.({ type: 'delivered', n } satisfies ToServer)
  })

  const sockets: Socket[] = []
  const BATCH = 250
  for (let i = 0; i < subscribers; i += BATCH) {
    await Promise.all(Array.from({ length: Math.min(BATCH, subscribers - i) }, () => new Promise<void>((resolve) => {
      const socket = connect(port, '127.0.0.1')
      sockets.push(socket)
      socket.on('error', () => { errors++; resolve() })
      socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`)
      socket.once('data', (head: Buffer) => {
        if (!head.toString('latin1').startsWith('HTTP/1.1 200')) errors++
        socket.on('data', onData)
        resolve()
      })
    })))
  }
  process.send?.({ type: 'connected' } satisfies ToServer)
  while (delivered[publishes - 1]! < subscribers) await sleep(20)
  process.send?.({ type: 'done', latencies, errors } satisfies ToServer)
  for (const s of sockets) s.destroy()
}
