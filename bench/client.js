// The load generator: a separate process (forked by run.js) that talks HTTP/1.1 over raw sockets, decodes
// chunked bodies itself and counts SSE frames with Buffer.indexOf, so that it stays much cheaper than any
// server it measures. It checks every event: ids in order without gaps, a data line in each, and (fan-out)
// the latency from the server's `ts` stamp to the moment the bytes were read here.
//
// Tasks (the JSON in argv[2]):
//   { task: 'stream', port, streams, n, timeoutMs }       → N events on each of `streams` parallel streams
//   { task: 'fanout', port, subs, publishes, intervalMs, timeoutMs }
//        opens `subs` /sub streams, says { subscribed }, waits for { go }, then POST /pub?n=1&start=p every
//        intervalMs and waits until every subscriber has every event (or the time runs out), says { drained },
//        waits for { close } (at most 10 s), then closes every stream
//   { task: 'idle', port, subs, timeoutMs } → opens `subs` /sub streams, says { subscribed }, waits for { close }
import net from 'node:net'
import http from 'node:http'
import { performance } from 'node:perf_hooks'

const LFLF = Buffer.from('\n\n')
const CRLF = Buffer.from('\r\n')
const HEAD_END = Buffer.from('\r\n\r\n')
const ID = Buffer.from('id:')
const DATA = Buffer.from('data:')
const TS = Buffer.from('"ts":')
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024)

function now () {
  return performance.timeOrigin + performance.now()
}

/**
 * One SSE response read off a raw socket. `onEvent(id, conn, view, start, end, recvAt)` is called for every
 * frame that carries an id; frames without one (retry:, comments) are only counted.
 */
class SseConnection {
  constructor (port, path, { onEvent, onEnd, onHeaders }) {
    this.onEvent = onEvent
    this.onEnd = onEnd
    this.onHeaders = onHeaders
    this.status = 0
    this.chunked = false
    this.headDone = false
    this.ended = false
    this.error = null
    this.bytes = 0
    this.events = 0
    this.control = 0
    this.nextId = -1 // the id expected next; -1: whatever comes first sets the sequence
    this.firstId = -1
    this.outOfOrder = 0
    this.noData = 0
    // chunked decoding state
    this.chunkLeft = 0
    this.crlfLeft = 0
    this.sizeLine = null // bytes of a chunk-size line split across reads
    // the body, contiguous: frames are cut from here; what is left of a frame is moved to the front
    this.body = Buffer.allocUnsafe(64 * 1024)
    this.len = 0
    this.head = null
    // onread: the bytes land in one shared buffer, no allocation and no stream machinery per read; every
    // use of them below is synchronous (what must outlive the callback is copied).
    this.socket = net.connect({ port, host: '127.0.0.1', noDelay: true, onread: { buffer: READ_BUFFER, callback: (n, buf) => { this.#onData(buf.subarray(0, n)) } } })
    this.socket.on('connect', () => {
      this.socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n\r\n`)
    })
    this.socket.on('error', (err) => { if (!this.ended) this.error ??= err.code ?? err.message })
    this.socket.on('close', () => this.#finish(this.headDone && this.chunked && this.chunkDone ? null : 'connection closed before the response ended'))
  }

  close () {
    this.ended = true
    this.socket.destroy()
  }

  #finish (error) {
    if (this.ended) return
    this.ended = true
    if (error !== null) this.error ??= error
    this.onEnd?.(this)
  }

  #onData (buf) {
    const recvAt = now()
    this.bytes += buf.length
    if (!this.headDone) {
      buf = this.head === null ? buf : Buffer.concat([this.head, buf])
      const idx = buf.indexOf(HEAD_END)
      if (idx === -1) {
        this.head = Buffer.from(buf)
        return
      }
      const head = buf.toString('latin1', 0, idx)
      this.head = null
      this.headDone = true
      this.status = Number(head.slice(9, 12))
      this.chunked = /\r\ntransfer-encoding:\s*chunked/i.test(head)
      this.onHeaders?.(this)
      if (this.status !== 200) {
        this.error = `HTTP ${this.status}`
        this.close()
        this.onEnd?.(this)
        return
      }
      buf = buf.subarray(idx + 4)
    }
    if (this.chunked) this.#dechunk(buf)
    else this.#append(buf, 0, buf.length)
    this.#frames(recvAt)
  }

  #dechunk (buf) {
    let pos = 0
    const len = buf.length
    while (pos < len) {
      if (this.crlfLeft > 0) {
        const skip = Math.min(this.crlfLeft, len - pos)
        this.crlfLeft -= skip
        pos += skip
        continue
      }
      if (this.chunkLeft > 0) {
        const take = Math.min(this.chunkLeft, len - pos)
        this.#append(buf, pos, pos + take)
        pos += take
        this.chunkLeft -= take
        if (this.chunkLeft === 0) this.crlfLeft = 2
        continue
      }
      if (this.chunkDone) return
      // a chunk-size line
      let src = buf
      let from = pos
      if (this.sizeLine !== null) {
        src = Buffer.concat([this.sizeLine, buf.subarray(pos, Math.min(len, pos + 32))])
        from = 0
      }
      const eol = src.indexOf(CRLF, from)
      if (eol === -1) {
        this.sizeLine = src === buf ? Buffer.from(buf.subarray(pos)) : src
        return
      }
      const size = parseInt(src.toString('latin1', from, eol), 16)
      if (this.sizeLine !== null) {
        pos += eol + 2 - this.sizeLine.length
        this.sizeLine = null
      } else {
        pos = eol + 2
      }
      if (size === 0) {
        this.chunkDone = true
        this.socket.end()
        this.#finish(null)
        return
      }
      this.chunkLeft = size
    }
  }

  #append (buf, start, end) {
    const n = end - start
    if (this.len + n > this.body.length) {
      const bigger = Buffer.allocUnsafe(Math.max(this.body.length * 2, this.len + n))
      this.body.copy(bigger, 0, 0, this.len)
      this.body = bigger
    }
    buf.copy(this.body, this.len, start, end)
    this.len += n
  }

  #frames (recvAt) {
    const view = this.body.subarray(0, this.len)
    let pos = 0
    for (;;) {
      const e = view.indexOf(LFLF, pos)
      if (e === -1) break
      this.#frame(view, pos, e + 1, recvAt)
      pos = e + 2
    }
    if (pos > 0) {
      this.body.copyWithin(0, pos, this.len)
      this.len -= pos
    }
  }

  #frame (view, s, e, recvAt) {
    let idAt = view.indexOf(ID, s)
    while (idAt !== -1 && idAt < e && idAt !== s && view[idAt - 1] !== 0x0a) idAt = view.indexOf(ID, idAt + 1)
    if (idAt === -1 || idAt >= e) {
      this.control++
      return
    }
    let p = idAt + 3
    if (view[p] === 0x20) p++
    let id = 0
    for (let c = view[p]; c >= 0x30 && c <= 0x39; c = view[++p]) id = id * 10 + (c - 0x30)
    this.events++
    if (this.nextId === -1) this.firstId = id
    else if (id !== this.nextId) this.outOfOrder++
    this.nextId = id + 1
    const dataAt = view.indexOf(DATA, s)
    if (dataAt === -1 || dataAt >= e) {
      this.noData++
      return
    }
    this.onEvent?.(id, this, view, dataAt, e, recvAt)
  }
}

function send (msg) {
  process.send(msg)
}

function waitForMessage (cmd) {
  return new Promise(resolve => {
    const on = (msg) => {
      if (msg?.cmd === cmd) {
        process.off('message', on)
        resolve(msg)
      }
    }
    process.on('message', on)
  })
}

function sleep (ms, unref = false) {
  return new Promise(resolve => {
    const t = setTimeout(resolve, ms)
    if (unref) t.unref()
  })
}

/** Opens `count` /sub streams, at most `batch` connecting at once; resolves when all have their headers. */
async function openSubscribers (port, count, deadline, handlers) {
  const conns = []
  let i = 0
  const batch = 250
  while (i < count) {
    const group = []
    for (let k = 0; k < batch && i < count; k++, i++) {
      group.push(new Promise(resolve => {
        const c = new SseConnection(port, '/sub', {
          ...handlers,
          onHeaders: () => resolve(c),
          onEnd: (conn) => { handlers.onEnd?.(conn); resolve(conn) }
        })
        conns.push(c)
      }))
    }
    const timeout = sleep(Math.max(0, deadline - Date.now()), true).then(() => 'timeout')
    if (await Promise.race([Promise.all(group), timeout]) === 'timeout') break
  }
  return conns
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })

function post (port, path) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: 'POST', agent }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d) => { body += d })
      res.on('end', () => resolve({ status: res.statusCode, body }))
    })
    req.on('error', reject)
    req.setTimeout(10_000, () => req.destroy(new Error('POST timed out')))
    req.end()
  })
}

async function stream ({ port, streams, n, timeoutMs }) {
  const started = now()
  const conns = []
  await new Promise(resolve => {
    let open = streams
    const done = () => { if (--open === 0) resolve() }
    for (let k = 0; k < streams; k++) conns.push(new SseConnection(port, `/stream?n=${n}`, { onEnd: done }))
    setTimeout(resolve, timeoutMs).unref()
  })
  const ms = now() - started
  const errors = []
  let events = 0
  let bytes = 0
  for (const c of conns) {
    events += c.events
    bytes += c.bytes
    if (!c.ended) errors.push('stream still open at the time limit')
    if (c.error !== null) errors.push(c.error)
    if (c.events !== n) errors.push(`${n - c.events} of ${n} events missing`)
    if (c.events > 0 && c.firstId !== 0) errors.push(`first id ${c.firstId}, expected 0`)
    if (c.outOfOrder > 0) errors.push(`${c.outOfOrder} events out of order`)
    if (c.noData > 0) errors.push(`${c.noData} events without data`)
    c.close()
  }
  if (process.env.BENCH_DEBUG) console.error(`stream ${streams}x${n}: client cpu ms`, (process.cpuUsage().user / 1000).toFixed(0), 'wall ms', ms.toFixed(0))
  return { events, expected: n * streams, bytes, ms, errors: [...new Set(errors)] }
}

async function fanout ({ port, subs, publishes, warmup = 3, intervalMs, timeoutMs }) {
  // `warmup` publishes go first (ids 0..warmup-1): they are checked like the rest but their latency is not
  // recorded, so the figures are the steady state, not this fresh process's JIT warming up.
  const deadline = Date.now() + timeoutMs
  const total = publishes + warmup
  const expected = subs * total
  const latencies = new Float64Array(subs * publishes)
  let delivered = 0
  let measured = 0
  let allDelivered = null
  const onEvent = (id, conn, view, s, e, recvAt) => {
    delivered++
    if (delivered === expected) allDelivered?.()
    if (id < warmup) return
    const at = view.indexOf(TS, s)
    if (at === -1 || at >= e) return
    let end = at + 5
    while (end < e && view[end] !== 0x2c && view[end] !== 0x7d) end++
    const ts = Number(view.toString('latin1', at + 5, end))
    if (measured < latencies.length) latencies[measured++] = recvAt - ts
  }
  const conns = await openSubscribers(port, subs, deadline, { onEvent })
  const errors = []
  const opened = conns.filter(c => c.status === 200).length
  if (opened < subs) errors.push(`${subs - opened} of ${subs} subscribers could not connect`)
  send({ subscribed: opened })
  await waitForMessage('go')
  const t0 = Date.now()
  let reported = -1
  for (let p = 0; p < total && Date.now() < deadline; p++) {
    const wait = t0 + p * intervalMs - Date.now()
    if (wait > 0) await sleep(wait)
    try {
      const res = await post(port, `/pub?n=1&start=${p}`)
      if (res.status !== 200) errors.push(`POST /pub answered ${res.status}`)
      else reported = Math.min(reported === -1 ? Infinity : reported, JSON.parse(res.body).subscribers)
    } catch (err) {
      errors.push(`POST /pub failed: ${err.message}`)
      break
    }
  }
  const published = Date.now()
  if (delivered < expected) {
    await new Promise(resolve => {
      allDelivered = resolve
      setTimeout(resolve, Math.max(0, Math.min(deadline - Date.now(), 10_000))).unref()
    })
  }
  const drainMs = Date.now() - published
  // Before the streams close: the parent reads the server's CPU time now, so that "CPU per delivery" does not
  // include the server tearing 5,000 streams down (bounded: 10 s without an answer and the client goes on).
  send({ drained: delivered })
  await Promise.race([waitForMessage('close'), sleep(10_000, true)])
  if (reported !== -1 && reported < opened) errors.push(`server saw ${reported} subscribers of ${opened}`)
  let outOfOrder = 0
  let closed = 0
  let wrongStart = 0
  for (const c of conns) {
    outOfOrder += c.outOfOrder
    if (c.events > 0 && c.firstId !== 0) wrongStart++
    if (c.ended) closed++
    c.close()
  }
  if (delivered < expected) errors.push(`${expected - delivered} of ${expected} deliveries missing`)
  if (delivered > expected) errors.push(`${delivered - expected} deliveries too many`)
  if (outOfOrder > 0) errors.push(`${outOfOrder} deliveries out of order`)
  if (wrongStart > 0) errors.push(`${wrongStart} subscribers missed the first event`)
  if (closed > 0) errors.push(`${closed} subscriber streams closed by the server`)
  if (process.env.BENCH_DEBUG) {
    const per = []
    for (let p = 0; p < publishes; p++) {
      per.push(latencies.subarray(p * subs, (p + 1) * subs).reduce((a, b) => Math.max(a, b), 0).toFixed(1))
    }
    console.error(`fanout ${subs}: max latency per publish (arrival order)`, per.join(' '), 'client cpu ms', (process.cpuUsage().user / 1000).toFixed(0))
  }
  const lat = latencies.subarray(0, measured).sort()
  const q = (f) => lat.length === 0 ? null : lat[Math.min(lat.length - 1, Math.floor(f * lat.length))]
  return {
    subs,
    publishes,
    warmup,
    expected,
    delivered,
    measuredExpected: subs * publishes,
    measured,
    p50: q(0.5),
    p99: q(0.99),
    max: lat.length === 0 ? null : lat[lat.length - 1],
    drainMs,
    errors
  }
}

async function idle ({ port, subs, timeoutMs }) {
  const deadline = Date.now() + timeoutMs
  const conns = await openSubscribers(port, subs, deadline, {})
  const opened = conns.filter(c => c.status === 200 && !c.ended).length
  send({ subscribed: opened })
  await Promise.race([waitForMessage('close'), sleep(Math.max(0, deadline - Date.now()), true)])
  const closedEarly = conns.filter(c => c.ended).length
  for (const c of conns) c.close()
  const errors = []
  if (opened < subs) errors.push(`${subs - opened} of ${subs} idle streams could not connect`)
  if (closedEarly > 0) errors.push(`${closedEarly} idle streams closed by the server`)
  return { opened, errors }
}

const task = JSON.parse(process.argv[2])
const run = { stream, fanout, idle }[task.task]
try {
  const result = await run(task)
  process.send({ result }, () => process.exit(0))
} catch (err) {
  process.send({ result: { errors: [`client failed: ${err.stack}`] } }, () => process.exit(0))
}
