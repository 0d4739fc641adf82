#!/usr/bin/env node
// Hostile and broken clients against one server process: every scenario starts a fresh server (a child
// process, so its heap and sockets are its own), drives it from here over loopback, and reports whether the
// server let go of everything the clients made it hold: finally-blocks run / entered, streams still open,
// heap before and after (after a GC), the server side's sockets and kernel send queue, close time.
//
//   npm run build && node bench/hostile.js [--quick] [--only=churn,pipeline,stuck,stuckGenerator,h2reset,shutdown]
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
  stuckGenerator: [20, 20]
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

  async function start (options) {
    const app = Fastify({ logger: false, ...options })
    await app.register(ssePlugin, { maxConnections, heartbeat: 5000 })
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
  let next = 0
  const ask = (cmd, timeout = 30_000, extra = {}) => new Promise((resolve, reject) => {
    const id = ++next
    const timer = setTimeout(() => reject(new Error(`server did not answer ${cmd}`)), timeout)
    const onMessage = (msg) => {
      if (msg.id !== id) return
      clearTimeout(timer)
      child.off('message', onMessage)
      resolve(msg)
    }
    child.on('message', onMessage)
    child.send({ cmd, id, ...extra })
  })
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

const scenarios = {
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
    const allIn = await until(async () => (await server.ask('stats')).entered >= total, SCENARIO_DEADLINE_MS)
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
      'sockets × pipelined GETs': `${SIZES.pipeSockets} × ${SIZES.pipeDepth}${allIn ? '' : ' (not all arrived)'}`,
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
else await drive()
