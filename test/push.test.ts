// Push sources over real sockets: an EventEmitter pushing into a stream, backpressure and the bounds with a
// client that never reads, the client leaving, app.close(), failures before and after the first item, and
// typed routes' serializers and checks applied at the push call.
import t from 'tap'
import { EventEmitter } from 'node:events'
import { connect } from 'node:net'
import { Type } from '@sinclair/typebox'
import { request } from 'undici'
import { pushSource, sseSchema, SseError, type PushSource, type SseItem } from '../lib/index.js'
import { all, deferred, ERROR, open, startApp, take, within } from './helpers.js'

/** A raw HTTP/1.1 client that sends the request and reads nothing: the sockets fill, then the push queue. */
function stuckClient (url: string, path: string) {
  const { port } = new URL(url)
  const raw = connect(Number(port), '127.0.0.1')
  raw.pause()
  raw.on('error', () => {}) // a reset is how it learns it was dropped
  raw.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`)
  return raw
}

t.test('an EventEmitter pushes into the stream; the client leaving aborts the signal and the listener goes', async t => {
  const ticker = new EventEmitter()
  const aborted = deferred()
  const { app, url } = await startApp(app => {
    app.get('/ticks', (_req, reply) => {
      const source = pushSource<{ n: number }>()
      const onTick = (n: number): void => { source.push({ id: String(n), data: { n } }) }
      ticker.on('tick', onTick)
      source.signal.addEventListener('abort', () => {
        ticker.off('tick', onTick)
        aborted.resolve()
      })
      return reply.sse(source)
    })
  }, { headersDelay: 0 })
  t.teardown(() => app.close())
  const { res, events } = await open(`${url}/ticks`)
  t.equal(res.headers['content-type'], 'text/event-stream; charset=utf-8')
  t.equal(ticker.listenerCount('tick'), 1)
  for (let n = 0; n < 5; n++) ticker.emit('tick', n)
  t.same(await take(events, 5), [0, 1, 2, 3, 4].map(n => ({ id: String(n), data: JSON.stringify({ n }) })))
  res.body.destroy()
  await within(aborted.promise, 5000, 'the signal to abort')
  t.equal(ticker.listenerCount('tick'), 0, 'the producer removed its listener')
})

t.test('returned from a handler: items pushed before it streams are written first; end(last) ends it', async t => {
  const { app, url } = await startApp(app => {
    app.get('/job', async () => {
      const source = pushSource<string>()
      source.push({ event: 'start', data: 'queued' })
      await Promise.resolve()
      source.push({ data: 'running' })
      setImmediate(() => {
        source.push({ data: 'half' })
        source.end({ event: 'done', data: 'ok' })
        t.equal(source.push({ data: 'late' }), false, 'nothing is taken after end()')
        t.ok(source.closed && source.signal.aborted, 'closed, and its signal (read late) aborted')
      })
      return source
    })
  })
  t.teardown(() => app.close())
  const { res, events } = await open(`${url}/job`)
  t.equal(res.statusCode, 200)
  t.same(await all(events), [
    { event: 'start', data: 'queued' }, { data: 'running' }, { data: 'half' }, { event: 'done', data: 'ok' }
  ])
})

t.test('a bad item throws at the push call, naming the field, and the stream goes on', async t => {
  const thrown: unknown[] = []
  const { app, url } = await startApp(app => {
    app.get('/bad', (_req, reply) => {
      const source = pushSource()
      // before it streams: the fields are checked at once
      try { source.push({ event: 'a\nb' }) } catch (err) { thrown.push(err) }
      reply.sse(source)
      setImmediate(() => {
        for (const item of [{ id: 'x\ny' }, { retry: -1 }, { data: 1n }, 'text']) {
          try { source.push(item as SseItem) } catch (err) { thrown.push(err) }
        }
        source.end({ data: 'still open' })
      })
      return reply
    })
  })
  t.teardown(() => app.close())
  const { events } = await open(`${url}/bad`)
  t.same(await all(events), [{ data: 'still open' }])
  t.same(thrown.map(err => [err instanceof SseError, (err as SseError).field]),
    [[true, 'event'], [true, 'id'], [true, 'retry'], [true, 'data'], [true, 'item']])
})

t.test('a channel\'s item pushed on is written with the frame it was published with', async t => {
  const { app, url } = await startApp(app => {
    const news = app.sse.channel<string>('news')
    app.get('/forward', async (_req, reply) => {
      const subscription = news.subscribe()
      news.publish({ id: 'n1', event: 'headline', data: 'one' })
      const item = (await subscription.next()).value as SseItem<string>
      await subscription.return?.()
      const source = pushSource<string>()
      reply.sse(source)
      source.end(item)
      return reply
    })
  })
  t.teardown(() => app.close())
  const { events } = await open(`${url}/forward`)
  t.same(await all(events), [{ id: 'n1', event: 'headline', data: 'one' }])
})

t.test('typed route: the route\'s serializer and its validate check apply at the push call', async t => {
  const Tick = Type.Object({ n: Type.Number() })
  const refused = deferred<unknown>()
  const { app, url } = await startApp(app => {
    app.get('/typed', { schema: { response: { 200: sseSchema(Tick) } }, config: { sse: { validate: true } } }, (_req, reply) => {
      const source: PushSource<SseItem<{ n: number }>> = pushSource<typeof Tick.static>()
      reply.sse(source)
      setImmediate(() => {
        // the compiled serializer writes only what the schema names
        source.push({ data: { n: 1, secret: 'x' } as { n: number } })
        try {
          source.push({ data: { n: 'two' } as unknown as { n: number } })
        } catch (err) {
          refused.resolve(err)
        }
        source.end({ data: { n: 3 } })
      })
      return reply
    })
    // pushed before it streams: refused when the stream takes it, before the first byte: the route's error
    app.get('/typed-early', { schema: { response: { 200: sseSchema(Tick) } }, config: { sse: { validate: true } } }, () => {
      const source = pushSource<typeof Tick.static>()
      source.push({ data: { n: 'one' } as unknown as { n: number } })
      return source
    })
  })
  t.teardown(() => app.close())
  const { events } = await open(`${url}/typed`)
  t.same(await all(events), [{ data: '{"n":1}' }, { data: '{"n":3}' }], 'the extra property stripped; the bad item never written')
  t.match(await refused.promise, { code: 'FST_SSE_INVALID_ITEM', field: 'data', message: /does not match the schema of route GET \/typed/ })
  const early = await request(`${url}/typed-early`)
  t.equal(early.statusCode, 500)
  t.match(await early.body.json(), { code: 'FST_SSE_INVALID_ITEM' })
})

t.test('fail(): before the first item the route\'s error and status; after it the onError last item', async t => {
  class NotFound extends Error { statusCode = 404 }
  const { app, url, logs } = await startApp(app => {
    app.get('/missing', (_req, reply) => {
      const source = pushSource()
      setImmediate(() => source.fail(new NotFound('no such job')))
      return reply.sse(source)
    })
    app.get('/broken', (_req, reply) => {
      const source = pushSource<string>()
      source.push({ data: 'first' })
      setImmediate(() => {
        source.push({ data: 'second' })
        source.fail(new Error('upstream gone'))
        t.equal(source.push({ data: 'late' }), false)
      })
      return reply.sse(source, { onError: err => ({ event: 'error', data: (err as Error).message }) })
    })
  })
  t.teardown(() => app.close())
  const missing = await request(`${url}/missing`)
  t.equal(missing.statusCode, 404)
  t.match(await missing.body.json(), { statusCode: 404, message: 'no such job' })
  const { events } = await open(`${url}/broken`)
  t.same(await all(events), [{ data: 'first' }, { data: 'second' }, { event: 'error', data: 'upstream gone' }])
  t.match(logs.at(ERROR), [{ msg: 'SSE source failed; stream ended', err: { message: 'upstream gone' } }])
})

t.test('a client that never reads: push() returns false at half the bound, drained() waits, then the stuck client is dropped', async t => {
  t.setTimeout(60_000)
  let source!: PushSource<SseItem<string>>
  const started = deferred()
  const { app, url, logs } = await startApp(app => {
    app.get('/slow', (_req, reply) => {
      source = pushSource<string>({ queueItems: 8 })
      started.resolve()
      return reply.sse(source)
    })
  }, { heartbeat: false, headersDelay: 0 })
  t.teardown(() => app.close())
  const raw = stuckClient(url, '/slow')
  t.teardown(() => raw.destroy())
  await started.promise
  const payload = 'x'.repeat(32 * 1024)
  // the kernel's and the response's buffers fill first; then items wait in the source
  let pushes = 0
  let ok = true
  while (ok && pushes < 10_000) {
    ok = source.push({ data: payload })
    pushes++
    if (ok && source.queued === 0) await new Promise(resolve => setImmediate(resolve))
  }
  t.notOk(ok, `push() returned false after ${pushes} pushes`)
  t.equal(source.queued, 4, 'at half of queueItems')
  const pending = source.drained()
  for (let i = 0; i < 4; i++) source.push({ data: payload })
  t.equal(source.queued, 8, 'the bound itself is still taken')
  t.notOk(source.closed)
  t.equal(source.push({ data: payload }), false)
  t.ok(source.closed && source.signal.aborted, 'one more: cut off, and the producer learns it')
  await within(pending, 1000, 'a pending drained() to settle on close')
  await within(source.drained(), 1000, 'drained() of a closed source')
  t.match(await logs.waitFor(l => l.msg === 'SSE stream closed'), { reason: 'too slow' })
  // not events.once(): it rejects on the ECONNRESET that Node 24 reports as the reset socket is read
  const closed = new Promise(resolve => raw.once('close', resolve))
  raw.resume()
  await within(closed, 5000, 'the stuck connection to be closed')
  t.equal(app.sse.stats().closed['too slow'], 1)
})

t.test('a client that leaves a push source its code ends or fails on request.signal closed it: nothing is logged as failed', async t => {
  t.setTimeout(10_000)
  const { app, url, logs } = await startApp(app => {
    app.get('/leave/:how', (req, reply) => {
      // read first: its listener of the client's leaving runs before the stream's own
      const { signal } = req
      const source = pushSource<string>()
      signal.addEventListener('abort', () => {
        if ((req.params as { how: string }).how === 'fail') source.fail(new Error('the client left'))
        else source.end()
      })
      reply.sse(source)
      source.push({ data: 'one' })
      return reply
    })
  })
  t.teardown(() => app.close())
  for (const how of ['end', 'fail']) {
    const client = await open(`${url}/leave/${how}`)
    t.same((await take(client.events, 1)).map(e => e.data), ['one'])
    const before = logs.lines.length
    const closed = logs.waitFor(l => l.msg === 'SSE stream closed' && logs.lines.indexOf(l) >= before)
    client.res.body.destroy()
    t.match(await closed, { reason: 'client closed', items: 1 }, how)
  }
  t.match(app.sse.stats().closed, { 'client closed': 2, 'source ended': 0, 'source failed': 0 })
  t.same(logs.at(ERROR), [], 'no failure logged')
})

t.test('a burst the socket takes is written within push(): all true, nothing queues', async t => {
  const { app, url } = await startApp(app => {
    app.get('/burst', (_req, reply) => {
      const source = pushSource<number>({ queueItems: 4 })
      reply.sse(source)
      setImmediate(() => {
        const results: boolean[] = []
        for (let n = 0; n < 7; n++) results.push(source.push({ data: n }))
        t.same(results, [true, true, true, true, true, true, true], 'each went straight to the waiting stream')
        t.equal(source.queued, 0)
        source.end()
      })
      return reply
    })
  })
  t.teardown(() => app.close())
  const { events } = await open(`${url}/burst`)
  t.same((await all(events)).map(e => e.data), ['0', '1', '2', '3', '4', '5', '6'])
})

t.test('a reading client outrun by a burst over the bound before its stream writes: what is queued is written, then the stream fails too slow', async t => {
  const hold = deferred()
  const { app, url, logs } = await startApp(app => {
    // the stream starts writing once this hook is done: the burst meets the queue
    app.addHook('onSend', async (_request, _reply, payload) => {
      await hold.promise
      return payload
    })
    app.get('/burst', (_req, reply) => {
      const source = pushSource<number | string>({ queueItems: 4, queueBytes: 1 << 20 })
      reply.sse(source, { onError: err => ({ event: 'error', data: (err as { code: string }).code }) })
      const results: boolean[] = []
      for (let n = 0; n < 7; n++) results.push(source.push({ data: n }))
      t.same(results, [true, false, false, false, false, false, false], 'false from half the bound on, and past it')
      hold.resolve()
      return reply
    })
  })
  t.teardown(() => app.close())
  const { events } = await open(`${url}/burst`)
  t.same(await all(events), [
    { data: '0' }, { data: '1' }, { data: '2' }, { data: '3' }, { event: 'error', data: 'FST_SSE_PUSH_OVERFLOW' }
  ])
  t.match(logs.at(ERROR), [{ err: { code: 'FST_SSE_PUSH_OVERFLOW', message: /fell 4 items .* behind/ } }])
})

t.test('the byte bound: a big item alone always fits; one more over queueBytes cuts the stream off', async t => {
  const hold = deferred()
  const { app, url } = await startApp(app => {
    app.addHook('onSend', async (_request, _reply, payload) => {
      await hold.promise
      return payload
    })
    app.get('/bytes', (_req, reply) => {
      const source = pushSource<string>({ queueBytes: 100 })
      // before it streams an item's bytes are not known yet: only queueItems bounds it
      t.equal(source.push({ data: 'a'.repeat(300) }), true)
      reply.sse(source, { onError: err => ({ event: 'error', data: (err as { code: string }).code }) })
      t.equal(source.push({ data: 'b' }), false, 'one more byte over, while the stream does not write yet: cut off')
      hold.resolve()
      return reply
    })
  })
  t.teardown(() => app.close())
  const { events } = await open(`${url}/bytes`)
  t.same(await all(events), [{ data: 'a'.repeat(300) }, { event: 'error', data: 'FST_SSE_PUSH_OVERFLOW' }])
})

t.test('app.close() ends the stream and aborts the signal; a source dropped by a HEAD request aborts too', async t => {
  let source!: PushSource
  const started = deferred()
  const { app, url } = await startApp(app => {
    app.get('/live', (_req, reply) => {
      source = pushSource()
      started.resolve()
      return reply.sse(source)
    })
  }, { headersDelay: 0 })
  const { events } = await open(`${url}/live`)
  await started.promise
  const live = source
  source.push({ data: 'one' })
  t.same(await take(events, 1), [{ data: 'one' }])
  const head = await request(`${url}/live`, { method: 'HEAD' })
  t.equal(head.statusCode, 200)
  t.ok(source !== live && source.signal.aborted, 'the HEAD request\'s source was stopped')
  await within(app.close(), 5000, 'app.close()')
  t.ok(live.signal.aborted && live.closed)
  t.same(await all(events), [], 'the stream ended')
  t.equal(live.push({ data: 'late' }), false)
})

t.test('iterated by hand: next() waits for a push, a second next() queues behind it; options are checked', async t => {
  const source = pushSource<number>()
  const iterator = source[Symbol.asyncIterator]()
  const first = iterator.next()
  const second = iterator.next()
  source.push({ data: 1 })
  source.push({ data: 2 })
  t.same(await first, { value: { data: 1 }, done: false })
  t.same(await second, { value: { data: 2 }, done: false })
  const third = iterator.next()
  const fourth = iterator.next()
  source.fail(new Error('gone'))
  await t.rejects(third, { message: 'gone' })
  t.same(await fourth, { value: undefined, done: true }, 'the failure once, then the end')
  await within(source.drained(), 1000, 'drained() of a source with nothing queued')
  source.end()
  source.fail(new Error('ignored once closed'))
  t.same(await iterator.next(), { value: undefined, done: true }, 'a fail() after end() changes nothing')
  t.throws(() => pushSource({ queueItems: 0 }), { code: 'FST_SSE_INVALID_OPTION', field: 'queueItems', message: /pushSource\(\) option "queueItems"/ })
  t.throws(() => pushSource({ queueBytes: 1.5 }), { code: 'FST_SSE_INVALID_OPTION', field: 'queueBytes' })
  t.throws(() => pushSource({ queueitems: 8 } as never), { field: 'queueitems', message: /"queueitems" is not an option of pushSource\(\)/ })
  t.throws(() => pushSource(8 as never), { field: 'options', message: /pushSource\(\) option "options" must be an object/ })
  const other = pushSource()
  t.equal(other.push({ data: 'x' }), true)
  t.same(await other[Symbol.asyncIterator]().return?.(), { value: undefined, done: true })
  t.equal(other.queued, 0, 'return() drops the queue')
})

t.test('an item pushed before it streams and refused then fails the stream even when end() was called', async t => {
  const Tick = Type.Object({ n: Type.Number() })
  const { app, url, logs } = await startApp(app => {
    const route = { schema: { response: { 200: sseSchema(Tick) } }, config: { sse: { validate: true } } }
    app.get('/ended-early', route, () => {
      const source = pushSource<typeof Tick.static>()
      source.push({ data: { n: 'one' } as unknown as { n: number } })
      source.end()
      return source
    })
    app.get('/ended-late', route, (_req, reply) => {
      const source = pushSource<typeof Tick.static>()
      source.push({ data: { n: 1 } })
      source.push({ data: { n: 'two' } as unknown as { n: number } })
      source.end({ data: { n: 3 } })
      return reply.sse(source, { headersDelay: 0, onError: () => ({ event: 'refused', data: { n: -1 } }) })
    })
  })
  t.teardown(() => app.close())
  const early = await request(`${url}/ended-early`)
  t.equal(early.statusCode, 500, 'the route\'s error, not an empty stream')
  t.match(await early.body.json(), { code: 'FST_SSE_INVALID_ITEM' })
  const { events } = await open(`${url}/ended-late`)
  t.same(await all(events), [{ data: '{"n":1}' }, { event: 'refused', data: '{"n":-1}' }])
  t.match(logs.at(ERROR), [{ err: { code: 'FST_SSE_INVALID_ITEM' } }])
})

t.test('a push source that feeds a stream already is refused by a second reply.sse(), naming the source', async t => {
  let shared: PushSource<SseItem<string>> | undefined
  const { app, url } = await startApp(app => {
    app.get('/shared', (_req, reply) => {
      shared ??= pushSource<string>()
      return reply.sse(shared)
    })
    app.get('/returned', () => shared)
  }, { headersDelay: 0 })
  t.teardown(() => app.close())
  const first = await open(`${url}/shared`)
  const source = shared as PushSource<SseItem<string>>
  source.push({ data: 'queued' })
  source.push({ data: 'queued too' })
  for (const path of ['/shared', '/returned']) {
    const second = await within(request(`${url}${path}`, { bodyTimeout: 5000 }), 5000, `${path} to be answered`)
    t.equal(second.statusCode, 500, `${path}: refused`)
    t.match(await second.body.json(), { code: 'FST_SSE_INVALID_SOURCE', message: /GET \/(shared|returned): this push source feeds a stream already/ })
  }
  t.notOk(source.closed, 'the first stream\'s source was left alone')
  source.end({ data: 'last' })
  t.same(await within(all(first.events), 5000, 'the first stream to end'), [{ data: 'queued' }, { data: 'queued too' }, { data: 'last' }])
})
