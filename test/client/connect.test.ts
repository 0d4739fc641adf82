import t from 'tap'
import { once } from 'node:events'
import { createServer, type Server } from 'node:net'
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import { Agent, fetch as undiciFetch } from 'undici'
import { connect, SseClientError, SseParseError, type ConnectOptions, type FetchLike, type SseItem } from '../../lib/client/index.js'
import ssePlugin from '../../lib/index.js'
import { retryAfterMs } from '../../lib/client/connect.js'
import { deferred, settles, startApp } from '../helpers.js'
import { selfSignedCertificate } from '../tls.js'

/** Reads `n` items, failing instead of hanging when they do not come within `ms`. */
async function first<T> (events: AsyncIterator<T>, n: number, ms = 5000): Promise<T[]> {
  const out: T[] = []
  const timer = deferred<'timeout'>()
  const handle = setTimeout(timer.resolve, ms, 'timeout')
  try {
    while (out.length < n) {
      const step = await Promise.race([events.next(), timer.promise])
      if (step === 'timeout') throw new Error(`waited ${ms} ms for ${n} events; got ${JSON.stringify(out)}`)
      if (step.done === true) throw new Error(`ended after ${out.length} of ${n} events`)
      out.push(step.value)
    }
    return out
  } finally {
    clearTimeout(handle)
  }
}

/** Every item until the iteration ends, within `ms`. */
async function rest<T> (events: AsyncIterable<T>, ms = 5000): Promise<T[]> {
  const out: T[] = []
  const done = (async () => { for await (const item of events) out.push(item) })()
  const timer = deferred<'timeout'>()
  const handle = setTimeout(timer.resolve, ms, 'timeout')
  try {
    if (await Promise.race([done.then(() => 'done' as const), timer.promise]) === 'timeout') {
      throw new Error(`the iteration did not end within ${ms} ms; got ${JSON.stringify(out)}`)
    }
    return out
  } finally {
    clearTimeout(handle)
  }
}

function waitForAbort (signal: AbortSignal): Promise<void> {
  return new Promise(resolve => signal.addEventListener('abort', () => resolve(), { once: true }))
}

/** A port where nothing listens. */
async function closedPort (): Promise<number> {
  const server: Server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  server.close()
  await once(server, 'close')
  return port
}

/**
 * startApp, with app.close() closing every connection: Node 20's fetch opens a spare connection (no request on
 * it) after a body is cancelled, and a plain close() waits for it until undici's 4 s keep-alive timeout.
 */
const serve = (setup: Parameters<typeof startApp>[0]): ReturnType<typeof startApp> =>
  startApp(setup, {}, { forceCloseConnections: true })

const Tick = Type.Object({ n: Type.Integer(), label: Type.Optional(Type.String()) })

t.test('connect() is lazy: nothing is fetched until the iteration starts', async t => {
  let fetched = 0
  const fetch = (async () => { fetched++; throw new Error('not reached') }) as never
  const url = 'http://127.0.0.1:1/never-called'
  const once = { fetch, reconnect: false }
  const streams = [connect(url, { schema: Tick, ...once }), connect(url, { json: false, ...once }), connect(url, once)]
  await new Promise(resolve => setImmediate(resolve))
  t.equal(fetched, 0, 'nothing fetched by the calls')
  await t.rejects(streams[2]!.next(), 'the first next() fetches')
  t.equal(fetched, 1)
  for (const stream of streams) await stream.return()
})

t.test('decodes JSON, validates with a schema, sends the headers an EventSource sends', async t => {
  t.setTimeout(10_000)
  const requests: Array<Record<string, unknown>> = []
  const { app, url } = await serve(app => {
    app.get('/ticks', async function * (request) {
      requests.push(request.headers)
      yield { comment: 'hello' }
      yield { id: '1', data: { n: 1 } }
      yield { id: '2', event: 'tick', retry: 1000, data: { n: 2, label: 'two' } }
      await waitForAbort(request.signal)
    })
  })
  t.teardown(() => app.close())
  const controller = new AbortController()
  const events = connect(`${url}/ticks`, { schema: Tick, signal: controller.signal, lastEventId: 'resume-me', headers: { Authorization: 'Bearer x', 'Last-Event-ID': 'overridden', Accept: 'text/event-stream, */*' } })
  const got = await first(events, 2)
  t.same(got, [{ id: '1', data: { n: 1 } }, { id: '2', event: 'tick', retry: 1000, data: { n: 2, label: 'two' } }])
  t.equal(got[1]!.data.label, 'two') // typed: no cast needed
  t.match(requests[0], { accept: 'text/event-stream, */*', 'cache-control': 'no-cache', 'last-event-id': 'resume-me', authorization: 'Bearer x' })
  controller.abort()
  t.same(await events.next(), { done: true, value: undefined }, 'abort ends the iteration quietly')
})

t.test('reconnects when the server ends the stream: retry honoured, Last-Event-ID sent (even from an id-only block)', async t => {
  t.setTimeout(10_000)
  const RETRY = 150
  const seen: Array<{ lastEventId: string | undefined, at: number }> = []
  const ended: number[] = []
  const { app, url } = await serve(app => {
    app.get('/resume', (request, reply) => {
      const lastEventId = request.headers['last-event-id'] as string | undefined
      seen.push({ lastEventId, at: Date.now() })
      if (seen.length === 3) return reply.code(204).send()
      const from = Number(lastEventId ?? 0)
      return reply.sse((async function * () {
        try {
          yield { retry: RETRY, id: String(from + 1), data: from + 1 }
          yield { id: String(from + 2) } // no data: no event, but the id counts
        } finally {
          ended.push(Date.now())
        }
      })())
    })
  })
  t.teardown(() => app.close())
  const got = await rest(connect<number>(`${url}/resume`))
  t.same(got.map(e => [e.id, e.data]), [['1', 1], ['3', 3]], 'every event once, then the 204 ends the iteration')
  t.same(seen.map(s => s.lastEventId), [undefined, '2', '4'])
  for (const [n, end] of ended.entries()) {
    const gap = seen[n + 1]!.at - end
    t.ok(gap >= RETRY - 20 && gap < 2000, `reconnection ${n + 1} after the server's retry (${RETRY} ms): ${gap} ms`)
  }
})

t.test('reconnects when the connection breaks mid-stream', async t => {
  t.setTimeout(10_000)
  const lastIds: Array<string | undefined> = []
  const { app, url } = await serve(app => {
    app.get('/flaky', (request, reply) => {
      lastIds.push(request.headers['last-event-id'] as string | undefined)
      if (lastIds.length === 1) {
        return reply.sse((async function * () {
          yield { retry: 10, id: 'a', data: 'before' }
          await new Promise(resolve => setImmediate(resolve))
          request.raw.socket.destroy() // the network fails: no clean end of the body
          await waitForAbort(request.signal)
        })())
      }
      return reply.sse([{ id: 'b', data: 'after' }])
    })
  })
  t.teardown(() => app.close())
  const controller = new AbortController()
  const got = await first(connect(`${url}/flaky`, { json: false, signal: controller.signal }), 2)
  controller.abort()
  t.same(got.map(e => e.data), ['before', 'after'])
  t.same(lastIds.slice(0, 2), [undefined, 'a'])

  lastIds.length = 0
  const once = connect(`${url}/flaky`, { json: false, reconnect: false })
  t.same(await first(once, 1), [{ id: 'a', retry: 10, data: 'before' }])
  await t.rejects(once.next(), { code: 'FST_SSE_CLIENT_CONNECT', message: /broke in the middle of the stream/ }, 'reconnect: false: a broken stream is an error, not an end')
  t.equal(lastIds.length, 1)
})

t.test('reconnect: false ends with the stream; breaking out of the loop closes the connection', async t => {
  t.setTimeout(10_000)
  let requests = 0
  const stopped = deferred()
  const { app, url } = await serve(app => {
    app.get('/once', async function * () {
      requests++
      yield { data: 1 }
    })
    app.get('/endless', async function * (request) {
      try {
        for (let n = 0; ; n++) {
          yield { data: n }
          await new Promise(resolve => setTimeout(resolve, 5))
        }
      } finally {
        stopped.resolve()
        void request
      }
    })
  })
  t.teardown(() => app.close())
  t.same(await rest(connect(`${url}/once`, { reconnect: false })), [{ data: 1 }])
  t.equal(requests, 1)
  const got: unknown[] = []
  for await (const event of connect(`${url}/endless`)) {
    got.push(event.data)
    if (got.length === 3) break
  }
  t.same(got, [0, 1, 2])
  t.ok(await settles(stopped.promise), "the server's generator was stopped")
})

t.test('abort: before the start, while connecting, while waiting to reconnect', async t => {
  t.setTimeout(10_000)
  const arrived = deferred()
  const { app, url } = await serve(app => {
    app.get('/silent', (_request, _reply) => { arrived.resolve() }) // never answers
    app.get('/short', async function * () { yield { retry: 60_000, data: ['x'] } })
  })
  t.teardown(() => app.close())
  t.same(await rest(connect(`${url}/short`, { signal: AbortSignal.abort() })), [], 'an aborted signal: nothing at all')

  const connecting = new AbortController()
  const pending = rest(connect(`${url}/silent`, { signal: connecting.signal }))
  await arrived.promise
  connecting.abort()
  t.same(await pending, [], 'abort while waiting for the answer ends it')

  const waiting = new AbortController()
  const events = connect(`${url}/short`, { signal: waiting.signal })
  t.same(await first(events, 1), [{ data: ['x'], retry: 60_000 }])
  const next = events.next() // the stream ended: now it waits a minute to reconnect
  setImmediate(() => waiting.abort())
  t.same(await next, { done: true, value: undefined }, 'abort during the reconnection delay ends it at once')

  const late = new AbortController()
  const fetchThenAbort: FetchLike = async (input, init) => {
    const response = await fetch(input, init)
    late.abort() // aborted between the answer and the first event
    return response
  }
  t.same(await rest(connect(`${url}/short`, { signal: late.signal, fetch: fetchThenAbort })), [])
})

t.test('refusals: clear errors, never a hang', async t => {
  t.setTimeout(15_000)
  const { app, url } = await serve(app => {
    app.get('/500', async (_request, reply) => reply.code(500).send({ error: 'boom' }))
    app.get('/json', async () => ({ not: 'a stream' }))
    app.get('/untyped', (_request, reply) => {
      reply.hijack()
      reply.raw.writeHead(200)
      reply.raw.end('data: x\n\n')
    })
    app.get('/notjson', async function * () { yield { event: 'tick', id: '9', data: 'not json' } })
    app.get('/mismatch', async function * () { yield { data: { n: 'one' } } })
    app.get('/wrongroot', async function * () { yield { data: 5 } })
    app.get('/huge', async function * () { yield { data: 'x'.repeat(200_000) } })
    app.get('/invalid-utf8', async (_request, reply) => reply.type('text/event-stream').send(Buffer.from([...Buffer.from('data: "a'), 0xff, ...Buffer.from('"\n\n')])))
  })
  t.teardown(() => app.close())
  await t.rejects(rest(connect(`${url}/500`)), { name: 'SseClientError', code: 'FST_SSE_CLIENT_STATUS', status: 500, message: /answered 500 instead of 200/ })
  await t.rejects(rest(connect(`${url}/json`)), { code: 'FST_SSE_CLIENT_CONTENT_TYPE', message: /content-type "application\/json; charset=utf-8" instead of text\/event-stream/ })
  await t.rejects(rest(connect(`${url}/untyped`)), { code: 'FST_SSE_CLIENT_CONTENT_TYPE', message: /content-type \(none\)/ })
  await t.rejects(rest(connect(`${url}/notjson`, { json: true })),
    { code: 'FST_SSE_CLIENT_DATA', message: /^"tick" event \(id "9"\) data is not JSON/ })
  await t.rejects(rest(connect(`${url}/mismatch`, { schema: Tick })), { code: 'FST_SSE_CLIENT_DATA', message: /^message event does not match the schema: data\/n Expected integer/ })
  await t.rejects(rest(connect(`${url}/wrongroot`, { schema: Tick })), { message: /does not match the schema: data Expected object/ })
  await t.rejects(rest(connect(`${url}/huge`, { maxEventLength: 100_000 })), SseParseError, 'a line over the limit: the parser refuses it')
  t.same(await rest(connect(`${url}/invalid-utf8`, { reconnect: false })), [{ data: 'a\ufffd' }], 'invalid UTF-8: U+FFFD, as a browser')

  const port = await closedPort()
  await t.rejects(rest(connect(`http://127.0.0.1:${port}/`, { reconnect: false })), { code: 'FST_SSE_CLIENT_CONNECT', message: /could not connect .*\(1 attempt\)/ })
  const started = Date.now()
  const err = await rest(connect(`http://127.0.0.1:${port}/`, { retry: 20, maxRetries: 2 })).catch((e: unknown) => e) as SseClientError
  t.type(err, SseClientError)
  t.match(err.message, /\(3 attempts\)/, 'gave up after maxRetries failed reconnections')
  t.ok(Date.now() - started >= 35, 'waiting retry (20 ms) between attempts')
  t.type(err.cause, Error)

  const bad = t.throws(() => connect(url, { retry: -1 }))
  t.type(bad, TypeError, 'a bad option is a TypeError')
  t.match(bad, { code: 'FST_SSE_INVALID_OPTION', field: 'retry', message: /^connect\(\) option "retry" must be a non-negative whole number/ })
  t.throws(() => connect(url, { maxRetries: 1.5 }), { code: 'FST_SSE_INVALID_OPTION', field: 'maxRetries', message: /"maxRetries"/ })
})

t.test('bad arguments are refused at the call, naming each, before any request', async t => {
  let fetched = 0
  const fetch: FetchLike = async () => { fetched++; throw new Error('not called') }
  const url = 'http://127.0.0.1:1/'
  const refused = (options: unknown, field: string, message: RegExp): void => {
    const err = t.throws(() => connect(url, { fetch, ...options as object }), { name: 'SseError', code: 'FST_SSE_INVALID_OPTION', field, message }, field)
    t.type(err, TypeError)
  }
  refused({ maxEventLength: NaN }, 'maxEventLength', /^connect\(\) option "maxEventLength" must be a whole number of characters >= 1 \(or Infinity\), got NaN$/)
  refused({ maxEventLength: -5 }, 'maxEventLength', /got -5$/)
  refused({ maxEventLength: '1000' }, 'maxEventLength', /got "1000" \(string\)$/)
  refused({ retry: NaN }, 'retry', /^connect\(\) option "retry" must be a non-negative whole number of milliseconds, got NaN$/)
  refused({ maxRetries: -1 }, 'maxRetries', /got -1$/)
  refused({ reconnect: 'no' }, 'reconnect', /^connect\(\) option "reconnect" must be a boolean, got "no" \(string\)$/)
  refused({ json: 1 }, 'json', /must be a boolean, got 1$/)
  refused({ retryUnavailable: null }, 'retryUnavailable', /must be a boolean, got null$/)
  refused({ signal: {} }, 'signal', /must be an AbortSignal, got an object$/)
  refused({ lastEventId: 7 }, 'lastEventId', /must be a string without line breaks or NUL \(an id a stream can send\), got 7$/)
  refused({ lastEventId: 'a\nb' }, 'lastEventId', /got "a\\nb" \(string\)$/)
  refused({ lastEventId: 'a\0' }, 'lastEventId', /got /)
  refused({ headers: 'x-a: 1' }, 'headers', /must be an object of header names and values, got "x-a: 1" \(string\)$/)
  refused({ headers: [['x-a', '1']] }, 'headers', /got an array$/)
  refused({ headers: { 'x-a': 1 } }, 'headers', /must have string values, got 1 for "x-a"$/)
  refused({ headers: { 'x-a': 'one\r\ntwo' } }, 'headers', /^connect\(\) option "headers" are not valid HTTP headers: /)
  refused({ headers: { 'bad name': 'x' } }, 'headers', /are not valid HTTP headers/)
  refused({ fetch: 'undici' }, 'fetch', /must be a function \(url, init\) => Promise<Response>, got "undici" \(string\)$/)
  refused({ schema: 'Tick' }, 'schema', /must be an sseSchema\(\) or a TypeBox schema, got "Tick" \(string\)$/)
  refused({ references: {} }, 'references', /must be an array of TypeBox schemas, got an object$/)
  refused({ references: [null] }, 'references', /got an array$/)
  t.throws(() => connect(url, null as unknown as undefined), { code: 'FST_SSE_INVALID_OPTION', field: 'options', message: /^connect\(\) option "options" must be an object, got null$/ })
  for (const bad of ['/relative', 'not a url', '']) {
    t.throws(() => connect(bad, { fetch }), { name: 'SseError', code: 'FST_SSE_INVALID_OPTION', field: 'url', message: /^connect\(\) needs an absolute URL, got "/ }, JSON.stringify(bad))
  }
  t.equal(fetched, 0, 'nothing was fetched')

  // each accepted as given, and a polyfilled signal (what the loop uses of one) too
  const polyfilled = { aborted: true, addEventListener () {}, removeEventListener () {} } as unknown as AbortSignal
  const numbers = { maxEventLength: Infinity, retry: 0, maxRetries: Infinity }
  const flags = { reconnect: true, json: false, retryUnavailable: false }
  const others = { signal: polyfilled, lastEventId: 'é✓', headers: { 'X-Token': 'abc' }, references: [] }
  const fine = connect(new URL(url), { fetch, ...numbers, ...flags, ...others, schema: Type.String() })
  t.same(await fine.next(), { value: undefined, done: true }, 'an aborted signal ends it at once')
  t.equal(fetched, 0)
})

t.test('an unknown option name is refused at the call, naming it and the known ones; every documented one is taken', async t => {
  let fetched = 0
  const fetch: FetchLike = async () => { fetched++; throw new Error('not called') }
  const url = 'http://127.0.0.1:1/'
  const known = 'signal, lastEventId, headers, retry, reconnect, maxRetries, json, maxEventLength, retryUnavailable, fetch, schema, references, ' +
    'method, body, credentials, mode, maxRetryDelay, inactivityTimeout, validate, onState'
  for (const name of ['retryy', 'lastEventID', 'header', 'timeout', 'constructor']) {
    // an options object built at run time (or a JavaScript caller's), which the types cannot see into
    const options: Record<string, unknown> = { fetch }
    options[name] = 1
    const err = t.throws(() => connect(url, options), {
      name: 'SseError',
      code: 'FST_SSE_INVALID_OPTION',
      field: name,
      message: `connect() option "${name}" is unknown (its options: ${known})`
    }, name)
    t.type(err, TypeError)
  }
  t.throws(() => connect(url, { fetch, retry: -1, retryy: 1 } as object), { code: 'FST_SSE_INVALID_OPTION', field: 'retryy' }, 'an unknown name is named before a bad value')
  t.equal(fetched, 0, 'nothing was fetched')

  // every option the docs list, at once, none refused
  const controller = new AbortController()
  controller.abort()
  const every: Required<ConnectOptions> = {
    signal: controller.signal,
    lastEventId: '5',
    headers: { 'x-token': 'abc' },
    retry: 10,
    reconnect: false,
    maxRetries: 0,
    json: true,
    maxEventLength: 100,
    retryUnavailable: false,
    fetch,
    schema: Type.Number(),
    references: [],
    method: 'POST',
    body: 'prompt',
    credentials: 'include',
    mode: 'cors',
    maxRetryDelay: 100,
    inactivityTimeout: 1000,
    validate: false,
    onState: () => {}
  }
  t.equal(Object.keys(every).join(', '), known)
  const events = connect(url, every)
  t.same(await events.next(), { value: undefined, done: true }, 'taken (and the aborted signal ended it)')
  t.equal(fetched, 0)
})

t.test('round trip: every item shape the server writes, through a real socket', async t => {
  t.setTimeout(10_000)
  const nasty = ['', ' ', 'a\nb', 'a\r\nb', 'a\rb', '\n', 'x\r', '\0', 'é✓😀', '\ufeffbom', 'data: fake', ': fake comment', 'id: 99', '\u2028']
  const items: Array<SseItem<unknown>> = nasty.flatMap((s, n) => [
    { data: s, id: String(n) },
    { data: { s, n }, event: `e${n}`, comment: s },
    { comment: s }
  ])
  const { app, url } = await serve(app => {
    app.get('/all', async function * () { yield * items })
  })
  t.teardown(() => app.close())
  const got = await rest(connect(`${url}/all`, { json: false, reconnect: false }))
  t.same(got, nasty.flatMap((s, n) => [
    { data: s.replace(/\r\n|\r/g, '\n'), id: String(n) },
    { data: JSON.stringify({ s, n }), event: `e${n}` }
  ]))
})

t.test('HTTP/2 over TLS with undici fetch as the fetch option', async t => {
  t.setTimeout(10_000)
  const { key, cert } = selfSignedCertificate()
  const app = Fastify({ http2: true, https: { key, cert } })
  await app.register(ssePlugin)
  const versions: string[] = []
  app.get('/h2', async function * (request) {
    versions.push(request.raw.httpVersion)
    yield { id: '1', data: { n: 1 } }
    yield { id: '2', event: 'tick', data: { n: 2 } }
    await waitForAbort(request.signal)
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const agent = new Agent({ allowH2: true, connect: { rejectUnauthorized: false } })
  t.teardown(() => agent.close())
  const h2fetch: FetchLike = (url, init) => undiciFetch(url, { ...init, dispatcher: agent })
  const controller = new AbortController()
  const { port } = app.server.address() as { port: number }
  const got = await first(connect(`https://127.0.0.1:${port}/h2`, { schema: Tick, fetch: h2fetch, signal: controller.signal }), 2)
  controller.abort()
  t.same(got, [{ id: '1', data: { n: 1 } }, { id: '2', event: 'tick', data: { n: 2 } }])
  t.same(versions, ['2.0'])
})

/** A fake fetch answer: `chunks` as the body, in one piece each. */
function answer (status: number, chunks: string[] | null, contentType = 'text/event-stream', onReturn?: () => Promise<never>) {
  const body = chunks === null
    ? null
    : {
        [Symbol.asyncIterator] () {
          const it = chunks.map(c => new TextEncoder().encode(c))[Symbol.iterator]()
          return {
            next: async () => it.next(),
            return: onReturn ?? (async () => ({ done: true as const, value: undefined }))
          }
        }
      }
  return { status, headers: { get: (name: string) => name === 'content-type' ? contentType : null }, body }
}

t.test('with a fetch of its own: the edges of the loop', async t => {
  t.setTimeout(10_000)
  const url = 'http://example.invalid/events'

  t.same(await rest(connect(url, { reconnect: false, fetch: async () => answer(200, null) })), [], 'a 200 without a body: an empty stream')

  await t.rejects(rest(connect(url, { fetch: async () => answer(502, ['x'], 'text/plain', async () => { throw new Error('cannot cancel') }) })),
    { code: 'FST_SSE_CLIENT_STATUS', status: 502 }, 'a body that fails to cancel does not hide the status error')

  const between = new AbortController()
  const events = connect(url, { signal: between.signal, fetch: async () => answer(200, ['data: 1\n\ndata: 2\n\n']) })
  t.same(await first(events, 1), [{ data: 1 }])
  between.abort()
  t.same(await events.next(), { done: true, value: undefined }, 'abort between two events of one chunk: the second is not yielded')

  const atEnd = new AbortController()
  const last = connect(url, { signal: atEnd.signal, retry: 60_000, fetch: async () => answer(200, ['data: 1\n\n']) })
  t.same(await first(last, 1), [{ data: 1 }])
  atEnd.abort() // aborted while holding the last event of a stream that then ends
  t.same(await last.next(), { done: true, value: undefined }, 'no reconnection delay is waited after an abort')

  const down = new AbortController()
  let attempts = 0
  const failing: FetchLike = async () => {
    attempts++
    setImmediate(() => down.abort())
    throw new Error('network down')
  }
  t.same(await rest(connect(url, { signal: down.signal, retry: 60_000, fetch: failing })), [], 'abort while waiting to retry a failed connection')
  t.equal(attempts, 1)
})

t.test('a retry beyond what a timer can hold waits as long as one can, not at once', async t => {
  t.setTimeout(10_000)
  let connections = 0
  const { app, url } = await startApp(app => {
    app.get('/huge', async function * () {
      connections++
      yield { retry: 99_999_999_999, id: '1', data: 1 }
    })
  }, {}, { forceCloseConnections: true })
  t.teardown(() => app.close())
  const controller = new AbortController()
  const events = connect<number>(url + '/huge', { signal: controller.signal })[Symbol.asyncIterator]()
  t.same(await first(events, 1), [{ id: '1', retry: 99_999_999_999, data: 1 }])
  const pending = events.next() // the stream has ended: the client now waits to reconnect
  await new Promise(resolve => setTimeout(resolve, 300)) // a window in which a 1 ms timer would have fired many times
  t.equal(connections, 1, 'no reconnect storm')
  controller.abort()
  t.same(await pending, { value: undefined, done: true })
})

t.test('Last-Event-ID goes out as UTF-8, whatever the id', async t => {
  t.setTimeout(10_000)
  const ids = ['✓ done…', 'é', '日本', 'plain']
  const received: string[] = []
  const { app, url } = await serve(app => {
    app.get('/ids', (request, reply) => {
      const header = request.headers['last-event-id']
      // Node reads header bytes one character per byte: the UTF-8 bytes of the id
      if (typeof header === 'string') received.push(Buffer.from(header, 'latin1').toString('utf8'))
      if (received.length > ids.length) return reply.code(204).send()
      return reply.sse([{ retry: 0, id: ids[received.length - 1]!, data: received.length }])
    })
  })
  t.teardown(() => app.close())
  const got = await rest(connect<number>(`${url}/ids`, { lastEventId: '→ start', maxRetries: 0 }))
  t.same(got.map(e => e.id), ids, 'every id, reconnecting after each')
  t.same(received, ['→ start', ...ids], 'each id came back byte for byte in UTF-8, the first one too')
})

t.test('503 with Retry-After: waited for and retried (retryUnavailable), the plugin\'s own limit included', async t => {
  t.setTimeout(15_000)
  const refused503 = deferred()
  let busy = 0
  const { app, url } = await startApp(app => {
    app.addHook('onResponse', async (_request, reply) => { if (reply.statusCode === 503) refused503.resolve() })
    app.get('/busy', (_request, reply) => ++busy === 1 ? reply.code(503).send() : reply.sse([{ data: 'after' }]))
    app.get('/one', async function * (request) {
      yield { data: 'in' }
      await waitForAbort(request.signal)
    })
  }, { maxConnections: 1, retryAfter: 0 }, { forceCloseConnections: true })
  t.teardown(() => app.close())

  const holder = new AbortController()
  const first1 = connect(`${url}/one`, { json: false, signal: holder.signal })
  t.same(await first(first1, 1), [{ data: 'in' }])
  const waiter = new AbortController()
  const second = connect(`${url}/one`, { json: false, signal: waiter.signal, retry: 50 })
  const next = second.next()
  // the slot is taken: the second client is refused at least once, then gets in once the first leaves
  await refused503.promise
  holder.abort()
  t.same((await next).value, { data: 'in' }, 'in after the 503')
  waiter.abort()

  const refused = connect(`${url}/one`, { json: false, retryUnavailable: false })
  const holder2 = new AbortController()
  t.same(await first(connect(`${url}/one`, { json: false, signal: holder2.signal }), 1), [{ data: 'in' }])
  await t.rejects(refused.next(), { code: 'FST_SSE_CLIENT_STATUS', status: 503 }, 'retryUnavailable: false: a 503 is fatal')
  await t.rejects(rest(connect(`${url}/one`, { json: false, maxRetries: 2, retry: 1 })),
    { code: 'FST_SSE_CLIENT_STATUS', status: 503, message: /answered 503 3 times in a row/ }, 'counts toward maxRetries')
  holder2.abort()
  const afterBusy = connect(`${url}/busy`, { json: false, retry: 1 })
  t.same(await first(afterBusy, 1), [{ data: 'after' }], 'no Retry-After: the reconnection delay')
  await afterBusy.return()
  const leaving = new AbortController()
  const asked = deferred()
  const unavailable: FetchLike = async () => ({
    status: 503,
    body: null,
    headers: {
      get: (name: string) => {
        if (name === 'retry-after') asked.resolve() // read just before the wait starts
        return name === 'retry-after' ? '3600' : null
      }
    }
  })
  const waiting = connect(url, { signal: leaving.signal, fetch: unavailable }).next()
  await asked.promise
  leaving.abort()
  t.same(await waiting, { done: true, value: undefined }, 'aborted while waiting out a Retry-After: ends quietly')
})

t.test('Retry-After: seconds or an HTTP date, bounded; absent or unreadable: undefined (the reconnection delay)', async t => {
  t.equal(retryAfterMs('2'), 2000)
  t.equal(retryAfterMs(' 0 '), 0)
  t.equal(retryAfterMs('99999999999'), 2 ** 31 - 1)
  t.equal(retryAfterMs('Thu, 01 Jan 1970 00:00:10 GMT', 4000), 6000)
  t.equal(retryAfterMs('Thu, 01 Jan 1970 00:00:01 GMT', 4000), 0, 'a date in the past: at once')
  t.equal(retryAfterMs('soon'), undefined)
  t.equal(retryAfterMs(null), undefined)
})
