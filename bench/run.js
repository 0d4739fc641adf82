#!/usr/bin/env node
// `npm run bench` (full) and `npm run bench -- --quick` (< 3 min): every server in bench/servers as its own
// process, driven by bench/client.js in another, round by round in rotating order; medians with min–max and
// ratios to `raw`; bench/results/<stamp>-<mode>.json, latest-<mode>.{json,md} and fanout-latency-<mode>.svg, and
// after a full run of every server bench/README.md (re-rendered by bench/figures.js).
//
// Options: --quick, --rounds=N, --only=raw,ours (a subset, for development; its latest-* files are kept apart),
// --baseline=<path to a built dist/> (adds `ours-before`, this plugin from that build, beside `ours`, so that one run
// compares a change with the build before it; a full run so is the latest, its tables with one more column),
// --report=bench/results/<run>.json (make that run the latest: its tables, plot and, for a full run of every
// server, bench/README.md; run nothing, install nothing).
import { fork, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { renderReadme } from './figures.js'

const here = dirname(fileURLToPath(import.meta.url))
const root = join(here, '..')
const args = process.argv.slice(2)
const flag = (name) => args.includes(`--${name}`)
const option = (name) => args.find(a => a.startsWith(`--${name}=`))?.split('=')[1]
const quick = flag('quick')
const reporting = option('report') !== undefined

// ---- setup: bench dependencies and the built plugin (not needed to re-render a report) --------------------
if (!reporting && !existsSync(join(here, 'node_modules'))) {
  console.log('installing bench dependencies (npm --prefix bench ci)')
  const r = spawnSync('npm', ['--prefix', here, 'ci', '--no-audit', '--no-fund'], { stdio: 'inherit' })
  if (r.status !== 0) process.exit(r.status ?? 1)
}
if (!reporting && !existsSync(join(root, 'dist', 'index.js'))) {
  console.error('dist/ is missing: run `npm run build` at the root (`npm run bench` does it)')
  process.exit(1)
}
const baseline = option('baseline') === undefined ? undefined : resolve(option('baseline'))
if (!reporting && baseline !== undefined && !existsSync(join(baseline, 'index.js'))) {
  console.error(`--baseline=${option('baseline')}: no index.js there; give the dist/ of a build (npm run build in it)`)
  process.exit(1)
}

// ---- configuration ---------------------------------------------------------------------------------------
const SERVERS = [
  { key: 'raw', label: 'raw node:http', file: 'raw.js' },
  { key: 'ours', label: 'fastify-typed-sse', file: 'ours.js' },
  // with --baseline only (or in a report of such a run): the same server, with the plugin from that build
  { key: 'ours-before', label: 'fastify-typed-sse (before)', file: 'ours.js', dist: baseline },
  { key: 'fastify-sse', label: '@fastify/sse', file: 'fastify-sse.js' },
  { key: 'fastify-sse-v2', label: 'fastify-sse-v2', file: 'fastify-sse-v2.js' },
  { key: 'better-sse', label: 'better-sse', file: 'better-sse.js' }
]
const only = option('only')?.split(',')
const servers = SERVERS.filter(s => s.key === 'ours-before'
  ? baseline !== undefined && (only === undefined || only.includes('ours') || only.includes(s.key))
  : only === undefined || only.includes(s.key))

const CONFIG = quick
  ? {
      rounds: 1,
      streamN: 100_000,
      parallel: 8,
      parallelN: 25_000,
      fanout: [1000, 5000],
      publishes: 10,
      warmupPublishes: 3,
      intervalMs: 50,
      idle: 5000,
      warmupN: 5000
    }
  : {
      rounds: 5,
      streamN: 200_000,
      parallel: 8,
      parallelN: 200_000,
      fanout: [1000, 5000],
      publishes: 20,
      warmupPublishes: 3,
      intervalMs: 50,
      idle: 5000,
      warmupN: 20_000
    }
if (option('rounds') !== undefined) CONFIG.rounds = Number(option('rounds'))

// Every step is bounded in time; a server that stalls is reported, not waited for.
const STREAM_TIMEOUT_MS = quick ? 60_000 : 120_000
const FANOUT_TIMEOUT_MS = 60_000
const START_TIMEOUT_MS = 20_000
const RUN_DEADLINE = Date.now() + (quick ? 170_000 : 40 * 60_000)

// ---- processes -------------------------------------------------------------------------------------------
function startServer (server) {
  return new Promise((resolve, reject) => {
    const child = fork(join(here, 'servers', server.file), [], {
      execArgv: ['--expose-gc'],
      env: server.dist === undefined ? process.env : { ...process.env, BENCH_DIST: server.dist },
      stdio: ['ignore', 'inherit', 'pipe', 'ipc']
    })
    let stderr = ''
    child.stderr.on('data', (d) => { stderr += d; if (stderr.length > 20_000) stderr = stderr.slice(-20_000) })
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${server.key} did not start`)) }, START_TIMEOUT_MS)
    const handle = { child, port: 0, crashed: null, stderr: () => stderr, pending: new Map(), seq: 0 }
    child.on('message', (msg) => {
      if (msg?.ready === true) {
        clearTimeout(timer)
        handle.port = msg.port
        resolve(handle)
      } else if (msg?.id !== undefined) {
        handle.pending.get(msg.id)?.(msg)
        handle.pending.delete(msg.id)
      }
    })
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      if (!handle.stopping) handle.crashed = `exited (${signal ?? code}) ${stderr.trim().split('\n').slice(-3).join(' | ')}`
      for (const done of handle.pending.values()) done(null)
      reject(new Error(`${server.key} exited before it was ready: ${stderr}`))
    })
  })
}

function stats (handle, gc = false) {
  if (handle.crashed !== null) return Promise.resolve(null)
  return new Promise(resolve => {
    const id = ++handle.seq
    handle.pending.set(id, resolve)
    handle.child.send({ cmd: 'stats', id, gc })
    setTimeout(() => { if (handle.pending.delete(id)) resolve(null) }, 10_000).unref()
  })
}

async function stopServer (handle) {
  handle.stopping = true
  if (handle.child.exitCode !== null) return
  const exited = new Promise(resolve => handle.child.once('exit', resolve))
  handle.child.kill('SIGTERM')
  const t = setTimeout(() => handle.child.kill('SIGKILL'), 3000)
  await exited
  clearTimeout(t)
}

/**
 * Runs one client task; `onSubscribed(child)` is called when the client reports its streams are open,
 * `onDrained(child)` when a fan-out client has every delivery (or gave up waiting) and before it closes them.
 */
function client (task, onSubscribed, onDrained) {
  return new Promise(resolve => {
    const child = fork(join(here, 'client.js'), [JSON.stringify(task)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    let result = null
    const limit = setTimeout(() => child.kill('SIGKILL'), (task.timeoutMs ?? 60_000) + 30_000)
    child.on('message', async (msg) => {
      if (msg?.subscribed !== undefined) await onSubscribed?.(child, msg.subscribed)
      else if (msg?.drained !== undefined) {
        if (onDrained !== undefined) await onDrained(child)
        else child.send({ cmd: 'close' })
      } else if (msg?.result !== undefined) result = msg.result
    })
    child.on('exit', (code) => {
      clearTimeout(limit)
      resolve(result ?? { errors: [`client exited (${code}) without a result`] })
    })
  })
}

const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))

/** Waits until the server has no subscriber left (the previous task's streams are gone). */
async function settle (handle, maxMs = 5000) {
  const end = Date.now() + maxMs
  let s = await stats(handle)
  while (s !== null && s.subscribers > 0 && Date.now() < end) {
    await sleep(100)
    s = await stats(handle)
  }
  return s === null ? 'no answer' : s.subscribers
}

// ---- one server, one round --------------------------------------------------------------------------------
async function measure (server) {
  const out = { server: server.key, errors: [] }
  let handle
  try {
    handle = await startServer(server)
  } catch (err) {
    out.errors.push(`did not start: ${err.message.slice(0, 500)}`)
    return out
  }
  const port = handle.port
  const note = (scenario, errors) => { for (const e of errors ?? []) out.errors.push(`${scenario}: ${e}`) }
  try {
    // warm-up: the JIT and the first-request paths, not measured
    await client({ task: 'stream', port, streams: 1, n: CONFIG.warmupN, timeoutMs: STREAM_TIMEOUT_MS })
    await client({ task: 'fanout', port, subs: 100, publishes: 3, intervalMs: 10, timeoutMs: 20_000 }, (c) => c.send({ cmd: 'go' }))
    await settle(handle)

    // memory: 0 and N idle streams, after a full GC each time
    {
      const before = await stats(handle, true)
      let after = null
      const r = await client({ task: 'idle', port, subs: CONFIG.idle, timeoutMs: FANOUT_TIMEOUT_MS }, async (c, opened) => {
        await sleep(1000)
        after = await stats(handle, true)
        after.opened = opened
        c.send({ cmd: 'close' })
      })
      note('idle', r.errors)
      if (before !== null && after !== null && after.opened > 0) {
        out.memory = {
          streams: after.opened,
          rss0: before.mem.rss,
          heap0: before.mem.heapUsed,
          rssN: after.mem.rss,
          heapN: after.mem.heapUsed,
          rssPerStream: (after.mem.rss - before.mem.rss) / after.opened,
          heapPerStream:
            (after.mem.heapUsed + after.mem.external - before.mem.heapUsed - before.mem.external) / after.opened
        }
      }
      const left = await settle(handle)
      if (left !== 0) out.errors.push(`idle: ${left} subscribers still registered 5 s after the clients left`)
    }

    // throughput: 1 stream, then `parallel` streams
    for (const [key, streams, n] of [['stream1', 1, CONFIG.streamN], ['streamP', CONFIG.parallel, CONFIG.parallelN]]) {
      const c0 = await stats(handle)
      const r = await client({ task: 'stream', port, streams, n, timeoutMs: STREAM_TIMEOUT_MS })
      const c1 = await stats(handle)
      note(key, r.errors)
      if (r.ms !== undefined) {
        out[key] = {
          streams,
          events: r.events,
          expected: r.expected,
          ms: r.ms,
          eventsPerSec: r.events / (r.ms / 1000),
          mbPerSec: r.bytes / 1e6 / (r.ms / 1000),
          cpuPerEventUs: c0 && c1 && r.events > 0 ? (c1.cpu - c0.cpu) / r.events : null
        }
      }
    }

    // fan-out: N subscribers, `publishes` events 50 ms apart
    for (const subs of CONFIG.fanout) {
      let c0 = null
      let c1 = null
      // CPU from just before the first publish to the client having every delivery, streams still open
      const r = await client({ task: 'fanout', port, subs, publishes: CONFIG.publishes, warmup: CONFIG.warmupPublishes, intervalMs: CONFIG.intervalMs, timeoutMs: FANOUT_TIMEOUT_MS }, async (c) => {
        await sleep(200)
        c0 = await stats(handle)
        c.send({ cmd: 'go' })
      }, async (c) => {
        c1 = await stats(handle)
        c.send({ cmd: 'close' })
      })
      note(`fanout${subs}`, r.errors)
      if (r.expected !== undefined) {
        out[`fanout${subs}`] = {
          subs,
          expected: r.expected,
          delivered: r.delivered,
          complete: r.expected > 0 ? (100 * r.delivered) / r.expected : 0,
          p50: r.p50,
          p99: r.p99,
          max: r.max,
          cpuPerDeliveryUs: c0 && c1 && r.delivered > 0 ? (c1.cpu - c0.cpu) / r.delivered : null
        }
      }
      const left = await settle(handle)
      if (left !== 0) out.errors.push(`fanout${subs}: ${left} subscribers still registered 5 s after the clients left`)
    }
  } catch (err) {
    out.errors.push(`bench failed: ${err.stack}`)
  } finally {
    if (handle.crashed !== null) out.errors.push(`server crashed: ${handle.crashed}`)
    await stopServer(handle)
  }
  return out
}

// ---- statistics and reporting -------------------------------------------------------------------------------
const METRICS = [
  // [path in a run's result, row label, number format ('k': thousands)]
  ['stream1.eventsPerSec', '1×stream events/s', 'k'],
  ['stream1.mbPerSec', '1×stream MB/s', ''],
  ['stream1.cpuPerEventUs', '1×stream CPU µs/event', ''],
  ['streamP.eventsPerSec', `${CONFIG.parallel}×stream events/s`, 'k'],
  ['streamP.mbPerSec', `${CONFIG.parallel}×stream MB/s`, ''],
  ...CONFIG.fanout.flatMap(n => [
    [`fanout${n}.p50`, `fan-out ${n} p50 ms`, ''],
    [`fanout${n}.p99`, `fan-out ${n} p99 ms`, ''],
    [`fanout${n}.max`, `fan-out ${n} max ms`, ''],
    [`fanout${n}.cpuPerDeliveryUs`, `fan-out ${n} CPU µs/delivery`, ''],
    [`fanout${n}.complete`, `fan-out ${n} delivered %`, '']
  ]),
  ['memory.rssPerStream', 'idle RSS bytes/stream', 'k'],
  ['memory.heapPerStream', 'idle heap+ext bytes/stream', 'k']
]

function get (obj, path) {
  return path.split('.').reduce((o, k) => (o == null ? undefined : o[k]), obj)
}

function median (xs) {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

function summarize (runs) {
  const summary = {}
  for (const server of servers) {
    const mine = runs.filter(r => r.server === server.key)
    summary[server.key] = { errors: [...new Set(mine.flatMap(r => r.errors))] }
    for (const [path] of METRICS) {
      const xs = mine.map(r => get(r, path)).filter(x => typeof x === 'number' && Number.isFinite(x))
      if (xs.length > 0) {
        summary[server.key][path] = { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length }
      }
    }
  }
  for (const server of servers) {
    for (const [path] of METRICS) {
      const mine = summary[server.key][path]
      const raw = summary.raw?.[path]
      if (mine && raw && raw.median !== 0) mine.ratio = mine.median / raw.median
    }
  }
  return summary
}

function fmt (x, unit) {
  if (x == null) return '–'
  if (unit === 'k') return x >= 10_000 ? `${(x / 1000).toFixed(0)}k` : x >= 1000 ? `${(x / 1000).toFixed(1)}k` : x.toFixed(0)
  if (Math.abs(x) >= 100) return x.toFixed(0)
  if (Math.abs(x) >= 10) return x.toFixed(1)
  return x.toFixed(2)
}

function cell (s, unit, rounds) {
  if (s === undefined) return '**failed**'
  const range = rounds > 1 && s.n > 1 ? ` (${fmt(s.min, unit)}–${fmt(s.max, unit)})` : ''
  const ratio = s.ratio !== undefined ? ` ×${s.ratio.toFixed(2)}` : ''
  return `${fmt(s.median, unit)}${range}${ratio}`
}

function table (summary, rows, rounds) {
  const head = `| | ${servers.map(s => s.label).join(' | ')} |`
  const sep = `|---|${servers.map(() => '---').join('|')}|`
  const lines = rows.map(([path, label, unit]) => `| ${label} | ${servers.map(s => cell(summary[s.key][path], unit, rounds)).join(' | ')} |`)
  return [head, sep, ...lines].join('\n')
}

function markdown (summary, meta) {
  const rounds = meta.config.rounds
  const status = servers.map(s => {
    const errs = summary[s.key].errors
    return `| ${s.label} | ${meta.versions[s.key] ?? ''} | ${errs.length === 0 ? 'all events delivered, in order; no crash' : '**' + errs.slice(0, 4).join('; ').replaceAll('|', '/') + (errs.length > 4 ? ` (+${errs.length - 4} more)` : '') + '**'} |`
  })
  return [
    `Each cell: median${rounds > 1 ? ' (min–max)' : ''} over ${rounds} round${rounds > 1 ? 's' : ''}, then ×ratio to raw node:http (for time, CPU and memory lower is better; for throughput higher is better).`,
    '',
    '**Throughput** (`GET /stream?n=N`, as fast as backpressure allows; ' +
      `1 stream × ${meta.config.streamN.toLocaleString('en')} events, ${meta.config.parallel} streams × ${meta.config.parallelN.toLocaleString('en')} events)`,
    '',
    table(summary, METRICS.filter(([p]) => p.startsWith('stream')), rounds),
    '',
    `**Fan-out** (\`GET /sub\` × N, then ${meta.config.warmupPublishes} warm-up + ${meta.config.publishes} measured × \`POST /pub?n=1\`, ${meta.config.intervalMs} ms apart; latency = server's publish stamp → client's read of the frame, both on this machine's clock; CPU per delivery over all ${meta.config.warmupPublishes + meta.config.publishes} publishes, read before the streams close)`,
    '',
    table(summary, METRICS.filter(([p]) => p.startsWith('fanout')), rounds),
    '',
    `**Idle memory** (server RSS and V8 heap+external after a full GC, with 0 and ${meta.config.idle.toLocaleString('en')} idle \`/sub\` streams; per stream)`,
    '',
    table(summary, METRICS.filter(([p]) => p.startsWith('memory')), rounds),
    '',
    '**Correctness** (every event counted and its id checked in order by the client; subscribers must be released when clients leave)',
    '',
    '| server | version | result |',
    '|---|---|---|',
    ...status
  ].join('\n')
}

const GOAL_P99_MS = 100
const COLORS = { raw: '#555555', ours: '#d62728', 'ours-before': '#ff9896', 'fastify-sse': '#1f77b4', 'fastify-sse-v2': '#2ca02c', 'better-sse': '#ff7f0e' }

/** Fan-out latency (p50 dashed, p99 solid, min–max of p99 as a whisker) against subscribers, per server. */
function svg (summary, meta) {
  const W = 720
  const H = 440
  const L = 70
  const R = 190
  const T = 50
  const B = 60
  const xs = CONFIG.fanout
  const series = servers.map(s => ({
    s,
    p50: xs.map(n => summary[s.key][`fanout${n}.p50`]),
    p99: xs.map(n => summary[s.key][`fanout${n}.p99`])
  }))
  // scaled to the medians: a noisy round's whisker is clipped at the top and its value written there
  const all = series.flatMap(({ p50, p99 }) => [...p50, ...p99].filter(Boolean).map(v => v.median))
  const ymax = niceMax(Math.max(1, ...all) * 1.15)
  const x = (i) => L + (xs.length === 1 ? 0.5 : i / (xs.length - 1)) * (W - L - R)
  const y = (v) => T + (1 - v / ymax) * (H - T - B)
  const parts = []
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`)
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`)
  parts.push(`<text x="${W / 2 - R / 2 + L / 2}" y="22" text-anchor="middle" font-size="15">SSE fan-out delivery latency vs subscribers</text>`)
  parts.push(`<text x="${W / 2 - R / 2 + L / 2}" y="38" text-anchor="middle" fill="#666">${esc(meta.machineShort)}; ${meta.config.rounds} round(s), medians</text>`)
  for (let k = 0; k <= 5; k++) {
    const v = (ymax * k) / 5
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#e5e5e5"/>`)
    parts.push(`<text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${Number.isInteger(v) ? v : v.toFixed(1)}</text>`)
  }
  if (GOAL_P99_MS <= ymax) {
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${y(GOAL_P99_MS)}" y2="${y(GOAL_P99_MS)}" stroke="#d62728" stroke-dasharray="2 3" opacity="0.7"/>`)
    parts.push(`<text x="${W - R - 4}" y="${y(GOAL_P99_MS) - 4}" text-anchor="end" fill="#d62728" font-size="11">goal: p99 &lt; ${GOAL_P99_MS} ms at 5,000</text>`)
  }
  xs.forEach((n, i) => {
    parts.push(`<text x="${x(i)}" y="${H - B + 18}" text-anchor="middle">${n.toLocaleString('en')}</text>`)
  })
  parts.push(`<text x="${(L + W - R) / 2}" y="${H - 18}" text-anchor="middle">subscribers</text>`)
  parts.push(`<text transform="translate(18 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">delivery latency (ms)</text>`)
  parts.push(`<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="#333"/><line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#333"/>`)
  series.forEach(({ s, p50, p99 }, idx) => {
    const color = COLORS[s.key] ?? '#000'
    const dx = (idx - (series.length - 1) / 2) * 6 // small offset so whiskers do not overlap
    for (const [vals, dash] of [[p99, ''], [p50, ' stroke-dasharray="5 4"']]) {
      const pts = vals.map((v, i) => v ? `${x(i) + dx},${y(v.median)}` : null).filter(Boolean)
      if (pts.length > 1) parts.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${color}" stroke-width="2"${dash}/>`)
      vals.forEach((v, i) => {
        if (!v) return
        parts.push(`<circle cx="${x(i) + dx}" cy="${y(v.median)}" r="3.5" fill="${color}"/>`)
        if (dash === '' && v.max > v.min) {
          parts.push(`<line x1="${x(i) + dx}" x2="${x(i) + dx}" y1="${y(v.min)}" y2="${y(Math.min(v.max, ymax))}" stroke="${color}" stroke-width="1"/>`)
          if (v.max > ymax) parts.push(`<text x="${x(i) + dx + (i === 0 ? 4 : -4)}" y="${T + 9 + idx * 11}" text-anchor="${i === 0 ? 'start' : 'end'}" font-size="9" fill="${color}">↑${fmt(v.max)}</text>`)
        }
      })
    }
    const ly = T + 10 + idx * 22
    parts.push(`<line x1="${W - R + 15}" x2="${W - R + 40}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"/>`)
    parts.push(`<text x="${W - R + 46}" y="${ly + 4}">${esc(s.label)}</text>`)
  })
  const ly = T + 10 + series.length * 22 + 10
  parts.push(`<line x1="${W - R + 15}" x2="${W - R + 40}" y1="${ly}" y2="${ly}" stroke="#333" stroke-width="2"/><text x="${W - R + 46}" y="${ly + 4}">p99 (bar: min–max)</text>`)
  parts.push(`<line x1="${W - R + 15}" x2="${W - R + 40}" y1="${ly + 20}" y2="${ly + 20}" stroke="#333" stroke-width="2" stroke-dasharray="5 4"/><text x="${W - R + 46}" y="${ly + 24}">p50</text>`)
  parts.push('</svg>')
  return parts.join('\n') + '\n'
}

function niceMax (v) {
  const p = 10 ** Math.floor(Math.log10(v))
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p
  return 10 * p
}

function esc (s) {
  return String(s).replace(/[<>&"]/g, c => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c])
}

function versions () {
  const v = {}
  const read = (p) => { try { return JSON.parse(spawnSync('node', ['-p', `JSON.stringify(require(${JSON.stringify(p)}))`], { encoding: 'utf8' }).stdout).version } catch { return undefined } }
  v.raw = `node ${process.versions.node}`
  v.ours = read(join(root, 'package.json'))
  if (baseline !== undefined) v['ours-before'] = baseline
  v['fastify-sse'] = read(join(here, 'node_modules/@fastify/sse/package.json'))
  v['fastify-sse-v2'] = read(join(here, 'node_modules/fastify-sse-v2/package.json'))
  v['better-sse'] = read(join(here, 'node_modules/better-sse/package.json'))
  v.fastify = read(join(here, 'node_modules/fastify/package.json'))
  return v
}

// ---- main --------------------------------------------------------------------------------------------------
if (option('report') !== undefined) {
  // Re-renders the table and the plot of an earlier run (bench/results/*.json) without running anything.
  const text = readFileSync(option('report'), 'utf8')
  const { meta, summary } = JSON.parse(text)
  Object.assign(CONFIG, meta.config)
  servers.splice(0, servers.length, ...SERVERS.filter(s => summary[s.key] !== undefined))
  const md = markdown(summary, meta)
  // the run's own stamped file when it is there (not latest-*.json, which the next run replaces)
  const stamped = join(here, 'results', `${meta.date.replace(/[:.]/g, '-')}-${meta.mode}.json`)
  const source = relative(here, existsSync(stamped) ? stamped : resolve(option('report'))).replaceAll('\\', '/')
  const latest = latestName(meta.mode, servers)
  writeFileSync(join(here, 'results', `latest-${latest}.json`), text)
  writeFileSync(join(here, 'results', `latest-${latest}.md`), header(meta, source) + md + '\n')
  writeFileSync(join(here, 'results', `fanout-latency-${latest}.svg`), svg(summary, meta))
  if (latest === 'full') renderReadme()
  console.log(md)
  process.exit(0)
}

// A run of some servers only is kept apart (latest-full-raw+ours.*): the latest-* files and bench/README.md show
// whole runs only.
/**
 * `full` or `quick` for a run of every server (with or without a `--baseline` beside ours, which then shows as one
 * more column); a run of some (--only) is named by its servers.
 */
function latestName (mode, ran) {
  const whole = SERVERS.every(s => s.key === 'ours-before' || ran.some(r => r.key === s.key))
  return whole ? mode : `${mode}-${ran.map(s => s.key).join('+')}`
}

function header (meta, file) {
  return `From [${file}](${file}). Machine: ${meta.machine}; load average (1/5/15 min) ${meta.loadavg.map(l => l.toFixed(2)).join(' ')} at the start, ${meta.loadavgEnd?.map(l => l.toFixed(2)).join(' ') ?? '?'} at the end; ${meta.date}; \`npm run bench${meta.mode === 'quick' ? ' -- --quick' : ''}\`, ${meta.durationSec?.toFixed(0)} s.\n\n`
}

const cpus = os.cpus()
const meta = {
  date: new Date().toISOString(),
  mode: quick ? 'quick' : 'full',
  config: CONFIG,
  node: process.version,
  versions: versions(),
  machine: `${cpus.length} × ${cpus[0]?.model.trim() ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.type()} ${os.release()}, Node ${process.version}`,
  loadavg: os.loadavg()
}
meta.machineShort = `${cpus.length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`
console.log(`bench ${meta.mode}: ${servers.map(s => s.key).join(', ')}; ${CONFIG.rounds} round(s); ${meta.machine}; load ${meta.loadavg.map(l => l.toFixed(2)).join(' ')}`)

const runs = []
const started = Date.now()
for (let round = 0; round < CONFIG.rounds; round++) {
  // rotate the order each round so that no server always runs first (or right after the heaviest)
  const order = servers.map((_, i) => servers[(i + round) % servers.length])
  for (const server of order) {
    if (Date.now() > RUN_DEADLINE) {
      console.log(`time limit reached: skipping ${server.key} in round ${round + 1}`)
      continue
    }
    const t = Date.now()
    const r = await measure(server)
    r.round = round + 1
    runs.push(r)
    const brief = [
      r.stream1 && `1×: ${fmt(r.stream1.eventsPerSec, 'k')}/s`,
      r.streamP && `${CONFIG.parallel}×: ${fmt(r.streamP.eventsPerSec, 'k')}/s`,
      ...CONFIG.fanout.map(n => r[`fanout${n}`] && `fan-out ${n} p99 ${fmt(r[`fanout${n}`].p99)} ms`),
      r.memory && `idle ${fmt(r.memory.rssPerStream, 'k')} B/stream`
    ].filter(Boolean).join(', ')
    console.log(`round ${round + 1} ${server.key.padEnd(15)} ${((Date.now() - t) / 1000).toFixed(1)}s  ${brief}${r.errors.length ? `  ERRORS: ${r.errors.join('; ')}` : ''}`)
  }
}
meta.durationSec = (Date.now() - started) / 1000
meta.loadavgEnd = os.loadavg()

const summary = summarize(runs)
const md = markdown(summary, meta)
const resultsDir = join(here, 'results')
mkdirSync(resultsDir, { recursive: true })
const stamp = meta.date.replace(/[:.]/g, '-')
const json = JSON.stringify({ meta, summary, runs }, null, 2) + '\n'
writeFileSync(join(resultsDir, `${stamp}-${meta.mode}.json`), json)
const latest = latestName(meta.mode, servers)
writeFileSync(join(resultsDir, `latest-${latest}.json`), json)
writeFileSync(join(resultsDir, `latest-${latest}.md`), header(meta, `results/${stamp}-${meta.mode}.json`) + md + '\n')
writeFileSync(join(resultsDir, `fanout-latency-${latest}.svg`), svg(summary, meta))
if (latest === 'full') renderReadme()
console.log('\n' + md + '\n')
console.log(`written: bench/results/${stamp}-${meta.mode}.json, latest-${latest}.{json,md}, fanout-latency-${latest}.svg (${meta.durationSec.toFixed(0)} s)`)
