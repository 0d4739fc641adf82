#!/usr/bin/env node
// Reconnection storm (not part of `npm test`): every server restarts at once and every client comes back with its
// Last-Event-ID.
//
//   node bench/scale/storm.js [--n=20000] [--procs=2] [--clients=2] [--every=100] [--jitter=0]
//     [--retry=3000] [--admission=rate[,burst[,spread]]] [--retry-after=5] [--bound=300] [--record [--as=after]]
//     [--trace] [--profile=dir] [--listen=1]
//
// `--procs` Fastify + fastify-typed-sse processes (bench/scale/server.js, `--mode=redis`) share one Redis channel
// (REDIS_URL, default redis://127.0.0.1:6379) holding --n subscribers from `--clients` client processes; one more
// such process, without subscribers, publishes an item every `--every` ms throughout. Then every subscriber
// process is killed (SIGKILL) and started again on new ports, and every client reconnects with the id of the
// last event it read (after a random delay up to `--jitter` ms). With `--retry`, the servers send that `retry`
// (jittered by the plugin's default `retryJitter`) and each client comes back as an EventSource does: the `retry`
// it last received after the close, and again after each failed attempt (while no server listens, a refused
// connection); a 503 (`--admission`: the plugin's `admission` per process, `--retry-after` its `retryAfter`)
// after its `Retry-After`. Clients still down `--bound` s after the kill are counted, and the run ends. `--as=after`
// records as scale-storm-after instead of scale-storm. Measured: the time from the kill until every client is
// streaming again; what Redis sent meanwhile (`INFO stats` total_net_output_bytes) and the commands it
// ran (`INFO commandstats`); items lost (a gap in a client's sequence) and read twice; `sse-reset` items; and the
// delivery latency of the items published from the kill on (p50/p99/max, publish → read, replayed or live).
// `--trace` prints the storm second by second (clients down and why, each server's CPU, event-loop delay and
// counters, the accept queues and listen overflows: see `trace`; it lists the bench's sockets with `ss` twice a
// second, on the same cores as the servers, so a traced run carries that load); `--profile=dir` has the restarted
// servers write a `--cpu-prof` profile there. `--listen`: ports per server process (a positive whole number; at
// least one per 10,000 clients of a process whatever it says), its clients spread over them: a Node process
// accepts one connection per listening socket per turn of its event loop.
import { execFile, fork } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { connect } from 'node:net'
import os from 'node:os'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { recordFigures, recording } from '../figures.js'

const args = process.argv.slice(2)
const option = (name, fallback) => args.find(a => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const now = () => performance.timeOrigin + performance.now()
const run = promisify(execFile)
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

if (process.argv[2] === 'client') client()
else await main()

// ---- the orchestrator ------------------------------------------------------------------------------------
async function main () {
  const N = Number(option('n', '20000'))
  const PROCS = Number(option('procs', '2'))
  const CLIENTS = Number(option('clients', '2'))
  const EVERY = Number(option('every', '100'))
  const JITTER = Number(option('jitter', '0'))
  const RETRY = option('retry', undefined)
  const ADMISSION = option('admission', undefined)
  const RETRY_AFTER = option('retry-after', undefined)
  const AS = option('as', undefined)
  /** Seconds from the kill that the clients are given to resume: past it, the run reports how many still had not. */
  const BOUND = Number(option('bound', '300'))
  /** Prints, every second of the storm, clients down, the servers' CPU and event-loop delay, and the kernel's view. */
  const TRACE = args.includes('--trace')
  /** The restarted servers write a --cpu-prof profile to this directory on exit. */
  const PROFILE = option('profile', undefined)
  /** Listening sockets (ports) per server process: each accepts one connection per turn of the event loop. */
  const LISTEN = Number(option('listen', '1'))
  if (!Number.isSafeInteger(LISTEN) || LISTEN < 1) {
    throw new Error(`--listen must be a positive whole number of ports per server process, got ${option('listen')}`)
  }
  const PORTS = Math.max(Math.ceil(N / PROCS / 10_000), LISTEN)
  if (N / CLIENTS > 19_000 || N / PROCS > 19_000) throw new Error('at most 19,000 sockets per process (ulimit -n)')
  const prefix = `bench:scale:storm:${process.pid}:`
  const server = fileURLToPath(new URL('server.js', import.meta.url))
  const self = fileURLToPath(import.meta.url)
  const deadline = Date.now() + 20 * 60_000
  const load = () => os.loadavg().map(l => l.toFixed(2)).join(' ')
  const loadStart = load()

  const procs = new Set()
  const start = (file, argv, execArgv = []) => {
    const proc = fork(file, argv, { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    procs.add(proc)
    proc.on('exit', () => procs.delete(proc))
    const inbox = []
    let wake
    proc.on('message', (m) => { inbox.push(m); wake?.() })
    const next = async (test, ms = 300_000) => {
      const until = Math.min(Date.now() + ms, deadline)
      for (;;) {
        const i = inbox.findIndex(test)
        if (i !== -1) return inbox.splice(i, 1)[0]
        if (Date.now() > until) throw new Error(`${file}: waited ${ms} ms in vain`)
        await Promise.race([new Promise(resolve => { wake = resolve }), sleep(500)])
      }
    }
    return { proc, next, send: (m) => proc.send(m) }
  }
  const serverArgs = ['--kind=ours', '--mode=redis', `--ports=${PORTS}`, `--prefix=${prefix}`, '--history=100000', '--backlog=4096',
    ...(RETRY === undefined ? [] : [`--retry=${RETRY}`]), ...(ADMISSION === undefined ? [] : [`--admission=${ADMISSION}`]),
    ...(RETRY_AFTER === undefined ? [] : [`--retry-after=${RETRY_AFTER}`])]
  const startServers = async (execArgv = ['--expose-gc'], extra = []) => {
    const handles = Array.from({ length: PROCS }, () => start(server, [...serverArgs, ...extra], execArgv))
    const ports = []
    for (const h of handles) ports.push(...(await h.next(m => m.ready === true, 60_000)).ports)
    return { handles, ports }
  }

  const { Redis } = await import('ioredis')
  const redis = new Redis(REDIS_URL)
  try {
    const publisher = start(server, serverArgs.map(a => a.startsWith('--ports=') ? '--ports=1' : a))
    await publisher.next(m => m.ready === true, 60_000)
    let servers = await startServers()
    const clients = Array.from({ length: CLIENTS }, () => start(self, ['client']))
    const share = (i) => Math.floor(N / CLIENTS) + (i < N % CLIENTS ? 1 : 0)
    clients.forEach((c, i) => c.send({ cmd: 'connect', ports: servers.ports, count: share(i) }))
    for (const c of clients) await c.next(m => m.type === 'connected')
    console.log(`storm: ${N} subscribers on ${PROCS} processes; load ${load()}`)

    // a steady publish from here to the end
    let n = 0
    let publishing = true
    let kickoff = 0
    const steady = (async () => {
      while (publishing) {
        publisher.send({ cmd: 'publish', n: n++, id: n })
        await sleep(EVERY)
      }
    })()
    await sleep(3000)

    const info = async () => {
      const stats = await redis.info('stats')
      const commands = await redis.info('commandstats')
      const calls = {}
      for (const m of commands.matchAll(/cmdstat_(\w+):calls=(\d+)/g)) calls[m[1]] = Number(m[2])
      return { bytes: Number(/total_net_output_bytes:(\d+)/.exec(stats)[1]), calls }
    }
    const before = await info()
    kickoff = n
    const t0 = now()
    for (const h of servers.handles) h.proc.kill('SIGKILL')
    // only the traced servers measure their event-loop delay
    servers = await startServers(PROFILE === undefined ? undefined : ['--expose-gc', '--cpu-prof', `--cpu-prof-dir=${PROFILE}`],
      TRACE ? ['--loop-delay'] : [])
    const listeningMs = now() - t0
    for (const c of clients) c.send({ cmd: 'reconnect', ports: servers.ports, jitter: JITTER, from: kickoff })
    const tracing = TRACE ? trace(t0, servers, clients) : undefined
    const resumed = []
    for (const c of clients) {
      const left = t0 + BOUND * 1000 - now()
      resumed.push(left > 0 ? await c.next(m => m.type === 'resumed', left).catch(() => undefined) : undefined)
    }
    // a client process that did not resume within the bound says how many of its clients are still down
    for (const [i, c] of clients.entries()) if (resumed[i] === undefined) c.send({ cmd: 'down' })
    const stillDown = []
    for (const [i, c] of clients.entries()) {
      stillDown.push(resumed[i] === undefined ? (await c.next(m => m.type === 'down', 60_000)).down : 0)
    }
    const down = stillDown.reduce((a, b) => a + b, 0)
    await tracing?.stop()
    const resumeMs = down > 0 ? BOUND * 1000 : Math.max(...resumed.map(r => r.at)) - t0
    const after = await info()
    console.log(down > 0
      ? `storm: ${down} clients still down ${BOUND} s after the kill; load ${load()}`
      : `storm: every client streaming again ${(resumeMs / 1000).toFixed(1)} s after the kill; load ${load()}`)
    await sleep(3000)
    publishing = false
    await steady
    await sleep(2000)
    for (const c of clients) c.send({ cmd: 'report', last: n - 1 })
    const reports = []
    for (const c of clients) reports.push(await c.next(m => m.type === 'report'))
    // copied report by report: past a few hundred million (100,000 clients over minutes) one array of them is
    // more than V8 allows (flatMap: Invalid array length)
    const latencies = new Float64Array(reports.reduce((a, r) => a + r.latencies.length, 0))
    let at = 0
    for (const r of reports) { latencies.set(r.latencies, at); at += r.latencies.length; r.latencies = [] }
    latencies.sort()
    const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN
    const sum = (f) => reports.reduce((a, r) => a + f(r), 0)
    const calls = Object.keys(after.calls).filter(k => after.calls[k] !== before.calls[k])
      .map(k => `${k} ${after.calls[k] - (before.calls[k] ?? 0)}`).join(', ')
    const rows = [
      ['subscribers, server processes', `${N.toLocaleString('en-US')}, ${PROCS}`],
      ['kill → new server processes listening', `${(listeningMs / 1000).toFixed(1)} s`],
      ['kill → every client streaming again', down > 0
        ? `not within ${BOUND} s: ${down.toLocaleString('en-US')} still down`
        : `${(resumeMs / 1000).toFixed(1)} s`],
      ['reconnects refused or failed (retried)', String(sum(r => r.refused))],
      ['of which 503 (admission)', String(sum(r => r.unavailable))],
      ['attempts while no server listened (`retry` mode: a refused connection, tried again after `retry`)',
        String(sum(r => r.unreachable))],
      [`Redis bytes sent, kill → all resumed${down > 0 ? ' (or the bound)' : ''}`, `${((after.bytes - before.bytes) / 1048576).toFixed(1)} MiB`],
      ['Redis commands, kill → all resumed (machine-wide: other clients of the same Redis count too)', calls || 'none'],
      ['items lost (gaps) / read twice', `${sum(r => r.lost)} / ${sum(r => r.dupes)}`],
      ['`sse-reset` items', String(sum(r => r.resets))],
      ['items published from the kill on: delivery p50 / p99 / max', `${pct(0.5).toFixed(0)} / ${pct(0.99).toFixed(0)} / ${(latencies.at(-1) ?? NaN).toFixed(0)} ms`],
      ['load average at the start / end', `${loadStart} / ${load()}`]
    ]
    let how = JITTER > 0 ? ` after up to ${JITTER} ms` : ' at once'
    if (RETRY !== undefined) {
      how = ` after the \`retry\` they last received (${RETRY} ms ± 50 %, the plugin's jitter)`
      if (ADMISSION !== undefined) how += `, \`admission\` ${ADMISSION} (rate,burst,spread) per process`
      if (RETRY_AFTER !== undefined) how += `, \`retryAfter\` ${RETRY_AFTER}`
    }
    const table = [`Reconnection storm: every server process killed and started again, ${N.toLocaleString('en-US')} clients back with Last-Event-ID` +
      `${how}; an item published every ${EVERY} ms throughout.`, '',
    '| | fastify-typed-sse |', '|---|---|', ...rows.map(([k, v]) => `| ${k} | ${v} |`)].join('\n')
    console.log('\n' + table)
    if (recording()) recordFigures(AS === undefined ? 'scale-storm' : `scale-storm-${AS}`, table, `node bench/scale/storm.js ${args.filter(a => a !== '--record').join(' ')}`.trim())
    if (PROFILE !== undefined) {
      // a graceful exit writes the profile
      const exits = servers.handles.map(h => new Promise(resolve => h.proc.once('exit', resolve)))
      for (const h of servers.handles) h.send({ cmd: 'stop' })
      await Promise.race([Promise.all(exits), sleep(30_000)])
      console.log(`storm: CPU profiles of the restarted servers in ${PROFILE}`)
    }
  } finally {
    for (const p of procs) p.kill('SIGKILL')
    const keys = await redis.keys(prefix + '*')
    if (keys.length > 0) await redis.del(...keys)
    redis.disconnect()
  }
  process.exit(0)
}

// ---- --trace: the storm second by second -----------------------------------------------------------------
/**
 * Every second from the kill: clients still down; per restarted server its CPU (% of a core), event-loop delay
 * (p99/max ms) and subscribers; the listening sockets' accept queues (`ss`: Recv-Q, connections the kernel
 * completed that the server did not accept yet) and the clients' connections still in SYN-SENT (a SYN dropped by
 * a full queue is retransmitted after 1, 2, 4, 8... s); the kernel's listen overflows and SYNs sent again since the
 * kill (machine-wide).
 */
function trace (t0, servers, clients) {
  let on = true
  let k = 0
  const netstat = () => {
    const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n').filter(l => l.startsWith('TcpExt:'))
    const names = lines[0].split(/\s+/)
    const values = lines[1].split(/\s+/).map(Number)
    const get = (n) => values[names.indexOf(n)]
    return { overflows: get('ListenOverflows'), drops: get('ListenDrops'), synRetrans: get('TCPSynRetrans') }
  }
  const filter = (side) => '( ' + servers.ports.map(p => `${side} = :${p}`).join(' or ') + ' )'
  // `ss` runs beside the servers on the same cores: asynchronously, so that the orchestrator's event loop is not
  // held while it lists thousands of sockets (the listing itself still costs CPU: traced runs carry it)
  const ss = (...argv) => run('ss', ['-Htn', ...argv], { encoding: 'utf8', maxBuffer: 64 * 1048576 })
    .then(r => r.stdout, () => '')
  const ask = (h, id) => { h.send({ cmd: 'stats', id }); return h.next(m => m.id === id, 5000).catch(() => undefined) }
  const loop = (async () => {
    const first = netstat()
    let cpu = await Promise.all(servers.handles.map((h, i) => ask(h, `trace-${i}-${k}`)))
    let at = now()
    while (on) {
      await sleep(1000)
      k++
      const stats = await Promise.all(servers.handles.map((h, i) => ask(h, `trace-${i}-${k}`)))
      const progress = await Promise.all(clients.map(c => {
        c.send({ cmd: 'progress', k })
        return c.next(m => m.type === 'progress' && m.k === k, 5000).catch(() => ({ down: NaN }))
      }))
      const t = now()
      const sum = (key) => progress.reduce((a, p) => a + p[key], 0)
      const [listening, syn] = await Promise.all([ss('-l', filter('sport')), ss('state', 'syn-sent', filter('dport'))])
      const queues = listening.trim().split('\n').filter(Boolean).map(l => l.split(/\s+/)[1]).join('/')
      const synSent = syn.split('\n').filter(Boolean).length
      const net = netstat()
      const servers_ = stats.map((s, i) => {
        if (s === undefined || cpu[i] === undefined) return '?'
        const pct = (s.cpu - cpu[i].cpu) / 10 / (t - at)
        const loop = s.loop === undefined ? '?' : `${s.loop.p99.toFixed(0)}/${s.loop.max.toFixed(0)}`
        return `${pct.toFixed(0)}% ${loop}ms ${s.subscribers} subs ` +
          `${s.opened} opened ${s.cutOffs} cut`
      }).join(' | ')
      console.log(`trace ${((t - t0) / 1000).toFixed(1)}s: down ${sum('down')} ` +
        `(connecting ${sum('connecting')}, connected without an answer ${sum('heads')}, closed again ${sum('again')}); ` +
        `servers ${servers_}; accept queues ${queues}; syn-sent ${synSent}; listen overflows +${net.overflows - first.overflows} ` +
        `drops +${net.drops - first.drops}, SYNs sent again +${net.synRetrans - first.synRetrans}; load ${os.loadavg()[0].toFixed(2)}`)
      cpu = stats
      at = t
    }
  })()
  return { stop: async () => { on = false; await loop } }
}

// ---- a client process: raw sockets that remember their last id, and come back with it ---------------------
function client () {
  const ID = 'id: '
  const MARK = '{"t":'
  const states = []
  let from = Infinity
  let latencies = []
  let lost = 0
  let dupes = 0
  let resets = 0
  let refused = 0
  let unavailable = 0
  let unreachable = 0
  let down = 0
  /** Sockets whose connect() has not completed yet (their SYN unanswered), and those connected but not yet answered. */
  let connecting = 0
  let heads = 0
  /** Streams that closed after they had resumed (a cut-off, say): they come back once more. */
  let again = 0
  let ports = []
  let jitter = 0
  let resumedAt = 0
  /** Closed before the new servers' ports are known: they reconnect once told. */
  let waiting = []
  let told = false
  /** Until every client first streams: a refused one (a 503) comes back to the same servers after its Retry-After. */
  let first = true

  function onData (chunk) {
    const at = now()
    const state = this.state
    let text = state.tail + chunk.toString('latin1')
    if (!state.up) {
      const head = text.indexOf('\r\n\r\n')
      if (head === -1) { state.tail = text; return }
      if (!text.startsWith('HTTP/1.1 200')) {
        refused++
        const after = /\r\nretry-after: *(\d+)/i.exec(text.slice(0, head))
        if (after !== null) { unavailable++; state.retryAfter = Number(after[1]) * 1000 }
        state.tail = ''
        this.destroy()
        return
      }
      state.up = true
      heads--
      if (--down === 0) resumedAt = at
      text = text.slice(head + 4)
    }
    // whole frames only: up to the last blank line
    if (!state.sawRetry) {
      // the `retry:` line comes first, before any item
      const r = text.startsWith('retry: ') ? 0 : text.indexOf('\nretry: ') + 1
      const end = text.indexOf('\n', r)
      if ((r > 0 || text.startsWith('retry: ')) && end !== -1) {
        state.retry = Number(text.slice(r + 7, end))
        state.sawRetry = true
      }
    }
    const last = text.lastIndexOf('\n\n')
    state.tail = last === -1 ? text : text.slice(last + 2)
    if (last === -1) return
    const body = text.slice(0, last + 1)
    let i = 0
    while ((i = body.indexOf(ID, i)) !== -1) {
      const end = body.indexOf('\n', i)
      const next = body.indexOf(ID, end)
      const frame = body.slice(end, next === -1 ? body.length : next)
      const m = frame.indexOf(MARK)
      if (m !== -1) {
        const comma = frame.indexOf(',"n":', m)
        const t = Number(frame.slice(m + MARK.length, comma))
        const n = Number(frame.slice(comma + 5, frame.indexOf('}', comma)))
        if (state.lastN >= 0 && n > state.lastN + 1) lost += n - state.lastN - 1
        if (n <= state.lastN) dupes++
        else state.lastN = n
        if (n >= from) latencies.push(at - t)
      } else if (frame.includes('sse-reset')) resets++
      state.lastId = body.slice(i + ID.length, end)
      i = end
    }
  }

  function onClose () {
    const state = this.state
    if (state.up) { state.up = false; down++; if (told) again++ } else if (state.connected) heads--
    else connecting--
    // as an EventSource: after a 503 its Retry-After, else the `retry` last received
    const delay = state.retryAfter ?? state.retry
    state.retryAfter = undefined
    if (delay !== undefined) setTimeout(first ? open : attempt, delay, state)
    // no `retry` received: before the new ports are known, wait; after, try again (the server refused, or was not
    // listening yet)
    else if (!told) waiting.push(state)
    else setTimeout(open, 100 + Math.random() * jitter, state)
  }

  /** A reconnection attempt after `retry`: no server listens before the new ports are known (refused; again later). */
  function attempt (state) {
    if (told) { open(state); return }
    unreachable++
    setTimeout(attempt, state.retry, state)
  }

  function onConnect () {
    this.state.connected = true
    connecting--
    heads++
  }

  function open (state) {
    const socket = connect(ports[state.k % ports.length], '127.0.0.1')
    socket.state = state
    state.tail = ''
    state.sawRetry = false
    state.connected = false
    connecting++
    socket.once('connect', onConnect)
    socket.on('data', onData)
    socket.on('close', onClose)
    socket.on('error', () => {})
    const last = state.lastId === '' ? '' : `Last-Event-ID: ${state.lastId}\r\n`
    socket.write(`GET /sub HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n${last}\r\n`)
  }

  process.on('message', async (msg) => {
    if (msg.cmd === 'connect') {
      ports = msg.ports
      down = msg.count
      for (let k = 0; k < msg.count; k++) {
        const state = { k, lastId: '', lastN: -1, tail: '', up: false }
        states.push(state)
        open(state)
        if (k % 64 === 63) await sleep(5)
      }
      while (down > 0) await sleep(100)
      first = false
      process.send({ type: 'connected' })
    } else if (msg.cmd === 'reconnect') {
      from = msg.from
      jitter = msg.jitter
      ports = msg.ports
      told = true
      for (const state of waiting) setTimeout(open, Math.random() * jitter, state)
      waiting = []
      while (down > 0) await sleep(100)
      process.send({ type: 'resumed', at: resumedAt })
    } else if (msg.cmd === 'progress') {
      process.send({ type: 'progress', k: msg.k, down, connecting, heads, again })
    } else if (msg.cmd === 'down') {
      process.send({ type: 'down', down })
    } else if (msg.cmd === 'report') {
      process.send({ type: 'report', latencies, lost, dupes, resets, refused, unavailable, unreachable })
      latencies = []
    }
  })
  process.on('disconnect', () => process.exit(0))
}
