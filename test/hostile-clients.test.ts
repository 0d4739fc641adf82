import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { once } from 'node:events'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { connect as http2Connect, constants } from 'node:http2'
import { connect as netConnect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises'
import { connect as tlsConnect } from 'node:tls'
import { request } from 'undici'
import ssePlugin from '../lib/index.js'
import type { SseItem } from '../lib/index.js'
import { deferred, LogCapture, startApp, settles } from './helpers.js'
import { selfSignedCertificate } from './tls.js'
import { GET, portOf, rawClient, statusOf } from './support/raw-http.js'

// Clients that misbehave on purpose or by accident must not keep anything of the server's: streams queued
// behind others on a pipelining connection, and the kernel's send queue of a client that stopped reading.

/** Fails with `message` instead of hanging when `promise` does not settle within `ms`. */
async function within<T> (promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(message)), ms) })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

t.test('pipelined requests wait for their turn: one source runs per connection, all are released when it closes', async t => {
  t.setTimeout(20_000)
  const depth = 60
  let entered = 0
  let finalized = 0
  const firstEntered = deferred()
  const firstFinalized = deferred()
  const warnings: Error[] = []
  const onWarning = (w: Error): void => { warnings.push(w) }
  process.on('warning', onWarning)
  t.teardown(() => { process.off('warning', onWarning) })
  const { app, logs } = await startApp(app => {
    app.get('/events', async function * (request) {
      if (++entered === 1) firstEntered.resolve()
      try {
        yield { data: 'open' }
        await sleep(3_600_000, undefined, { signal: request.signal })
      } finally {
        if (++finalized === 1) firstFinalized.resolve()
      }
    })
  }, { maxConnections: 2 })
  t.teardown(() => app.close())

  // one request, 60 streams: the first is answered, 59 wait behind it on the same connection
  const socket = rawClient(portOf(app), GET('/events').repeat(depth))
  socket.resume()
  await within(firstEntered.promise, 10_000, 'the first pipelined request did not stream')
  let dropped = 0
  const allWaiting = logs.waitFor(l => l.msg === 'SSE stream dropped: its connection closed while it waited behind another response' &&
    ++dropped === depth - 1)
  // every request has reached reply.sse() once the server parsed them all: nothing more started
  let seen = 0
  await within(logs.waitFor(l => l.msg === 'incoming request' && (l.req as { url?: string }).url === '/events' && ++seen === depth), 10_000,
    'not every pipelined request reached the server')
  t.equal(entered, 1, 'only the stream being answered started its source')
  t.same(app.sse.stats().open, 1, 'only it holds a maxConnections slot')
  t.equal(await statusOf(portOf(app), '/events'), 200, 'another client still gets a stream under maxConnections 2')
  socket.destroy()
  await within(firstFinalized.promise, 5000, 'the stream kept running after the client left')
  await within(allWaiting, 5000, 'the waiting requests were not let go')
  t.equal(entered, 2, 'no waiting generator was ever entered (the other client\'s stream is the second)')
  t.same(warnings.map(w => w.name), [], 'no MaxListenersExceededWarning: one listener for the connection')
  const t0 = Date.now()
  await app.close()
  t.ok(Date.now() - t0 < 2000, 'app.close() resolves promptly')
})

t.test('pipelined finite streams are answered one after another, in order', async t => {
  t.setTimeout(20_000)
  const { app } = await startApp(app => {
    app.get<{ Querystring: { n: string } }>('/once', async function * (request) {
      yield { data: request.query.n }
    })
  })
  t.teardown(() => app.close())
  const depth = 5
  const socket = rawClient(portOf(app), Array.from({ length: depth }, (_, i) => GET(`/once?n=${i}`)).join(''))
  let text = ''
  socket.setEncoding('latin1')
  socket.on('data', (chunk: string) => { text += chunk })
  const all = new Promise<void>(resolve => {
    socket.on('data', () => { if (text.split('HTTP/1.1 200').length > depth && text.endsWith('0\r\n\r\n')) resolve() })
  })
  await within(all, 10_000, 'not every pipelined stream was answered')
  socket.destroy()
  t.same([...text.matchAll(/data: (\d)/g)].map(m => m[1]), ['0', '1', '2', '3', '4'], 'each answered, in order')
})

t.test('a request whose connection closed before reply.sse() releases its source and slot', async t => {
  t.setTimeout(20_000)
  const lateCalled = deferred()
  const returned = deferred()
  const { app } = await startApp(app => {
    app.get('/events', async function * (request) {
      yield { data: 'open' }
      await sleep(3_600_000, undefined, { signal: request.signal }).catch(() => {})
    })
    app.get('/late', async (request, reply) => {
      // behind /events on the same connection: its response never had the socket
      lateCalled.resolve()
      const socket = request.raw.socket
      // not events.once(): it rejects on the socket's own 'error' (a write into the reset connection)
      if (!socket.destroyed) await new Promise(resolve => socket.once('close', resolve))
      const source: AsyncIterable<SseItem<string>> = {
        [Symbol.asyncIterator]: () => ({
          next: async () => ({ done: false, value: { data: 'never sent' } }),
          return: async () => {
            returned.resolve()
            return { done: true, value: undefined }
          }
        })
      }
      return reply.sse(source)
    })
  }, { maxConnections: 2 })
  t.teardown(() => app.close())

  const socket = rawClient(portOf(app), GET('/events') + GET('/late'))
  socket.resume()
  await within(lateCalled.promise, 10_000, 'the pipelined request did not reach its handler')
  socket.destroy()
  await within(returned.promise, 5000, 'the source of a stream whose client had left was not stopped')
  const statuses = await Promise.all([0, 1].map(() => statusOf(portOf(app), '/events')))
  t.same(statuses, [200, 200], 'both slots are free again')
})

t.test('pipelined channel subscriptions are dropped when the client closes the connection', async t => {
  t.setTimeout(20_000)
  const depth = 10
  let subscribed = 0
  const allSubscribed = deferred()
  const { app, logs } = await startApp(app => {
    const channel = app.sse.channel('pipelined')
    app.get('/sub', (_request, reply) => {
      const subscription = channel.subscribe()
      if (++subscribed === depth) allSubscribed.resolve()
      return reply.sse(subscription)
    })
  })
  t.teardown(() => app.close())
  const channel = app.sse.channel('pipelined')
  const socket = rawClient(portOf(app), GET('/sub').repeat(depth))
  socket.resume()
  await within(allSubscribed.promise, 10_000, 'not every pipelined request reached its handler')
  let dropped = 0
  const allDropped = logs.waitFor(l => l.msg === 'SSE stream dropped: its connection closed while it waited behind another response' &&
    ++dropped === depth - 1)
  const closed = logs.waitFor(l => l.msg === 'SSE stream closed')
  socket.destroy()
  await within(Promise.all([allDropped, closed]), 5000, 'pipelined streams stayed open after the client left')
  t.equal(channel.size, 0, 'every subscription was dropped')
})

/**
 * The kernel's record of the server's end of a loopback TCP connection (Linux's /proc/net/tcp): its state
 * (01 established, 04 FIN-WAIT-1…) and the bytes it still has to send; undefined once the kernel let go.
 */
function serverEnd (serverPort: number, clientPort: number): { state: string, sendQueue: number } | undefined {
  const hex = (port: number): string => ':' + port.toString(16).toUpperCase().padStart(4, '0')
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n')) {
    const f = line.trim().split(/\s+/)
    if (f[1]?.endsWith(hex(serverPort)) === true && f[2]?.endsWith(hex(clientPort)) === true) {
      return { state: f[3] as string, sendQueue: parseInt((f[4] as string).split(':')[0] as string, 16) }
    }
  }
  return undefined
}
const noProc = existsSync('/proc/net/tcp') ? false : 'reads the kernel socket table, /proc/net/tcp (Linux)'

/** A raw client that asks for `path`, waits for the response to start, then never reads again. */
async function stuckClient (socket: Socket, path: string): Promise<Socket> {
  socket.on('error', () => {})
  socket.write(GET(path))
  await once(socket, 'data')
  socket.pause()
  return socket
}

/** GET /sub subscribes to a channel with a short queue; POST /flood publishes until no subscriber is left. */
function floodRoutes (app: FastifyInstance): void {
  const channel = app.sse.channel('stuck', { history: 0, queueItems: 4 })
  app.get('/sub', (_request, reply) => reply.sse(channel.subscribe()))
  app.post('/flood', async () => {
    // bounded: a paused client's socket and queue are full long before this many 64 KiB items
    const item = { data: 'x'.repeat(64 * 1024) }
    for (let i = 0; i < 2000 && channel.size > 0; i++) {
      channel.publish(item)
      await nextTurn()
    }
    return { subscribers: channel.size }
  })
}

const cutOff = 'a stuck subscriber that is cut off is reset: the kernel keeps none of its unsent bytes'
t.test(cutOff, { skip: noProc }, async t => {
  t.setTimeout(20_000)
  const { app, logs } = await startApp(floodRoutes)
  t.teardown(() => app.close())
  const port = portOf(app)
  const client = await stuckClient(netConnect(port, '127.0.0.1'), '/sub')
  t.teardown(() => client.destroy())
  const res = await request(`http://127.0.0.1:${port}/flood`, { method: 'POST' })
  t.same(await res.body.json(), { subscribers: 0 }, 'the stuck subscriber was cut off')
  await logs.waitFor(l => l.msg === 'SSE stream closed' && l.reason === 'too slow')
  t.same(serverEnd(port, client.localPort as number), undefined,
    'the server end is gone (reset), not left closing with its unsent bytes')
})

t.test('app.close() resets a stuck client: the kernel keeps none of its unsent bytes', { skip: noProc }, async t => {
  t.setTimeout(20_000)
  const stopped = deferred()
  const { app } = await startApp(app => {
    app.get('/flood', async function * () {
      try {
        for (let i = 0; i < 100_000; i++) yield { data: 'y'.repeat(32 * 1024) }
      } finally {
        stopped.resolve()
      }
    })
  })
  const port = portOf(app)
  const client = await stuckClient(netConnect(port, '127.0.0.1'), '/flood')
  t.teardown(() => client.destroy())
  // the server end fills up: the stream is then waiting on the socket (no event says so: polled, bounded)
  const unsent = (): number => serverEnd(port, client.localPort as number)?.sendQueue ?? 0
  // the queue seen, not read again: the kernel may move it into the client's receive buffer in between
  let queued = unsent()
  for (let i = 0; i < 500 && queued === 0; i++, queued = unsent()) await sleep(20) // up to 10 s on a loaded machine
  t.ok(queued > 0, 'the server end has bytes the client does not take')
  await app.close()
  await stopped.promise
  t.same(serverEnd(port, client.localPort as number), undefined, 'the server end is gone once app.close() resolved')
})

t.test('over TLS the reset reaches the TCP connection underneath', { skip: noProc }, async t => {
  t.setTimeout(20_000)
  const logs = new LogCapture()
  const app = Fastify({ https: selfSignedCertificate(), logger: { level: 'debug', stream: logs } })
  await app.register(ssePlugin)
  app.get('/flood', async function * () {
    for (let i = 0; i < 100_000; i++) yield { data: 'y'.repeat(32 * 1024) }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = portOf(app)
  const socket = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false })
  t.teardown(() => socket.destroy())
  await once(socket, 'secureConnect')
  await stuckClient(socket, '/flood')
  const unsent = (): number => serverEnd(port, socket.localPort as number)?.sendQueue ?? 0
  // the queue seen, not read again: the kernel may move it into the client's receive buffer in between
  let queued = unsent()
  for (let i = 0; i < 500 && queued === 0; i++, queued = unsent()) await sleep(20) // up to 10 s on a loaded machine
  t.ok(queued > 0, 'the server end has bytes the client does not take')
  await app.close()
  t.same(serverEnd(port, socket.localPort as number), undefined, 'the server end is gone once app.close() resolved')
})

t.test('on a Unix socket, where there is no reset, a stuck client is still closed', async t => {
  t.setTimeout(20_000)
  const dir = mkdtempSync(join(tmpdir(), 'sse-unix-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'app.sock')
  const stopped = deferred()
  const app = Fastify()
  await app.register(ssePlugin)
  app.get('/flood', async function * () {
    try {
      for (let i = 0; i < 100_000; i++) yield { data: 'y'.repeat(32 * 1024) }
    } finally {
      stopped.resolve()
    }
  })
  await app.listen({ path })
  const client = await stuckClient(netConnect(path), '/flood')
  t.teardown(() => client.destroy())
  const t0 = Date.now()
  await app.close()
  await stopped.promise
  t.ok(Date.now() - t0 < 2000, 'app.close() resolved promptly')
})

t.test('on HTTP/2 app.close() does not wait for a client that stopped reading: its connection is reset', async t => {
  t.setTimeout(20_000)
  const stopped = deferred()
  const { app, url } = await startApp(app => {
    app.get('/flood', async function * () {
      try {
        for (let i = 0; i < 100_000; i++) yield { data: 'y'.repeat(32 * 1024) }
      } finally {
        stopped.resolve()
      }
    })
  }, {}, { http2: true } as never)
  const session = http2Connect(url)
  session.on('error', () => {})
  t.teardown(() => session.destroy())
  const stream = session.request({ ':path': '/flood', accept: 'text/event-stream' })
  stream.on('error', () => {})
  stream.pause() // the window fills, the server's writes wait: the stream is stuck
  await once(stream, 'response')
  const closed = once(stream, 'close')
  const t0 = Date.now()
  await app.close()
  await stopped.promise
  await closed
  t.ok(Date.now() - t0 < 2000, 'app.close() resolved promptly')
  t.equal(stream.rstCode, constants.NGHTTP2_CANCEL, 'the stream was reset with CANCEL')
})

t.test('on HTTP/2 a stuck subscriber cut off is reset alone: its session goes on serving', async t => {
  t.setTimeout(20_000)
  const { app, url } = await startApp(floodRoutes, {}, { http2: true } as never)
  t.teardown(() => app.close())
  const session = http2Connect(url)
  session.on('error', () => {})
  t.teardown(() => session.close())
  const stuck = session.request({ ':path': '/sub', accept: 'text/event-stream' })
  stuck.on('error', () => {})
  stuck.pause()
  await once(stuck, 'response')
  const closed = once(stuck, 'close')
  const flood = session.request({ ':path': '/flood', ':method': 'POST' })
  flood.setEncoding('utf8')
  let body = ''
  flood.on('data', (chunk: string) => { body += chunk })
  await once(flood, 'end')
  t.same(JSON.parse(body), { subscribers: 0 }, 'the stuck subscriber was cut off')
  stuck.resume() // a paused stream reports its end only once what it holds is read
  t.ok(await settles(closed), 'its stream was closed')
  t.notOk(session.destroyed, 'the session is still open')
})
