import t from 'tap'
import { once } from 'node:events'
import { connect as netConnect, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { SseItem } from '../lib/index.js'
import { deferred, startApp } from './helpers.js'

// Clients that misbehave on purpose or by accident must not keep anything of the server's.

const GET = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`

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

function rawClient (port: number, text: string): Socket {
  const socket = netConnect(port, '127.0.0.1')
  socket.on('error', () => {})
  socket.write(text)
  return socket
}

/** The status code of a fresh stream's response; the connection is closed once it is known. */
async function statusOf (port: number, path: string): Promise<number> {
  const socket = rawClient(port, GET(path))
  try {
    const [chunk] = await once(socket, 'data') as [Buffer]
    return Number(chunk.toString('latin1').split(' ')[1])
  } finally {
    socket.destroy()
  }
}

const portOf = (app: { server: { address: () => unknown } }): number => (app.server.address() as { port: number }).port

t.test('pipelined requests: every stream is released when the client closes the connection', async t => {
  t.setTimeout(20_000)
  const depth = 60
  let entered = 0
  let finalized = 0
  const allEntered = deferred()
  const allFinalized = deferred()
  const warnings: Error[] = []
  const onWarning = (w: Error): void => { warnings.push(w) }
  process.on('warning', onWarning)
  t.teardown(() => { process.off('warning', onWarning) })
  const { app } = await startApp(app => {
    app.get('/events', async function * (request) {
      if (++entered === depth) allEntered.resolve()
      try {
        yield { data: 'open' }
        await sleep(3_600_000, undefined, { signal: request.signal })
      } finally {
        if (++finalized === depth) allFinalized.resolve()
      }
    })
  }, { maxConnections: depth })
  t.teardown(() => app.close())

  // one request, 60 streams: the first is answered, 59 wait behind it on the same connection
  const socket = rawClient(portOf(app), GET('/events').repeat(depth))
  socket.resume()
  await within(allEntered.promise, 10_000, 'not every pipelined request reached its handler')
  socket.destroy()
  await within(allFinalized.promise, 5000, 'pipelined streams kept running after the client left')
  t.equal(finalized, depth, 'every generator ran its finally')

  // their slots are free again: maxConnections streams open at once
  const next = await Promise.all(Array.from({ length: depth }, () => statusOf(portOf(app), '/events')))
  t.same(new Set(next), new Set([200]), `${depth} new streams are admitted under maxConnections ${depth}`)
  t.same(warnings.map(w => w.name), [], 'no MaxListenersExceededWarning: one listener for the connection')
  const t0 = Date.now()
  await app.close()
  t.ok(Date.now() - t0 < 2000, 'app.close() resolves promptly')
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
  t.equal(channel.size, depth, `${depth} subscribers while the client is connected`)
  socket.destroy()
  let closed = 0
  await within(logs.waitFor(l => l.msg === 'SSE stream closed' && ++closed === depth), 5000,
    'pipelined streams stayed open after the client left')
  t.equal(channel.size, 0, 'every subscription was dropped')
})
