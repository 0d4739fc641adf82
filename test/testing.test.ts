import t, { type Test } from 'tap'
import { Readable } from 'node:stream'
import Fastify, { type FastifyInstance } from 'fastify'
import { Type } from '@sinclair/typebox'
import ssePlugin, { sseSchema } from '../lib/index.js'
import { collect, injectSse, type CollectBaseOptions, type CollectOptions } from '../lib/testing.js'
import { SseClientError } from '../lib/client/index.js'
import { deferred, settles } from './helpers.js'

const Tick = Type.Object({ n: Type.Integer() })

/** An app as a user's test builds it: not listening, never started. */
async function build (t: Test, setup: (app: FastifyInstance) => void): Promise<FastifyInstance> {
  const app = Fastify()
  await app.register(ssePlugin, { heartbeat: false })
  setup(app)
  t.teardown(() => app.close())
  return app
}

function waitForAbort (signal: AbortSignal): Promise<void> {
  return new Promise(resolve => signal.addEventListener('abort', () => resolve(), { once: true }))
}

t.test('three lines: collect(app, { url, count }) on an endless route, which is then stopped', async t => {
  t.setTimeout(10_000)
  const stopped = deferred()
  const app = await build(t, app => {
    app.get('/clock', async function * (request) {
      try {
        for (let n = 0; !request.signal.aborted; n++) {
          yield { id: String(n), event: 'tick', data: { n } }
          await new Promise(resolve => setImmediate(resolve))
        }
      } finally {
        stopped.resolve()
      }
    })
  })
  const events = await collect(app, { url: '/clock', count: 3, schema: Tick })
  t.same(events, [0, 1, 2].map(n => ({ id: String(n), event: 'tick', data: { n } })))
  t.ok(await settles(stopped.promise), "the route's generator was stopped (its finally ran)")
})

t.test('collect without count reads until the route ends the stream; json: false keeps strings', async t => {
  const app = await build(t, app => {
    app.get('/list', async function * () {
      yield { data: 'one' }
      yield { comment: 'not an event' }
      yield { data: 'two\nlines' }
    })
  })
  const events = await collect(app, { url: '/list', json: false })
  t.same(events, [{ data: 'one' }, { data: 'two\nlines' }])
})

t.test('the request: method, headers, query, payload, Last-Event-ID', async t => {
  const app = await build(t, app => {
    app.post('/echo', async function * (request) {
      yield { data: { body: request.body, query: request.query, lastEventId: request.headers['last-event-id'], auth: request.headers.authorization, accept: request.headers.accept } }
    })
  })
  const [event] = await collect<{ body: unknown }>(app, {
    method: 'POST', url: '/echo', payload: { hello: 'world' }, query: { q: '1' }, headers: { authorization: 'Bearer t' }, lastEventId: '41'
  })
  t.same(event?.data, { body: { hello: 'world' }, query: { q: '1' }, lastEventId: '41', auth: 'Bearer t', accept: 'text/event-stream' })
})

t.test('injectSse: status, headers, comments, events step by step, close()', async t => {
  t.setTimeout(10_000)
  const stopped = deferred()
  const app = await build(t, app => {
    app.get('/steps', (request, reply) => reply.sse((async function * () {
      try {
        yield { comment: 'hello' }
        yield { data: 1 }
        yield { data: 2 }
        await waitForAbort(request.signal)
      } finally {
        stopped.resolve()
      }
    })(), { retry: 1000 }))
  })
  const stream = await injectSse<number>(app, { url: '/steps' })
  t.equal(stream.statusCode, 200)
  t.match(stream.headers, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache, no-transform' })
  t.same(await stream.take(1), [{ data: 1 }])
  t.same(stream.comments, ['hello'])
  t.same(await stream.take(1), [{ data: 2 }])
  stream.close()
  await stopped.promise
  t.same(await stream.events.next(), { done: true, value: undefined }, 'after close() the events end')
})

t.test('clear failures: not a stream, too few events, too slow, bad data, a bad option', async t => {
  t.setTimeout(10_000)
  let ran = false
  const app = await build(t, app => {
    app.get('/missing', async (_request, reply) => reply.code(404).send({ message: 'no such stream' }))
    app.get('/json', async () => ({ hello: 'world' }))
    app.get('/empty', async (_request, reply) => reply.code(204).send())
    app.get('/two', async function * () { yield * [{ data: 1 }, { data: 2 }] })
    app.get('/slow', async function * (request) {
      yield { data: 1 }
      await waitForAbort(request.signal)
    })
    app.get('/bad', async function * () { yield { data: { n: 'x' } } })
    app.get('/counted', async function * () { ran = true; yield { data: 1 } })
    app.get('/endless-text', async (_request, reply) => reply.type('text/plain').send(Readable.from((function * () {
      for (;;) yield 'text that is not an event stream and never ends '
    })())))
  })
  await t.rejects(collect(app, { url: '/missing' }), { name: 'SseClientError', code: 'FST_SSE_CLIENT_STATUS', status: 404, message: /GET \/missing answered 404 .*no such stream/ })
  await t.rejects(collect(app, { url: '/json' }), { code: 'FST_SSE_CLIENT_CONTENT_TYPE', status: 200, message: /answered 200 with content-type application\/json.*"hello":"world"/ })
  const err = await collect(app, { url: '/empty' }).catch((e: unknown) => e)
  t.type(err, SseClientError)
  t.match(err, { status: 204, message: /answered 204 with content-type undefined, not an event stream$/ })
  await t.rejects(collect(app, { url: '/two', count: 3 }), { message: 'GET /two: the stream ended after 2 of 3 events: [{"data":1},{"data":2}]' })
  await t.rejects(collect(app, { url: '/slow', count: 2, timeout: 100 }), { message: 'GET /slow: waited 100 ms for 2 events; got 1: [{"data":1}]' })
  await t.rejects(collect(app, { url: '/slow', timeout: 100 }), { message: /waited 100 ms for the end of the stream \(give `count` for an endless route\); got 1/ })
  await t.rejects(collect(app, { url: '/endless-text' }), { code: 'FST_SSE_CLIENT_CONTENT_TYPE', message: /content-type text\/plain, not an event stream: text that is not/ },
    'an endless body that is not an event stream: refused after its first bytes')
  await t.rejects(collect(app, { url: '/bad', schema: Tick }), { code: 'FST_SSE_CLIENT_DATA', message: /does not match the schema: data\/n Expected integer/ })
  await t.rejects(collect(app, { url: '/two', maxEventLength: 4, json: false }), { name: 'SseParseError' })
  await t.rejects(collect(app, { url: '/counted', maxEventLength: NaN }), { name: 'SseError', code: 'FST_SSE_INVALID_OPTION', field: 'maxEventLength', message: /^collect\(\) option "maxEventLength" must be a whole number of characters >= 1 \(or Infinity\), got NaN$/ })
  await t.rejects(injectSse(app, { url: '/counted', maxEventLength: -1 }), { field: 'maxEventLength', message: /^injectSse\(\) option "maxEventLength" .* got -1$/ })
  t.notOk(ran, 'a bad option: no request made')
})

t.test('an unknown option name is refused, naming it and the known ones, before any request; every documented one is taken', async t => {
  let requests = 0
  const app = await build(t, app => {
    app.route({
      method: ['GET', 'POST'],
      url: '/all',
      handler: async function * (request) {
        requests++
        const { headers, query, body } = request
        yield { data: { n: requests }, id: `${String(headers['x-a'])} ${String((query as { q: string }).q)} ${JSON.stringify(body)} ${String(headers['last-event-id'])}` }
      }
    })
  })
  const injectKnown = 'url, method, headers, query, payload, lastEventId, json, maxEventLength, schema, references'
  const collectKnown = `${injectKnown}, count, timeout`
  for (const name of ['header', 'lastEventID', 'body', 'count']) {
    // an options object built at run time (or a JavaScript caller's), which the types cannot see into
    const options: Record<string, unknown> = { url: '/all' }
    options[name] = 1
    if (name !== 'count') {
      await t.rejects(collect(app, options as { url: string }), {
        name: 'SseError', code: 'FST_SSE_INVALID_OPTION', field: name, message: `collect() option "${name}" is unknown (its options: ${collectKnown})`
      }, `collect() ${name}`)
    }
    await t.rejects(injectSse(app, options as { url: string }), {
      name: 'SseError', code: 'FST_SSE_INVALID_OPTION', field: name, message: `injectSse() option "${name}" is unknown (its options: ${injectKnown})`
    }, `injectSse() ${name}`)
  }
  await t.rejects(collect(app, null as unknown as { url: string }), { code: 'FST_SSE_INVALID_OPTION', field: 'options', message: 'collect() option "options" must be an object, got null' })
  t.equal(requests, 0, 'no request made')

  // every option the docs list, at once, none refused
  const every: Required<CollectOptions> = {
    url: '/all',
    method: 'POST',
    headers: { 'x-a': 'h' },
    query: { q: 'q' },
    payload: { p: 1 },
    lastEventId: 'five',
    json: true,
    maxEventLength: 1000,
    schema: Tick,
    references: [],
    count: 1,
    timeout: 5000
  }
  t.equal(Object.keys(every).join(', '), collectKnown)
  t.same(await collect(app, every), [{ id: 'h q {"p":1} five', data: { n: 1 } }])
  const { count, timeout, ...injectEvery } = every
  t.equal(Object.keys(injectEvery).join(', '), injectKnown)
  const stream = await injectSse(app, injectEvery)
  t.same(await stream.take(count, timeout), [{ id: 'h q {"p":1} five', data: { n: 2 } }])
  stream.close()
})

t.test('the route\'s own sseSchema decodes both ends: event map, string data as text, anything else JSON', async t => {
  const Status = Type.Union([Type.Literal('up'), Type.Literal('down')])
  const Pet = Type.Object({ name: Type.String() }, { $id: 'Pet' })
  const Name = Type.String({ $id: 'Name' })
  const feed = sseSchema({ status: Status, tick: Tick, pet: Type.Ref('Pet'), name: Type.Ref('Name'), message: Type.Number() })
  const app = await build(t, app => {
    app.addSchema(Pet)
    app.addSchema(Name)
    app.get('/feed', { schema: { response: { 200: feed } } }, async function * () {
      yield { event: 'status' as const, data: 'up' as const }
      yield { event: 'tick' as const, data: { n: 1 }, id: '1' }
      yield { event: 'pet' as const, data: { name: 'rex' } }
      yield { event: 'name' as const, data: 'ann' }
      yield { data: 2 } as never // no event: the "message" event, as a browser names it
    })
    app.get('/untyped', async function * () {
      yield { data: 'hi' }
      yield { data: { a: 1 } }
      yield { event: 'x', data: '{"not json' }
    })
    app.get('/unknown', async function * () { yield { event: 'left', data: '1' } })
    app.get('/text', { schema: { response: { 200: sseSchema(Type.String()) } } }, async function * () { yield { data: '{"a":1}' } })
  })
  const items = await collect(app, { url: '/feed', schema: feed, references: [Pet, Name] })
  t.same(items, [
    { event: 'status', data: 'up' },
    { event: 'tick', data: { n: 1 }, id: '1' },
    { event: 'pet', data: { name: 'rex' } },
    { event: 'name', data: 'ann' },
    { event: 'message', data: 2 }
  ])
  t.same(await collect(app, { url: '/untyped' }), [{ data: 'hi' }, { data: { a: 1 } }, { event: 'x', data: '{"not json' }],
    'no schema: JSON when it is JSON, else the text the route sent')
  t.same(await collect(app, { url: '/text', schema: sseSchema(Type.String()) }), [{ data: '{"a":1}' }], 'a string schema: the text, even if it reads as JSON')
  t.same(await collect(app, { url: '/text', schema: Type.String() }), [{ data: '{"a":1}' }], 'a TypeBox data schema: the same rule')
  t.same(await collect(app, { url: '/text', schema: sseSchema({ type: 'string' }) }), [{ data: '{"a":1}' }],
    'a plain JSON Schema: the same rule (not checked: the client checks TypeBox schemas)')
  await t.rejects(collect(app, { url: '/unknown', schema: feed, references: [Pet, Name] }),
    { code: 'FST_SSE_CLIENT_DATA', message: '"left" event is not an event of the schema (expected one of "status", "tick", "pet", "name", "message")' })
  await t.rejects(collect(app, { url: '/feed', schema: sseSchema({ status: Type.Literal('down') }) }),
    { code: 'FST_SSE_CLIENT_DATA', message: /^"status" event does not match the schema: data Expected 'down'/ })
})

t.test('lastEventId goes out as UTF-8 bytes, as a real client sends it', async t => {
  const app = await build(t, app => {
    app.get('/resume', async function * (request) {
      const header = request.headers['last-event-id'] as string
      yield { data: Buffer.from(header, 'latin1').toString('utf8') } // Node reads a header one character per byte
    })
  })
  t.same(await collect(app, { url: '/resume', lastEventId: '✓ é 日本', json: false }), [{ data: '✓ é 日本' }])
})

t.test('a bad option value is refused, naming the option and the function, before any request', async t => {
  let injected = 0
  const app = await build(t, app => {
    app.addHook('onRequest', async () => { injected++ })
    app.get('/one', async function * () { yield { data: 1 } })
  })
  const refused = async (options: Record<string, unknown>, field: string, problem: RegExp, helpers = ['collect', 'injectSse']): Promise<void> => {
    const all = { url: '/one', ...options } as unknown as CollectBaseOptions
    for (const owner of helpers) {
      const call = owner === 'collect' ? collect(app, all) : injectSse(app, all)
      const err = await call.catch((e: unknown) => e)
      t.type(err, TypeError, `${owner}() ${field}: ${JSON.stringify(options[field]) ?? String(options[field])}`)
      t.match(err, { name: 'SseError', code: 'FST_SSE_INVALID_OPTION', field })
      t.match((err as Error).message, new RegExp(`^${owner}\\(\\) option "${field}" ${problem.source}`))
    }
  }
  const PATH = /must be a path starting with "\/" \(or an absolute http\(s\) URL\), got /
  for (const url of [undefined, 7, '', 'one', ' /one', 'ftp://example.com/one', { pathname: '/one' }]) {
    await refused({ url }, 'url', PATH)
  }
  await refused({ url: 'one' }, 'url', /.* got "one" \(string\)$/)
  for (const method of ['FOO', '', 'GET ', 1, null]) {
    await refused({ method }, 'method', /must be an HTTP method \(one of node:http's METHODS, in any case\), got /)
  }
  await refused({ method: 'FOO' }, 'method', /.* got "FOO" \(string\)$/)
  await refused({ headers: 'x-a: 1' }, 'headers', /must be an object of header names and values, got "x-a: 1" \(string\)$/)
  await refused({ headers: null }, 'headers', /must be an object of header names and values, got null$/)
  await refused({ headers: [['x-a', '1']] }, 'headers', /must be an object .* got an array$/)
  await refused({ headers: { 'x-a': 1 } }, 'headers', /must have string values, got 1 for "x-a"$/)
  await refused({ headers: { 'x-a': 'one\r\ntwo' } }, 'headers', /are not valid HTTP headers: /)
  await refused({ headers: { 'bad name': 'x' } }, 'headers', /are not valid HTTP headers: /)
  await refused({ headers: { 'x-a': '日本' } }, 'headers', /are not valid HTTP headers: /)
  await refused({ query: 'q=1' }, 'query', /must be an object of parameter names and values, got "q=1" \(string\)$/)
  await refused({ query: null }, 'query', /must be an object .* got null$/)
  await refused({ query: ['q'] }, 'query', /must be an object .* got an array$/)
  await refused({ query: { q: 1 } }, 'query', /must have string values, got 1 for "q"$/)
  await refused({ query: { q: ['1', '2'] } }, 'query', /must have string values, got an array for "q"$/)
  await refused({ lastEventId: 7 }, 'lastEventId', /must be a string without line breaks or NUL \(an id a stream can send\), got 7$/)
  await refused({ lastEventId: 'a\nb' }, 'lastEventId', /.* got "a\\nb" \(string\)$/)
  await refused({ lastEventId: 'a\0' }, 'lastEventId', /must be a string without/)
  for (const count of [-1, 1.5, NaN, '3', null, 2 ** 53]) {
    await refused({ count }, 'count', /must be a non-negative whole number or Infinity, got /, ['collect'])
  }
  await refused({ count: '3' }, 'count', /.* got "3" \(string\)$/, ['collect'])
  for (const timeout of [0, -1, 1.5, NaN, Infinity, 2 ** 31, '100', null]) {
    await refused({ timeout }, 'timeout', /must be a whole number of milliseconds from 1 to 2147483647, got /, ['collect'])
  }
  await refused({ timeout: Infinity }, 'timeout', /.* got Infinity$/, ['collect'])
  await refused({ timeout: '100' }, 'timeout', /.* got "100" \(string\)$/, ['collect'])
  t.equal(injected, 0, 'no request was injected')

  // take()'s arguments follow the same rules: refused without touching the stream
  const stream = await injectSse(app, { url: '/one' })
  t.equal(injected, 1)
  for (const [count, timeout, field] of [[undefined, undefined, 'count'], [-1, 100, 'count'], [NaN, 100, 'count'], [1, 0, 'timeout'], [1, Infinity, 'timeout'], [1, null, 'timeout']] as const) {
    await t.rejects(stream.take(count as unknown as number, timeout as unknown as number),
      { name: 'SseError', code: 'FST_SSE_INVALID_OPTION', field, message: new RegExp(`^take\\(\\) option "${field}" must be `) }, `take(${String(count)}, ${String(timeout)})`)
  }
  t.same(await stream.take(1, 2 ** 31 - 1), [{ data: 1 }], 'the stream is still there; the longest timeout is taken')
  stream.close()
})

t.test('every documented form of the option values is taken', async t => {
  const seen: Array<Record<'method' | 'url', string> & Record<'host' | 'lastEventId' | 'a', string | undefined>> = []
  const app = await build(t, app => {
    app.route({
      method: ['GET', 'POST', 'QUERY'],
      url: '/echo',
      handler: async function * (request) {
        const { method, url, headers } = request
        seen.push({ method, url, host: headers.host, lastEventId: headers['last-event-id'] as string | undefined, a: headers['x-a'] as string | undefined })
        yield * [{ data: 1 }, { data: 2 }]
      }
    })
  })
  t.same(await collect(app, { url: '/echo?x=1', method: 'post', headers: {}, query: {}, count: 0, timeout: 1 }), [], 'count 0: nothing to wait for')
  t.same(await collect(app, { url: 'http://example.com/echo', method: 'GET', count: Infinity, timeout: 2 ** 31 - 1 }), [{ data: 1 }, { data: 2 }])
  t.same(await collect(app, { url: '/echo', method: 'QUERY', headers: { 'x-a': 'é', 'content-type': 'text/plain' }, payload: 'q', query: { y: '' }, lastEventId: '' }), [{ data: 1 }, { data: 2 }])
  const stream = await injectSse(app, { url: '/echo', headers: { 'X-A': ' b ' }, lastEventId: 'id with spaces' })
  t.same(await stream.take(0), [])
  t.same(await stream.take(Infinity), [{ data: 1 }, { data: 2 }])
  t.same(seen, [
    { method: 'POST', url: '/echo?x=1', host: 'localhost:80', lastEventId: undefined, a: undefined },
    { method: 'GET', url: '/echo', host: 'example.com:80', lastEventId: undefined, a: undefined },
    { method: 'QUERY', url: '/echo?y=', host: 'localhost:80', lastEventId: '', a: 'é' },
    { method: 'GET', url: '/echo', host: 'localhost:80', lastEventId: 'id with spaces', a: ' b ' }
  ])
})
