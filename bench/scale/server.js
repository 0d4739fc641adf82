// One SSE server process of the scale bench (bench/scale/run.js): `raw` (node:http, hand-written frames) or `ours`
// (Fastify + fastify-typed-sse), in one of three shapes:
//   single   one process; a publish is a broadcast in this process
//   redis    one of several processes sharing one Redis stream: a publish is an XADD, each process reads the
//            stream (one XREAD BLOCK loop) and writes what it reads to its own subscribers
//   cluster  a node:cluster worker (bench/scale/primary.js forks them): the primary stamps a publish and hands
//            it to every worker over IPC, each worker broadcasts it in process
// Both kinds answer `GET /sub` with an event stream, heartbeat every `--heartbeat` ms, and listen on `--ports`
// loopback ports (extra ports hand their connections to the same HTTP server: a loopback client has about
// 28,000 ephemeral ports per destination address and port). Controlled over IPC by its parent (see `control`).
import { createServer as createHttpServer } from 'node:http'
import { createServer as createNetServer } from 'node:net'
import { join } from 'node:path'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { noRetry } from '../servers/common.js'

const arg = (name, fallback) => process.argv.find(a => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const KIND = arg('kind', 'raw')
const MODE = arg('mode', 'single')
const PORTS = Number(arg('ports', '1'))
const BACKLOG = Number(arg('backlog', '511'))
const HEARTBEAT = Number(arg('heartbeat', '5000'))
const PREFIX = arg('prefix', 'bench:scale:')
/** Items a Redis channel keeps for Last-Event-ID replay (the storm scenario needs the whole outage). */
const HISTORY = Number(arg('history', '100'))
/**
 * ours: the `retry` the plugin sends (ms; jittered by its default `retryJitter`); when not given, none (the
 * plugin's default would send one, which raw does not).
 */
const RETRY = arg('retry', undefined)
/** ours: the plugin's `admission`, `rate[,burst[,spread]]` (new streams a second, per process); none if not given. */
const ADMISSION = arg('admission', undefined)
/** ours: the plugin's `retryAfter` (seconds; the plugin's default when not given). */
const RETRY_AFTER = arg('retry-after', undefined)
/** `--loop-delay`: measure the event loop's delay for `stats` (a timer every 10 ms: only when traced). */
const LOOP_DELAY = process.argv.includes('--loop-delay')
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const CHANNEL = 'scale'

const now = () => performance.timeOrigin + performance.now()
/** The event of publish number `n`, stamped `t`: what the load generators time. */
const tail = (t, n) => 'event: tick\ndata: {"t":' + t + ',"n":' + n + '}\n\n'

const { handler, publish, deliver, size, counters } = KIND === 'raw' ? await rawServer() : await oursServer()
const ports = await listenAll(handler)
control()
process.send({ ready: true, ports })

// ---- raw node:http ---------------------------------------------------------------------------------------
async function rawServer () {
  const HEADERS = {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive'
  }
  const subscribers = new Set()
  const broadcast = (frame) => { for (const res of subscribers) res.write(frame) }
  // the plain way: one timer writes a comment to every subscriber
  setInterval(() => broadcast(':\n\n'), HEARTBEAT).unref()
  const server = createHttpServer((req, res) => {
    if (!req.url.startsWith('/sub')) {
      res.writeHead(404)
      res.end()
      return
    }
    res.writeHead(200, HEADERS)
    res.flushHeaders()
    subscribers.add(res)
    res.once('close', () => subscribers.delete(res))
  })
  let publish, deliver
  if (MODE === 'redis') {
    const { Redis } = await import('ioredis')
    const redis = new Redis(REDIS_URL)
    const reader = redis.duplicate()
    const key = PREFIX + CHANNEL
    let last = (await redis.xrevrange(key, '+', '-', 'COUNT', 1))[0]?.[0] ?? '0-0'
    void (async () => {
      for (;;) {
        const answer = await reader.xread('COUNT', 512, 'BLOCK', 5000, 'STREAMS', key, last).catch(() => null)
        for (const [, entries] of answer ?? []) {
          for (const [id, fields] of entries) {
            last = id
            broadcast('id: ' + id + '\n' + fields[1])
          }
        }
      }
    })()
    publish = async (n) => {
      await redis.xadd(key, 'MAXLEN', '~', HISTORY, '*', 'f', tail(now(), n))
    }
  } else {
    let id = 0
    deliver = (t, n) => { broadcast('id: ' + (++id) + '\n' + tail(t, n)) }
    publish = (n) => deliver(now(), n)
  }
  return { handler: server, publish, deliver, size: () => subscribers.size }
}

// ---- fastify-typed-sse -----------------------------------------------------------------------------------
async function oursServer () {
  const dist = process.env.BENCH_DIST ?? fileURLToPath(new URL('../../dist/', import.meta.url))
  const { default: ssePlugin } = await import(pathToFileURL(join(dist, 'index.js')).href)
  const { default: Fastify } = await import('fastify')
  const app = Fastify({ logger: false })
  const retry = RETRY === undefined ? await noRetry(Fastify, ssePlugin) : { retry: Number(RETRY) }
  const options = { heartbeat: HEARTBEAT, ...retry }
  if (RETRY_AFTER !== undefined) options.retryAfter = Number(RETRY_AFTER)
  if (ADMISSION !== undefined) {
    const [rate, burst, spread] = ADMISSION.split(',').map(Number)
    options.admission = { rate, ...(burst === undefined ? {} : { burst }), ...(spread === undefined ? {} : { spread }) }
  }
  await app.register(ssePlugin, options)
  let channel
  if (MODE === 'redis') {
    const { Redis } = await import('ioredis')
    const { redisChannels } = await import(pathToFileURL(join(dist, 'channel', 'redis', 'index.js')).href)
    const redis = new Redis(REDIS_URL)
    channel = app.sse.channel(CHANNEL, { history: HISTORY, backend: redisChannels({ redis, prefix: PREFIX }) })
  } else {
    // nothing kept for replay, as the raw server keeps nothing
    channel = app.sse.channel(CHANNEL, { history: 0 })
  }
  app.get('/sub', (request, reply) => reply.sse(channel.subscribe({ lastEventId: request.headers['last-event-id'] })))
  await app.ready()
  const item = (t, n) => ({ event: 'tick', data: { t, n } })
  return {
    handler: app.server,
    publish: (n) => channel.publish(item(now(), n)),
    deliver: (t, n) => { channel.publish(item(t, n)) },
    size: () => channel.size,
    counters: () => {
      const { opened, cutOffs, replays } = app.sse.stats({ channels: 0 })
      return { opened, cutOffs, replays }
    }
  }
}

// ---- listening and control -------------------------------------------------------------------------------
/** The HTTP server on one port, and `PORTS - 1` more ports whose connections it takes as its own. */
async function listenAll (server) {
  const listen = (s) => new Promise((resolve, reject) => {
    s.once('error', reject)
    s.listen({ port: 0, host: '127.0.0.1', backlog: BACKLOG }, () => resolve(s.address().port))
  })
  const ports = [await listen(server)]
  for (let i = 1; i < PORTS; i++) {
    ports.push(await listen(createNetServer(socket => server.emit('connection', socket))))
  }
  return ports
}

/**
 * `stats` → CPU time (µs), heap+external and RSS (after a full GC when asked), live subscribers, with
 * `--loop-delay` the event loop's delay since the last `stats` (p99 and max, ms), and (ours) streams opened,
 * subscribers cut off as too slow and replays served; `publish` →
 * stamps and publishes item `n`; `deliver` (a cluster worker) → publishes the primary's stamped item; `stop` → exits.
 */
function control () {
  // the event loop's delay since the last `stats` (ms): how long a new connection may wait to be accepted
  const delay = LOOP_DELAY ? monitorEventLoopDelay({ resolution: 10 }) : undefined
  delay?.enable()
  process.on('message', async (msg) => {
    if (msg?.cmd === 'stats') {
      if (msg.gc === true) { globalThis.gc?.(); globalThis.gc?.() }
      const cpu = process.cpuUsage()
      const mem = process.memoryUsage()
      const heap = mem.heapUsed + mem.external
      const loop = delay === undefined ? undefined : { p99: delay.percentile(99) / 1e6, max: delay.max / 1e6 }
      delay?.reset()
      const subscribers = size()
      process.send({ id: msg.id, cpu: cpu.user + cpu.system, heap, rss: mem.rss, subscribers, loop, ...counters?.() })
    } else if (msg?.cmd === 'publish') {
      const t0 = now()
      await publish(msg.n)
      process.send({ id: msg.id, ms: now() - t0 })
    } else if (msg?.cmd === 'deliver') {
      deliver(msg.t, msg.n)
    } else if (msg?.cmd === 'stop') {
      // no graceful close: the load generators are gone already; exiting writes a --cpu-prof profile
      process.exit(0)
    }
  })
  // the parent going away must not leave a server behind
  process.on('disconnect', () => process.exit(0))
}
