import t, { type Test } from 'tap'
import dc from 'node:diagnostics_channel'
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { connect as http2Connect, constants } from 'node:http2'
import { connect as netConnect, type Socket } from 'node:net'
import { SSE_DIAGNOSTICS, type SseStreamCloseMessage } from '../lib/index.js'
import { EventStream } from '../lib/stream.js'
import { deferred, settles, startApp, WARN, within } from './helpers.js'

// `writeTimeout` over real sockets: a client whose output waits `writeTimeout` without the socket draining is reset
// (its kernel queue dropped, its source stopped, the end counted as 'too slow'); one that reads, however slowly,
// is not; what the kernel already took does not count.

const GET = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`
const portOf = (url: string): number => Number(new URL(url).port)
const BIG = 'y'.repeat(64 * 1024)
/** Under the size at which a burst of string frames is written at once. */
const SMALL = 'w'.repeat(15 * 1024)

/**
 * The server end of a loopback connection in Linux's /proc/net/tcp: its unsent bytes and whether it is still
 * established (not closed by the server); undefined once it is gone.
 */
function serverEnd (serverPort: number, clientPort: number): { sendQueue: number, established: boolean } | undefined {
  const hex = (port: number): string => ':' + port.toString(16).toUpperCase().padStart(4, '0')
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n')) {
    const f = line.trim().split(/\s+/)
    if (f[1]?.endsWith(hex(serverPort)) === true && f[2]?.endsWith(hex(clientPort)) === true) {
      return { sendQueue: parseInt((f[4] as string).split(':')[0] as string, 16), established: f[3] === '01' }
    }
  }
  return undefined
}
const noProc = existsSync('/proc/net/tcp') ? false : 'reads the kernel socket table, /proc/net/tcp (Linux)'

/** Polls (every 20 ms, at most `ms`) until `check` holds; returns whether it did. */
async function until (check: () => boolean, ms: number): Promise<boolean> {
  for (let waited = 0; waited < ms && !check(); waited += 20) await new Promise(resolve => setTimeout(resolve, 20))
  return check()
}

/** Stream-close messages of the diagnostics channel while the test runs. */
function closeMessages (t: Test): SseStreamCloseMessage[] {
  const seen: SseStreamCloseMessage[] = []
  const listener = (message: unknown): void => { seen.push(message as SseStreamCloseMessage) }
  dc.subscribe(SSE_DIAGNOSTICS.streamClose, listener)
  t.teardown(() => { dc.unsubscribe(SSE_DIAGNOSTICS.streamClose, listener) })
  return seen
}

/** A generator that floods its client (until stopped, which it tells `stopped`). */
function flood (stopped?: { resolve: () => void }): AsyncGenerator<{ data: string }> {
  return (async function * () {
    try {
      for (let i = 0; i < 100_000; i++) yield { data: BIG }
    } finally {
      stopped?.resolve()
    }
  })()
}

t.test('a client that never reads a generator route is reset within writeTimeout; the kernel lets go of its bytes', { skip: noProc }, async t => {
  t.setTimeout(20_000)
  const stopped = deferred()
  const closes = closeMessages(t)
  const { app, url, logs } = await startApp(app => {
    app.get('/flood', async function * () { yield * flood(stopped) })
  }, { writeTimeout: 300 })
  t.teardown(() => app.close())
  const port = portOf(url)
  const client = netConnect(port, '127.0.0.1')
  client.on('error', () => {})
  t.teardown(() => client.destroy())
  client.write(GET('/flood'))
  await once(client, 'data')
  client.pause() // never reads again
  const t0 = Date.now()
  t.ok(await settles(stopped.promise, 10_000), 'the generator was stopped (its finally ran)')
  const closed = await within(logs.waitFor(l => l.msg === 'SSE stream closed'), 5000, 'the stream did not close')
  t.equal(closed.reason, 'too slow')
  t.ok(Date.now() - t0 < 8000, `cut off in ${Date.now() - t0} ms (writeTimeout 300 ms, once the buffers filled)`)
  t.match(logs.lines.find(l => l.msg === 'SSE client did not drain within writeTimeout; connection reset'),
    { level: WARN, writeTimeout: 300 })
  t.ok(await until(() => serverEnd(port, client.localPort as number) === undefined, 2000),
    'the server end is gone (reset), not left closing with its unsent bytes')
  t.equal(app.sse.stats().closed['too slow'], 1, 'counted as too slow')
  t.match(closes, [{ route: '/flood', reason: 'too slow' }], 'told on the stream-close diagnostics channel')
})

t.test('a client that reads slowly but steadily is never cut off', async t => {
  t.setTimeout(60_000)
  const COUNT = 200 // 12.5 MiB: more than loopback's socket buffers hold, so the stream waits on the client often
  let drains = 0
  const { app, url, logs } = await startApp(app => {
    app.get('/slow', (_request, reply) => {
      reply.raw.on('drain', () => { drains++ })
      return reply.sse((async function * () {
        for (let i = 0; i < COUNT; i++) yield { data: BIG }
      })())
    })
  }, { writeTimeout: 1000 })
  t.teardown(() => app.close())
  const client = netConnect(portOf(url), '127.0.0.1')
  client.on('error', () => {})
  t.teardown(() => client.destroy())
  client.write(GET('/slow'))
  let text = ''
  // one chunk (at most 64 KiB) every 10 ms: a few MB/s, far below what the server writes
  client.on('data', (chunk: Buffer) => {
    text += chunk.toString('latin1')
    client.pause()
    setTimeout(() => client.resume(), 10).unref()
  })
  const t0 = Date.now()
  const closed = await within(logs.waitFor(l => l.msg === 'SSE stream closed'), 55_000, 'the stream did not end')
  t.equal(closed.reason, 'source ended', 'ended by its source, not cut off')
  t.ok(await until(() => text.endsWith('\r\n0\r\n\r\n'), 10_000), 'the client read the whole response')
  t.equal(text.split('data: y').length - 1, COUNT, 'every event arrived')
  t.ok(drains > 10, `the stream waited on the client and drained, ${drains} times`)
  t.ok(Date.now() - t0 > 1000, 'reading took longer than writeTimeout')
  t.equal(logs.lines.filter(l => l.level === WARN).length, 0, 'no warning')
})

/** A raw HTTP/1.1 client that asks for `path`, then reads nothing once the first bytes came (or at once). */
async function stuckClient (t: Test, port: number, path: string, readFirst = true): Promise<Socket> {
  const client = netConnect(port, '127.0.0.1')
  client.on('error', () => {})
  t.teardown(() => client.destroy())
  if (!readFirst) client.pause()
  client.write(GET(path))
  if (readFirst) {
    await once(client, 'data')
    client.pause()
  }
  return client
}

t.test('a stream with writeTimeout: false waits for its client for good', { skip: noProc }, async t => {
  t.setTimeout(20_000)
  const { app, url, logs } = await startApp(app => {
    app.get('/flood', (_request, reply) => reply.sse(flood(), { writeTimeout: false }))
    app.get('/short', (_request, reply) => reply.sse(flood()))
  }, { writeTimeout: 100 })
  t.teardown(() => app.close())
  const port = portOf(url)
  const client = await stuckClient(t, port, '/flood')
  t.ok(await until(() => (serverEnd(port, client.localPort as number)?.sendQueue ?? 0) > 0, 10_000), 'the server end filled up')
  // a stream of the plugin's writeTimeout, stuck after it: once that one is reset, the first has waited longer
  await stuckClient(t, port, '/short')
  const cut = await within(logs.waitFor(l => l.msg === 'SSE stream closed'), 10_000, 'the /short stream was not reset')
  t.equal(cut.reason, 'too slow', 'the stream with the plugin\'s writeTimeout was reset')
  t.equal(app.sse.stats().open, 1, 'the one with writeTimeout: false is still open')
  t.ok(serverEnd(port, client.localPort as number) !== undefined, 'and still connected')
})

t.test('bytes the kernel took do not count: a finite stream that ended while its client read nothing is not reset', { skip: noProc }, async t => {
  t.setTimeout(20_000)
  let drains = 0
  const { app, url, logs } = await startApp(app => {
    app.get('/small', (_request, reply) => {
      reply.raw.on('drain', () => { drains++ })
      return reply.sse((async function * () {
        for (let i = 0; i < 8; i++) yield { data: 'z'.repeat(1024) }
      })())
    })
    app.get('/flood', (_request, reply) => reply.sse(flood()))
  }, { writeTimeout: 100 })
  t.teardown(() => app.close())
  const port = portOf(url)
  const client = await stuckClient(t, port, '/small', false)
  const ended = await within(logs.waitFor(l => l.msg === 'SSE stream closed'), 5000, 'the /small stream did not end')
  t.equal(ended.reason, 'source ended')
  t.equal(drains, 0, 'no write had to wait: the kernel took every byte')
  // a stream stuck after it, reset by its writeTimeout: by then the first would have been too, were it timed
  await stuckClient(t, port, '/flood')
  const cut = await within(logs.waitFor(l => l.msg === 'SSE stream closed' && l.reason === 'too slow'), 10_000,
    'the /flood stream was not reset')
  t.ok(cut)
  t.equal(logs.lines.filter(l => l.msg === 'SSE client did not drain within writeTimeout; connection reset').length, 1,
    'one reset, of the /flood stream')
  t.equal(serverEnd(port, client.localPort as number)?.established, true,
    'the connection of the ended stream lingers (until the server\'s keep-alive timeout or the client)')
  t.same(app.sse.stats().closed, {
    'source ended': 1, 'source failed': 0, 'item refused': 0, 'client closed': 0, 'server closing': 0, 'too slow': 1
  })
})

t.test('the connection of a stream that ended in the kernel is closed by the server\'s keepAliveTimeout', { skip: noProc }, async t => {
  t.setTimeout(20_000)
  const { app, url, logs } = await startApp(app => {
    app.get('/small', (_request, reply) => reply.sse([{ data: 'z'.repeat(1024) }]))
  }, { writeTimeout: 100 }, { keepAliveTimeout: 500 })
  t.teardown(() => app.close())
  const port = portOf(url)
  const client = await stuckClient(t, port, '/small', false)
  const ended = await within(logs.waitFor(l => l.msg === 'SSE stream closed'), 5000, 'the /small stream did not end')
  t.equal(ended.reason, 'source ended')
  t.ok(await until(() => serverEnd(port, client.localPort as number)?.established !== true, 10_000),
    'the server closed the idle connection')
})

t.test('a body that ended while its last write waited keeps the timer: reset later, its reason kept', { skip: noProc }, async t => {
  t.setTimeout(20_000)
  // what the stream's reason is once the write timeout has fired on it
  const reasons: string[] = []
  const proto = EventStream.prototype as unknown as { writeTimedOut: (this: EventStream) => void }
  const original = proto.writeTimedOut
  proto.writeTimedOut = function (this: EventStream) {
    original.call(this)
    reasons.push(this.reason)
  }
  t.teardown(() => { proto.writeTimedOut = original })
  const { app, url, logs } = await startApp(app => {
    // items small enough to be written together at the end of their tick, until the kernel holds all it takes
    // and the socket keeps some back: then one more, and the end, found in the same tick, so that the last
    // write, made as the body ends, waits
    app.get('/last', (_request, reply) => reply.sse((async function * () {
      const socket = reply.raw.socket as Socket
      for (let i = 0; i < 5000 && socket.writableLength === 0; i++) {
        yield { data: SMALL }
        await new Promise(resolve => setImmediate(resolve))
      }
      yield { data: SMALL }
    })()))
  }, { writeTimeout: 300 })
  t.teardown(() => app.close())
  const port = portOf(url)
  const client = await stuckClient(t, port, '/last')
  const ended = await within(logs.waitFor(l => l.msg === 'SSE stream closed'), 10_000, 'the stream did not end')
  t.equal(ended.reason, 'source ended')
  await within(logs.waitFor(l => l.msg === 'SSE client did not drain within writeTimeout; connection reset'), 10_000,
    'the ended stream was not reset')
  t.same(reasons, ['source ended'], 'a timer firing after the close leaves the reason as it was')
  t.ok(await until(() => serverEnd(port, client.localPort as number) === undefined, 2000),
    'the server end is gone (reset), with its unsent bytes')
  t.equal(app.sse.stats().closed['source ended'], 1, 'counted once, as its source ended')
  t.equal(app.sse.stats().closed['too slow'], 0)
})

t.test('on HTTP/2 the stream of a client that stopped reading is reset alone; its session goes on serving', async t => {
  t.setTimeout(20_000)
  const stopped = deferred()
  const { app, url, logs } = await startApp(app => {
    app.get('/flood', async function * () { yield * flood(stopped) })
    app.get('/hello', async () => ({ hello: 'world' }))
  }, { writeTimeout: 300 }, { http2: true } as never)
  t.teardown(() => app.close())
  const session = http2Connect(url)
  session.on('error', () => {})
  t.teardown(() => session.close())
  const stuck = session.request({ ':path': '/flood', accept: 'text/event-stream' })
  stuck.on('error', () => {})
  stuck.pause() // the window fills, the server's writes wait
  await once(stuck, 'response')
  // the server resets its stream with CANCEL: the client can tell the cut-off from an end
  const closed = once(stuck, 'close')
  t.ok(await settles(stopped.promise, 10_000), 'the generator was stopped (its finally ran)')
  const line = await within(logs.waitFor(l => l.msg === 'SSE stream closed'), 5000, 'the stream did not close')
  t.equal(line.reason, 'too slow')
  stuck.resume() // a paused stream reports its end only once what it holds is read
  t.ok(await settles(closed), 'its stream was closed')
  t.equal(stuck.rstCode, constants.NGHTTP2_CANCEL, 'reset with CANCEL')
  t.notOk(session.destroyed, 'the session is still open')
  const hello = session.request({ ':path': '/hello' })
  hello.setEncoding('utf8')
  let body = ''
  hello.on('data', (chunk: string) => { body += chunk })
  await within(once(hello, 'end'), 5000, 'the session did not answer')
  t.same(JSON.parse(body), { hello: 'world' }, 'the same session serves another request')
})
