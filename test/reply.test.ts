import t from 'tap'
import { once } from 'node:events'
import { connect as netConnect } from 'node:net'
import { request } from 'undici'
import { acceptsEventStream } from '../lib/reply.js'
import { startApp } from './helpers.js'

// What reply.sse() answers before any event: the response head, chosen by the request.

/**
 * Writes `text` on a raw connection and returns everything the server sent until it closed the connection;
 * fails, naming what it got, if the server keeps it open for 5 s.
 */
async function exchange (url: string, text: string): Promise<string> {
  const socket = netConnect(Number(new URL(url).port), '127.0.0.1')
  socket.setEncoding('latin1')
  let received = ''
  socket.on('data', (chunk: string) => { received += chunk })
  socket.write(text)
  try {
    await once(socket, 'end', { signal: AbortSignal.timeout(5000) })
  } catch {
    throw new Error(`the server kept the connection open; it sent: ${JSON.stringify(received)}`)
  } finally {
    socket.destroy()
  }
  return received
}

t.test('HTTP/1.0: connection: close, no chunking, the body ends with the connection', async t => {
  t.setTimeout(10_000)
  const { app, url } = await startApp(app => {
    app.get('/two', async function * () {
      yield { data: 'a' }
      yield { data: 'b' }
    })
    // a connection header set before the stream: Node's own is what the response needs
    app.get('/own', { onRequest: async (request, reply) => { reply.header('connection', 'keep-alive') } }, async function * () {
      yield { data: 'a' }
      yield { data: 'b' }
    })
  })
  t.teardown(() => app.close())
  for (const path of ['/two', '/own']) {
    const response = await exchange(url, `GET ${path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n`)
    const [head, body] = response.split('\r\n\r\n') as [string, string]
    t.match(head, /^HTTP\/1\.1 200 OK\r\n/)
    t.match(head, /\r\nconnection: close(\r\n|$)/i, `${path}: connection: close`)
    t.notMatch(head, /keep-alive|transfer-encoding/i, 'neither keep-alive nor chunking')
    t.equal(body, 'data: a\n\ndata: b\n\n', 'the events, unchunked, then the server closed the connection')
  }
})

t.test('HTTP/1.1: keep-alive on a persistent connection, close when the client asked to close', async t => {
  t.setTimeout(10_000)
  const { app, url } = await startApp(app => {
    app.get('/one', async function * () {
      yield { data: 'a' }
    })
    // set before the stream: made what Node would write (the client decides, not a header set for other replies)
    app.get('/own', { onRequest: async (request, reply) => { reply.header('connection', 'close') } }, async function * () {
      yield { data: 'a' }
    })
    // through Fastify's send path too: the head is written by Fastify there, by the stream on the direct path
    app.register(async app => {
      app.addHook('onSend', async (request, reply, payload) => payload)
      app.get('/hooked', async function * () {
        yield { data: 'a' }
      })
    })
  })
  t.teardown(() => app.close())
  for (const path of ['/one', '/hooked', '/own']) {
    const closing = await exchange(url, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`)
    const [head, body] = closing.split('\r\n\r\n') as [string, string]
    t.match(head, /\r\nconnection: close(\r\n|$)/i, `${path}: connection: close, as the client asked`)
    t.notMatch(head, /keep-alive/i)
    t.match(body, /data: a\n\n/, 'the event, then the server closed the connection')

    const res = await request(url + path)
    t.equal(res.headers.connection, 'keep-alive', `${path}: a persistent connection says so`)
    t.equal(res.headers['keep-alive'], undefined, 'without a keep-alive hint, which would hold app.close()')
    t.equal(await res.body.text(), 'data: a\n\n')
  }
})

t.test('the last request maxRequestsPerSocket allows on a connection: close, even over a header set before', async t => {
  t.setTimeout(10_000)
  const { app, url } = await startApp(app => {
    app.get('/own', { onRequest: async (request, reply) => { reply.header('connection', 'keep-alive') } }, async function * () {
      yield { data: 'a' }
    })
  }, {}, { maxRequestsPerSocket: 2 })
  t.teardown(() => app.close())
  const request = 'GET /own HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'
  const response = await exchange(url, request + request)
  const heads = response.split('\r\n\r\n').filter(part => part.startsWith('HTTP/1.1'))
  t.equal(heads.length, 2, 'both answered on the one connection')
  t.match(heads[0], /\r\nconnection: keep-alive(\r\n|$)/i, 'the first keeps it')
  t.match(heads[1], /\r\nconnection: close(\r\n|$)/i, 'the second closes it, as Node would say, and does')
})

t.test('Accept: which headers let a request stream (the most specific range decides)', async t => {
  const cases: Array<[string | undefined, boolean]> = [
    [undefined, true],
    ['', true],
    ['text/event-stream', true],
    ['TEXT/Event-Stream', true],
    ['text/event-stream; charset=utf-8', true],
    ['*/*', true],
    ['text/*', true],
    ['text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8', true],
    ['application/json, text/plain, */*', true],
    ['*/*;q=0, text/event-stream', true],
    ['text/event-stream;q=0.1, text/event-stream;q=0', true],
    ['text/event-stream;q=oops', true],
    ['application/json', false],
    ['text/plain', false],
    ['text/event-stream;q=0', false],
    ['text/*, text/event-stream;q=0', false],
    ['*/*;q=0', false],
    ['*/*, text/*;q=0', false]
  ]
  for (const [accept, streams] of cases) {
    t.equal(acceptsEventStream(accept), streams, `${String(accept)}: ${streams ? 'streams' : '406'}`)
  }
})

t.test('an Accept that rules out text/event-stream gets a 406 before any limit; the source is stopped', async t => {
  t.setTimeout(10_000)
  let ran = false
  const { app, url } = await startApp(app => {
    const channel = app.sse.channel('negotiated')
    app.get('/gen', async function * () {
      ran = true
      yield { data: 'never' }
    })
    app.get('/sub', (_request, reply) => reply.sse(channel.subscribe()))
    app.get('/hold', (_request, reply) => reply.sse(app.sse.channel('held').subscribe()))
  }, { maxConnections: 1 })
  t.teardown(() => app.close())
  const held = await request(url + '/hold') // the one stream the limit allows: any other would get a 503
  t.equal(held.statusCode, 200)
  const gen = await request(url + '/gen', { headers: { accept: 'application/json' } })
  t.equal(gen.statusCode, 406)
  t.match(await gen.body.json(), {
    statusCode: 406,
    code: 'FST_SSE_NOT_ACCEPTABLE',
    message: /^GET \/gen answers with text\/event-stream only, which the request's Accept header rules out$/
  })
  t.notOk(ran, 'the generator never ran')
  const sub = await request(url + '/sub', { headers: { accept: 'text/*;q=0' } })
  t.equal(sub.statusCode, 406)
  await sub.body.dump()
  t.equal(app.sse.channel('negotiated').size, 0, 'the subscription was dropped')
  const limited = await request(url + '/gen', { headers: { accept: 'text/event-stream' } })
  t.equal(limited.statusCode, 503, 'an acceptable request meets the limit (maxConnections: 1, held)')
  t.match(await limited.body.json(), {
    statusCode: 503,
    code: 'FST_SSE_MAX_CONNECTIONS',
    error: 'Service Unavailable',
    message: /the limit of 1 open streams \(maxConnections\) is reached/
  })
})
