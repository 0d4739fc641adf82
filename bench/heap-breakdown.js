#!/usr/bin/env node
// Where the memory of an idle SSE connection goes. For each variant, a fresh server process holds N idle
// streams opened over raw loopback sockets; after a full GC the script reads the server's heap+external and
// RSS with 0 and with N streams, and (with --snapshot) takes a heap snapshot each time and prints, per object
// kind (constructor, closure name, or V8's own kinds), the bytes and count per connection that the N
// streams added. Variants, from the floor up:
//
//   raw          node:http, writeHead + flushHeaders, the response kept in a Set
//   hijack       Fastify route, reply.hijack(), head written on reply.raw (skips Fastify's send path)
//   send         Fastify route, reply.send() of a do-nothing stream body (Fastify's stream path, onSend hooks)
//   send-signal  as `send`, with `request.signal` read (Fastify's own signal: its controller and listener)
//   gen          reply.sse() of an async generator that never yields
//   route        an `async function*` route that never yields
//   sub          reply.sse(channel.subscribe())
//   sub-signal   reply.sse(channel.subscribe({ signal: request.signal }))
//   sub-onsend   as `sub`, with a do-nothing onSend hook: the stream goes through Fastify's stream-send path
//   sub-signal-onsend  as `sub-signal`, through Fastify's stream-send path
//
// Usage: node bench/heap-breakdown.js [--n=3000 | --n=1000,5000,19000] [--variants=raw,send,sub] [--snapshot]
//        [--top=25] [--dist=dist,/other/checkout/dist] (one row per build, side by side in one run)
//        [--options='{"heartbeat":false}'] (plugin options)
//        [--retainers='(number),Array'] (with --snapshot: what holds the objects of these kinds, by holder and field)
//        [--record] (the table becomes the latest figures in bench/README.md, see bench/figures.js)
// A process may hold at most `ulimit -n` sockets: 20,000 here, so the largest run is 19,000 streams.
import { fork } from 'node:child_process'
import { EventEmitter, once } from 'node:events'
import http from 'node:http'
import net from 'node:net'
import { readFileSync, rmSync, mkdtempSync } from 'node:fs'
import os from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import v8 from 'node:v8'
import { recordFigures, recording } from './figures.js'
import { noRetry } from './servers/common.js'

const here = dirname(fileURLToPath(import.meta.url))
const args = process.argv.slice(2)
const option = (name, fallback) => args.find(a => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback
const VARIANTS = ['raw', 'hijack', 'send', 'send-signal', 'gen', 'route', 'sub', 'sub-signal', 'sub-onsend', 'sub-signal-onsend']
const PLUGIN_VARIANTS = new Set(['gen', 'route', 'sub', 'sub-signal', 'sub-onsend', 'sub-signal-onsend'])
const ONSEND_VARIANTS = new Set(['sub-onsend', 'sub-signal-onsend'])
const HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache, no-transform' }
const STEP_TIMEOUT_MS = 60_000

// ---- server process ------------------------------------------------------------------------------------
async function serve (variant) {
  let open = 0
  const track = (res) => {
    open++
    res.once('close', () => { open-- })
  }
  let server
  if (variant === 'raw') {
    const held = new Set()
    server = http.createServer((req, res) => {
      track(res)
      res.writeHead(200, HEADERS)
      res.flushHeaders()
      held.add(res)
      res.once('close', () => held.delete(res))
    })
  } else {
    const { default: Fastify } = await import('fastify')
    const app = Fastify({ logger: false })
    if (PLUGIN_VARIANTS.has(variant)) {
      const { default: ssePlugin } = await import(pathToFileURL(join(process.env.HEAP_BREAKDOWN_DIST, 'index.js')).href)
      // no `retry:` line (the plugin's default sends one per stream), as the variants without the plugin and the
      // recorded figures; --options may still set one
      const options = JSON.parse(process.env.HEAP_BREAKDOWN_OPTIONS)
      await app.register(ssePlugin, { ...await noRetry(Fastify, ssePlugin), ...options })
    }
    const channel = PLUGIN_VARIANTS.has(variant) ? app.sse.channel('idle', { history: 0 }) : undefined
    const never = new Promise(() => {})
    const handlers = {
      hijack (request, reply) {
        reply.hijack()
        reply.raw.writeHead(200, HEADERS)
        reply.raw.flushHeaders()
      },
      send (request, reply) {
        reply.headers(HEADERS).send(new IdleBody(reply.raw))
      },
      'send-signal' (request, reply) {
        reply.headers(HEADERS).send(new IdleBody(reply.raw, request.signal))
      },
      gen (request, reply) {
        reply.sse((async function * () { await never })())
      },
      route: async function * () { await never },
      sub (request, reply) {
        reply.sse(channel.subscribe())
      },
      'sub-signal' (request, reply) {
        reply.sse(channel.subscribe({ signal: request.signal }))
      },
      'sub-onsend' (request, reply) {
        reply.sse(channel.subscribe())
      },
      'sub-signal-onsend' (request, reply) {
        reply.sse(channel.subscribe({ signal: request.signal }))
      }
    }
    if (ONSEND_VARIANTS.has(variant)) app.addHook('onSend', async (request, reply, payload) => payload)
    app.addHook('onRequest', (request, reply, done) => {
      track(reply.raw)
      done()
    })
    app.get('/', handlers[variant])
    await app.ready()
    server = app.server
  }
  await new Promise(resolve => server.listen(0, '127.0.0.1', 8192, resolve))
  const dir = mkdtempSync(join(os.tmpdir(), 'heap-breakdown-'))
  let seq = 0
  process.on('message', (msg) => {
    if (msg?.cmd !== 'measure') return
    globalThis.gc()
    globalThis.gc()
    const mem = process.memoryUsage()
    let snapshot
    if (msg.snapshot === true) snapshot = v8.writeHeapSnapshot(join(dir, `${seq++}.heapsnapshot`))
    process.send({ id: msg.id, open, heap: mem.heapUsed + mem.external, rss: mem.rss, snapshot })
  })
  process.on('disconnect', () => {
    rmSync(dir, { recursive: true, force: true })
    process.exit(0)
  })
  process.send({ port: server.address().port })
}

/** The least a stream body can be for Fastify's send path: pipe() flushes the head, nothing is ever written. */
class IdleBody extends EventEmitter {
  constructor (res, signal) {
    super()
    this.res = res
    this.signal = signal
  }

  pipe (dest) {
    this.res.flushHeaders()
    return dest
  }

  destroy () {
    this.emit('close')
  }
}

// ---- driver --------------------------------------------------------------------------------------------
async function main () {
  const counts = option('n', '3000').split(',').map(Number)
  const variants = option('variants', VARIANTS.join(',')).split(',')
  const snapshot = args.includes('--snapshot')
  const top = Number(option('top', 25))
  const dists = option('dist', 'dist').split(',').map(d => resolve(here, '..', d))
  for (const v of variants) if (!VARIANTS.includes(v)) throw new Error(`unknown variant ${v} (${VARIANTS.join(', ')})`)
  const load = () => os.loadavg().map(l => l.toFixed(2)).join(' ')
  console.log(`# memory per idle connection, N=${counts.join(', ')}, node ${process.version}, load ${load()}`)
  const rows = []
  for (const variant of variants) {
    for (const dist of PLUGIN_VARIANTS.has(variant) ? dists : [undefined]) {
      const label = dist === undefined || dists.length === 1 ? variant : `${variant} (${dist})`
      const row = { label, results: [] }
      for (const n of counts) {
        const r = await measure(variant, dist, n, snapshot)
        row.results.push(r)
        console.log(`${label.padEnd(24)} N=${n} heap+ext ${kb(r.heap)} KB/conn   rss ${kb(r.rss)} KB/conn`)
        if (r.kinds !== undefined) printKinds(r.kinds, top)
        if (r.retainers !== undefined) printRetainers(r.retainers, n)
      }
      rows.push(row)
    }
  }
  const heads = counts.map(n => `N=${n} heap+ext | N=${n} RSS`).join(' | ')
  const table = [
    `KB per idle connection, after a full GC; load at the end ${load()}.`,
    '',
    `| variant | ${heads} |`,
    `|---${'|---|---'.repeat(counts.length)}|`,
    ...rows.map(r => `| ${r.label} | ${r.results.map(x => `${kb(x.heap)} | ${kb(x.rss)}`).join(' | ')} |`)
  ].join('\n')
  console.log('\n' + table)
  if (recording()) recordFigures('heap-breakdown', table, `node bench/heap-breakdown.js ${args.filter(a => a !== '--record').join(' ')}`.trim())
}

const kb = (bytes) => (bytes / 1024).toFixed(2)

async function measure (variant, dist, n, snapshot) {
  const child = fork(fileURLToPath(import.meta.url), [], {
    execArgv: ['--expose-gc'],
    env: { ...process.env, HEAP_BREAKDOWN_SERVER: variant, HEAP_BREAKDOWN_DIST: dist ?? '', HEAP_BREAKDOWN_OPTIONS: option('options', '{}') },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  const killer = setTimeout(() => child.kill('SIGKILL'), 5 * STEP_TIMEOUT_MS).unref()
  try {
    const [{ port }] = await once(child, 'message')
    let seq = 0
    const ask = async () => {
      const id = ++seq
      child.send({ cmd: 'measure', id, snapshot })
      for (;;) {
        const [msg] = await once(child, 'message')
        if (msg.id === id) return msg
      }
    }
    // a first batch warms up every code path (lazy compilation, inline caches), then is closed
    const warm = await openMany(port, Math.min(200, n))
    await closeAll(warm, child, ask)
    const before = await ask()
    const sockets = await openMany(port, n)
    const after = await ask()
    if (after.open !== n) throw new Error(`${variant}: ${after.open} of ${n} streams open`)
    await closeAll(sockets, child, ask)
    const result = { heap: (after.heap - before.heap) / n, rss: (after.rss - before.rss) / n }
    if (snapshot) {
      const watch = option('retainers', '').split(',').filter(Boolean)
      const base = summarize(before.snapshot, [])
      const now = summarize(after.snapshot, watch)
      result.kinds = diffKinds(base, now, n)
      result.retainers = now.retainers
    }
    return result
  } finally {
    clearTimeout(killer)
    child.disconnect()
  }
}

/** Opens `n` streams over raw sockets (bounded concurrency) and resolves once every response head is read. */
async function openMany (port, n) {
  const sockets = []
  // a loaded machine opens a few hundred connections a second: the bound grows with N
  const deadline = Date.now() + STEP_TIMEOUT_MS + n * 10
  const batch = 256
  for (let i = 0; i < n; i += batch) {
    if (Date.now() > deadline) throw new Error('opening streams timed out')
    const opened = await Promise.all(Array.from({ length: Math.min(batch, n - i) }, () => openOne(port)))
    sockets.push(...opened)
  }
  return sockets
}

function openOne (port) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' })
    let head = ''
    const timer = setTimeout(() => { socket.destroy(); reject(new Error('no response head')) }, STEP_TIMEOUT_MS)
    socket.setEncoding('latin1')
    socket.once('connect', () => socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n'))
    socket.on('data', function onData (chunk) {
      head += chunk
      if (!head.includes('\r\n\r\n')) return
      socket.off('data', onData)
      socket.resume()
      clearTimeout(timer)
      if (!head.startsWith('HTTP/1.1 200')) reject(new Error(`unexpected response: ${head.split('\r\n')[0]}`))
      else resolve(socket)
    })
    socket.once('error', (err) => { clearTimeout(timer); reject(err) })
  })
}

async function closeAll (sockets, child, ask) {
  for (const s of sockets) s.destroy()
  const deadline = Date.now() + STEP_TIMEOUT_MS
  while ((await ask()).open > 0) {
    if (Date.now() > deadline) throw new Error('streams still open after their clients left')
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

// ---- heap snapshots: bytes and counts per object kind --------------------------------------------------
function summarize (file, watch) {
  const snap = JSON.parse(readFileSync(file, 'utf8'))
  rmSync(file, { force: true })
  const fields = snap.snapshot.meta.node_fields
  const types = snap.snapshot.meta.node_types[0]
  const stride = fields.length
  const typeAt = fields.indexOf('type')
  const nameAt = fields.indexOf('name')
  const sizeAt = fields.indexOf('self_size')
  const { nodes, strings } = snap
  const kinds = new Map()
  const keys = []
  for (let i = 0; i < nodes.length; i += stride) {
    const type = types[nodes[i + typeAt]]
    const key = kindOf(type, strings[nodes[i + nameAt]])
    keys.push(key)
    const k = kinds.get(key) ?? { bytes: 0, count: 0 }
    k.bytes += nodes[i + sizeAt]
    k.count++
    kinds.set(key, k)
  }
  if (watch.length > 0) kinds.retainers = retainersOf(snap, keys, new Set(watch))
  return kinds
}

/** For the objects of the watched kinds: how many each holder kind and field holds, and their bytes. */
function retainersOf (snap, keys, watch) {
  const { nodes, edges, strings } = snap
  const meta = snap.snapshot.meta
  const stride = meta.node_fields.length
  const edgeStride = meta.edge_fields.length
  const countAt = meta.node_fields.indexOf('edge_count')
  const sizeAt = meta.node_fields.indexOf('self_size')
  const edgeTypes = meta.edge_types[0]
  const out = new Map()
  let e = 0
  for (let i = 0; i < nodes.length; i += stride) {
    const holder = keys[i / stride]
    for (let j = 0; j < nodes[i + countAt]; j++, e += edgeStride) {
      const to = edges[e + 2]
      const target = keys[to / stride]
      if (!watch.has(target)) continue
      const type = edgeTypes[edges[e]]
      if (type === 'weak') continue
      const name = ['element', 'hidden'].includes(type) ? `[${type}]` : strings[edges[e + 1]]
      const key = `${target} <- ${holder}.${name}`
      const r = out.get(key) ?? { bytes: 0, count: 0 }
      r.bytes += nodes[to + sizeAt]
      r.count++
      out.set(key, r)
    }
  }
  return out
}

function printRetainers (retainers, n) {
  const rows = [...retainers].filter(([, r]) => r.count >= n / 2 || r.bytes >= 8 * n)
    .sort((a, b) => b[1].bytes - a[1].bytes)
  console.log('    held by (bytes/conn, objects/conn; every other connection, or 8 B per connection):')
  for (const [key, r] of rows.slice(0, 40)) {
    console.log(`    ${String(Math.round(r.bytes / n)).padStart(6)} B ${(r.count / n).toFixed(2).padStart(6)}  ${key}`)
  }
}

/** Objects by constructor, closures by function name, V8's internal kinds by what they hold. */
function kindOf (type, name) {
  if (type === 'object') return name
  if (type === 'closure') return `closure ${name || '(anonymous)'}`
  if (['hidden', 'code', 'array', 'object shape'].includes(type)) return `(${type}) ${name}`.slice(0, 60)
  return `(${type})`
}

function diffKinds (before, after, n) {
  const out = []
  for (const [key, a] of after) {
    const b = before.get(key) ?? { bytes: 0, count: 0 }
    out.push({ key, bytes: (a.bytes - b.bytes) / n, count: (a.count - b.count) / n })
  }
  return out.sort((x, y) => y.bytes - x.bytes)
}

function printKinds (kinds, top) {
  const total = kinds.reduce((sum, k) => sum + k.bytes, 0)
  console.log(`    snapshot total ${kb(total)} KB/conn; largest kinds (bytes/conn, objects/conn):`)
  for (const k of kinds.slice(0, top)) {
    if (Math.abs(k.bytes) < 16) break
    console.log(`    ${String(Math.round(k.bytes)).padStart(6)} B ${k.count.toFixed(2).padStart(6)}  ${k.key}`)
  }
}

if (process.env.HEAP_BREAKDOWN_SERVER !== undefined) await serve(process.env.HEAP_BREAKDOWN_SERVER)
else await main()
