import t, { type Test } from 'tap'
import dc from 'node:diagnostics_channel'
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { connect as http2Connect } from 'node:http2'
import { connect as netConnect } from 'node:net'
import { SSE_DIAGNOSTICS, type SseStreamCloseMessage } from '../lib/index.js'
import { deferred, settles, startApp, WARN, within } from './helpers.js'

// `writeTimeout` over real sockets: a client that takes nothing while output waits is reset (its kernel queue
// dropped, its source stopped, the end counted as 'too slow'); one that reads, however slowly, is not.

const GET = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`
const portOf = (url: string): number => Number(new URL(url).port)
const BIG = 'y'.repeat(64 * 1024)

/** The server end of a loopback connection in Linux's /proc/net/tcp: its unsent bytes; undefined once it is gone. */
function serverEnd (serverPort: number, clientPort: number): { sendQueue: number } | undefined {
  const hex = (port: number): string => ':' + port.toString(16).toUpperCase().padStart(4, '0')
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n')) {
    const f = line.trim().split(/\s+/)
    if (f[1]?.endsWith(hex(serverPort)) === true && f[2]?.endsWith(hex(clientPort)) === true) {
      return { sendQueue: parseInt((f[4] as string).split(':')[0] as string, 16) }
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

t.test('a client that never reads a generator route is reset within writeTimeout; the kernel lets go of its bytes', { skip: noProc }, async t => {
  t.setTimeout(20_000)
  const stopped = deferred()
  const closes = closeMessages(t)
  const { app, url, logs } = await startApp(app => {
    app.get('/flood', async function * () {
      try {
        for (let i = 0; i < 100_000; i++) yield { data: BIG }
      } finally {
        stopped.resolve()
      }
    })
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
  t.match(logs.lines.find(l => l.msg === 'SSE client took no bytes within writeTimeout; connection reset'),
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

t.test('a stream with writeTimeout: false waits for its client for good', { skip: noProc }, async t => {
  t.setTimeout(20_000)
  const { app, url } = await startApp(app => {
    app.get('/flood', (_request, reply) => reply.sse((async function * () {
      for (let i = 0; i < 100_000; i++) yield { data: BIG }
    })(), { writeTimeout: false }))
  }, { writeTimeout: 100 })
  t.teardown(() => app.close())
  const port = portOf(url)
  const client = netConnect(port, '127.0.0.1')
  client.on('error', () => {})
  t.teardown(() => client.destroy())
  client.write(GET('/flood'))
  await once(client, 'data')
  client.pause()
  t.ok(await until(() => (serverEnd(port, client.localPort as number)?.sendQueue ?? 0) > 0, 10_000), 'the server end filled up')
  await new Promise(resolve => setTimeout(resolve, 500)) // five times the plugin's writeTimeout
  t.equal(app.sse.stats().open, 1, 'still open')
  t.ok(serverEnd(port, client.localPort as number) !== undefined, 'still connected')
})

t.test('on HTTP/2 the stream of a client that stopped reading is reset alone; its session goes on serving', async t => {
  t.setTimeout(20_000)
  const stopped = deferred()
  const { app, url, logs } = await startApp(app => {
    app.get('/flood', async function * () {
      try {
        for (let i = 0; i < 100_000; i++) yield { data: BIG }
      } finally {
        stopped.resolve()
      }
    })
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
  // the server destroys its stream (RST_STREAM, which Node sends with NO_ERROR: the client reads it as an end)
  const closed = once(stuck, 'close')
  t.ok(await settles(stopped.promise, 10_000), 'the generator was stopped (its finally ran)')
  const line = await within(logs.waitFor(l => l.msg === 'SSE stream closed'), 5000, 'the stream did not close')
  t.equal(line.reason, 'too slow')
  stuck.resume() // a paused stream reports its end only once what it holds is read
  t.ok(await settles(closed), 'its stream was closed')
  t.notOk(session.destroyed, 'the session is still open')
  const hello = session.request({ ':path': '/hello' })
  hello.setEncoding('utf8')
  let body = ''
  hello.on('data', (chunk: string) => { body += chunk })
  await within(once(hello, 'end'), 5000, 'the session did not answer')
  t.same(JSON.parse(body), { hello: 'world' }, 'the same session serves another request')
})
