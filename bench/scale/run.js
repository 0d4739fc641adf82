#!/usr/bin/env node
// Scale bench (not part of `npm test`): N SSE subscribers held by load-generator processes over raw sockets,
// served by raw node:http processes and by Fastify + fastify-typed-sse processes of the same shape, one after the
// other in one run, side by side.
//
//   node bench/scale/run.js [--mode=cluster|redis|single] [--n=100000] [--procs=6] [--only=raw,ours] [--record]
//
// Modes (each server process listens on loopback ports of its own; bench/scale/server.js):
//   cluster  --procs node:cluster workers behind the same ports (bench/scale/primary.js), a publish handed to every
//            worker over IPC and broadcast in process (ours: an in-memory channel per worker)
//   redis    --procs processes sharing one Redis stream (REDIS_URL, default redis://127.0.0.1:6379): raw with its
//            own XADD + XREAD BLOCK loop, ours with `app.sse.channel(name, { backend: redisChannels() })`;
//            published on the first process
//   single   one process (default --n=19000: ulimit -n is 20,000 here), per-process figures
// Other options: --loadgens=6 (load-generator processes), --inflight=64 (connections each opens at a time),
// --publishes=5 (measured, after 1 warm-up), --heartbeat=15000 (ms, both kinds: the plugin's default),
// --idle=<2 heartbeats> (ms of idle CPU measured), --backlog=511 (listen backlog of every server port),
// --rounds=1 (each a fresh set of processes, kinds in rotating order; cells are medians), --baseline=<a built
// dist/> (adds `ours-before`), --prof=ours (the `ours` servers write a --cpu-prof profile to
// bench/results/scale-prof/ on exit), --report=<a run's .json> (its tables again, recorded with --record; run with
// that run's --mode, --n and --rounds).
//
// Measured per kind: time to connect all N (from the first connect to the last 200 head, every load generator at
// once), the per-connection connect time and the servers' CPU per connection opened; server heap+external and RSS
// per connection after a full GC; the kernel's TCP buffer memory per connection (/proc/net/sockstat `TCP: mem`,
// pages) and slab memory (/proc/meminfo `Slab`: the socket structures), both ends of every loopback connection,
// machine-wide; server CPU while idle with heartbeats; then publishes to all N, one at a time: delivery latency
// (publish stamp on the server → read by the load generator) p50/p99/max, the time to the last socket per
// publish, and the servers' CPU per delivery. The load average goes with every kind's figures.
import { fork } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { recordFigures, recording } from '../figures.js'

const here = dirname(fileURLToPath(import.meta.url))
const root = join(here, '..', '..')
const args = process.argv.slice(2)
const option = (name, fallback) => args.find(a => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const now = () => performance.timeOrigin + performance.now()

const MODE = option('mode', 'cluster')
if (!['cluster', 'redis', 'single'].includes(MODE)) throw new Error(`--mode=${MODE}: cluster, redis or single`)
const N = Number(option('n', MODE === 'single' ? '19000' : '100000'))
const PROCS = MODE === 'single' ? 1 : Number(option('procs', '6'))
const LOADGENS = Number(option('loadgens', MODE === 'single' ? '2' : '6'))
const INFLIGHT = Number(option('inflight', '64'))
const PUBLISHES = Number(option('publishes', '5'))
const WARMUP = 1
const HEARTBEAT = Number(option('heartbeat', '15000'))
const IDLE_MS = Number(option('idle', String(2 * HEARTBEAT)))
const BACKLOG = Number(option('backlog', '511'))
const ROUNDS = Number(option('rounds', '1'))
const PROF = option('prof', '').split(',').filter(Boolean)
const BASELINE = option('baseline') === undefined ? undefined : resolve(option('baseline'))
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
// connections per loopback destination (address, port): Linux gives connect() the even half of its ephemeral ports
// first (about 14,000 here), and searches that half linearly once it is full, so each port takes at most 10,000
const PER_PORT = 10_000
const PORTS = MODE === 'cluster' ? Math.ceil(N / PER_PORT) : Math.ceil(N / PROCS / PER_PORT)

const KINDS = [
  { key: 'raw', label: 'raw node:http' },
  { key: 'ours', label: 'fastify-typed-sse' },
  { key: 'ours-before', label: 'fastify-typed-sse (before)', dist: BASELINE }
]
const only = option('only', BASELINE === undefined ? 'raw,ours' : 'raw,ours,ours-before').split(',')
const kinds = KINDS.filter(k => only.includes(k.key) && (k.key !== 'ours-before' || BASELINE !== undefined))

if (!existsSync(join(root, 'dist', 'index.js'))) throw new Error('dist/ is missing: run `npm run build` at the root')
if (N / LOADGENS > 19_000) throw new Error(`--n=${N} over --loadgens=${LOADGENS}: at most 19,000 sockets per process (ulimit -n)`)
if (MODE !== 'cluster' && N / PROCS > 19_000) throw new Error(`--n=${N} over --procs=${PROCS}: at most 19,000 connections per server process`)

const RUN_DEADLINE = Date.now() + 60 * 60_000
const STEP_TIMEOUT = 300_000

// ---- processes -------------------------------------------------------------------------------------------
/** A child answering `{ id, cmd }` requests with `{ id, … }`, and sending `{ type }` messages of its own. */
function spawn (file, argv, { execArgv = [], env = process.env } = {}) {
  const proc = fork(join(here, file), argv, { execArgv, env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const pending = new Map()
  const inbox = []
  let wake
  let seq = 0
  let exited
  proc.on('message', (msg) => {
    if (msg?.id !== undefined) {
      pending.get(msg.id)?.(msg)
      pending.delete(msg.id)
    } else {
      inbox.push(msg)
      wake?.()
    }
  })
  proc.on('exit', (code, signal) => {
    exited = `${file} exited (${signal ?? code})`
    wake?.()
    for (const done of pending.values()) done(undefined)
  })
  const ask = (msg, ms = STEP_TIMEOUT) => new Promise((resolve, reject) => {
    const id = ++seq
    const timer = setTimeout(() => { pending.delete(id); reject(new Error(`${file}: no answer to ${msg.cmd} within ${ms} ms`)) }, ms)
    pending.set(id, (answer) => {
      clearTimeout(timer)
      answer === undefined ? reject(new Error(exited)) : resolve(answer)
    })
    proc.send({ ...msg, id })
  })
  /** The next message matching `test`, within `ms`. */
  const next = async (test, ms = STEP_TIMEOUT) => {
    const deadline = Date.now() + Math.min(ms, RUN_DEADLINE - Date.now())
    for (;;) {
      const i = inbox.findIndex(test)
      if (i !== -1) return inbox.splice(i, 1)[0]
      if (exited !== undefined) throw new Error(exited)
      if (Date.now() > deadline) throw new Error(`${file}: waited ${ms} ms in vain`)
      await Promise.race([new Promise(resolve => { wake = resolve }), sleep(500)])
    }
  }
  return { proc, ask, next, send: (m) => proc.send(m), kill: () => proc.kill('SIGKILL') }
}

/** The kernel's TCP buffer pages (sockstat) and its slab memory (the socket structures themselves), machine-wide. */
function tcpMemPages () {
  const sockstat = readFileSync('/proc/net/sockstat', 'utf8')
  return {
    pages: Number(/TCP:.* mem (\d+)/.exec(sockstat)?.[1] ?? NaN),
    sockets: Number(/sockets: used (\d+)/.exec(sockstat)?.[1] ?? NaN),
    slabKiB: Number(/Slab:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? NaN)
  }
}

/** The kernel's count of connections dropped from a full accept queue, and of SYNs sent again (machine-wide). */
function listenDrops () {
  const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n').filter(l => l.startsWith('TcpExt:'))
  const names = lines[0].split(' ')
  const values = lines[1].split(' ').map(Number)
  const get = (name) => values[names.indexOf(name)] ?? NaN
  return { overflows: get('ListenOverflows'), synRetrans: get('TCPSynRetrans') }
}

const load = () => os.loadavg().map(l => l.toFixed(2)).join(' ')
const sum = (xs, f) => xs.reduce((a, x) => a + f(x), 0)

async function startServers (kind, prefix) {
  const profDir = join(root, 'bench', 'results', 'scale-prof')
  const execArgv = ['--expose-gc']
  if (PROF.includes(kind.key)) {
    mkdirSync(profDir, { recursive: true })
    execArgv.push('--cpu-prof', `--cpu-prof-dir=${profDir}`)
  }
  const env = { ...process.env, ...(kind.dist === undefined ? {} : { BENCH_DIST: kind.dist }) }
  const serverKind = kind.key === 'ours-before' ? 'ours' : kind.key
  const argv = [`--kind=${serverKind}`, `--mode=${MODE}`, `--ports=${PORTS}`, `--backlog=${BACKLOG}`,
    `--heartbeat=${HEARTBEAT}`, `--prefix=${prefix}`, `--procs=${PROCS}`]
  const handles = MODE === 'cluster'
    ? [spawn('primary.js', argv, { env: { ...env, SCALE_WORKER_ARGV: execArgv.join(' ') } })]
    : Array.from({ length: PROCS }, () => spawn('server.js', argv, { execArgv, env }))
  const ports = []
  for (const h of handles) ports.push(...(await h.next(m => m.ready === true, 60_000)).ports)
  return { handles, ports }
}

async function stats (handles, gc) {
  const each = await Promise.all(handles.map(h => h.ask({ cmd: 'stats', gc })))
  return {
    cpu: sum(each, s => s.cpu),
    heap: sum(each, s => s.heap),
    rss: sum(each, s => s.rss),
    subscribers: sum(each, s => s.subscribers)
  }
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN

// ---- one kind, one round ---------------------------------------------------------------------------------
async function measure (kind) {
  const r = { kind: kind.key, loadStart: load() }
  const prefix = `bench:scale:${process.pid}:${kind.key}:`
  const tcp0 = tcpMemPages()
  const { handles, ports } = await startServers(kind, prefix)
  const loadgens = Array.from({ length: LOADGENS }, () => spawn('loadgen.js', []))
  try {
    for (const g of loadgens) await g.next(m => m.type === 'ready', 30_000)
    await sleep(1000)
    const base = await stats(handles, true)

    // connect all
    const drops0 = listenDrops()
    const t0 = now()
    const share = (i) => Math.floor(N / LOADGENS) + (i < N % LOADGENS ? 1 : 0)
    loadgens.forEach((g, i) => g.send({ cmd: 'connect', ports: rotate(ports, i), count: share(i), inflight: INFLIGHT }))
    const connected = []
    for (const g of loadgens) connected.push(await g.next(m => m.type === 'connected'))
    r.connectAllMs = now() - t0
    const drops1 = listenDrops()
    r.listenOverflows = drops1.overflows - drops0.overflows
    r.synRetrans = drops1.synRetrans - drops0.synRetrans
    r.connected = sum(connected, c => c.ok)
    r.connectErrors = sum(connected, c => c.errors)
    r.connectP50 = Math.max(...connected.map(c => c.p50))
    r.connectP99 = Math.max(...connected.map(c => c.p99))
    r.connectMax = Math.max(...connected.map(c => c.max))
    r.connectRate = r.connected / (r.connectAllMs / 1000)
    console.log(`  ${kind.key}: ${r.connected}/${N} connected in ${(r.connectAllMs / 1000).toFixed(1)} s (${r.connectErrors} errors; per connection p50 ${r.connectP50.toFixed(0)} ms, p99 ${r.connectP99.toFixed(0)} ms, max ${r.connectMax.toFixed(0)} ms); load ${load()}`)
    const deadline = Date.now() + 60_000
    let s
    while ((s = await stats(handles, false)).subscribers < r.connected && Date.now() < deadline) await sleep(500)
    r.subscribers = s.subscribers
    r.cpuPerConnectUs = (s.cpu - base.cpu) / r.connected

    // memory, idle
    await sleep(2000)
    const full = await stats(handles, true)
    const tcp1 = tcpMemPages()
    r.heapPerConn = (full.heap - base.heap) / r.connected
    r.rssPerConn = (full.rss - base.rss) / r.connected
    r.tcpPerConn = (tcp1.pages - tcp0.pages) * 4096 / r.connected
    r.slabPerConn = (tcp1.slabKiB - tcp0.slabKiB) * 1024 / r.connected
    r.tcpMemMiB = tcp1.pages * 4096 / 1048576
    r.heapMiB = full.heap / 1048576
    r.rssMiB = full.rss / 1048576
    const c0 = await stats(handles, false)
    await sleep(IDLE_MS)
    const c1 = await stats(handles, false)
    r.idleCpuPct = (c1.cpu - c0.cpu) / (IDLE_MS * 1000) * 100
    r.idleCpuPerConnUs = (c1.cpu - c0.cpu) / r.connected / (IDLE_MS / HEARTBEAT)
    console.log(`  ${kind.key}: heap ${(r.heapPerConn / 1024).toFixed(2)} KB/conn, RSS ${(r.rssPerConn / 1024).toFixed(2)} KB/conn, kernel TCP ${(r.tcpPerConn / 1024).toFixed(2)} KB/conn, slab ${(r.slabPerConn / 1024).toFixed(1)} KB/conn; idle CPU ${r.idleCpuPct.toFixed(1)} % of a core; load ${load()}`)

    // publishes, one at a time
    const publisher = handles[0]
    const lastSocketMs = []
    let cpuFrom
    for (let n = 0; n < WARMUP + PUBLISHES; n++) {
      if (n === WARMUP) cpuFrom = (await stats(handles, false)).cpu
      const p0 = now()
      await publisher.ask({ cmd: 'publish', n })
      await Promise.all(loadgens.map(g => g.next(m => m.type === 'delivered' && m.n === n, 60_000)))
      if (n >= WARMUP) lastSocketMs.push(now() - p0)
      await sleep(1000)
    }
    const cpuTo = (await stats(handles, false)).cpu
    const collected = await Promise.all(loadgens.map(async g => {
      g.send({ cmd: 'latencies', from: WARMUP, to: WARMUP + PUBLISHES })
      return await g.next(m => m.type === 'latencies')
    }))
    const all = new Float64Array(sum(collected, c => sum(c.latencies, l => l.length)))
    let k = 0
    const maxima = Array.from({ length: PUBLISHES }, () => 0)
    for (const c of collected) {
      c.latencies.forEach((l, i) => {
        for (const v of l) { all[k++] = v; if (v > maxima[i]) maxima[i] = v }
      })
    }
    all.sort()
    r.deliveries = all.length
    r.missing = sum(collected, c => c.missing)
    r.unexpectedCloses = sum(collected, c => c.unexpected)
    r.p50 = pct(all, 0.5)
    r.p99 = pct(all, 0.99)
    r.max = all.at(-1)
    r.lastSocketMs = maxima.sort((a, b) => a - b)[Math.floor(PUBLISHES / 2)]
    r.cpuPerDeliveryUs = (cpuTo - cpuFrom) / (r.connected * PUBLISHES)
    r.loadEnd = load()
    console.log(`  ${kind.key}: ${r.deliveries} deliveries (${r.missing} missing): p50 ${r.p50.toFixed(0)} ms, p99 ${r.p99.toFixed(0)} ms, max ${r.max.toFixed(0)} ms; last socket (median) ${r.lastSocketMs.toFixed(0)} ms; CPU ${r.cpuPerDeliveryUs.toFixed(1)} µs/delivery; load ${r.loadEnd}`)
  } finally {
    await Promise.all(loadgens.map(async g => {
      g.send({ cmd: 'stop' })
      await g.next(m => m.type === 'stopped', 30_000).catch(() => g.kill())
    }))
    await Promise.all(handles.map(h => h.ask({ cmd: 'stop' }, 20_000).catch(() => h.kill())))
    if (MODE === 'redis') await dropKeys(prefix)
    await sleep(3000) // let the kernel finish the closes before the next kind connects
  }
  return r
}

function rotate (xs, i) {
  return xs.map((_, k) => xs[(k + i) % xs.length])
}

async function dropKeys (prefix) {
  const { Redis } = await import('ioredis')
  const redis = new Redis(REDIS_URL)
  try {
    const keys = await redis.keys(prefix + '*')
    if (keys.length > 0) await redis.del(...keys)
  } finally {
    redis.disconnect()
  }
}

// ---- the run ---------------------------------------------------------------------------------------------
const started = { date: new Date().toISOString(), load: load() }
console.log(`scale ${MODE}: ${N} subscribers, ${PROCS} server process(es) × ${PORTS} port(s), ${LOADGENS} load generators; ${kinds.map(k => k.key).join(', ')}; ${ROUNDS} round(s); load ${started.load}`)
// --report=<bench/results/scale-….json>: the tables of that run again (run nothing)
const REPORT = option('report')
const rounds = REPORT === undefined ? [] : JSON.parse(readFileSync(REPORT, 'utf8')).rounds
for (let round = 0; round < (REPORT === undefined ? ROUNDS : 0); round++) {
  const order = rotate(kinds, round)
  const results = {}
  for (const kind of order) {
    if (Date.now() > RUN_DEADLINE) throw new Error('run deadline passed')
    results[kind.key] = await measure(kind)
  }
  rounds.push(results)
}

const median = (xs) => {
  if (typeof xs[0] !== 'number') return xs[0]
  const s = [...xs].sort((a, b) => a - b)
  const mid = (s.length - 1) / 2
  return (s[Math.floor(mid)] + s[Math.ceil(mid)]) / 2
}
const cell = (key, field) => median(rounds.map(r => r[key][field]))

const ROWS = [
  ['connected', 'connected', v => v.toLocaleString('en-US')],
  ['time to connect all', 'connectAllMs', v => `${(v / 1000).toFixed(1)} s`],
  ['connections per second', 'connectAllMs', (v, key) => (cell(key, 'connected') / (v / 1000)).toFixed(0)],
  ['connect time per connection p50 / p99', 'connectP99', (v, key) => `${cell(key, 'connectP50').toFixed(0)} / ${v.toFixed(0)} ms`],
  ['listen overflows / SYNs sent again while connecting (machine-wide)', 'listenOverflows', (v, key) => v === undefined ? 'not counted' : `${v} / ${cell(key, 'synRetrans')}`],
  ['server CPU per connection opened', 'cpuPerConnectUs', v => `${v.toFixed(0)} µs`],
  ['server heap+external per connection', 'heapPerConn', v => `${(v / 1024).toFixed(2)} KB`],
  ['server RSS per connection', 'rssPerConn', v => `${(v / 1024).toFixed(2)} KB`],
  ['kernel TCP buffers per idle connection (both ends)', 'tcpPerConn', v => `${(v / 1024).toFixed(2)} KB`],
  ['kernel slab per connection (both ends)', 'slabPerConn', v => `${(v / 1024).toFixed(1)} KB`],
  [`server CPU idle, heartbeat every ${HEARTBEAT / 1000} s`, 'idleCpuPct', v => `${v.toFixed(1)} % of a core`],
  ['delivery p50', 'p50', v => `${v.toFixed(0)} ms`],
  ['delivery p99', 'p99', v => `${v.toFixed(0)} ms`],
  ['delivery max', 'max', v => `${v.toFixed(0)} ms`],
  ['publish → last socket (median of publishes)', 'lastSocketMs', v => `${v.toFixed(0)} ms`],
  ['server CPU per delivery', 'cpuPerDeliveryUs', v => `${v.toFixed(1)} µs`],
  ['deliveries missing', 'missing', v => String(v)],
  ['load average (1/5/15) at the start / end', 'loadStart', (v, key) => `${v} / ${rounds.at(-1)[key].loadEnd}`]
]
// machine-wide kernel figures move with everything else on the machine: no ratio
const noRatio = new Set(['connected', 'missing', 'loadStart', 'tcpPerConn', 'slabPerConn', 'listenOverflows'])
const shape = {
  cluster: `${PROCS} node:cluster workers behind ${PORTS} port${PORTS > 1 ? 's' : ''}, each publish handed to every worker over IPC and broadcast in process (ours: an in-memory channel per worker)`,
  redis: `${PROCS} processes sharing one Redis stream (raw: XADD + its own XREAD BLOCK loop; ours: \`redisChannels()\`), published on the first`,
  single: 'one process, in-process broadcast (ours: an in-memory channel)'
}[MODE]
const lines = [
  `${N.toLocaleString('en-US')} subscribers, ${shape}; ${LOADGENS} load-generator processes over raw sockets, ` +
  `${INFLIGHT} connects in flight each; listen backlog ${BACKLOG}; ${PUBLISHES} publishes after ${WARMUP} warm-up, 1 s apart; ` +
  `heartbeat ${HEARTBEAT / 1000} s; ${ROUNDS === 1 ? 'one round' : `median of ${ROUNDS} rounds`}, kinds one after the other. ` +
  'Ratios: × raw (lower is better, except connections per second).',
  '',
  '| | ' + kinds.map(k => k.label).join(' | ') + ' |',
  '|---|' + kinds.map(() => '---').join('|') + '|'
]
for (const [label, field, fmt] of ROWS) {
  const raw = kinds.some(k => k.key === 'raw') ? cell('raw', field) : undefined
  lines.push(`| ${label} | ` + kinds.map(k => {
    const v = cell(k.key, field)
    if (label === 'connections per second' && raw !== undefined && k.key !== 'raw') return fmt(v, k.key) + ` ×${(raw / v).toFixed(2)}`
    const ratio = raw === undefined || !(raw > 0) || k.key === 'raw' || noRatio.has(field) || typeof v !== 'number' ? '' : ` ×${(v / raw).toFixed(2)}`
    return fmt(v, k.key) + ratio
  }).join(' | ') + ' |')
}
const table = lines.join('\n')
console.log('\n' + table)

const stamp = REPORT === undefined ? started.date.replace(/[:.]/g, '-') : /scale-(.*)-[a-z]+\.json$/.exec(REPORT)[1]
const file = join(root, 'bench', 'results', `scale-${stamp}-${MODE}.json`)
if (REPORT === undefined) writeFileSync(file, JSON.stringify({ started, ended: { date: new Date().toISOString(), load: load() }, argv: args, mode: MODE, n: N, procs: PROCS, ports: PORTS, loadgens: LOADGENS, rounds }, null, 1) + '\n')
console.log(`\nraw results: ${file}`)
if (recording()) {
  recordFigures(`scale-${MODE}`, `${table}\n\nEvery figure of this run: [results/scale-${stamp}-${MODE}.json](results/scale-${stamp}-${MODE}.json).`,
    `node bench/scale/run.js ${args.filter(a => a !== '--record').join(' ')}`.trim())
}
process.exit(0)
