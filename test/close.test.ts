import t from 'tap'
import { connect as netConnect } from 'node:net'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import type { Channel } from '../lib/index.js'
import { all, deferred, open, startApp, take, settles } from './helpers.js'

t.test('app.close() ends 50 open streams promptly; every generator finally runs', async t => {
  t.setTimeout(20_000)
  let started = 0
  let finalized = 0
  const allStarted = deferred()
  const { app, url, logs } = await startApp(app => {
    // onResponse + logger: the combination that makes Fastify drop its own request.signal wiring
    app.addHook('onResponse', async () => {})
    app.get('/sleepy', async function * (request) {
      try {
        yield { data: 'open' }
        if (++started === 50) allStarted.resolve()
        await sleep(3_600_000, undefined, { signal: request.signal })
      } finally {
        finalized++
      }
    })
  })

  const streams = await Promise.all(Array.from({ length: 50 }, () => open(url + '/sleepy')))
  const firsts = await Promise.all(streams.map(({ events }) => take(events, 1)))
  t.same(firsts, Array(50).fill([{ data: 'open' }]), 'all 50 streams are open')
  await allStarted.promise

  const t0 = Date.now()
  await app.close()
  const elapsed = Date.now() - t0
  t.ok(elapsed < 2000, `app.close() resolved in ${elapsed} ms`)
  t.equal(finalized, 50, 'every generator ran its finally')
  const ends = await Promise.all(streams.map(({ events }) => all(events)))
  t.same(ends, Array(50).fill([]), 'every client saw its stream end cleanly')
  const reasons = logs.lines.filter(l => l.msg === 'SSE stream closed').map(l => l.reason)
  t.same(new Set(reasons), new Set(['server closing']))
})

t.test('app.close() does not wait for a client that stopped reading', async t => {
  t.setTimeout(20_000)
  let pulled = 0
  const started = deferred()
  const stopped = deferred()
  const { app, url } = await startApp(app => {
    app.get('/flood', async function * () {
      try {
        started.resolve()
        for (let i = 0; i < 100_000; i++) {
          pulled++
          yield { data: 'y'.repeat(32 * 1024) }
        }
      } finally {
        stopped.resolve()
      }
    })
  })
  const socket = netConnect(Number(new URL(url).port), '127.0.0.1')
  t.teardown(() => socket.destroy())
  await once(socket, 'connect')
  socket.pause()
  socket.write('GET /flood HTTP/1.1\r\nHost: localhost\r\n\r\n')
  await started.promise // a loaded machine may take a while to reach the handler
  let last = -1
  for (let i = 0; i < 200 && pulled !== last; i++) {
    last = pulled
    await sleep(50)
  }
  const t0 = Date.now()
  await app.close()
  t.ok(Date.now() - t0 < 2000, `closed in ${Date.now() - t0} ms with a full socket`)
  t.ok(await settles(stopped.promise), 'the generator was stopped')
})

t.test('a generator that ignores the signal does not hold app.close()', async t => {
  t.setTimeout(20_000)
  const release = deferred()
  const finalized = deferred()
  const { app, url } = await startApp(app => {
    app.get('/stubborn', async function * () {
      try {
        yield { data: 'x' }
        await release.promise // deaf to request.signal
        yield { data: 'never delivered' }
      } finally {
        finalized.resolve()
      }
    })
  })
  const { events } = await open(url + '/stubborn')
  t.same(await take(events, 1), [{ data: 'x' }])
  await app.close()
  t.same(await all(events), [], 'the client saw a clean end')
  release.resolve()
  t.ok(await settles(finalized.promise), 'its finally ran once it reached the next yield')
})

t.test('app.close() does not wait for a client that stopped reading with little in flight', async t => {
  t.setTimeout(20_000)
  let res: import('node:http').ServerResponse | undefined
  const stopped = deferred()
  const { app, url } = await startApp(app => {
    app.get('/trickle', async function * (request, reply) {
      res = reply.raw
      try {
        // 1 KB at a time until the response itself holds bytes the socket did not take
        for (let i = 0; i < 100_000 && reply.raw.writableLength === 0; i++) {
          yield { data: 'z'.repeat(1024) }
          await new Promise(resolve => setImmediate(resolve))
        }
        await sleep(3_600_000, undefined, { signal: request.signal })
      } finally {
        stopped.resolve()
      }
    })
  }, { heartbeat: false })
  const socket = netConnect(Number(new URL(url).port), '127.0.0.1')
  t.teardown(() => socket.destroy())
  await once(socket, 'connect')
  socket.pause()
  socket.write('GET /trickle HTTP/1.1\r\nHost: localhost\r\n\r\n')
  for (let i = 0; i < 400 && (res === undefined || res.writableLength === 0); i++) await sleep(25)
  t.ok(res !== undefined && res.writableLength > 0 && res.writableNeedDrain === false, 'a few bytes wait, no drain is due')
  const t0 = Date.now()
  await app.close()
  t.ok(Date.now() - t0 < 5000, `closed in ${Date.now() - t0} ms`)
  await stopped.promise
})

t.test('a stream that would open while app.close() runs is refused with 503, its source stopped', async t => {
  t.setTimeout(20_000)
  const closingStarted = deferred()
  const reached = deferred()
  let bodyRan = false
  const { app, url } = await startApp(app => {
    // runs after the plugin's preClose hook (hooks run in the order they were added)
    app.addHook('preClose', async () => { closingStarted.resolve() })
    app.get('/slow-auth', {
      preHandler: async () => { // e.g. an auth check still in flight
        reached.resolve()
        await closingStarted.promise
      }
    }, async function * () {
      bodyRan = true
      yield { data: 'never' }
    })
  })
  const pending = request(url + '/slow-auth')
  await reached.promise
  const closed = app.close()
  const res = await pending
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '5')
  t.match(await res.body.json(), {
    statusCode: 503, code: 'FST_SSE_SERVER_CLOSING', error: 'Service Unavailable', message: /the server is closing/
  })
  await closed
  t.equal(bodyRan, false, 'the generator never ran')
  t.match(app.sse.stats(), { rejected: 1, rejectedByReason: { 'server closing': 1, 'max connections': 0 }, opened: 0 })
})

t.test('channels stay open for publishers until the server has closed', async t => {
  t.setTimeout(20_000)
  const published: string[] = []
  let ticks!: Channel<number>
  const { app, url } = await startApp(app => {
    ticks = app.sse.channel<number>('ticks')
    app.addHook('preClose', async () => { published.push(ticks.publish({ data: 1 })) }) // after the plugin's
    app.get('/ticks', (_req, reply) => reply.sse(ticks.subscribe()))
  })
  const { events } = await open(url + '/ticks')
  await app.close()
  t.equal(published.length, 1, 'a publish while closing does not throw')
  t.same(await all(events), [], 'the subscriber stream had ended cleanly')
  t.throws(() => ticks.publish({ data: 2 }), { code: 'FST_SSE_CHANNEL_CLOSED' }, 'after close it does')
})

t.test('the client left before the stream existed: the stream closes, app.close() does not wait for it', async t => {
  t.setTimeout(15_000)
  const waiting = deferred()
  const { app, url, logs } = await startApp(app => {
    app.get('/slow', {
      preHandler: async (request) => {
        const signal = request.signal
        waiting.resolve()
        await once(signal, 'abort')
      }
    }, async function * () {
      await new Promise(() => {}) // a source that waits for something other than its signal
      yield { data: 'never' }
    })
  })
  t.teardown(() => app.close()) // if the test fails before its own app.close()
  const socket = netConnect(Number(new URL(url).port), '127.0.0.1')
  socket.write('GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  await waiting.promise
  socket.destroy()
  t.match(await logs.waitFor(l => l.msg === 'SSE stream closed'), { level: 30, reason: 'client closed', items: Number, durationMs: Number },
    'one info line when the client left early: why, how long, how many items')
  t.equal(app.sse.stats().open, 0, 'not left open')
  await app.close()
})
