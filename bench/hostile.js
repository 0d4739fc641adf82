#!/usr/bin/env node
// Hostile and broken clients against one server process: every scenario starts a fresh server (a child
// process, so its heap and sockets are its own), drives it from here over loopback, and reports whether the
// server let go of everything the clients made it hold: finally-blocks run / entered, streams still open,
// heap before and after (after a GC), the server side's sockets and kernel send queue, close time.
//
//   npm run build && node bench/hostile.js [--quick]
//     [--only=churn,pipeline,stuck,stuckGenerator,h2reset,pipelineDeep,h2Flood,channels,replay,shutdown]
//                                          [--dist=path/to/index.js] [--json=out.json] [--record]
//   --record writes bench/results/figures/hostile.md, or hostile-<scenarios>.md for a run of some (--only)
//
// Bounded: each scenario has a fixed number of clients and a deadline; only 127.0.0.1 is used. The kernel
// figures come from /proc/net/tcp (Linux); elsewhere they are reported as n/a.
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import http2 from 'node:http2'
import { connect } from 'node:net'
import { dirname, join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { recordFigures, recording } from './figures.js'
import { noRetry } from './servers/common.js'

const here = dirname(fileURLToPath(import.meta.url))
const args = process.argv.slice(2)
const option = (name) => args.find(a => a.startsWith(`--${name}=`))?.split('=')[1]
const quick = args.includes('--quick')
const dist = resolve(option('dist') ?? join(here, '..', 'dist', 'index.js'))

// [full run, --quick]
const SIZES = Object.fromEntries(Object.entries({
  churn: [20_000, 4000],
  churnParallel: [100, 50],
  pipeSockets: [30, 10],
  pipeDepth: [60, 60],
  stuck: [50, 20],
  h2Sessions: [10, 5],
  h2Streams: [1000, 200],
  shutdown: [2000, 500],
  shutdownStuck: [20, 10],
  stuckGenerator: [20, 20],
  pipeDeep: [1000, 1000],
  pipeUnderCap: [99, 99],
  h2Flood: [400, 400],
  floodSlots: [200, 200],
  floodProbes: [20, 20],
  rooms: [20_000, 4000],
  roomsParallel: [50, 50],
  statsNames: [100_000, 20_000],
  replayClients: [20, 10],
  replayHistory: [20_000, 5000],
  replayResumers: [1000, 200],
  replayBack: [100, 100]
}).map(([name, [full, small]]) => [name, quick ? small : full]))
const SCENARIO_DEADLINE_MS = quick ? 60_000 : 180_000
const SETTLE_MS = 10_000

// ---- server (child process) ------------------------------------------------------------------------------

async function serve () {
  const { default: Fastify } = await import('fastify')
  const { default: ssePlugin } = await import(pathToFileURL(process.argv[3]).href)
  const maxConnections = Number(process.argv[4])
  const counts = { entered: 0, finals: 0 }
  const apps = []
  const channels = []
  // no `retry:` line (the plugin's default sends one per stream), as when the recorded figures were taken
  const retry = await noRetry(Fastify, ssePlugin)

  async function start (options) {
    const app = Fastify({ logger: false, ...options })
    await app.register(ssePlugin, { maxConnections, heartbeat: 5000, ...retry })
    const channel = app.sse.channel('hostile', { history: 0, queueItems: 16, queueBytes: 1024 * 1024 })
    channels.push(channel)
    app.get('/events', async function * (request) {
      counts.entered++
      try {
        yield { data: 'open' }
        await sleep(3_600_000, undefined, { signal: request.signal })
      } catch {
        // aborted: the client left or the server is closing
      } finally {
        counts.finals++
      }
    })
    // frames larger than a socket write, so a client can leave in the middle of one
    const big = 'x'.repeat(256 * 1024)
    app.get('/big', async function * () {
      counts.entered++
      try {
        for (let i = 0; i < 1000; i++) yield { data: big }
      } finally {
        counts.finals++
      }
    })
    app.get('/channel', (request, reply) => reply.sse(channel.subscribe()))
    // a channel per name taken from the request, as a chat app makes its rooms
    app.get('/rooms/:room', (request, reply) => reply.sse(app.sse.channel(request.params.room).subscribe()))
    await app.listen({ port: 0, host: '127.0.0.1', backlog: 4096 })
    apps.push(app)
    return app.server.address().port
  }

  const port = await start({})
  const h2port = await start({ http2: true })
  process.on('message', async (msg) => {
    if (msg.cmd === 'stats') {
      if (msg.gc === true) globalThis.gc()
      const subscribers = channels.reduce((n, c) => n + c.size, 0)
      process.send({ id: msg.id, ...counts, subscribers, heap: process.memoryUsage().heapUsed })
    } else if (msg.cmd === 'flood') {
      // publish 64 KiB items until every subscriber has been cut off (bounded in count)
      const item = { data: 'y'.repeat(64 * 1024) }
      let published = 0
      for (let i = 0; i < 10_000 && channels[0].size > 0; i++) {
        channels[0].publish(item)
        published++
        if (i % 16 === 15) await sleep(5)
      }
      process.send({ id: msg.id, published, subscribers: channels[0].size })
    } else if (msg.cmd === 'channels') {
      // the channels the first app holds, and what stats() costs over them (after `names` more, each with an item)
      const app = apps[0]
      for (let i = 0; i < (msg.names ?? 0); i++) app.sse.channel(`kept-${i}`).publish({ data: i })
      if (msg.gc === true) {
        // a second collection after a turn: what the first freed is let go by FinalizationRegistry callbacks
        globalThis.gc()
        await new Promise(resolve => setImmediate(resolve))
        globalThis.gc()
      }
      // the best of five calls: the figure is the call's own cost, not a collection it happened to meet
      let stats
      let statsMs = Infinity
      for (let i = 0; i < 5; i++) {
        const t0 = performance.now()
        stats = app.sse.stats()
        statsMs = Math.min(statsMs, performance.now() - t0)
      }
      const statsBytes = JSON.stringify(stats).length
      const heap = process.memoryUsage().heapUsed
      process.send({ id: msg.id, open: stats.open, channelCount: stats.channelCount, statsMs, statsBytes, heap })
    } else if (msg.cmd === 'close') {
      const t0 = performance.now()
      let error
      // avvio gives up on a close hook after 10 s: that is reported, not thrown
      await Promise.all(apps.map(app => app.close())).catch(err => { error = err.code ?? err.message })
      process.send({ id: msg.id, closeMs: performance.now() - t0, error, ...counts })
    }
  })
  process.send({ ready: true, port, h2port })
}

// ---- driver ----------------------------------------------------------------------------------------------

/**
 * Asks a forked server (`who`, for the error) to run `cmd` and resolves with its answer; rejects past `timeout` ms.
 */
function asker (child, who, defaultTimeout) {
  let next = 0
  return (cmd, timeout = defaultTimeout, extra = {}) => new Promise((resolve, reject) => {
    const id = ++next
    const timer = setTimeout(() => reject(new Error(`${who} did not answer ${cmd}`)), timeout)
    const onMessage = (msg) => {
      if (msg.id !== id) return
      clearTimeout(timer)
      child.off('message', onMessage)
      resolve(msg)
    }
    child.on('message', onMessage)
    child.send({ cmd, id, ...extra })
  })
}

async function startServer (maxConnections = 1_000_000) {
  const child = fork(fileURLToPath(import.meta.url), ['--server', dist, String(maxConnections)], {
    execArgv: ['--expose-gc'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  const failed = (why) => () => { throw new Error(`server did not start: ${why}`) }
  const waiting = new AbortController()
  const [hello] = await Promise.race([
    once(child, 'message', { signal: waiting.signal }),
    once(child, 'exit', { signal: waiting.signal }).then(failed('it exited')),
    sleep(20_000, undefined, { signal: waiting.signal }).then(failed('no answer in 20 s'))
  ]).finally(() => waiting.abort())
  const ask = asker(child, 'server', 30_000)
  const stop = () => { if (child.exitCode === null) child.kill() }
  return { ...hello, ask, stop, child }
}

/** The server side of every TCP connection to `port`: count, states and bytes in the kernel send queue. */
function serverSockets (port) {
  let text
  try {
    text = readFileSync('/proc/net/tcp', 'utf8') + readFileSync('/proc/net/tcp6', 'utf8')
  } catch {
    return undefined
  }
  const hex = port.toString(16).toUpperCase().padStart(4, '0')
  let sockets = 0
  let sendQueue = 0
  let holding = 0
  let orphans = 0
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    if (f.length < 10 || !f[1].endsWith(':' + hex)) continue
    if (f[3] === '0A' || f[3] === '06') continue // the listening socket; TIME_WAIT holds no buffers
    sockets++
    const unsent = parseInt(f[4].split(':')[0], 16)
    sendQueue += unsent
    if (unsent > 0) holding++
    if (f[7] === '0' && f[9] === '0') orphans++ // no user, no inode: the process let go, the kernel did not
  }
  return { sockets, sendQueue, holding, orphans }
}

function tcpMemPages () {
  try {
    return Number(/TCP:.* mem (\d+)/.exec(readFileSync('/proc/net/sockstat', 'utf8'))[1])
  } catch {
    return undefined
  }
}

/** Polls until `check` is true or `ms` passed; returns whether it became true. */
async function until (check, ms) {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await check()) return true
    await sleep(50)
  }
  return await check()
}

function rawClient (port, request) {
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  socket.setNoDelay(true)
  socket.write(request)
  return socket
}

const GET = (path) => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`

/** Resolves once the socket received `bytes` bytes (or closed, or `ms` passed). */
function received (socket, bytes, ms = 10_000) {
  return new Promise(resolve => {
    let got = 0
    const done = () => { clearTimeout(timer); socket.off('data', onData); resolve(got) }
    const onData = (chunk) => { got += chunk.length; if (got >= bytes) done() }
    const timer = setTimeout(done, ms)
    socket.on('data', onData)
    socket.once('close', done)
  })
}

const MB = (bytes) => (bytes / 1024 / 1024).toFixed(1)

/** Waits (bounded) until every stream the server entered has run its finally; `ms` is how long that took. */
async function settle (server) {
  const t0 = performance.now()
  let stats
  await until(async () => {
    stats = await server.ask('stats')
    return stats.entered === stats.finals && stats.subscribers === 0
  }, SETTLE_MS)
  const ms = performance.now() - t0
  return { ...stats, ms, heap: (await server.ask('stats', 30_000, { gc: true })).heap }
}

/** The status of one new HTTP/2 stream on a session of its own, then the session closed. */
async function h2Status (port) {
  const session = http2.connect(`http://127.0.0.1:${port}`)
  session.on('error', () => {})
  try {
    const stream = session.request({ ':path': '/events', accept: 'text/event-stream' })
    stream.on('error', () => {})
    const [headers] = await Promise.race([once(stream, 'response'), sleep(10_000).then(() => [{ ':status': 'none' }])])
    return headers[':status']
  } finally {
    session.destroy()
  }
}

/** The status line of one new HTTP/1.1 stream, then the connection closed. */
async function h1Status (port) {
  const s = rawClient(port, GET('/events'))
  const code = await new Promise(resolve => {
    s.once('data', (chunk) => resolve(chunk.toString().split(' ')[1]))
    s.once('close', () => resolve('closed'))
  })
  s.destroy()
  return code
}

/** Polls the server until the generators it entered stop growing for `quietMs` (or `ms` passed). */
async function enteredSettles (server, quietMs = 1000, ms = 20_000) {
  let last = -1
  let since = Date.now()
  const end = Date.now() + ms
  while (Date.now() < end) {
    const { entered } = await server.ask('stats')
    if (entered !== last) {
      last = entered
      since = Date.now()
    } else if (Date.now() - since >= quietMs) break
    await sleep(50)
  }
  return last
}

/**
 * One HTTP/1.1 connection pipelines 1,000 streams (maxConnections 200): how many sources start, what the next
 * clients get, and the heap one connection makes the server hold by pipelining 99 (under the default cap).
 */
async function pipelineDeep () {
  const server = await startServer(SIZES.floodSlots)
  const deep = rawClient(server.port, GET('/events').repeat(SIZES.pipeDeep))
  deep.resume()
  let closedByServer = false
  deep.once('close', () => { closedByServer = true })
  const started = await enteredSettles(server)
  const probes = await Promise.all(Array.from({ length: SIZES.floodProbes }, () => h1Status(server.port)))
  deep.destroy()
  const after = await settle(server)
  // the heap a queue under the cap holds: one connection, pipelined requests waiting behind its first stream
  const before = await server.ask('stats', 30_000, { gc: true })
  const queue = rawClient(server.port, GET('/events').repeat(SIZES.pipeUnderCap + 1))
  queue.resume()
  await enteredSettles(server)
  await sleep(1000) // the last requests reach their handlers after the first stream started
  const held = await server.ask('stats', 30_000, { gc: true })
  queue.destroy()
  const released = await settle(server)
  server.stop()
  return {
    'pipelined GETs on one connection (maxConnections 200)': SIZES.pipeDeep,
    'sources started by it': started,
    'the connection': closedByServer ? 'closed by the server' : 'kept open',
    [`next ${SIZES.floodProbes} clients`]: summarize(probes),
    'finally run / entered': `${after.finals} / ${after.entered}`,
    [`heap held by ${SIZES.pipeUnderCap} requests queued behind one stream (KB each)`]:
      ((held.heap - before.heap) / SIZES.pipeUnderCap / 1024).toFixed(1),
    '… sources they started': held.entered - before.entered - 1,
    '… finally run / entered once closed': `${released.finals} / ${released.entered}`
  }
}

/** One HTTP/2 session opens 400 streams (maxConnections 200): how many it gets, and what the next clients get. */
async function h2Flood () {
  const server = await startServer(SIZES.floodSlots)
  const session = http2.connect(`http://127.0.0.1:${server.h2port}`)
  session.on('error', () => {})
  await once(session, 'connect')
  const statuses = await Promise.all(Array.from({ length: SIZES.h2Flood }, async () => {
    const stream = session.request({ ':path': '/events', accept: 'text/event-stream' })
    stream.on('error', () => {})
    const [headers] = await Promise.race([once(stream, 'response'), sleep(10_000).then(() => [{ ':status': 'none' }])])
    return headers[':status']
  }))
  const started = await enteredSettles(server, 500)
  const probes = await Promise.all(Array.from({ length: SIZES.floodProbes }, () => h2Status(server.h2port)))
  session.destroy()
  const after = await settle(server)
  server.stop()
  return {
    'streams opened on one session (maxConnections 200)': SIZES.h2Flood,
    'its streams answered': summarize(statuses),
    'sources started by it': started,
    [`next ${SIZES.floodProbes} clients (one session each)`]: summarize(probes),
    'finally run / entered': `${after.finals} / ${after.entered}`
  }
}

// ---- replay: clients resuming a long Redis history (a server and a redis-server of its own) ------------------

/** The replay scenario's server (child process): one channel on Redis, `GET /replay` resumes by Last-Event-ID. */
async function serveReplay () {
  const [distPath, redisUrl, history] = process.argv.slice(3)
  const { default: Fastify } = await import('fastify')
  const { Redis } = await import('ioredis')
  const { default: ssePlugin } = await import(pathToFileURL(distPath).href)
  const { redisChannels } = await import(pathToFileURL(join(dirname(distPath), 'channel', 'redis', 'index.js')).href)
  const redis = new Redis(redisUrl)
  const app = Fastify({ logger: false })
  // no `retry:` line (the plugin's default sends one per stream), as when the recorded figures were taken
  await app.register(ssePlugin, { heartbeat: 60_000, ...await noRetry(Fastify, ssePlugin) })
  const channel = app.sse.channel('replay', { backend: redisChannels({ redis }), history: Number(history) })
  app.get('/replay', (request, reply) =>
    reply.sse(channel.subscribe({ lastEventId: request.headers['last-event-id'], signal: request.signal })))
  await app.listen({ port: 0, host: '127.0.0.1', backlog: 4096 })
  process.on('message', async (msg) => {
    if (msg.cmd === 'stats') {
      if (msg.gc === true) globalThis.gc()
      const { heapUsed, external, rss } = process.memoryUsage()
      const cutOffs = app.sse.stats().cutOffs
      process.send({ id: msg.id, subscribers: channel.size, cutOffs, heap: heapUsed + external, rss })
    } else if (msg.cmd === 'fill') {
      // `n` items of 1 KiB, 500 publishes in flight at a time
      const data = 'r'.repeat(1024)
      const ids = []
      for (let i = 0; i < msg.n; i += 500) {
        const batch = Array.from({ length: Math.min(500, msg.n - i) }, () => channel.publish({ data }))
        ids.push(...await Promise.all(batch))
      }
      process.send({ id: msg.id, ids: [ids[0], ids.at(-1 - msg.back), ids.at(-1)] })
    } else if (msg.cmd === 'close') {
      await app.close()
      redis.disconnect()
      process.send({ id: msg.id })
    }
  })
  process.send({ ready: true, port: app.server.address().port })
}

/** A redis-server of the scenario's own on a free port, without persistence: its counters are the scenario's. */
async function startReplayRedis () {
  const { spawn } = await import('node:child_process')
  const { createServer } = await import('node:net')
  const probe = createServer().listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const port = probe.address().port
  await new Promise(resolve => probe.close(resolve))
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  await Promise.race([
    new Promise(resolve => proc.stdout.on('data', (chunk) => { out += chunk; if (out.includes('Ready to accept')) resolve() })),
    sleep(10_000).then(() => { throw new Error('redis-server did not start') })
  ])
  const { Redis } = await import('ioredis')
  const admin = new Redis(port, '127.0.0.1')
  const info = async () => {
    const commands = await admin.info('commandstats')
    const stats = await admin.info('stats')
    return {
      xrange: Number(/cmdstat_xrange:calls=(\d+)/.exec(commands)?.[1] ?? 0),
      sent: Number(/total_net_output_bytes:(\d+)/.exec(stats)[1])
    }
  }
  const stop = () => { admin.disconnect(); proc.kill('SIGKILL') }
  return { port, info, reset: () => admin.config('RESETSTAT'), stop }
}

/** Resolves once `socket` has received the frame of `id` (false when `ms` passed or it closed first). */
function receivedId (socket, id, ms) {
  return new Promise(resolve => {
    let tail = ''
    const done = (got) => { clearTimeout(timer); socket.off('data', onData); resolve(got) }
    const onData = (chunk) => {
      const text = tail + chunk.toString('latin1')
      if (text.includes(`id: ${id}\n`)) done(true)
      tail = text.slice(-100)
    }
    const timer = setTimeout(done, ms, false)
    socket.on('data', onData)
    socket.once('close', () => done(false))
  })
}

const RESUME = (id) => `GET /replay HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nLast-Event-ID: ${id}\r\n\r\n`

async function replayScenario () {
  const redis = await startReplayRedis()
  const child = fork(fileURLToPath(import.meta.url), ['--replay-server', dist, `redis://127.0.0.1:${redis.port}`,
    String(SIZES.replayHistory)], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const ask = asker(child, 'replay server', 120_000)
  try {
    const [hello] = await Promise.race([once(child, 'message'), sleep(20_000).then(() => { throw new Error('no server') })])
    const port = hello.port
    const [first, resumeFrom, last] = (await ask('fill', 120_000, { n: SIZES.replayHistory, back: SIZES.replayBack })).ids
    // 1: clients that resume from the start of the history and never read
    const before = await ask('stats', 120_000, { gc: true })
    const idle = Array.from({ length: SIZES.replayClients }, () => rawClient(port, RESUME(first)))
    await until(async () => (await ask('stats')).subscribers === SIZES.replayClients, 20_000)
    // what the server holds once it has done what it does for them: Redis has stopped sending, the sockets' send
    // queues have stopped growing (bounded: 60 s)
    let previous = ''
    for (let i = 0; i < 120; i++) {
      await sleep(500)
      const now = `${(await redis.info()).sent} ${serverSockets(port)?.sendQueue}`
      if (now === previous) break
      previous = now
    }
    const held = await ask('stats', 120_000, { gc: true })
    for (const socket of idle) socket.destroy()
    await until(async () => (await ask('stats')).subscribers === 0, 20_000)
    // 2: clients that resume from one id at once, and read to the newest item
    await redis.reset()
    const t0 = performance.now()
    const readers = Array.from({ length: SIZES.replayResumers }, () => rawClient(port, RESUME(resumeFrom)))
    const got = await Promise.all(readers.map(socket => receivedId(socket, last, SCENARIO_DEADLINE_MS)))
    const caughtUp = performance.now() - t0
    const { xrange, sent } = await redis.info()
    for (const socket of readers) socket.destroy()
    await ask('close')
    return {
      'non-reading clients × history': `${SIZES.replayClients} × ${SIZES.replayHistory.toLocaleString('en')} × 1 KiB`,
      'server heap+external held (after GC)': `+${MB(held.heap - before.heap)} MB`,
      'server RSS held': `+${MB(held.rss - before.rss)} MB`,
      'of them cut off': held.cutOffs - before.cutOffs,
      'clients resuming from one id (items back)': `${SIZES.replayResumers} (${SIZES.replayBack})`,
      'caught up': `${got.filter(Boolean).length} in ${(caughtUp / 1000).toFixed(1)} s`,
      'XRANGE calls': xrange,
      'bytes Redis sent': `${MB(sent)} MB`
    }
  } finally {
    if (child.exitCode === null) child.kill()
    redis.stop()
  }
}

const scenarios = {
  replay: replayScenario,
  async churn () {
    const server = await startServer()
    const before = await server.ask('stats', 30_000, { gc: true })
    const t0 = performance.now()
    const kinds = ['read then close', 'reset (RST)', 'close mid-frame', 'close before headers', 'half-written request']
    const deadline = Date.now() + SCENARIO_DEADLINE_MS
    let started = 0
    async function one (i) {
      const kind = i % kinds.length
      if (kind === 3) {
        const s = rawClient(server.port, GET('/events'))
        s.destroy()
        return
      }
      if (kind === 4) {
        const s = rawClient(server.port, 'GET /events HTTP/1.1\r\nHo')
        await once(s, 'connect')
        s.destroy()
        return
      }
      const s = rawClient(server.port, GET(kind === 2 ? '/big' : '/events'))
      await received(s, kind === 2 ? 64 * 1024 : 1)
      if (kind === 1) s.resetAndDestroy()
      else s.destroy()
    }
    async function worker () {
      while (started < SIZES.churn && Date.now() < deadline) await one(started++)
    }
    await Promise.all(Array.from({ length: SIZES.churnParallel }, worker))
    const elapsed = performance.now() - t0
    const after = await settle(server)
    const sockets = serverSockets(server.port)
    server.stop()
    return {
      connections: started,
      kinds: kinds.join(', '),
      'finally run / entered': `${after.finals} / ${after.entered}`,
      'connections/s': Math.round(started / elapsed * 1000),
      'heap before → after (MB)': `${MB(before.heap)} → ${MB(after.heap)}`,
      'server sockets left': sockets?.sockets ?? 'n/a'
    }
  },

  async pipeline () {
    const total = SIZES.pipeSockets * SIZES.pipeDepth
    const PROBES = SIZES.pipeSockets + 20
    const server = await startServer(total)
    const sockets = Array.from({ length: SIZES.pipeSockets }, () => {
      const s = rawClient(server.port, GET('/events').repeat(SIZES.pipeDepth))
      s.resume()
      return s
    })
    // a stream waits for its turn on its connection before its source starts: wait until no more start
    const started = await enteredSettles(server)
    for (const s of sockets) s.destroy()
    const after = await settle(server)
    // fresh clients after the pipelining ones left: refused (503) if the queued streams still hold their slots
    // (the first stream on each connection is released by Node's own close)
    const probes = Array.from({ length: PROBES }, () => rawClient(server.port, GET('/events')))
    const codes = await Promise.all(probes.map(async (s) => {
      const line = await new Promise(resolve => {
        s.once('data', (chunk) => resolve(chunk.toString().split(' ')[1]))
        s.once('close', () => resolve('closed'))
      })
      s.destroy()
      return line
    }))
    const close = await server.ask('close')
    server.stop()
    return {
      'sockets × pipelined GETs': `${SIZES.pipeSockets} × ${SIZES.pipeDepth}`,
      'sources started while connected': started,
      'finally run / entered': `${after.finals} / ${after.entered}`,
      'all released within (ms, polled every 50 ms)': after.finals === after.entered ? Math.round(after.ms) : `not within ${SETTLE_MS}`,
      [`next ${PROBES} clients (maxConnections = pipelined GETs)`]: summarize(codes),
      'app.close() (ms)': closeTime(close)
    }
  },

  async stuck () {
    const server = await startServer()
    const mem0 = tcpMemPages()
    const clients = Array.from({ length: SIZES.stuck }, () => rawClient(server.port, GET('/channel')))
    for (const s of clients) s.pause() // never read: the kernel buffers fill, then the plugin's queue
    await until(async () => (await server.ask('stats')).subscribers === SIZES.stuck, 10_000)
    const flood = await server.ask('flood', SCENARIO_DEADLINE_MS)
    // the server side of a cut-off connection: gone at once when reset, else kept with its unsent bytes
    await until(() => (serverSockets(server.port)?.sendQueue ?? 0) === 0, 2000)
    const held = serverSockets(server.port)
    const mem1 = tcpMemPages()
    for (const s of clients) s.destroy()
    await until(() => (serverSockets(server.port)?.sockets ?? 0) === 0, 2000)
    const released = serverSockets(server.port)
    const mem2 = tcpMemPages()
    server.stop()
    return {
      'stuck clients': SIZES.stuck,
      'items published (64 KiB) until all were cut off': `${flood.published}${flood.subscribers > 0 ? ` (${flood.subscribers} not cut off)` : ''}`,
      'server sockets / unsent MB, 2 s after the cut-off (clients still connected)':
        held === undefined ? 'n/a' : `${held.sockets} / ${MB(held.sendQueue)}`,
      '… once the clients closed': released === undefined ? 'n/a' : `${released.sockets} / ${MB(released.sendQueue)}`,
      'host TCP memory (MB): before → cut off → clients closed': mem0 === undefined ? 'n/a' : `${MB(mem0 * 4096)} → ${MB(mem1 * 4096)} → ${MB(mem2 * 4096)}`
    }
  },

  async stuckGenerator () {
    // the plugin's default writeTimeout is 30 s: a build that has it has reset them all well within this
    const WAIT_MS = 45_000
    const server = await startServer()
    const mem0 = tcpMemPages()
    const clients = Array.from({ length: SIZES.stuckGenerator }, () => rawClient(server.port, GET('/big')))
    for (const s of clients) s.pause() // never read, not even the head: 256 KiB events fill both ends' buffers
    await until(async () => (await server.ask('stats')).entered >= SIZES.stuckGenerator, 10_000)
    // full: every server end holds unsent bytes, and the amount has stopped growing (polled, bounded)
    let last = -1
    await until(() => {
      const now = serverSockets(server.port)
      const steady = now !== undefined && now.holding >= SIZES.stuckGenerator && now.sendQueue === last
      last = now?.sendQueue ?? 0
      return steady
    }, 10_000)
    const full = serverSockets(server.port)
    const mem1 = tcpMemPages()
    const t0 = performance.now()
    const released = await until(async () => {
      const stats = await server.ask('stats')
      return stats.finals === stats.entered && (serverSockets(server.port)?.holding ?? 0) === 0
    }, WAIT_MS)
    const releasedMs = performance.now() - t0
    const after = serverSockets(server.port)
    const mem2 = tcpMemPages()
    const stats = await server.ask('stats')
    for (const s of clients) s.destroy()
    await until(() => (serverSockets(server.port)?.sockets ?? 0) === 0, 2000)
    const mem3 = tcpMemPages()
    server.stop()
    return {
      'clients that never read GET /big (a generator of 256 KiB events)': SIZES.stuckGenerator,
      'server sockets holding unsent bytes / MB, once full':
        full === undefined ? 'n/a' : `${full.holding} / ${MB(full.sendQueue)}`,
      [`… once released, or ${WAIT_MS / 1000} s later (clients still connected)`]:
        after === undefined ? 'n/a' : `${after.holding} / ${MB(after.sendQueue)}`,
      'all released after (ms, from full)': released ? Math.round(releasedMs) : `not within ${WAIT_MS}`,
      'generators stopped (finally run / entered)': `${stats.finals} / ${stats.entered}`,
      'host TCP memory (MB): before → full → later → clients closed': mem0 === undefined
        ? 'n/a'
        : `${MB(mem0 * 4096)} → ${MB(mem1 * 4096)} → ${MB(mem2 * 4096)} → ${MB(mem3 * 4096)}`
    }
  },

  async channels () {
    // rooms named by the request, each subscribed once and left: what the server keeps of them
    const server = await startServer()
    const before = await server.ask('channels', 30_000, { gc: true })
    const deadline = Date.now() + SCENARIO_DEADLINE_MS
    let started = 0
    async function worker () {
      while (started < SIZES.rooms && Date.now() < deadline) {
        const s = rawClient(server.port, GET(`/rooms/room-${started++}`))
        await received(s, 1)
        s.destroy()
      }
    }
    await Promise.all(Array.from({ length: SIZES.roomsParallel }, worker))
    await until(async () => (await server.ask('channels')).open === 0, SETTLE_MS)
    const after = await server.ask('channels', 30_000, { gc: true })
    // then as many channels that keep an item (held until idle), and what app.sse.stats() costs over them
    const held = await server.ask('channels', SCENARIO_DEADLINE_MS, { names: SIZES.statsNames, gc: true })
    server.stop()
    const perRoom = (after.heap - before.heap) / started
    return {
      'rooms subscribed once and left': started,
      'channels held after they left': after.channelCount ?? 'all (no count)',
      'heap retained per room (after GC)': `${(perRoom / 1024).toFixed(2)} KB`,
      [`stats() over ${SIZES.statsNames} more channels with an item each: time`]: `${held.statsMs.toFixed(1)} ms`,
      '… its JSON': `${(held.statsBytes / 1024).toFixed(0)} KB`
    }
  },

  async h2reset () {
    const server = await startServer()
    const before = await server.ask('stats', 30_000, { gc: true })
    const per = Math.ceil(SIZES.h2Streams / SIZES.h2Sessions)
    const t0 = performance.now()
    await Promise.all(Array.from({ length: SIZES.h2Sessions }, async () => {
      const session = http2.connect(`http://127.0.0.1:${server.h2port}`, { settings: { initialWindowSize: 65535 } })
      session.on('error', () => {})
      await Promise.all(Array.from({ length: per }, async () => {
        const stream = session.request({ ':path': '/events', accept: 'text/event-stream' })
        stream.on('error', () => {})
        await Promise.race([once(stream, 'data'), sleep(10_000)])
        stream.close(http2.constants.NGHTTP2_CANCEL)
      }))
      session.close()
    }))
    const elapsed = performance.now() - t0
    const after = await settle(server)
    server.stop()
    return {
      'sessions × streams reset': `${SIZES.h2Sessions} × ${per}`,
      'finally run / entered': `${after.finals} / ${after.entered}`,
      'streams/s': Math.round(SIZES.h2Sessions * per / elapsed * 1000),
      'heap before → after (MB)': `${MB(before.heap)} → ${MB(after.heap)}`
    }
  },

  pipelineDeep,
  h2Flood,

  async shutdown () {
    const server = await startServer()
    const readers = Array.from({ length: SIZES.shutdown }, () => rawClient(server.port, GET('/events')))
    for (const s of readers) s.resume()
    const stuck = Array.from({ length: SIZES.shutdownStuck }, () => rawClient(server.port, GET('/big')))
    for (const s of stuck) s.pause()
    const want = SIZES.shutdown + SIZES.shutdownStuck
    await until(async () => (await server.ask('stats')).entered >= want, SCENARIO_DEADLINE_MS)
    // the stuck ones have filled their sockets once their generators stop being pulled
    await until(() => (serverSockets(server.port)?.sendQueue ?? 1) > SIZES.shutdownStuck * 1024 * 1024, 5000)
    const full = serverSockets(server.port)
    const close = await server.ask('close')
    // what the kernel still holds for this server: stuck connections closed gracefully keep their unsent bytes
    await until(() => (serverSockets(server.port)?.sendQueue ?? 0) === 0, 2000)
    const left = serverSockets(server.port)
    for (const s of [...readers, ...stuck]) s.destroy()
    server.stop()
    return {
      'streams open (reading + stuck)': `${SIZES.shutdown} + ${SIZES.shutdownStuck}`,
      'server send queue before close (MB)': full === undefined ? 'n/a' : MB(full.sendQueue),
      'app.close() (ms)': closeTime(close),
      'finally run / entered': `${close.finals} / ${close.entered}`,
      'server sockets holding unsent bytes / MB, 2 s after close':
        left === undefined ? 'n/a' : `${left.holding} / ${MB(left.sendQueue)}`
    }
  }
}

function closeTime (close) {
  return Math.round(close.closeMs) + (close.error === undefined ? '' : ` (failed: ${close.error})`)
}

function summarize (codes) {
  const counts = {}
  for (const c of codes) counts[c] = (counts[c] ?? 0) + 1
  return Object.entries(counts).map(([code, n]) => `${n} × ${code}`).join(', ')
}

async function drive () {
  const only = option('only')?.split(',') ?? Object.keys(scenarios)
  const results = {}
  const tables = []
  for (const name of only) {
    if (!(name in scenarios)) throw new Error(`unknown scenario ${name}; known: ${Object.keys(scenarios).join(', ')}`)
    const t0 = Date.now()
    results[name] = await scenarios[name]()
    const table = [`**${name}** (${((Date.now() - t0) / 1000).toFixed(1)} s)`, '', '| measure | value |', '| --- | --- |',
      ...Object.entries(results[name]).map(([k, v]) => `| ${k} | ${v} |`)].join('\n')
    console.log('\n' + table)
    tables.push(table)
  }
  // a run of some scenarios only is recorded apart, so that it does not replace the figures of a full run
  const record = option('only') === undefined ? 'hostile' : `hostile-${only.join('-').toLowerCase()}`
  if (recording()) recordFigures(record, tables.join('\n\n'), `node bench/hostile.js ${args.filter(a => a !== '--record').join(' ')}`.trim())
  const json = option('json')
  if (json !== undefined) writeFileSync(json, JSON.stringify({ node: process.version, quick, results }, null, 2))
}

if (process.argv[2] === '--server') await serve()
else if (process.argv[2] === '--replay-server') await serveReplay()
else await drive()
