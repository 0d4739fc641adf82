import t from 'tap'
import { connect as netConnect } from 'node:net'
import { once } from 'node:events'
import { PassThrough } from 'node:stream'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import Fastify from 'fastify'
import ssePlugin, { type SseItem } from '../lib/index.js'
import { encodeItem, kFrame } from '../lib/encode.js'
import { kAttachStream } from '../lib/source.js'
import { all, deferred, ERROR, INFO, open, startApp, take, WARN, settles } from './helpers.js'

t.test('headers: SSE ones added, earlier ones and the status kept', async t => {
  t.setTimeout(10_000)
  const { app, url } = await startApp(app => {
    app.get('/plain', (_req, reply) => reply.sse([{ data: 'x' }]))
    app.get('/custom', (_req, reply) => {
      reply.code(201).header('x-trace', 'abc').header('cache-control', 'private, no-store')
      return reply.sse([{ data: 'y' }])
    })
  })
  t.teardown(() => app.close())

  const plain = await request(url + '/plain')
  t.equal(plain.statusCode, 200)
  t.equal(plain.headers['content-type'], 'text/event-stream; charset=utf-8')
  t.equal(plain.headers['cache-control'], 'no-cache, no-transform')
  t.equal(plain.headers['x-accel-buffering'], 'no')
  t.equal(plain.headers.connection, 'keep-alive')
  t.equal(plain.headers['content-length'], undefined, 'streamed, not buffered')
  t.equal(await plain.body.text(), 'data: x\n\n')

  const custom = await request(url + '/custom')
  t.equal(custom.statusCode, 201, 'reply.code() kept')
  t.equal(custom.headers['x-trace'], 'abc', 'reply.header() kept')
  t.equal(custom.headers['cache-control'], 'private, no-store', "the user's cache-control wins")
  t.equal(custom.headers['content-type'], 'text/event-stream; charset=utf-8')
  t.equal(await custom.body.text(), 'data: y\n\n')
})

t.test('headers reach the client before the first event, even behind an async onSend hook', async t => {
  t.setTimeout(10_000)
  const release = deferred()
  const { app, url } = await startApp(app => {
    app.addHook('onSend', async (_req, reply) => {
      await sleep(5)
      reply.header('x-from-hook', 'yes')
    })
    app.get('/late', (_req, reply) => reply.sse((async function * () {
      await release.promise
      yield { data: 'first' }
    })()))
  })
  t.teardown(() => app.close())

  const { res, events } = await open(url + '/late')
  t.equal(res.statusCode, 200, 'the response is open while the source has yielded nothing')
  t.equal(res.headers['content-type'], 'text/event-stream; charset=utf-8', 'content-type survived the async hook')
  t.equal(res.headers['x-from-hook'], 'yes', 'headers set by onSend hooks are sent too')
  release.resolve()
  t.same(await all(events), [{ data: 'first' }])
})

t.test('each item is flushed as it is yielded', async t => {
  t.setTimeout(10_000)
  const gates = [deferred(), deferred()]
  const { app, url } = await startApp(app => {
    app.get('/step', (_req, reply) => reply.sse((async function * () {
      yield { id: '1', data: 'one' }
      await gates[0]?.promise
      yield { id: '2', data: 'two' }
      await gates[1]?.promise
    })()))
  })
  t.teardown(() => app.close())

  const { events } = await open(url + '/step')
  t.same(await take(events, 1), [{ id: '1', data: 'one' }], 'first item arrives while the source waits')
  gates[0]?.resolve()
  t.same(await take(events, 1), [{ id: '2', data: 'two' }])
  gates[1]?.resolve()
  t.same(await all(events), [], 'the source ending ends the response')
})

t.test('sync iterables, empty items, custom serializers and options per call', async t => {
  t.setTimeout(10_000)
  const { app, url } = await startApp(app => {
    app.get('/array', (_req, reply) => reply.sse<unknown>([{ data: 1 }, {}, { event: 'e', data: [2] }]))
    app.get('/per-call', (_req, reply) => reply.sse([{ data: { a: 1 } }], { retry: 250, serialize: v => `<${JSON.stringify(v)}>` }))
    app.get('/generator-sync', (_req, reply) => reply.sse((function * () { yield { data: 'g' } })()))
  }, { retry: 1000, retryJitter: 0, serialize: v => JSON.stringify(v, null, 0) })
  t.teardown(() => app.close())

  t.equal(await (await request(url + '/array')).body.text(), 'retry: 1000\n\ndata: 1\n\nevent: e\ndata: [2]\n\n',
    'the plugin retry opens the stream; an item without fields writes nothing')
  t.equal(await (await request(url + '/per-call')).body.text(), 'retry: 250\n\ndata: <{"a":1}>\n\n', 'per-call options win')
  t.equal(await (await request(url + '/generator-sync')).body.text(), 'retry: 1000\n\ndata: g\n\n')
})

t.test('bad arguments to reply.sse are a 500 naming the route; the reply stays usable once', async t => {
  t.setTimeout(10_000)
  const { app, url, logs } = await startApp(app => {
    app.get('/number', (_req, reply) => reply.sse(42 as never))
    app.get('/null', (_req, reply) => reply.sse(null as never))
    app.get('/twice', (_req, reply) => {
      reply.sse([{ data: 'once' }])
      return reply.sse([{ data: 'twice' }])
    })
    app.get('/bad-option', (_req, reply) => reply.sse([], { heartbeat: -5 }))
  })
  t.teardown(() => app.close())

  const number = await request(url + '/number')
  t.equal(number.statusCode, 500)
  t.match(await number.body.json(), {
    code: 'FST_SSE_INVALID_SOURCE',
    message: /reply\.sse\(\) on GET \/number needs an async or sync iterable .* got number/
  })
  const nul = await request(url + '/null')
  t.match(await nul.body.json(), { message: /got null/ })
  const bad = await request(url + '/bad-option')
  t.equal(bad.statusCode, 500)
  t.match(await bad.body.json(), { message: /option "heartbeat" must be a positive whole number/ })

  const twice = await request(url + '/twice')
  t.equal(await twice.body.text(), 'data: once\n\n', 'the first stream is untouched')
  const warning = await logs.waitFor(l => l.msg === 'reply.sse() called on a reply already sent')
  t.match(warning, { level: WARN, err: { code: 'FST_SSE_ALREADY_SENT', message: /GET \/twice: the reply was already sent/ } })
})

t.test('an async handler that fails after reply.sse(): the stream answers, the error is logged', async t => {
  t.setTimeout(10_000)
  const { app, url, logs } = await startApp(app => {
    app.get('/late-failure', async (_req, reply) => {
      reply.sse([{ data: 'a' }, { data: 'b' }])
      throw new Error('after the stream')
    })
    app.get('/early-failure', async () => { throw new Error('before any stream') })
  })
  t.teardown(() => app.close())
  const res = await request(url + '/late-failure')
  t.equal(res.statusCode, 200)
  t.equal(await res.body.text(), 'data: a\n\ndata: b\n\n', 'the stream, whole, and no error answer written after it')
  const logged = await logs.waitFor(l => l.level === ERROR)
  t.match(logged, { msg: 'GET /late-failure: the handler failed after reply.sse(); the stream goes on', err: { message: 'after the stream' } })
  const early = await request(url + '/early-failure')
  t.equal(early.statusCode, 500, 'a handler that fails before reply.sse() gets the error answer, as before')
  t.match(await early.body.json(), { message: 'before any stream' })
})

t.test('plugin options are validated when registering', async t => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ heartbeat: 0 }, /"heartbeat" must be a positive whole number of milliseconds or false, got 0/],
    [{ heartbeat: 1.5 }, /"heartbeat"/],
    [{ heartbeat: 2 ** 31 }, /"heartbeat"/],
    [{ heartbeat: true }, /"heartbeat"/],
    [{ retry: -1 }, /"retry" must be a non-negative whole number of milliseconds or false, got -1/],
    [{ retry: true }, /"retry" .*got true$/],
    [{ retry: 1.5 }, /"retry"/],
    [{ retryJitter: -0.1 }, /"retryJitter" must be a number from 0 to 1 \(a share of retry\), got -0.1/],
    [{ retryJitter: 1.5 }, /"retryJitter"/],
    [{ retryJitter: NaN }, /"retryJitter"/],
    [{ retryJitter: '0.5' }, /"retryJitter" .*got "0.5" \(string\)$/],
    [{ writeTimeout: 0 }, /"writeTimeout" must be a positive whole number of milliseconds or false, got 0/],
    [{ writeTimeout: 1.5 }, /"writeTimeout"/],
    [{ writeTimeout: 2 ** 31 }, /"writeTimeout"/],
    [{ writeTimeout: Infinity }, /"writeTimeout"/],
    [{ writeTimeout: true }, /"writeTimeout" .*got true$/],
    [{ serialize: 'json' }, /"serialize" must be a function, got "json" \(string\)/],
    [{ heartbeat: '1000' }, /"heartbeat" .*got "1000" \(string\)$/],
    [{ heartbeat: 10n }, /got 10n \(bigint\)$/],
    [{ heartbeat: () => 5 }, /got a function$/],
    [{ serialize: null }, /got null$/],
    [{ serialize: [] }, /got an array$/],
    [{ validate: {} }, /got an object$/],
    [{ headersDelay: -1 }, /"headersDelay" must be a whole number of milliseconds >= 0, got -1/],
    [{ onError: 'log' }, /"onError" must be a function/],
    [{ maxConnections: 0 }, /"maxConnections" must be a whole number of streams >= 1/],
    [{ maxConnections: '10' }, /got "10" \(string\)/],
    [{ hearbeat: 1000 }, /option "hearbeat" is not an option of the plugin \(its options: heartbeat, /]
  ]
  for (const [options, message] of cases) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(ssePlugin, options) }, { code: 'FST_SSE_INVALID_OPTION', message })
    await app.close()
  }
  const ok = Fastify()
  await t.resolves(async () => {
    await ok.register(ssePlugin, { heartbeat: false, retry: 0, retryJitter: 1, writeTimeout: false })
  })
  await ok.close()
  const off = Fastify()
  await t.resolves(async () => { await off.register(ssePlugin, { retry: false }) })
  await off.close()
})

t.test('retry is written first and the heartbeat fills silence, then stops with the stream', async t => {
  t.setTimeout(10_000)
  const stop = deferred()
  const { app, url } = await startApp(app => {
    app.get('/quiet', (request, reply) => reply.sse((async function * () {
      await stop.promise
      yield { data: 'bye' }
      void request
    })(), { heartbeat: 30 }))
  }, { retry: 500 })
  t.teardown(() => app.close())

  const res = await request(url + '/quiet')
  const chunks: string[] = []
  for await (const chunk of res.body) {
    chunks.push(String(chunk))
    const text = chunks.join('')
    if (text.split(':\n\n').length > 3) stop.resolve() // three heartbeats seen
  }
  const text = chunks.join('')
  const retry = /^retry: (\d+)\n\n:\n\n:\n\n/.exec(text)
  t.ok(retry, 'retry line, then heartbeats')
  const delay = Number(retry?.[1])
  t.ok(delay >= 250 && delay <= 750, `retry 500 jittered by default, within 500 ± 50 % (${delay})`)
  t.ok(text.endsWith(':\n\ndata: bye\n\n'), 'the event follows the heartbeats, whole')
})

t.test('by default every stream opens with its own retry line, 1500 to 4500 ms; retry: false at any level sends none', async t => {
  t.setTimeout(20_000)
  // the plugin as an app gets it (startApp turns the retry line off)
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(ssePlugin)
  app.get('/default', (_req, reply) => reply.sse([{ data: 'x' }]))
  app.get('/route-off', { config: { sse: { retry: false } } }, async function * () { yield { data: 'x' } })
  app.get('/call-off', (_req, reply) => reply.sse([{ data: 'x' }], { retry: false }))
  app.get('/call-on', { config: { sse: { retry: false } } }, (_req, reply) => reply.sse([{ data: 'x' }], { retry: 100, retryJitter: 0 }))
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const off = Fastify()
  t.teardown(() => off.close())
  await off.register(ssePlugin, { retry: false })
  off.get('/plugin-off', (_req, reply) => reply.sse([{ data: 'x' }]))
  const offUrl = await off.listen({ port: 0, host: '127.0.0.1' })

  const values: number[] = []
  for (let i = 0; i < 40; i++) {
    const text = await (await request(url + '/default')).body.text()
    const line = /^retry: (\d+)\n\ndata: x\n\n$/.exec(text)
    t.ok(line, `a retry line, then the item (${JSON.stringify(text)})`)
    values.push(Number(line?.[1]))
  }
  t.same(values.filter(v => !(Number.isSafeInteger(v) && v >= 1500 && v <= 4500)), [], 'every one within 3000 ± 50 %')
  const seen = new Set(values).size
  t.ok(seen > 10, `the values vary from stream to stream (${seen} different of 40)`)
  for (const path of ['/route-off', '/call-off']) {
    t.equal(await (await request(url + path)).body.text(), 'data: x\n\n', `${path}: no retry line`)
  }
  t.equal(await (await request(offUrl + '/plugin-off')).body.text(), 'data: x\n\n', 'the plugin\'s retry: false: no retry line')
  t.equal(await (await request(url + '/call-on')).body.text(), 'retry: 100\n\ndata: x\n\n', 'a call\'s retry wins over its route\'s false')
})

t.test('the heartbeat is reset by every write', async t => {
  t.setTimeout(10_000)
  const { app, url } = await startApp(app => {
    app.get('/busy', (_req, reply) => reply.sse((async function * () {
      for (let i = 0; i < 40; i++) {
        yield { data: String(i) }
        await sleep(10)
      }
    })(), { heartbeat: 100 }))
  })
  t.teardown(() => app.close())
  const text = await (await request(url + '/busy')).body.text()
  const heartbeats = text.split(':\n\n').length - 1
  // 40 writes 10 ms apart: a heartbeat that ignored writes would fire ~4 times in those 400 ms
  t.ok(heartbeats <= 1, `at most one heartbeat on a busy stream (saw ${heartbeats})`)
  t.equal(text.split('data: ').length - 1, 40)
})

t.test('client disconnect: request.signal aborts, the generator finally runs at once, logged at info', async t => {
  t.setTimeout(10_000)
  const finished = deferred<number>()
  const started = deferred()
  const { app, url, logs } = await startApp(app => {
    app.get('/forever', (request, reply) => reply.sse((async function * () {
      try {
        yield { data: 'hello' }
        started.resolve()
        await sleep(60_000, undefined, { signal: request.signal })
      } finally {
        finished.resolve(Date.now())
      }
    })()))
  })
  t.teardown(() => app.close())

  const ac = new AbortController()
  const { events } = await open(url + '/forever', { signal: ac.signal })
  t.same(await take(events, 1), [{ data: 'hello' }])
  await started.promise
  const abortedAt = Date.now()
  ac.abort()
  const finallyAt = await finished.promise
  t.ok(finallyAt - abortedAt < 1000, `finally ran ${finallyAt - abortedAt} ms after the client left`)
  const closed = await logs.waitFor(l => l.msg === 'SSE stream closed')
  t.equal(closed.level, INFO, 'a client that left early: one line at info')
  t.equal(closed.reason, 'client closed')
  t.equal(closed.items, 1)
  await logs.waitFor(l => l.msg === 'SSE source stopped after the stream closed')
  t.same(logs.at(ERROR), [], 'an abort is not an error')
})

t.test('a source that throws: logged once at error, the response ends cleanly, others unaffected', async t => {
  t.setTimeout(10_000)
  const other = deferred()
  const { app, url, logs } = await startApp(app => {
    app.get('/throws', (_req, reply) => reply.sse((async function * () {
      yield { data: 'a' }
      yield { data: 'b' }
      throw new Error('database went away')
    })()))
    app.get('/throws-first', (_req, reply) => reply.sse((async function * () {
      throw new Error('before any item')
    })()))
    app.get('/other', (_req, reply) => reply.sse((async function * () {
      yield { data: 'still here' }
      await other.promise
      yield { data: 'and still' }
    })()))
  })
  t.teardown(() => app.close())

  const { events: otherEvents } = await open(url + '/other')
  t.same(await take(otherEvents, 1), [{ data: 'still here' }])

  const { res, events } = await open(url + '/throws')
  t.equal(res.statusCode, 200)
  t.same(await all(events), [{ data: 'a' }, { data: 'b' }], 'items before the throw arrive, then a clean end')
  const first = await request(url + '/throws-first')
  t.equal(first.statusCode, 500, 'a failure before the first item is the route\'s error')
  t.match(await first.body.json(), { statusCode: 500, message: 'before any item' })

  const errors = logs.at(ERROR)
  t.equal(errors.length, 2, 'each failure logged once')
  t.match(errors[0], { msg: 'SSE source failed; stream ended', err: { message: 'database went away' } })
  t.match(errors[1], { err: { message: 'before any item' } })
  other.resolve()
  t.same(await all(otherEvents), [{ data: 'and still' }], 'the other stream carried on')
})

t.test('a bad item: nothing of it written, TypeError naming the field logged, generator stopped', async t => {
  t.setTimeout(10_000)
  const stopped = deferred()
  const { app, url, logs } = await startApp(app => {
    app.get('/inject', (_req, reply) => reply.sse((async function * () {
      try {
        yield { event: 'ok', data: 'fine' }
        yield { event: 'a\ndata: evil', data: 'x' }
        yield { data: 'never' }
      } finally {
        stopped.resolve()
      }
    })()))
  })
  t.teardown(() => app.close())

  const res = await request(url + '/inject')
  t.equal(await res.body.text(), 'event: ok\ndata: fine\n\n', 'not one byte of the bad item')
  await stopped.promise
  const [error] = logs.at(ERROR)
  t.match(error, { msg: 'SSE item refused; stream ended', err: { type: 'SseError', field: 'event', code: 'FST_SSE_INVALID_ITEM', message: /"event" must not contain CR or LF/ } })
  t.match(await logs.waitFor(l => l.msg === 'SSE stream closed'), { reason: 'item refused', items: 1 })
})

t.test('a source read synchronously (SyncSource) has a bad item refused as a generator\'s is', async t => {
  t.setTimeout(10_000)
  const stopped = deferred()
  const { app, url, logs } = await startApp(app => {
    app.get('/sync', (_req, reply) => {
      const items: SseItem[] = [{ event: 'ok', data: 'fine' }, { event: 'a\ndata: evil', data: 'x' }, { data: 'never' }]
      const source = {
        [Symbol.asyncIterator] () { return this },
        next: async () => ({ done: true as const, value: undefined }),
        return: async () => {
          stopped.resolve()
          return { done: true as const, value: undefined }
        },
        [kAttachStream]: () => ({ take: () => items.shift() })
      }
      return reply.sse(source)
    })
  })
  t.teardown(() => app.close())
  const res = await request(url + '/sync')
  t.equal(await res.body.text(), 'event: ok\ndata: fine\n\n', 'not one byte of the bad item, nothing after it')
  await stopped.promise
  t.match(logs.at(ERROR), [{ msg: 'SSE item refused; stream ended', err: { field: 'event' } }])
})

t.test('hand-written iterators: a synchronous throw in next() and a failing return()', async t => {
  t.setTimeout(10_000)
  const { app, url, logs } = await startApp(app => {
    app.get('/throw-sync', (_req, reply) => reply.sse({
      [Symbol.asyncIterator]: () => ({ next: () => { throw new Error('sync throw') } })
    }))
    app.get('/bad-return', (_req, reply) => reply.sse({
      [Symbol.asyncIterator]: () => ({
        next: async () => ({ done: false, value: { retry: -1 } as SseItem }),
        return: async () => { throw new Error('cleanup failed') }
      })
    }))
    app.get('/throwing-return', (_req, reply) => reply.sse({
      [Symbol.asyncIterator]: () => ({
        next: async () => ({ done: false, value: { id: 'a\rb' } as SseItem }),
        return: () => { throw new Error('return threw') }
      })
    }))
  })
  t.teardown(() => app.close())

  t.equal((await request(url + '/throw-sync')).statusCode, 500, 'failed before its first item: the route\'s error')
  await logs.waitFor(l => l.level === ERROR && l.err?.message === 'sync throw')
  t.equal((await request(url + '/bad-return')).statusCode, 500, 'failed before its first item: the route\'s error')
  await logs.waitFor(l => l.level === ERROR && l.msg === 'SSE source failed while stopping' && l.err?.message === 'cleanup failed')
  t.equal((await request(url + '/throwing-return')).statusCode, 500, 'failed before its first item: the route\'s error')
  await logs.waitFor(l => l.level === ERROR && l.msg === 'SSE source failed while stopping' && l.err?.message === 'return threw')
})

t.test('HEAD: headers only, the source is never run', async t => {
  t.setTimeout(10_000)
  let bodyRan = false
  let returned = 0
  const { app, url } = await startApp(app => {
    app.get('/gen', async function * () {
      bodyRan = true
      yield { data: 'x' }
    })
    app.get('/custom', (_req, reply) => reply.sse({
      [Symbol.iterator]: () => ({
        next: () => ({ done: true, value: undefined }),
        return: () => { returned++; return { done: true, value: undefined } }
      })
    }))
  })
  t.teardown(() => app.close())
  const head = await request(url + '/gen', { method: 'HEAD' })
  t.equal(head.statusCode, 200)
  t.equal(head.headers['content-type'], 'text/event-stream; charset=utf-8')
  t.equal(await head.body.text(), '')
  t.equal(bodyRan, false, 'the generator body never started')
  await request(url + '/custom', { method: 'HEAD' }).then(r => r.body.text())
  t.equal(returned, 1, 'the iterator was told to stop')
})

t.test('backpressure: a client that reads nothing pauses the source; reading again resumes it', async t => {
  t.setTimeout(30_000)
  let pulled = 0
  const finished = deferred()
  const big = 'x'.repeat(64 * 1024)
  const { app, url } = await startApp(app => {
    app.get('/firehose', (_req, reply) => reply.sse((async function * () {
      try {
        for (let i = 0; i < 100_000; i++) {
          pulled++
          yield { id: String(i), data: big }
        }
      } finally {
        finished.resolve()
      }
    })(), { heartbeat: false }))
  })
  t.teardown(() => app.close())

  const { port } = new URL(url)
  const socket = netConnect(Number(port), '127.0.0.1')
  t.teardown(() => socket.destroy())
  await once(socket, 'connect')
  socket.pause()
  socket.write('GET /firehose HTTP/1.1\r\nHost: localhost\r\n\r\n')

  // Wait until the count stops moving (quiet for 5 checks 50 ms apart), bounded to 10 s.
  let last = -1
  let quiet = 0
  for (let i = 0; i < 200 && quiet < 5; i++) {
    await sleep(50)
    quiet = pulled === last ? quiet + 1 : 0
    last = pulled
  }
  t.equal(quiet, 5, `the source paused (at ${pulled} items)`)
  // Kernel buffers on loopback hold a few MB; 100,000 items of 64 KiB would be 6.5 GB.
  t.ok(pulled < 400, `items pulled stay bounded by the socket buffers: ${pulled} of 100,000`)

  // Read some: the pull resumes.
  const paused = pulled
  socket.resume()
  let received = 0
  const resumed = new Promise<void>(resolve => {
    socket.on('data', chunk => {
      received += chunk.length
      if (pulled > paused + 50) resolve()
    })
  })
  await resumed
  t.ok(received > 0 && pulled > paused, 'reading drains the socket and the source is pulled again')
  socket.destroy()
  t.ok(await settles(finished.promise), 'the source is stopped when the slow client leaves')
})

t.test('the plugin is encapsulation-safe: one registration serves child contexts', async t => {
  t.setTimeout(10_000)
  const { app, url } = await startApp(async app => {
    await app.register(async child => {
      child.get('/child', async function * () {
        yield { data: 'from child' }
      })
    }, { prefix: '/p' })
  })
  t.teardown(() => app.close())
  t.equal(await (await request(url + '/p/child')).body.text(), 'data: from child\n\n')
})

t.test('frames encoded ahead of time go out as they are, in order with the others', async t => {
  t.setTimeout(10_000)
  const shared = Buffer.from(encodeItem({ id: '9', event: 'pre', data: 'shared' }))
  const { app, url } = await startApp(app => {
    app.get('/mixed', async function * () {
      yield { data: 'a' }
      yield { data: 'ignored', [kFrame]: shared } as SseItem
      for (let i = 0; i < 3000; i++) yield { data: i }
      yield { data: 'z', [kFrame]: shared } as SseItem
    })
  })
  t.teardown(() => app.close())
  const events = await all((await open(url + '/mixed')).events)
  t.equal(events.length, 3003)
  t.same(events[0], { data: 'a' })
  t.same(events[1], { id: '9', event: 'pre', data: 'shared' })
  t.same(events.slice(2, 3002).map(e => Number(e.data)), Array.from({ length: 3000 }, (_, i) => i), 'a long burst arrives whole and in order')
  t.same(events[3002], { id: '9', event: 'pre', data: 'shared' })
})

t.test('what onSend hooks and trailers do to the body still works', async t => {
  t.setTimeout(10_000)
  const entered = deferred()
  const { app, url } = await startApp(app => {
    app.register(async scope => {
      // a hook that puts a stream of its own in front of the body (as compression or tracing plugins do)
      scope.addHook('onSend', async (_req, _reply, payload) => (payload as NodeJS.ReadableStream).pipe(new PassThrough()))
      scope.get('/wrapped', async function * () {
        yield { data: 'through the hook' }
      })
    })
    app.get('/trailers', (_req, reply) => {
      let count = 0
      reply.trailer('x-events', async () => String(count))
      return reply.sse((async function * () {
        for (; count < 3; count++) yield { data: count }
      })())
    })
    app.register(async scope => {
      // holds the body until the server's close has reached the stream (it aborts the stream's signal)
      scope.addHook('onSend', async request => {
        entered.resolve()
        await new Promise(resolve => request.signal.addEventListener('abort', resolve))
      })
      scope.get('/late', async function * (request) {
        yield { data: 'never: the server closed first' }
        await sleep(60_000, undefined, { signal: request.signal })
      })
    })
  })

  t.equal(await (await request(url + '/wrapped')).body.text(), 'data: through the hook\n\n')
  const withTrailers = await request(url + '/trailers')
  t.equal(await withTrailers.body.text(), 'data: 0\n\ndata: 1\n\ndata: 2\n\n')
  t.same(withTrailers.trailers, { 'x-events': '3' }, 'Fastify ends the response with its trailers after the stream')

  // the server closes while an onSend hook still holds the body: the stream ends before it is piped
  const pending = request(url + '/late')
  await entered.promise
  const closing = app.close()
  const late = await pending
  t.equal(late.statusCode, 200)
  t.equal(await late.body.text(), '', 'an empty, clean body')
  t.equal(late.headers['content-type'], 'text/event-stream; charset=utf-8')
  await closing
})

t.test("Fastify's handlerTimeout bounds the handler, not the stream it opened", async t => {
  t.setTimeout(10_000)
  const { app, url } = await startApp(app => {
    app.get('/long', async function * (request) {
      for (let i = 0; i < 4; i++) {
        yield { data: i }
        await sleep(60, undefined, { signal: request.signal })
      }
    })
    app.get('/slow-plain', async () => {
      await sleep(300)
      return 'late'
    })
  }, {}, { handlerTimeout: 100 })
  t.teardown(() => app.close())
  t.equal(await (await request(url + '/long')).body.text(), 'data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\n', 'the stream outlived the timeout')
  t.equal((await request(url + '/slow-plain')).statusCode, 503, 'other routes still time out')
})

t.test('a hand-written async iterator whose next() answers with a plain result', async t => {
  t.setTimeout(10_000)
  const { app, url } = await startApp(app => {
    app.get('/plain-next', (_req, reply) => {
      let i = 0
      return reply.sse({
        [Symbol.asyncIterator]: () => ({
          next: () => (i < 3 ? { done: false, value: { data: i++ } } : { done: true, value: undefined }) as never
        })
      })
    })
  })
  t.teardown(() => app.close())
  t.equal(await (await request(url + '/plain-next')).body.text(), 'data: 0\n\ndata: 1\n\ndata: 2\n\n')
})

t.test('a source whose iterator cannot be made: a 500, and nothing of the stream is left behind', async t => {
  t.setTimeout(10_000)
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  let held: WeakRef<object> | undefined
  const { app, url } = await startApp(app => {
    app.get('/no-iterator', (req, reply) => {
      held = new WeakRef(req)
      return reply.sse({ [Symbol.asyncIterator] () { throw new Error('no iterator') } } as unknown as AsyncIterable<SseItem>)
    })
  }, { heartbeat: 30 })
  t.teardown(() => app.close())

  const res = await request(url + '/no-iterator')
  t.equal(res.statusCode, 500, 'the route\'s ordinary error')
  await res.body.dump()
  // the request is let go once answered: a half-made stream held in the heartbeat wheel would keep it
  for (let i = 0; i < 20 && held?.deref() !== undefined; i++) {
    await sleep(10)
    gc()
  }
  t.equal(held?.deref(), undefined, 'the request was collected')
})
