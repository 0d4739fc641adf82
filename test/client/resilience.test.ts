import t from 'tap'
import { once } from 'node:events'
import { createServer, type Socket } from 'node:net'
import { Type } from '@sinclair/typebox'
import { connect, type ConnectionState, type ConnectionStateInfo, type FetchLike } from '../../lib/client/index.js'
import { connect as browserConnect } from '../../lib/client/browser.js'
import { schemaValidator, validator } from '../../lib/client/validate.js'
import { reconnectDelay, wait } from '../../lib/client/backoff.js'
import { sseSchema } from '../../lib/index.js'
import type { SsePluginOptions } from '../../lib/types.js'
import { deferred, startApp, take, within } from '../helpers.js'

// What connect() does beyond EventSource, over real sockets: any method, headers and body on every attempt;
// backoff with jitter; answers that mean "later"; an inactivity timeout; the online event; its states. And
// validation as a function: on by default in Node, opt-in in the browser entry.

const WAIT = 5000

/** startApp, closing every connection on app.close() (Node's fetch may hold a spare one). */
function serve (setup: Parameters<typeof startApp>[0], plugin: SsePluginOptions = {}): ReturnType<typeof startApp> {
  return startApp(setup, plugin, { forceCloseConnections: true })
}

/** Every item until the iteration ends (or the error it ends with), bounded in time. */
function drain<T> (events: AsyncIterable<T>): Promise<T[]> {
  return within((async () => {
    const out: T[] = []
    for await (const item of events) out.push(item)
    return out
  })(), WAIT, 'the iteration to end')
}

/** The states a connection reports, in order. */
type StateReport = [ConnectionState, ConnectionStateInfo]

function states (): { list: StateReport[], onState: (state: ConnectionState, info: ConnectionStateInfo) => void } {
  const list: StateReport[] = []
  return { list, onState: (state, info) => { list.push([state, info]) } }
}

const Tick = Type.Object({ n: Type.Integer() })

t.test('POST with headers and a body, all repeated on every reconnection along with Last-Event-ID', async t => {
  t.setTimeout(10_000)
  const seen: Array<{ method: string, body: unknown, auth: unknown, type: unknown, lastEventId: unknown }> = []
  const { app, url } = await serve(app => {
    app.post('/ask', (request, reply) => {
      seen.push({
        method: request.method,
        body: request.body,
        auth: request.headers.authorization,
        type: request.headers['content-type'],
        lastEventId: request.headers['last-event-id']
      })
      if (seen.length === 3) return reply.code(204).send()
      const { prompt } = request.body as { prompt: string }
      return reply.sse([{ retry: 0, id: String(seen.length), data: { answer: prompt.length } }])
    })
  })
  t.teardown(() => app.close())
  const got = await drain(connect(`${url}/ask`, {
    method: 'POST',
    headers: { authorization: 'Bearer secret', 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'four' }),
    credentials: 'same-origin',
    mode: 'cors'
  }))
  t.same(got, [{ retry: 0, id: '1', data: { answer: 4 } }, { retry: 0, id: '2', data: { answer: 4 } }])
  t.same(seen, [
    { method: 'POST', body: { prompt: 'four' }, auth: 'Bearer secret', type: 'application/json', lastEventId: undefined },
    { method: 'POST', body: { prompt: 'four' }, auth: 'Bearer secret', type: 'application/json', lastEventId: '1' },
    { method: 'POST', body: { prompt: 'four' }, auth: 'Bearer secret', type: 'application/json', lastEventId: '2' }
  ], 'the same request each time, with the last id it saw')
})

t.test('every body kind fetch can send twice is sent, and sent again', async t => {
  t.setTimeout(10_000)
  const bodies: string[] = []
  const { app, url } = await serve(app => {
    app.addContentTypeParser('*', { parseAs: 'string' }, (_request, body, done) => { done(null, body) })
    app.put('/echo', (request, reply) => {
      bodies.push(String(request.body))
      return bodies.length % 2 === 0 ? reply.code(204).send() : reply.sse([{ retry: 0, data: 'ok' }])
    })
  })
  t.teardown(() => app.close())
  const bytes = new TextEncoder().encode('bytes')
  for (const body of ['text', bytes, bytes.buffer, new Blob(['blob']), new URLSearchParams({ a: '1' })]) {
    t.same(await drain(connect(`${url}/echo`, { method: 'put', body, json: false, inactivityTimeout: false })), [{ retry: 0, data: 'ok' }])
  }
  t.same(bodies, ['text', 'text', 'bytes', 'bytes', 'bytes', 'bytes', 'blob', 'blob', 'a=1', 'a=1'])
})

t.test('reconnection delays: at least the server\'s retry, a random share of a window that doubles per failure, bounded', async t => {
  t.equal(reconnectDelay(1000, 1, 30_000, () => 0), 1000, 'never less than the floor')
  t.equal(reconnectDelay(1000, 1, 30_000, () => 1), 2000, 'after an open stream: up to twice it')
  t.equal(reconnectDelay(1000, 3, 30_000, () => 1), 8000, 'after two failures: up to 2^3 times it')
  t.equal(reconnectDelay(1000, 3, 30_000, () => 0.5), 4500)
  t.equal(reconnectDelay(1000, 20, 30_000, () => 1), 30_000, 'bounded by the maximum')
  t.equal(reconnectDelay(60_000, 2, 30_000, () => 1), 60_000, 'unless the server asked for more')
  t.equal(reconnectDelay(0, 5, 30_000, () => 1), 0, 'retry 0: at once, as the server asked')
  t.equal(reconnectDelay(2 ** 31 - 1, 1, 2 ** 31 - 1, () => 1), 2 ** 31 - 1, 'never beyond what a timer holds')

  // a server that is down: each wait reported is within its window, and they grow
  const { list, onState } = states()
  const down: FetchLike = async () => { throw new Error('refused') }
  await t.rejects(drain(connect('http://127.0.0.1:1/', { fetch: down, retry: 4, maxRetries: 5, maxRetryDelay: 64, onState })),
    { code: 'FST_SSE_CLIENT_CONNECT', message: /\(6 attempts\): refused$/ })
  const waits = list.filter(([state]) => state === 'reconnecting').map(([, info]) => info)
  t.same(waits.map(info => info.failures), [1, 2, 3, 4, 5])
  for (const [n, info] of waits.entries()) {
    t.ok(info.delay! >= 4 && info.delay! <= Math.min(64, 4 * 2 ** (n + 2)), `wait ${n + 1}: ${info.delay} ms within [4, ${Math.min(64, 4 * 2 ** (n + 2))}]`)
    t.match(info.error, { message: 'refused' })
  }
  t.same(list.map(([state]) => state), ['connecting', ...waits.map(() => 'reconnecting'), 'closed'])
  t.match(list.at(-1)![1], { failures: 6, error: { code: 'FST_SSE_CLIENT_CONNECT' } })
})

t.test('408 and 429 are waited out as 503 is, after their Retry-After; the error says what failed', async t => {
  t.setTimeout(10_000)
  const answers = [
    () => { throw new Error('reset') },
    () => ({ status: 429, headers: { get: (name: string) => name === 'retry-after' ? '0' : null }, body: null }),
    () => ({ status: 408, headers: { get: () => null }, body: null }),
    () => ({ status: 429, headers: { get: () => null }, body: null }),
    () => ({ status: 429, headers: { get: () => null }, body: null })
  ]
  let calls = 0
  const fetch: FetchLike = async () => answers[calls++]!()
  const { list, onState } = states()
  await t.rejects(drain(connect('http://127.0.0.1:1/', { fetch, retry: 1, maxRetries: 4, onState })), {
    code: 'FST_SSE_CLIENT_STATUS',
    status: 429,
    message: 'http://127.0.0.1:1/ answered 429 2 times in a row, after 3 other failed attempts'
  })
  t.equal(calls, 5)
  const waits = list.filter(([state]) => state === 'reconnecting').map(([, info]) => info)
  t.same(waits.map(info => (info.error as { status?: number }).status), [undefined, 429, 408, 429])
  t.ok(waits[1]!.delay! <= 4, `a Retry-After of 0 is the floor: ${waits[1]!.delay} ms`)

  calls = 1
  await t.rejects(drain(connect('http://127.0.0.1:1/', { fetch, retryUnavailable: false })),
    { code: 'FST_SSE_CLIENT_STATUS', status: 429, message: /answered 429 instead of 200/ }, 'retryUnavailable: false: fatal')
})

t.test('inactivityTimeout: a silent connection is replaced, resuming from the last id; with reconnect: false an error', async t => {
  t.setTimeout(15_000)
  const requests: Array<string | undefined> = []
  const { app, url } = await serve(app => {
    app.get('/silent', async function * (request) {
      requests.push(request.headers['last-event-id'] as string | undefined)
      yield { id: String(requests.length), data: requests.length }
      await once(request.signal, 'abort') // then nothing at all: no heartbeat either
    })
  }, { heartbeat: false })
  t.teardown(() => app.close())
  const { list, onState } = states()
  const controller = new AbortController()
  const events = connect<number>(`${url}/silent`, { inactivityTimeout: 150, retry: 10, signal: controller.signal, onState })
  const got = await within(take(events, 3), WAIT, 'three connections')
  controller.abort()
  t.same(got.map(e => e.data), [1, 2, 3])
  t.same(requests, [undefined, '1', '2'])
  const why = list.find(([state]) => state === 'reconnecting')![1].error
  t.match(why, { code: 'FST_SSE_CLIENT_CONNECT', message: `${url}/silent sent nothing for 150 ms (inactivityTimeout)` })

  const once1 = connect(`${url}/silent`, { inactivityTimeout: 100, reconnect: false })
  t.same((await once1.next()).value, { id: '4', data: 4 })
  await t.rejects(once1.next(), { code: 'FST_SSE_CLIENT_CONNECT', message: /sent nothing for 100 ms \(inactivityTimeout\)$/ })
})

t.test('inactivityTimeout: a server that never answers is a failed attempt; time the consumer takes does not count', async t => {
  t.setTimeout(15_000)
  const sockets = new Set<Socket>()
  const mute = createServer(socket => { sockets.add(socket) }) // accepts, never answers
  mute.listen(0, '127.0.0.1')
  await once(mute, 'listening')
  t.teardown(() => {
    for (const socket of sockets) socket.destroy()
    mute.close()
  })
  const port = (mute.address() as { port: number }).port
  await t.rejects(drain(connect(`http://127.0.0.1:${port}/`, { inactivityTimeout: 100, maxRetries: 1, retry: 1 })),
    { code: 'FST_SSE_CLIENT_CONNECT', message: /\(2 attempts\): http:\/\/127\.0\.0\.1:\d+\/ sent nothing for 100 ms/ })

  const release = deferred()
  let requests = 0
  const { app, url } = await serve(app => {
    app.get('/slow-reader', async function * (request) {
      requests++
      yield { id: '1', data: 1 }
      await release.promise
      yield { id: '2', data: 2 }
      await once(request.signal, 'abort')
    })
  }, { heartbeat: false })
  t.teardown(() => app.close())
  const controller = new AbortController()
  const events = connect<number>(`${url}/slow-reader`, { inactivityTimeout: 500, signal: controller.signal })
  t.same((await events.next()).value, { id: '1', data: 1 })
  // the consumer is busy for four timeouts: nothing is read meanwhile, so that silence is not the server's
  await new Promise(resolve => setTimeout(resolve, 2000))
  const next = events.next()
  release.resolve()
  t.same((await next).value, { id: '2', data: 2 })
  t.equal(requests, 1, 'the same connection')
  controller.abort()
})

t.test('onState: connecting, open, reconnecting after the server ends the stream, open, closed on the 204', async t => {
  t.setTimeout(10_000)
  let requests = 0
  const { app, url } = await serve(app => {
    app.get('/two', (_request, reply) => ++requests === 3 ? reply.code(204).send() : reply.sse([{ retry: 5, data: requests }]))
    app.get('/bad', (_request, reply) => reply.code(404).send())
  })
  t.teardown(() => app.close())
  const { list, onState } = states()
  await drain(connect(`${url}/two`, { onState }))
  t.same(list.map(([state]) => state), ['connecting', 'open', 'reconnecting', 'open', 'reconnecting', 'closed'])
  const reconnecting = list[2]![1]
  t.ok(reconnecting.delay! >= 5 && reconnecting.delay! <= 10, `the server's retry and up to twice it: ${reconnecting.delay} ms`)
  t.same(list.at(-1), ['closed', { failures: 0 }], 'a quiet end: no error')

  const fatal = states()
  await t.rejects(drain(connect(`${url}/bad`, { onState: fatal.onState })), { code: 'FST_SSE_CLIENT_STATUS', status: 404 })
  t.same(fatal.list.map(([state]) => state), ['connecting', 'closed'])
  t.match(fatal.list[1]![1], { error: { code: 'FST_SSE_CLIENT_STATUS', status: 404 } })
})

t.test('the online event (where the global object has one) ends a backoff wait at once', async t => {
  t.setTimeout(10_000)
  const global = globalThis as unknown as Record<string, unknown>
  const target = new EventTarget()
  global.addEventListener = target.addEventListener.bind(target)
  global.removeEventListener = target.removeEventListener.bind(target)
  t.teardown(() => {
    delete global.addEventListener
    delete global.removeEventListener
  })
  let attempts = 0
  const waiting = deferred()
  const fetch: FetchLike = async () => {
    attempts++
    throw new Error('offline')
  }
  const controller = new AbortController()
  const events = connect('http://127.0.0.1:1/', {
    fetch,
    retry: 60_000,
    signal: controller.signal,
    onState: state => { if (state === 'reconnecting' && attempts === 2) waiting.resolve() }
  })
  const ended = events.next()
  await within(new Promise(resolve => setImmediate(resolve)), WAIT, 'a turn')
  t.equal(attempts, 1, 'waiting a minute after the first failure')
  target.dispatchEvent(new Event('online'))
  await within(waiting.promise, WAIT, 'the second attempt, at once')
  controller.abort()
  t.same(await ended, { done: true, value: undefined })

  const stop = new AbortController()
  const pending = wait(60_000, stop.signal)
  stop.abort()
  t.equal(await pending, false, 'an abort ends a wait too, and its online listener goes with it')
  target.dispatchEvent(new Event('online'))
})

t.test('validate: on by default in Node with a TypeBox schema; false turns it off; a function of your own', async t => {
  t.setTimeout(10_000)
  const { app, url } = await serve(app => {
    app.get('/mismatch', async function * () { yield { event: 'tick', data: { n: 'one' } } })
    app.get('/text', async function * () { yield { data: 'hello' } })
  })
  t.teardown(() => app.close())
  const at = `${url}/mismatch`
  await t.rejects(drain(connect(at, { schema: Tick, reconnect: false })), { code: 'FST_SSE_CLIENT_DATA', message: /"tick" event does not match the schema: data\/n Expected integer/ })
  t.same(await drain(connect(at, { schema: Tick, reconnect: false, validate: false })), [{ event: 'tick', data: { n: 'one' } }])
  const own = (data: unknown, event: string): string | undefined => typeof (data as { n: unknown }).n === 'number' ? undefined : `${event}: n is not a number`
  await t.rejects(drain(connect(at, { schema: Tick, reconnect: false, validate: own })), { message: '"tick" event does not match the schema: tick: n is not a number' })
  await t.rejects(drain(connect(at, { reconnect: false, json: true, validate: own })), { code: 'FST_SSE_CLIENT_DATA' }, 'without a schema too')
  const throwing = (): undefined => { throw new Error('validator broke') }
  const err = await drain(connect(at, { reconnect: false, validate: throwing })).catch((e: unknown) => e)
  t.match(err, { code: 'FST_SSE_CLIENT_DATA', message: '"tick" event could not be validated: validator broke', cause: { message: 'validator broke' } })
  const texts: string[] = []
  t.same(await drain(connect(`${url}/text`, { reconnect: false, json: false, validate: data => { texts.push(data as string); return undefined } })), [{ data: 'hello' }])
  t.same(texts, ['hello'])
})

t.test('the browser entry: the same client, no check unless given one; validator() builds it from the schema', async t => {
  t.setTimeout(10_000)
  const chat = sseSchema({ message: Type.Object({ text: Type.String() }), presence: Type.Union([Type.Literal('on'), Type.Literal('off')]) })
  const { app, url } = await serve(app => {
    app.get('/chat', async function * () {
      yield { event: 'message', data: { text: 'hi' } }
      yield { event: 'presence', data: 'away' }
    })
  })
  t.teardown(() => app.close())
  const events = await drain(browserConnect(`${url}/chat`, { schema: chat, reconnect: false }))
  t.same(events, [{ event: 'message', data: { text: 'hi' } }, { event: 'presence', data: 'away' }], 'decoded by the schema, not checked')
  await t.rejects(drain(browserConnect(`${url}/chat`, { schema: chat, reconnect: false, validate: await validator(chat) })),
    { code: 'FST_SSE_CLIENT_DATA', message: /^"presence" event does not match the schema: data Expected union value/ })

  const check = await validator(chat)
  t.equal(check({ text: 'x' }, 'message'), undefined)
  t.equal(check('on', 'presence'), undefined)
  t.equal(check({}, 'nope'), '"nope" is not an event of the schema')
  const Pet = Type.Object({ name: Type.String() }, { $id: 'Pet' })
  t.equal((await validator(Type.Ref(Pet), { references: [Pet] }))({ name: 1 }, 'message'), 'data/name Expected string')
  const partly = await validator(sseSchema({ typed: Type.Number(), plain: { type: 'number' } }))
  t.equal(partly('not checked', 'plain'), undefined, 'a plain JSON Schema event is not checked')
  t.equal(partly('x', 'typed'), 'data Expected number')

  t.throws(() => validator(Tick, { refs: [] } as object), { code: 'FST_SSE_INVALID_OPTION', field: 'refs', message: /^validator\(\) option "refs" is unknown \(its options: references\)$/ })
  t.throws(() => validator(Tick, { references: {} as never }), { field: 'references', message: /must be an array of TypeBox schemas/ })
  t.throws(() => validator('Tick' as never), { field: 'schema', message: 'validator() needs an sseSchema() or a TypeBox schema, got "Tick" (string)' })
  t.throws(() => validator({ type: 'number' } as never), { field: 'schema', message: /needs a TypeBox schema to compile: this one has none/ })
  t.throws(() => validator(sseSchema({ a: { type: 'number' }, b: { type: 'string' } })), { code: 'FST_SSE_INVALID_OPTION', field: 'schema' })
  t.throws(() => validator(sseSchema({ type: 'number' })), { code: 'FST_SSE_INVALID_OPTION', field: 'schema' })
  t.equal(await schemaValidator(sseSchema({ a: { type: 'number' } })), undefined, 'an event map of plain JSON Schemas: nothing to check')
})

t.test('in a page (a global location), a URL relative to it, as fetch and EventSource take', async t => {
  const global = globalThis as unknown as Record<string, unknown>
  global.location = { href: 'http://127.0.0.1:1/app/page.html' }
  t.teardown(() => { delete global.location })
  const urls: string[] = []
  const fetch: FetchLike = async url => {
    urls.push(url)
    return { status: 204, headers: { get: () => null }, body: null }
  }
  t.same(await drain(connect('/feed?x=1', { fetch })), [])
  t.same(await drain(connect('events', { fetch })), [])
  t.same(urls, ['http://127.0.0.1:1/feed?x=1', 'http://127.0.0.1:1/app/events'])
  t.throws(() => connect('http://[bad', { fetch }), { field: 'url', message: 'connect() needs a URL, got "http://[bad" (string)' })
})

t.test('new options are refused at the call, naming each, before any request', async t => {
  let fetched = 0
  const fetch: FetchLike = async () => { fetched++; throw new Error('not called') }
  const url = 'http://127.0.0.1:1/'
  const refused = (options: object, field: string, message: RegExp): void => {
    t.throws(() => connect(url, { fetch, ...options }), { name: 'SseError', code: 'FST_SSE_INVALID_OPTION', field, message }, `${field}: ${JSON.stringify(options)}`)
  }
  const method = /^connect\(\) option "method" must be an HTTP method fetch can send and that answers with a body \(not HEAD, CONNECT, TRACE or TRACK\), got /
  for (const bad of ['GET POST', '', 'head', 'TRACE', 'connect', 'Track', 5]) refused({ method: bad }, 'method', method)
  refused({ body: 'x' }, 'body', /^connect\(\) option "body" needs a method other than GET \(a GET request has no body\)$/)
  refused({ method: 'get', body: 'x' }, 'body', /needs a method other than GET/)
  refused({ method: 'POST', body: new ReadableStream() }, 'body', /must be a string, a Uint8Array, an ArrayBuffer, a Blob or URLSearchParams \(sent again on every reconnection: not a stream\), got an object$/)
  refused({ method: 'POST', body: 5 }, 'body', /got 5$/)
  refused({ method: 'POST', body: { prompt: 'x' } }, 'body', /got an object$/)
  refused({ credentials: 'always' }, 'credentials', /^connect\(\) option "credentials" must be "omit", "same-origin" or "include", got "always" \(string\)$/)
  refused({ mode: 'no-cors' }, 'mode', /^connect\(\) option "mode" must be "cors" or "same-origin" \(a no-cors answer cannot be read\), got "no-cors" \(string\)$/)
  refused({ maxRetryDelay: -1 }, 'maxRetryDelay', /^connect\(\) option "maxRetryDelay" must be a whole number of milliseconds from 0 to 2147483647, got -1$/)
  refused({ maxRetryDelay: 2 ** 31 }, 'maxRetryDelay', /got 2147483648$/)
  refused({ inactivityTimeout: 0 }, 'inactivityTimeout', /^connect\(\) option "inactivityTimeout" must be a whole number of milliseconds from 1 to 2147483647, or false, got 0$/)
  refused({ inactivityTimeout: true }, 'inactivityTimeout', /got true$/)
  refused({ inactivityTimeout: 2 ** 31 }, 'inactivityTimeout', /got 2147483648$/)
  refused({ validate: true }, 'validate', /^connect\(\) option "validate" must be a function \(data, event\) => problem \| undefined, or false, got true$/)
  refused({ validate: 'schema' }, 'validate', /got "schema" \(string\)$/)
  refused({ onState: 'log' }, 'onState', /^connect\(\) option "onState" must be a function, got "log" \(string\)$/)
  t.equal(fetched, 0, 'nothing was fetched')
})
