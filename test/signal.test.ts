import t, { type Test } from 'tap'
import { getEventListeners, once } from 'node:events'
import { connect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import type { FastifyInstance, FastifyRequest, onRequestAsyncHookHandler } from 'fastify'
import { Type } from '@sinclair/typebox'
import { pushSource, sseSchema, type Channel } from '../lib/index.js'
import { all, deferred, ERROR, open, startApp, take, WARN } from './helpers.js'

const POST = { method: 'POST' as const, body: JSON.stringify({ a: 1 }), headers: { 'content-type': 'application/json' } }

/**
 * A route that yields, waits past the moment Fastify's own signal would abort, yields whether it did, then waits
 * for the client to leave.
 */
function twoTicks (
  app: FastifyInstance, path: string, early: () => AbortSignal | undefined, ended: (aborted: boolean) => void,
  onRequest?: onRequestAsyncHookHandler | onRequestAsyncHookHandler[]
): void {
  app.post(path, { onRequest }, async function * (request) {
    const signal = early() ?? request.signal
    try {
      yield { data: String(signal === request.signal) }
      await sleep(30, undefined, { signal })
      yield { data: String(signal.aborted) }
      await sleep(60_000, undefined, { signal })
    } finally {
      ended(signal.aborted)
    }
  })
}

t.test('POST: request.signal read in an onRequest hook, a preHandler or with handlerTimeout is the stream\'s life', async t => {
  t.setTimeout(15_000)
  for (const where of ['onRequest', 'preHandler', 'handlerTimeout', 'route onRequest', 'route onRequest[]'] as const) {
    const ended = deferred<boolean>()
    let early: AbortSignal | undefined
    const read = async (request: FastifyRequest): Promise<void> => { early = request.signal }
    const { app, url } = await startApp(app => {
      if (where === 'onRequest' || where === 'preHandler') app.addHook(where, read)
      const onRequest = where === 'route onRequest' ? read : where === 'route onRequest[]' ? [read] : undefined
      twoTicks(app, '/s', () => early, ended.resolve, onRequest)
    }, {}, where === 'handlerTimeout' ? { handlerTimeout: 60_000 } : {})
    t.teardown(() => app.close())
    const ac = new AbortController()
    const { events } = await open(url + '/s', { ...POST, signal: ac.signal })
    t.same(await take(events, 2), [{ data: 'true' }, { data: 'false' }], `${where}: the same signal, not aborted once the body was read`)
    ac.abort()
    t.equal(await ended.promise, true, `${where}: aborted when the client left`)
  }
})

t.test('POST: a plain handler that reads request.signal, then starts the stream', async t => {
  t.setTimeout(15_000)
  const ended = deferred<boolean>()
  const { app, url, logs } = await startApp(app => {
    app.post('/plain', (request, reply) => {
      const signal = request.signal
      reply.sse((async function * () {
        try {
          yield { data: 'one' }
          await sleep(30, undefined, { signal })
          yield { data: String(signal.aborted) }
          await sleep(60_000, undefined, { signal })
        } finally {
          ended.resolve(signal.aborted)
        }
      })())
    })
    app.post('/late', async (request, reply) => {
      const signal = request.signal
      await new Promise(resolve => request.raw.once('close', resolve)) // Fastify's signal has fired
      return reply.sse((function * () {
        yield { data: String(signal.aborted) }
        yield { data: String(request.signal.aborted) }
      })())
    })
  })
  t.teardown(() => app.close())
  const ac = new AbortController()
  const { events } = await open(url + '/plain', { ...POST, signal: ac.signal })
  t.same(await take(events, 2), [{ data: 'one' }, { data: 'false' }])
  ac.abort()
  t.equal(await ended.promise, true)

  const late = await open(url + '/late', POST)
  t.same(await take(late.events, 2), [{ data: 'true' }, { data: 'false' }], 'too late to save the early one: the stream gets a new signal')
  const warning = await logs.waitFor(l => l.level === WARN && /request\.signal was read before the stream started/.test(l.msg))
  t.match(warning.msg, /POST \/late/)
})

/** Counts the AbortControllers made while the test runs (the plugin makes its own only for a `request.signal` read). */
function countControllers (t: Test): { made: number } {
  const seen = { made: 0 }
  const Original = globalThis.AbortController
  globalThis.AbortController = class extends Original {
    constructor () {
      super()
      seen.made++
    }
  }
  t.teardown(() => { globalThis.AbortController = Original })
  return seen
}

t.test('request.signal is made only when read, and is the stream\'s however late it is read', async t => {
  t.setTimeout(10_000)
  const gone = deferred<boolean>()
  const ended = deferred<boolean>()
  const waited = deferred<boolean>()
  const { app, url } = await startApp(app => {
    const chat = app.sse.channel('lazy-signal', { history: 0 })
    app.get('/sub', (request, reply) => reply.sse(chat.subscribe()))
    app.get('/gen', async function * () {
      yield { data: 'one' }
    })
    // read while the stream is open: aborts when the client leaves
    app.get('/waits', async function * (request) {
      const signal = request.signal
      yield { data: 'first' }
      await once(signal, 'abort')
      waited.resolve(signal.aborted)
    })
    // read only once the client has left: already aborted
    app.get('/late', async function * (request) {
      yield { data: 'first' }
      await once(request.raw.socket, 'close')
      gone.resolve(request.signal.aborted)
    })
    // a source that ends by itself: its signal does not abort when the response then closes
    app.get('/ends', async function * (request, reply) {
      const signal = request.signal
      reply.raw.once('close', () => { ended.resolve(signal.aborted) })
      yield { data: 'done' }
    })
  })
  t.teardown(() => app.close())
  const seen = countControllers(t)
  const sub = await open(url + '/sub')
  t.same(await all((await open(url + '/gen')).events), [{ data: 'one' }])
  t.equal(seen.made, 0, 'no controller for streams that never read request.signal')
  sub.res.body.destroy()

  const waits = await open(url + '/waits')
  await take(waits.events, 1)
  waits.res.body.destroy()
  t.equal(await waited.promise, true, 'read while open: aborted when the client leaves')
  t.equal(seen.made, 1, 'one controller, for the one stream that read its signal')

  const late = await open(url + '/late')
  await take(late.events, 1)
  late.res.body.destroy()
  t.equal(await gone.promise, true, 'read after the client left: aborted')
  t.same(await all((await open(url + '/ends')).events), [{ data: 'done' }])
  t.equal(await ended.promise, false, 'a source that ended by itself: not aborted')
})

t.test('once the stream exists, nothing but the stream watches for the client leaving on the signal\'s behalf', async t => {
  t.setTimeout(10_000)
  const closeListeners: Record<string, number> = {}
  const abortListeners = deferred<number>()
  const leftSub = deferred<boolean>()
  let chat!: Channel<string>
  const { app, url, logs } = await startApp(app => {
    chat = app.sse.channel('signal-listeners', { history: 0 })
    // the same route, its signal read before the stream (a preHandler) or never: the response ends up with the
    // same 'close' listeners either way
    for (const read of [true, false]) {
      app.get(read ? '/read' : '/unread', {
        preHandler: async (request) => { if (read) void request.signal }
      }, async function * (request, reply) {
        closeListeners[read ? 'read' : 'unread'] = reply.raw.listenerCount('close')
        yield { data: 'x' }
      })
    }
    app.get('/sub', (request, reply) => {
      const attached = chat.subscribe({ signal: request.signal })
      const iterated = chat.subscribe({ signal: request.signal })
      reply.sse(attached)
      abortListeners.resolve(getEventListeners(request.signal, 'abort').length)
      request.signal.addEventListener('abort', () => {
        leftSub.resolve(request.signal.aborted)
        void iterated.return?.()
      })
    })
  })
  t.teardown(() => app.close())
  t.same(await all((await open(url + '/read')).events), [{ data: 'x' }])
  t.same(await all((await open(url + '/unread')).events), [{ data: 'x' }])
  t.equal(closeListeners.read, closeListeners.unread, 'no listener left for a signal read before the stream')

  const sub = await open(url + '/sub')
  t.equal(await abortListeners.promise, 1, 'only the subscription iterated by hand listens; the one its stream writes does not')
  chat.publish({ data: 'hi' })
  t.match(await take(sub.events, 1), [{ data: 'hi' }])
  sub.res.body.destroy()
  t.equal(await leftSub.promise, true, 'the signal still aborts when the client leaves')
  await logs.waitFor(line => line.msg === 'SSE stream closed' && line.reason === 'client closed')
  t.equal(chat.size, 0, 'and the stream ended its subscription')
})

t.test('read before the stream exists: aborts when the client leaves first, not when a hook answered instead', async t => {
  t.setTimeout(10_000)
  const waiting = deferred()
  const left = deferred<boolean>()
  const answered = deferred<boolean>()
  const { app, url } = await startApp(app => {
    app.get('/slow', {
      preHandler: async (request) => {
        const signal = request.signal
        waiting.resolve()
        await once(signal, 'abort')
        left.resolve(signal.aborted)
      }
    }, async function * () {
      yield { data: 'never' }
    })
    app.get('/denied', {
      preHandler: async (request, reply) => {
        const signal = request.signal
        reply.raw.once('close', () => { answered.resolve(signal.aborted) })
        return reply.code(401).send({ denied: true })
      }
    }, async function * () {
      yield { data: 'never' }
    })
  })
  t.teardown(() => app.close())
  const socket = connect(Number(new URL(url).port), '127.0.0.1')
  socket.write('GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  await waiting.promise
  socket.destroy()
  t.equal(await left.promise, true, 'the client left while a hook waited: aborted')
  const denied = await request(url + '/denied')
  t.equal(denied.statusCode, 401)
  await denied.body.text()
  t.equal(await answered.promise, false, 'a hook answered instead of a stream: not aborted')
})

t.test('client gone before the stream: a subscription or push source ended by request.signal closes as "client closed"', async t => {
  t.setTimeout(15_000)
  let chat!: Channel<string>
  const waiting: Record<string, ReturnType<typeof deferred<void>>> = {
    sub: deferred(), end: deferred(), fail: deferred()
  }
  const { app, url, logs } = await startApp(app => {
    chat = app.sse.channel<string>('early-leave', { history: 0 })
    const preHandler = async (request: { signal: AbortSignal }): Promise<void> => { void request.signal }
    // an sseSchema() response: a route known to stream, whose request.signal is the stream's from its first hook
    const schema = { response: { 200: sseSchema(Type.String()) } }
    app.get('/sub', { preHandler, schema }, async (request, reply) => {
      const { signal } = request
      waiting.sub?.resolve()
      await once(signal, 'abort')
      return reply.sse(chat.subscribe({ signal: request.signal }))
    })
    app.get('/push/:how', { preHandler, schema }, async (request, reply) => {
      const how = (request.params as { how: string }).how
      const { signal } = request
      const source = pushSource<string>()
      signal.addEventListener('abort', () => { if (how === 'fail') source.fail(new Error('left')); else source.end() })
      waiting[how]?.resolve()
      await once(signal, 'abort')
      return reply.sse(source)
    })
  })
  t.teardown(() => app.close())
  const port = Number(new URL(url).port)
  for (const [path, key] of [['/sub', 'sub'], ['/push/end', 'end'], ['/push/fail', 'fail']] as const) {
    const before = logs.lines.length
    const closed = logs.waitFor(l => l.msg === 'SSE stream closed' && logs.lines.indexOf(l) >= before)
    const socket = connect(port, '127.0.0.1')
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
    await waiting[key]?.promise
    socket.destroy()
    t.match(await closed, { reason: 'client closed' }, path)
  }
  t.match(app.sse.stats().closed, { 'client closed': 3, 'source ended': 0, 'source failed': 0 })
  t.same(logs.at(ERROR), [], 'no failure logged')
})
