import t from 'tap'
import { connect as netConnect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify from 'fastify'
import { request } from 'undici'
import { kFrame } from '../lib/encode.js'
import ssePlugin, { SseError, type SseItem } from '../lib/index.js'
import { EventStream } from '../lib/stream.js'
import { all, DEBUG, deferred, ERROR, open, startApp, take } from './helpers.js'

// Edges of lib/stream and the plugin's option checks that the client and browser suites do not reach: written
// on issue 6 so that this branch meets the 100% coverage gate by itself. The core suite of the lead covers the
// same ground in depth; at merge, whatever here it makes redundant can go.

t.test('plugin and per-stream options are refused when given', async t => {
  for (const [options, field] of [[{ heartbeat: 0 }, 'heartbeat'], [{ retry: -1 }, 'retry'], [{ serialize: 'json' }, 'serialize']] as const) {
    const app = Fastify()
    app.register(ssePlugin, options as never)
    const err = await app.ready().then(() => undefined, (e: unknown) => e) as SseError
    t.type(err, SseError)
    t.match(err, { code: 'FST_SSE_INVALID_OPTION', field, message: new RegExp(`option "${field}"`) })
    await app.close()
  }
  const { app, url } = await startApp(app => {
    app.get('/bad-option', (_request, reply) => reply.sse([{ data: 1 }], { retry: 1.5 }))
  })
  t.teardown(() => app.close())
  const res = await request(`${url}/bad-option`)
  t.equal(res.statusCode, 500)
  t.match(await res.body.json(), { message: /option "retry" must be a non-negative whole number/ })
})

t.test('reply.sse misuse: not a source, or a reply already sent', async t => {
  let second: Error | undefined
  const { app, url } = await startApp(app => {
    app.get('/number', (_request, reply) => reply.sse(5 as never))
    app.get('/null', (_request, reply) => reply.sse(null as never))
    app.get('/function', (_request, reply) => reply.sse((() => 1) as never))
    app.get('/twice', (_request, reply) => {
      reply.sse([{ data: 1 }])
      try {
        reply.sse([{ data: 2 }])
      } catch (err) {
        second = err as Error
      }
      return reply
    })
  })
  t.teardown(() => app.close())
  for (const [path, got] of [['number', 'number'], ['null', 'null'], ['function', 'function']]) {
    const res = await request(`${url}/${path}`)
    t.equal(res.statusCode, 500)
    t.match(await res.body.json(), { message: `reply.sse() on GET /${path} needs an async or sync iterable of SSE items, got ${got}` })
  }
  const { res, events } = await open(`${url}/twice`)
  t.equal(res.statusCode, 200)
  t.same(await all(events), [{ data: '1' }], 'the first stream goes on')
  t.match(second, { message: 'reply.sse() on GET /twice: the reply was already sent' })
})

t.test('HEAD: headers only, and the source is stopped at once', async t => {
  let ran = false
  let syncReturned = false
  const { app, url } = await startApp(app => {
    app.get('/gen', async function * () {
      ran = true
      yield { data: 1 }
    })
    app.get('/sync', (_request, reply) => reply.sse({
      [Symbol.iterator]: () => ({ next: () => ({ done: false, value: { data: 1 } }), return: () => { syncReturned = true; return { done: true, value: undefined } } })
    }))
  })
  t.teardown(() => app.close())
  const res = await request(`${url}/gen`, { method: 'HEAD' })
  t.equal(res.statusCode, 200)
  t.match(res.headers, { 'content-type': 'text/event-stream; charset=utf-8' })
  t.equal(await res.body.text(), '')
  t.notOk(ran, 'the generator never ran')
  const sync = await request(`${url}/sync`, { method: 'HEAD' })
  await sync.body.dump()
  t.ok(syncReturned, 'a sync iterator is stopped too')
})

t.test('a frame encoded ahead of time is written as it is; items counts what was written', async t => {
  let body: EventStream | undefined
  const { app, url } = await startApp(app => {
    app.addHook('onSend', async (_request, _reply, payload) => {
      if (payload instanceof EventStream) body = payload
      return payload
    })
    app.get('/pre', async function * () {
      yield { [kFrame]: 'id: 7\ndata: pre-encoded\n\n', data: 'ignored' } as SseItem<string>
      yield { data: 'fresh' }
    })
  })
  t.teardown(() => app.close())
  const { events } = await open(`${url}/pre`)
  t.same(await all(events), [{ id: '7', data: 'pre-encoded' }, { data: 'fresh' }])
  t.equal(body?.items, 2)
})

t.test('a failing source: logged with the request logger, the stream ends cleanly', async t => {
  const { app, url, logs } = await startApp(app => {
    app.get('/throws-sync', (_request, reply) => {
      let n = 0
      return reply.sse({
        [Symbol.asyncIterator]: () => ({
          next: () => {
            if (n++ === 0) return Promise.resolve({ done: false, value: { data: 'one' } })
            throw new Error('sync failure in next()')
          }
        })
      })
    })
    app.get('/rejects', async function * () {
      yield { data: 'one' }
      throw new Error('async failure')
    })
    app.get('/refused', async function * () {
      yield { data: 'one' }
      yield { id: 'a\nb', data: 'never' }
    })
  })
  t.teardown(() => app.close())
  for (const [path, message, log] of [
    ['throws-sync', 'sync failure in next()', 'SSE source failed; stream ended'],
    ['rejects', 'async failure', 'SSE source failed; stream ended'],
    ['refused', 'SSE item field "id" must not contain CR or LF', 'SSE item refused; stream ended']
  ] as const) {
    const { res, events } = await open(`${url}/${path}`)
    t.equal(res.statusCode, 200)
    t.same(await all(events), [{ data: 'one' }], `${path}: the events before the failure, then a clean end`)
    const line = await logs.waitFor(l => l.err?.message === message)
    t.equal(line.level, ERROR)
    t.equal(line.msg, log)
  }
})

t.test('a source that fails while being stopped is logged; one that rejects after the abort is not an error', async t => {
  const { app, url, logs } = await startApp(app => {
    for (const [path, stop] of [
      ['return-throws', () => { throw new Error('return() threw') }],
      ['return-rejects', () => Promise.reject(new Error('return() rejected'))]
    ] as const) {
      app.get(`/${path}`, (_request, reply) => reply.sse({
        [Symbol.asyncIterator]: () => ({
          next: () => Promise.resolve({ done: false, value: { data: 'x', comment: 'padding' } }),
          return: stop
        })
      }))
    }
    app.get('/sleeps', async function * (request) {
      yield { data: 'one' }
      await sleep(60_000, undefined, { signal: request.signal })
    })
  })
  t.teardown(() => app.close())
  for (const message of ['return() threw', 'return() rejected']) {
    const path = message === 'return() threw' ? 'return-throws' : 'return-rejects'
    const { res, events } = await open(`${url}/${path}`)
    await take(events, 3)
    res.body.destroy() // the client leaves
    const line = await logs.waitFor(l => l.err?.message === message)
    t.equal(line.msg, 'SSE source failed while stopping')
    t.equal(line.level, ERROR)
  }
  const { res, events } = await open(`${url}/sleeps`)
  await take(events, 1)
  res.body.destroy()
  const line = await logs.waitFor(l => l.msg === 'SSE source stopped after the stream closed')
  t.equal(line.level, DEBUG)
  t.equal(line.err?.type, 'AbortError')
})

t.test('app.close() destroys a stream whose client does not read', async t => {
  t.setTimeout(15_000)
  const full = deferred()
  const stopped = deferred()
  const { app, url } = await startApp(app => {
    app.get('/flood', async function * (request, reply) {
      try {
        const chunk = 'x'.repeat(256 * 1024)
        while (!request.signal.aborted) {
          if (reply.raw.writableNeedDrain) full.resolve()
          yield { data: chunk }
        }
      } finally {
        stopped.resolve()
      }
    })
  })
  const { port } = new URL(url)
  const socket = netConnect(Number(port), '127.0.0.1')
  t.teardown(() => socket.destroy())
  socket.pause() // never reads: the server's socket fills up
  socket.write(`GET /flood HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n\r\n`)
  await full.promise
  const started = Date.now()
  await app.close()
  t.ok(Date.now() - started < 5000, 'closed without waiting for the client')
  await stopped.promise
  t.pass("the generator's finally ran")
})

t.test('the heartbeat counts silence from the last write, not from the last heartbeat', async t => {
  t.setTimeout(10_000)
  const HEARTBEAT = 60
  const written = deferred<{ event: number, heartbeat: number }>()
  const { app, url } = await startApp(app => {
    app.get('/late', (request, reply) => {
      // the times the frames are written, seen where they leave the stream: the client may read them together
      let event: number | undefined
      const raw = reply.raw
      const write = raw.write
      raw.write = function (this: typeof raw, chunk: unknown, ...rest: unknown[]) {
        if (chunk === 'data: event\n\n') event = Date.now()
        else if (chunk === ':\n\n' && event !== undefined) written.resolve({ event, heartbeat: Date.now() })
        return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest)
      } as typeof raw.write
      return reply.sse((async function * () {
        await sleep(HEARTBEAT / 2) // the event lands in the middle of the first heartbeat period
        yield { data: 'event' }
        await sleep(60_000, undefined, { signal: request.signal })
      })(), { heartbeat: HEARTBEAT })
    })
  })
  t.teardown(() => app.close())
  const res = await request(`${url}/late`)
  const { event, heartbeat } = await written.promise
  const gap = heartbeat - event
  t.ok(gap >= HEARTBEAT - 2, `the first heartbeat after the event came ${gap} ms after it, not sooner`)
  res.body.destroy()
})
