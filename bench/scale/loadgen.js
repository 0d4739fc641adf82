// A load generator of the scale bench (bench/scale/run.js): holds `count` SSE connections over raw sockets to
// 127.0.0.1 on the given ports (round-robin), opening at most `inflight` at a time, and timestamps every
// delivered event `data: {"t":<publish stamp>,"n":<publish number>}` against this machine's clock. Lean on
// purpose: no HTTP parser, one shared listener per event for every socket, and only what a latency needs is read.
import { connect } from 'node:net'
import { performance } from 'node:perf_hooks'

const now = () => performance.timeOrigin + performance.now()
const MARK = '{"t":'

let latencies = [] // per publish number: a Float64Array of `ok` slots
let counts = [] // per publish number: deliveries so far
let ok = 0
let errors = 0
let closed = 0
let unexpected = 0
let stopping = false
const sockets = []

/** Reads the events out of a chunk; a frame cut between chunks waits in `this.tail`. */
function onData (chunk) {
  const at = now()
  const text = this.tail === '' ? chunk.toString('latin1') : this.tail + chunk.toString('latin1')
  let from = 0
  let keep = -1
  for (;;) {
    const i = text.indexOf(MARK, from)
    if (i === -1) break
    const end = text.indexOf('}', i)
    if (end === -1) { keep = i; break }
    const comma = text.indexOf(',"n":', i)
    const t = Number(text.slice(i + MARK.length, comma))
    const n = Number(text.slice(comma + 5, end))
    record(n, at - t)
    from = end + 1
  }
  this.tail = keep !== -1 ? text.slice(keep) : text.length - from > 4 ? text.slice(text.length - 4) : text.slice(from)
}

function record (n, latency) {
  if (latencies[n] === undefined) {
    latencies[n] = new Float64Array(ok)
    counts[n] = 0
  }
  if (counts[n] < ok) latencies[n][counts[n]] = latency
  if (++counts[n] === ok) process.send({ type: 'delivered', n })
}

function onClose () {
  closed++
  if (!stopping) unexpected++
}

function onError () {
  errors++
}

async function open (ports, count, inflight) {
  const connectMs = new Float64Array(count)
  let started = 0
  let settled = 0
  let at = 0
  await new Promise((resolve) => {
    const next = () => {
      if (started === count) return
      const k = started++
      const t0 = now()
      const socket = connect(ports[k % ports.length], '127.0.0.1')
      socket.tail = ''
      sockets.push(socket)
      socket.on('error', onError)
      socket.on('close', onClose)
      socket.write('GET /sub HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n')
      const done = () => {
        connectMs[at++] = now() - t0
        if (++settled === count) resolve()
        else next()
      }
      socket.once('data', function (head) {
        if (head.toString('latin1', 0, 12) === 'HTTP/1.1 200') ok++
        else errors++
        this.removeListener('close', done)
        this.on('data', onData)
        onData.call(this, head)
        done()
      })
      socket.once('close', done)
    }
    for (let i = 0; i < Math.min(inflight, count); i++) next()
  })
  return connectMs.subarray(0, at).sort()
}

process.on('message', async (msg) => {
  if (msg.cmd === 'connect') {
    const t0 = now()
    const connectMs = await open(msg.ports, msg.count, msg.inflight)
    const pct = (p) => connectMs[Math.min(connectMs.length - 1, Math.floor(connectMs.length * p))] ?? NaN
    process.send({ type: 'connected', ok, errors, ms: now() - t0, p50: pct(0.5), p99: pct(0.99), max: connectMs.at(-1) ?? NaN })
  } else if (msg.cmd === 'latencies') {
    const out = []
    for (let n = msg.from; n < msg.to; n++) {
      const got = Math.min(counts[n] ?? 0, ok)
      out.push(Array.from((latencies[n] ?? new Float64Array(0)).subarray(0, got)))
    }
    process.send({ type: 'latencies', latencies: out, missing: msg.to - msg.from === 0 ? 0 : out.reduce((a, l) => a + ok - l.length, 0), unexpected, errors })
  } else if (msg.cmd === 'reset') {
    latencies = []
    counts = []
  } else if (msg.cmd === 'stop') {
    stopping = true
    for (const s of sockets) s.destroy()
    process.send({ type: 'stopped', closed }, () => process.exit(0))
  }
})
process.on('disconnect', () => process.exit(0))
process.send({ type: 'ready' })
