// Core paths of lib/stream, lib/parse and lib/index that the channel tests do not reach, so that this branch's
// `npm test` holds lib/ at 100% on its own. The core suite (issue 2) tests these in depth; when it lands, this
// file can be dropped or folded into it.
import t from 'tap'
import { connect as h2connect } from 'node:http2'
import { connect } from 'node:net'
import { request } from 'undici'
import ssePlugin, { parseEventStream, SseParseError, type SseItem } from '../lib/index.js'
import Fastify from 'fastify'
import { EventStream } from '../lib/stream.js'
import { all, deferred, DEBUG, ERROR, open, startApp, take } from './helpers.js'

t.test('sync iterables, the retry line, HEAD, bad sources and a second reply.sse', async t => {
  t.setTimeout(20_000)
  const secondCall = deferred<Error>()
  const bodies: EventStream[] = []
  const { app, url, logs } = await startApp(app => {
    app.addHook('onSend', async (_req, _reply, payload) => {
      if (payload instanceof EventStream) bodies.push(payload)
      return payload
    })
    app.get('/sync', (_req, reply) => reply.sse([{ data: 'a' }, { data: 'b', id: '2' }]))
    app.get('/retry', (_req, reply) => reply.sse([{ data: 'x' }], { retry: 1500 }))
    app.head('/head-async', (_req, reply) => reply.sse((async function * () { yield { data: 'never' } })()))
    app.head('/head-array', (_req, reply) => reply.sse([{ data: 'never' }]))
    app.head('/head-throws', (_req, reply) => reply.sse({
      [Symbol.iterator]: () => ({ next: () => ({ done: true, value: undefined }), return: () => { throw new Error('return threw') } })
    }))
    app.head('/head-rejects', (_req, reply) => reply.sse({
      [Symbol.asyncIterator]: () => ({ next: async () => ({ done: true, value: undefined }), return: async () => { throw new Error('return rejected') } })
    }))
    app.get('/null', (_req, reply) => reply.sse(null as unknown as SseItem[]))
    app.get('/number', (_req, reply) => reply.sse(5 as unknown as SseItem[]))
    app.get('/function', (_req, reply) => reply.sse((() => 1) as unknown as SseItem[]))
    app.get('/twice', (_req, reply) => {
      reply.sse([{ data: 'first' }])
      try {
        reply.sse([{ data: 'second' }])
      } catch (err) {
        secondCall.resolve(err as Error)
      }
      return reply
    })
  })
  t.teardown(() => app.close())
  t.same(await all((await open(`${url}/sync`)).events), [{ data: 'a' }, { data: 'b', id: '2' }])
  t.equal(bodies[0]?.items, 2, 'the stream counts the items it wrote')
  const retries: number[] = []
  const res = await request(`${url}/retry`)
  t.same(await all(parseEventStream(res.body, { onRetry: r => retries.push(r) })[Symbol.asyncIterator]()), [{ data: 'x' }])
  t.same(retries, [1500], 'a retry line first')
  for (const path of ['/head-async', '/head-array', '/head-throws', '/head-rejects']) {
    const head = await request(`${url}${path}`, { method: 'HEAD' })
    t.equal(head.statusCode, 200, path)
    t.equal(head.headers['content-type'], 'text/event-stream; charset=utf-8')
    await head.body.dump()
  }
  t.match(await logs.waitFor(l => l.level === ERROR && l.err?.message === 'return threw'), { msg: /while stopping/ })
  t.match(await logs.waitFor(l => l.level === ERROR && l.err?.message === 'return rejected'), { msg: /while stopping/ })
  const bad = await request(`${url}/null`)
  t.equal(bad.statusCode, 500)
  t.match(await bad.body.json(), { message: /needs an async or sync iterable of SSE items, got null/ })
  for (const kind of ['number', 'function']) {
    const res = await request(`${url}/${kind}`)
    t.equal(res.statusCode, 500)
    t.match(await res.body.json(), { message: new RegExp(`got ${kind}`) })
  }
  t.same(await all((await open(`${url}/twice`)).events), [{ data: 'first' }], 'the first stream goes on')
  t.match((await secondCall.promise).message, /reply.sse\(\) on GET \/twice: the reply was already sent/)
})

t.test('a source that fails: next() throwing, rejecting, a refused item; and an abort is not an error', async t => {
  t.setTimeout(20_000)
  const stopped = deferred()
  const { app, url, logs } = await startApp(app => {
    app.get('/next-throws', (_req, reply) => reply.sse({
      [Symbol.asyncIterator]: () => ({ next: () => { throw new Error('next threw') } })
    } as unknown as AsyncIterable<SseItem>))
    app.get('/rejects', async function * () {
      yield { data: 'one' }
      throw new Error('source broke')
    })
    app.get('/refused', async function * () {
      yield { data: 'ok' }
      yield { event: 'a\nb' }
    })
    app.get('/aborted', async function * (req) {
      try {
        yield { data: 'waiting' }
        await new Promise((_resolve, reject) => req.signal.addEventListener('abort', () => reject(new Error('aborted'))))
      } finally {
        stopped.resolve()
      }
    })
  })
  t.teardown(() => app.close())
  t.same(await all((await open(`${url}/next-throws`)).events), [])
  t.match(await logs.waitFor(l => l.level === ERROR && l.err?.message === 'next threw'), { msg: /source failed/ })
  t.same(await all((await open(`${url}/rejects`)).events), [{ data: 'one' }])
  t.match(await logs.waitFor(l => l.level === ERROR && l.err?.message === 'source broke'), { msg: /source failed/ })
  t.same(await all((await open(`${url}/refused`)).events), [{ data: 'ok' }], 'nothing of the refused item')
  t.match(await logs.waitFor(l => l.level === ERROR && l.err?.field === 'event'), { msg: /item refused/ })
  const aborted = await open(`${url}/aborted`)
  await take(aborted.events, 1)
  aborted.res.body.destroy()
  await stopped.promise
  t.match(await logs.waitFor(l => l.level === DEBUG && l.err?.message === 'aborted'), { msg: /stopped after the stream closed/ })
  t.equal(logs.at(ERROR).filter(l => l.err?.message === 'aborted').length, 0, 'not logged as an error')
})

t.test('heartbeat: a comment after `heartbeat` ms of silence, counted from the last write', async t => {
  t.setTimeout(20_000)
  const { app, url } = await startApp(app => {
    app.get('/quiet', async function * (req) {
      await new Promise(resolve => setTimeout(resolve, 30))
      yield { data: 'one' }
      await new Promise((_resolve, reject) => req.signal.addEventListener('abort', reject))
    })
  }, { heartbeat: 50 })
  t.teardown(() => app.close())
  const res = await request(`${url}/quiet`)
  const comments: string[] = []
  const beat = deferred()
  const events = parseEventStream(res.body, { onComment: c => { comments.push(c); beat.resolve() } })[Symbol.asyncIterator]()
  t.same(await take(events, 1), [{ data: 'one' }])
  const reading = events.next()
  await beat.promise
  t.same(comments, [''], 'a bare `:` line')
  res.body.destroy()
  await reading.catch(() => undefined)
})

t.test('HTTP/2: no connection header', async t => {
  t.setTimeout(20_000)
  const app = Fastify({ http2: true })
  await app.register(ssePlugin)
  app.get('/h2', (_req, reply) => reply.sse([{ data: 'over h2' }]))
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const { port } = app.server.address() as { port: number }
  const session = h2connect(`http://127.0.0.1:${port}`)
  t.teardown(() => session.close())
  const stream = session.request({ ':path': '/h2' })
  const [headers] = await new Promise<[Record<string, unknown>]>(resolve => stream.once('response', h => resolve([h])))
  t.equal(headers['content-type'], 'text/event-stream; charset=utf-8')
  t.equal(headers.connection, undefined)
  t.same(await all(parseEventStream(stream)[Symbol.asyncIterator]()), [{ data: 'over h2' }])
})

t.test('stream options are validated, naming the option', async t => {
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ heartbeat: 0 }, 'heartbeat'], [{ heartbeat: 2 ** 31 }, 'heartbeat'], [{ heartbeat: true }, 'heartbeat'],
    [{ retry: -5 }, 'retry'], [{ serialize: 'json' }, 'serialize']
  ]
  for (const [options, field] of cases) {
    const app = Fastify()
    const err = await app.register(ssePlugin, options).ready().then(() => undefined, (e: unknown) => e)
    t.match(err, { code: 'FST_SSE_INVALID_OPTION', field }, JSON.stringify(options))
    await app.close()
  }
  const app = Fastify()
  await app.register(ssePlugin, { heartbeat: false })
  app.get('/bad', (_req, reply) => reply.sse([{ data: 1 }], { retry: 1.5 }))
  const res = await app.inject('/bad')
  t.equal(res.statusCode, 500)
  t.match(res.json(), { code: 'FST_SSE_INVALID_OPTION', message: /"retry"/ })
  await app.close()
})

t.test('parser: bounded lines and events, a BOM in a string stream', async t => {
  const collect = async (chunks: string[], max: number) => {
    const out: unknown[] = []
    for await (const e of parseEventStream(chunks, { maxEventLength: max })) out.push(e)
    return out
  }
  t.same(await collect(['\uFEFFdata: a\n\n'], 100), [{ data: 'a' }], 'the BOM of a string stream is stripped')
  const split = ['data: a\r', '\ndata', ': b\n', ':x\n: y\ndata\n\n']
  const comments: string[] = []
  const withComments: unknown[] = []
  for await (const e of parseEventStream(split, { onComment: c => comments.push(c) })) withComments.push(e)
  t.same(withComments, [{ data: 'a\nb\n' }], 'CR then LF across chunks is one line break; a line split across chunks; a field with no colon')
  t.same(comments, ['x', 'y'])
  t.same(await collect(split, 100), withComments, 'comments without a listener')
  await t.rejects(collect(['data: ' + 'x'.repeat(50)], 20), SseParseError, 'a line that never ends')
  await t.rejects(collect(['data: 0123456789\ndata: 0123456789\n'], 20), { name: 'SseParseError', code: 'FST_SSE_PARSE', message: /event data longer than 20/ })
})

t.test('app.close() does not wait for a client that reads nothing', async t => {
  t.setTimeout(30_000)
  const arrived = deferred()
  let pulled = 0
  const { app, url } = await startApp(app => {
    app.get('/flood', async function * () {
      arrived.resolve()
      for (let i = 0; i < 100_000; i++) {
        pulled++
        yield { data: 'x'.repeat(64 * 1024) }
      }
    })
  }, { heartbeat: false })
  const raw = connect(Number(new URL(url).port), '127.0.0.1')
  t.teardown(() => raw.destroy())
  raw.pause()
  raw.write('GET /flood HTTP/1.1\r\nHost: localhost\r\n\r\n')
  await arrived.promise
  // the generator pauses once the socket is full
  let before = -1
  while (pulled !== before) {
    before = pulled
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  t.ok(pulled < 1000, `pulled ${pulled} items, then paused`)
  const closed = Date.now()
  await app.close()
  t.ok(Date.now() - closed < 5000, 'closed promptly')
})
