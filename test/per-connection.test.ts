import t from 'tap'
import { once } from 'node:events'
import {
  connect as http2Connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type Http2ServerRequest,
  type Http2Session
} from 'node:http2'
import type { Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import Fastify, { type FastifyRequest } from 'fastify'
import ssePlugin from '../lib/index.js'
import type { SseItem } from '../lib/index.js'
import { AdmissionGate } from '../lib/admission.js'
import { deferred, startApp, within } from './helpers.js'
import { GET, portOf, rawClient, statusOf } from './support/raw-http.js'
import { streamsOpenOn } from '../lib/per-connection.js'

// The bounds on new streams: what one HTTP/1.1 connection may queue by pipelining, the streams one HTTP/2
// session may hold (`maxStreamsPerConnection`), and the rate new streams are admitted at (`admission`). Each is
// shown over real sockets: a bounded number of sources start, and other clients still get streams.

/** An endless stream that counts the generators entered and the finally blocks run. */
interface Counted {
  entered: number
  finals: number
  handler: (request: { signal: AbortSignal }) => AsyncGenerator<SseItem<string>>
  /** Settles once `entered` or `finals` reaches `n`. */
  reached: (kind: 'entered' | 'finals', n: number) => Promise<void>
}

function counted (): Counted {
  const waiting: Array<{ kind: 'entered' | 'finals', n: number, resolve: () => void }> = []
  const bump = (kind: 'entered' | 'finals'): void => {
    counts[kind]++
    for (const w of waiting) if (w.kind === kind && counts[kind] >= w.n) w.resolve()
  }
  const counts: Counted = {
    entered: 0,
    finals: 0,
    handler: async function * (request: { signal: AbortSignal }): AsyncGenerator<SseItem<string>> {
      bump('entered')
      try {
        yield { data: 'open' }
        await sleep(3_600_000, undefined, { signal: request.signal })
      } catch {
        // aborted: the client left or the server is closing
      } finally {
        bump('finals')
      }
    },
    reached: async (kind, n) => {
      if (counts[kind] >= n) return
      await new Promise<void>(resolve => { waiting.push({ kind, n, resolve }) })
    }
  }
  return counts
}

/** Everything a raw connection receives, and a promise of the moment it holds `n` copies of `text`. */
function received (socket: Socket): { text: () => string, count: (text: string, n: number) => Promise<string> } {
  let all = ''
  const waiting: Array<{ text: string, n: number, resolve: (all: string) => void }> = []
  socket.setEncoding('latin1')
  socket.on('data', (chunk: string) => {
    all += chunk
    for (const w of waiting) if (all.split(w.text).length > w.n) w.resolve(all)
  })
  return {
    text: () => all,
    count: async (text, n) => all.split(text).length > n
      ? all
      : await new Promise<string>(resolve => { waiting.push({ text, n, resolve }) })
  }
}

t.test('one connection pipelining 1,000 streams: one source runs, the connection is closed past the cap, others stream', async t => {
  t.setTimeout(30_000)
  const counts = counted()
  let calls = 0
  const { app, logs } = await startApp(app => {
    app.get('/events', (request, reply) => {
      calls++
      return reply.sse(counts.handler(request))
    })
  }, { maxConnections: 10, maxStreamsPerConnection: 100 })
  t.teardown(() => app.close())
  const port = portOf(app)
  const socket = rawClient(port, GET('/events').repeat(1000))
  socket.resume()
  await within(new Promise(resolve => socket.once('close', resolve)), 10_000, 'the server did not close the connection past the cap')
  await within(counts.reached('finals', counts.entered), 5000, 'every generator entered ran its finally')
  t.equal(counts.entered, 1, 'only the stream being answered started its source')
  t.ok(calls >= 100 && calls < 1000, `the server took ${calls} of the 1,000 requests off the connection`)
  t.equal(app.sse.stats().rejectedByReason['max streams per connection'], 1, 'one refusal: the request past the cap')
  await within(logs.waitFor(l => l.msg === 'SSE connection closed: the limit of 100 streams on one connection ' +
    '(maxStreamsPerConnection) is reached by pipelined requests'), 1000, 'no warning')
  let dropped = 0
  await within(logs.waitFor(l => l.msg.startsWith('SSE stream dropped') && ++dropped === 99), 5000,
    'the 99 waiting requests were let go')
  t.equal(app.sse.stats().open, 0, 'no slot is held')
  const others = await Promise.all(Array.from({ length: 10 }, () => statusOf(port)))
  t.same(new Set(others), new Set([200]), 'ten other clients get streams under maxConnections 10')
})

t.test('a connection at the cap keeps its streams; one more request closes it, and everything is let go', async t => {
  t.setTimeout(20_000)
  const counts = counted()
  const requests: FastifyRequest[] = []
  const third = deferred()
  const { app, logs } = await startApp(app => {
    app.get('/events', (request, reply) => {
      requests.push(request)
      reply.sse(counts.handler(request))
      if (requests.length === 3) third.resolve()
      return reply
    })
  }, { maxStreamsPerConnection: 3 })
  t.teardown(() => app.close())
  const port = portOf(app)
  const socket = rawClient(port, GET('/events').repeat(3))
  socket.resume()
  await within(Promise.all([counts.reached('entered', 1), third.promise]), 10_000, 'the first stream, and the two behind it')
  t.notOk(requests.some(r => r.raw.socket.destroyed), 'three streams on one connection: kept')
  t.notOk(logs.lines.some(l => l.msg.startsWith('SSE connection closed')), 'no refusal')
  socket.write(GET('/events'))
  await within(new Promise(resolve => socket.once('close', resolve)), 10_000, 'the fourth did not close the connection')
  await within(counts.reached('finals', 1), 5000, 'the stream was not stopped')
  t.equal(counts.entered, 1, 'the waiting ones never started')
  t.equal(requests.length, 4)
  let dropped = 0
  await within(logs.waitFor(l => l.msg.startsWith('SSE stream dropped') && ++dropped === 2), 5000, 'the two waiting requests were not let go')
  t.ok(requests.every(r => r.signal.aborted), 'every request let go has its signal aborted, the one past the cap too')
  t.equal(app.sse.stats().rejectedByReason['max streams per connection'], 1)
  t.equal(await statusOf(port), 200, 'the server goes on streaming')
})

t.test('a waiting stream whose turn comes while the server closes is refused; app.close() does not wait', async t => {
  t.setTimeout(20_000)
  const counts = counted()
  const { app } = await startApp(app => {
    app.get('/events', counts.handler)
  })
  const socket = rawClient(portOf(app), GET('/events').repeat(3))
  const got = received(socket)
  await within(counts.reached('entered', 1), 10_000, 'the first stream')
  const closed = app.close()
  await within(closed, 5000, 'app.close() waited for the waiting streams')
  const text = await within(got.count('HTTP/1.1 503', 1), 5000, 'no 503')
  await within(new Promise(resolve => { if (socket.closed) resolve(null); else socket.once('close', resolve) }), 5000, 'the connection was kept')
  t.match(text, /HTTP\/1.1 503 Service Unavailable\r\n(.*\r\n)*connection: close\r\n/i, 'the 503 closes the connection')
  t.match(text, /"code":"FST_SSE_SERVER_CLOSING"/)
  t.equal(got.text().split('HTTP/1.1 ').length, 3, 'two answers: the stream, the 503; the third request went with the connection')
  t.equal(counts.entered, 1, 'no waiting generator was entered')
  t.equal(counts.finals, 1)
  t.equal(app.sse.stats().rejectedByReason['server closing'], 1, 'refused when its turn came')
})

t.test('a waiting request whose source throws at its turn gets the 500 it gets alone; the process goes on', async t => {
  t.setTimeout(20_000)
  const { app, logs } = await startApp(app => {
    app.get('/once', (_request, reply) => reply.sse([{ data: 'once' }]))
    app.get('/bad', (_request, reply) => reply.sse({ [Symbol.asyncIterator] (): never { throw new Error('boom') } }))
  })
  t.teardown(() => app.close())
  const port = portOf(app)
  t.equal(await statusOf(port, '/bad'), 500, 'alone: a 500')
  const socket = rawClient(port, GET('/once') + GET('/bad'))
  t.teardown(() => socket.destroy())
  const got = received(socket)
  const text = await within(got.count('"message":"boom"', 1), 10_000, 'no answer to the waiting request')
  t.match(text, /^HTTP\/1.1 200 OK\r\n[^]*data: once\n\n[^]*HTTP\/1.1 500 Internal Server Error\r\n/, 'the stream, then the 500')
  t.equal(text.split('HTTP/1.1 500').length, 2, 'one error answer')
  t.ok(logs.lines.some(l => l.level === 50 && l.msg === 'boom'), 'logged by Fastify, as any handler error')
  t.equal(await statusOf(port, '/once'), 200, 'the server goes on')
  t.equal(app.sse.stats().open, 0, 'no slot held')
})

t.test('a waiting request Fastify answered already (its handler threw after reply.sse()) starts nothing at its turn', async t => {
  t.setTimeout(20_000)
  const release = deferred()
  const failed = deferred()
  const counts = counted()
  const { app } = await startApp(app => {
    app.get('/held', async function * () {
      yield { data: 'held' }
      await release.promise
    })
    app.get('/fails', (request, reply) => {
      reply.sse(counts.handler(request))
      failed.resolve()
      throw new Error('after reply.sse()')
    })
  }, { admission: { rate: 0.001, burst: 2 } })
  t.teardown(() => app.close())
  const socket = rawClient(portOf(app), GET('/held') + GET('/fails'))
  t.teardown(() => socket.destroy())
  const got = received(socket)
  await within(Promise.all([got.count('data: held', 1), failed.promise]), 10_000, 'the first stream, and the handler behind it')
  release.resolve()
  const text = await within(got.count('"message":"after reply.sse()"', 1), 10_000, 'no error answer')
  t.match(text, /HTTP\/1.1 500 Internal Server Error\r\n/, 'Fastify\'s answer')
  t.equal(text.split('HTTP/1.1 ').length, 3, 'two answers: the stream, the 500')
  t.equal(counts.entered, 0, 'its source never started')
  t.equal(app.sse.stats().opened, 1, 'not counted opened')
  t.equal(app.sse.stats().open, 0, 'no slot held')
  t.equal(await statusOf(portOf(app), '/held'), 200, 'its admission token was not spent: the second one is left')
})

t.test('a pipelined request spends its admission token at its turn, not while it waits', async t => {
  t.setTimeout(20_000)
  const release = deferred()
  const { app } = await startApp(app => {
    app.get('/held', async function * () {
      yield { data: 'held' }
      await release.promise
    })
    app.get('/once', (_request, reply) => reply.sse([{ data: 'once' }]))
  }, { admission: { rate: 0.001, burst: 2 } })
  t.teardown(() => app.close())
  const socket = rawClient(portOf(app), GET('/held') + GET('/once'))
  t.teardown(() => socket.destroy())
  const got = received(socket)
  await within(got.count('data: held', 1), 10_000, 'the first stream')
  t.equal(await statusOf(portOf(app), '/once'), 200, 'another client takes the second token while the request waits')
  release.resolve()
  const text = await within(got.count('HTTP/1.1 503', 1), 10_000, 'the waiting request was not refused at its turn')
  t.match(text, /"code":"FST_SSE_ADMISSION"/)
  t.equal(app.sse.stats().rejectedByReason.admission, 1)
})

t.test('a HEAD request spends no admission token, answered at once or at its turn', async t => {
  t.setTimeout(20_000)
  const release = deferred()
  const { app, url } = await startApp(app => {
    app.get('/held', async function * () {
      yield { data: 'held' }
      await release.promise
    })
  }, { admission: { rate: 0.001, burst: 2 } })
  t.teardown(() => app.close())
  const HEAD = (path: string): string => GET(path).replace('GET', 'HEAD')
  for (let i = 0; i < 3; i++) t.equal((await request(url + '/held', { method: 'HEAD' })).statusCode, 200, `HEAD ${i + 1}`)
  const socket = rawClient(portOf(app), GET('/held') + HEAD('/held') + HEAD('/held'))
  t.teardown(() => socket.destroy())
  const got = received(socket)
  await within(got.count('data: held', 1), 10_000, 'the first stream')
  release.resolve()
  const text = await within(got.count('HTTP/1.1 200 OK', 3), 10_000, 'the waiting HEAD requests were not answered')
  t.notMatch(text, /HTTP\/1.1 503/)
  t.equal(await statusOf(portOf(app), '/held'), 200, 'one token was spent, by the GET: the second is left')
  t.equal(await statusOf(portOf(app), '/held'), 503, 'then none')
})

t.test('a waiting reply: a second reply.sse() is refused, an async handler is not answered twice', async t => {
  t.setTimeout(20_000)
  const warned = deferred()
  const returned = deferred()
  const { app, logs } = await startApp(app => {
    app.get('/events', async function * (request) {
      yield { data: 'open' }
      await sleep(3_600_000, undefined, { signal: request.signal }).catch(() => {})
    })
    app.get('/twice', async (_request, reply) => {
      reply.sse([{ data: 'first' }])
      const second = {
        * [Symbol.iterator] () {
          try {
            yield { data: 'never' }
          } finally {
            returned.resolve()
          }
        }
      }
      reply.sse(second)
      warned.resolve()
    })
  })
  t.teardown(() => app.close())
  const socket = rawClient(portOf(app), GET('/events') + GET('/twice'))
  socket.resume()
  await within(warned.promise, 10_000, 'the handler ran')
  await within(logs.waitFor(l => l.msg === 'reply.sse() called on a reply already sent'), 5000, 'no warning')
  t.notOk(logs.lines.some(l => l.level >= 50), 'no error: Fastify did not answer the waiting reply itself')
  socket.destroy()
  await within(logs.waitFor(l => l.msg.startsWith('SSE stream dropped')), 5000, 'the waiting stream was not let go')
})

t.test('a handlerTimeout does not destroy a stream that waits for its turn', async t => {
  t.setTimeout(20_000)
  const { app } = await startApp(app => {
    app.get('/events', async function * () {
      yield { data: 'open' }
      await sleep(300)
    })
  }, {}, { handlerTimeout: 100 } as object)
  t.teardown(() => app.close())
  const socket = rawClient(portOf(app), GET('/events').repeat(2))
  let text = ''
  socket.setEncoding('latin1')
  const done = new Promise<void>(resolve => {
    socket.on('data', (chunk: string) => {
      text += chunk
      if (text.split('data: open').length === 3) resolve()
    })
  })
  await within(done, 10_000, 'the second stream, waiting longer than handlerTimeout, was answered')
  socket.destroy()
  t.notMatch(text, /HTTP\/1.1 5\d\d/, 'no error answer')
})

async function h2Session (port: number): Promise<ClientHttp2Session> {
  const session = http2Connect(`http://127.0.0.1:${port}`)
  session.on('error', () => {})
  await once(session, 'connect')
  return session
}

/** Opens a stream on `session`: its status, and its body once it ends. */
async function h2Open (session: ClientHttp2Session, path = '/events'): Promise<{ status: number, stream: ClientHttp2Stream, headers: Record<string, unknown> }> {
  const stream = session.request({ ':path': path, accept: 'text/event-stream' })
  stream.on('error', () => {})
  const [headers] = await once(stream, 'response') as [Record<string, unknown>]
  return { status: headers[':status'] as number, stream, headers }
}

async function bodyOf (stream: ClientHttp2Stream): Promise<string> {
  let body = ''
  stream.setEncoding('utf8')
  for await (const chunk of stream) body += chunk as string
  return body
}

t.test('HTTP/2: one session holds at most maxStreamsPerConnection streams; its streams free their places', async t => {
  t.setTimeout(20_000)
  const counts = counted()
  const app = Fastify({ http2: true })
  await app.register(ssePlugin, { maxStreamsPerConnection: 5 })
  app.get('/events', counts.handler)
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = portOf(app)
  const session = await h2Session(port)
  t.teardown(() => session.destroy())
  const opened = await Promise.all(Array.from({ length: 8 }, () => h2Open(session)))
  const statuses = opened.map(o => o.status).sort()
  t.same(statuses, [200, 200, 200, 200, 200, 503, 503, 503], 'five streams, three refused')
  const refused = opened.find(o => o.status === 503) as { stream: ClientHttp2Stream, headers: Record<string, unknown> }
  t.equal(refused.headers['retry-after'], '5')
  t.match(JSON.parse(await bodyOf(refused.stream)), {
    statusCode: 503,
    code: 'FST_SSE_MAX_STREAMS_PER_CONNECTION',
    message: /the limit of 5 streams on one connection \(maxStreamsPerConnection\) is reached/
  })
  t.equal(counts.entered, 5, 'the refused streams started no source')
  t.equal(app.sse.stats().rejectedByReason['max streams per connection'], 3)
  const other = await h2Session(port)
  t.teardown(() => other.destroy())
  t.equal((await h2Open(other)).status, 200, 'another session is not held to the first one\'s count')
  // a stream that ends frees its place on the session
  const open = opened.find(o => o.status === 200) as { stream: ClientHttp2Stream }
  open.stream.close(constants.NGHTTP2_CANCEL)
  await within(counts.reached('finals', 1), 5000, 'the cancelled stream ended')
  t.equal((await h2Open(session)).status, 200, 'the session has a place again')
})

t.test('HTTP/2: a stream reset while its handler ran is not counted; without a limit nothing is', async t => {
  t.setTimeout(20_000)
  for (const maxStreamsPerConnection of [1, Infinity]) {
    const entered = deferred()
    const sent = deferred()
    const app = Fastify({ http2: true })
    await app.register(ssePlugin, { maxStreamsPerConnection })
    app.get('/events', async function * (request) {
      yield { data: 'open' }
      await sleep(3_600_000, undefined, { signal: request.signal }).catch(() => {})
    })
    app.get('/late', async (request, reply) => {
      entered.resolve()
      const stream = (request.raw as unknown as { stream: ClientHttp2Stream }).stream
      if (!stream.closed) await once(stream, 'close')
      reply.sse([{ data: 'never sent' }])
      sent.resolve()
      return reply
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const session = await h2Session(portOf(app))
    const late = session.request({ ':path': '/late', accept: 'text/event-stream' })
    late.on('error', () => {})
    await within(entered.promise, 5000, 'the handler was not entered')
    late.close(constants.NGHTTP2_CANCEL)
    await within(sent.promise, 5000, 'the handler did not go on')
    t.equal((await h2Open(session)).status, 200, `maxStreamsPerConnection ${maxStreamsPerConnection}: the session's place is free`)
    session.destroy()
    await app.close()
  }
})

t.test('admission: a burst above the rate is refused with 503 and a Retry-After within the spread', async t => {
  t.setTimeout(20_000)
  const counts = counted()
  const { app, url } = await startApp(app => {
    app.get('/events', counts.handler)
  }, { admission: { rate: 0.01, burst: 3, spread: 4 }, retryAfter: 2 })
  t.teardown(() => app.close())
  const responses = await Promise.all(Array.from({ length: 12 }, () => request(url + '/events', { headers: { accept: 'text/event-stream' } })))
  const admitted = responses.filter(r => r.statusCode === 200)
  const refused = responses.filter(r => r.statusCode === 503)
  t.equal(admitted.length, 3, 'the burst is admitted')
  t.equal(refused.length, 9, 'the rest refused')
  const retries = refused.map(r => Number(r.headers['retry-after']))
  t.ok(retries.every(s => Number.isInteger(s) && s >= 2 && s <= 6), `Retry-After from retryAfter 2 to 2 + spread 4: ${retries.join(', ')}`)
  for (const r of refused) {
    t.match(await r.body.json(), { statusCode: 503, code: 'FST_SSE_ADMISSION', message: /admission rate/ })
  }
  for (const r of admitted) r.body.destroy()
  t.equal(counts.entered, 3, 'no refused source started')
  t.equal(app.sse.stats().rejectedByReason.admission, 9, 'counted by reason')
})

t.test('admission: the bucket refills at its rate, up to its burst; the spread is uniform', async t => {
  const gate = new AdmissionGate({ rate: 10, burst: 2, spread: 3 }, 5, 0)
  t.same([gate.admit(0), gate.admit(0), gate.admit(0)], [true, true, false], 'the burst, then empty')
  t.equal(gate.admit(50), false, 'half a token after 50 ms at 10/s')
  t.equal(gate.admit(100), true, 'a whole one after 100 ms')
  t.same([gate.admit(10_000), gate.admit(10_000), gate.admit(10_000)], [true, true, false], 'never more than the burst')
  t.same([gate.retryAfter(0), gate.retryAfter(0.5), gate.retryAfter(0.999)], [5, 7, 8], 'retryAfter plus 0 to spread')
  t.equal(new AdmissionGate({ rate: 1, burst: 1, spread: 0 }, 5).retryAfter(), 5, 'no spread: retryAfter itself')
})

t.test('the options are checked, naming the field', async t => {
  const bad: Array<[object, RegExp]> = [
    [{ maxStreamsPerConnection: 0 }, /"maxStreamsPerConnection" must be a whole number of streams >= 1 \(or Infinity\), got 0/],
    [{ maxStreamsPerConnection: '10' }, /"maxStreamsPerConnection" .*got "10" \(string\)/],
    [{ admission: 5 }, /"admission" must be an object \{ rate, burst\?, spread\? \}, got 5/],
    [{ admission: null }, /"admission" must be an object/],
    [{ admission: {} }, /"admission.rate" must be a number of new streams per second > 0, got undefined/],
    [{ admission: { rate: 0 } }, /"admission.rate" .*got 0/],
    [{ admission: { rate: Infinity } }, /"admission.rate" .*got Infinity/],
    [{ admission: { rate: 1, burst: 0 } }, /"admission.burst" must be a whole number of streams >= 1, got 0/],
    [{ admission: { rate: 1, burst: 1.5 } }, /"admission.burst"/],
    [{ admission: { rate: 1, spread: -1 } }, /"admission.spread" must be a whole number of seconds >= 0, got -1/],
    [{ admission: { rate: 1, bursts: 2 } }, /"bursts" is not an option of the plugin's admission \(its options: rate, burst, spread\)/],
    [{ maxStreamPerConnection: 10 }, /"maxStreamPerConnection" is not an option of the plugin/]
  ]
  for (const [options, message] of bad) {
    await t.rejects(async () => { await Fastify().register(ssePlugin, options as never) }, { code: 'FST_SSE_INVALID_OPTION', message }, JSON.stringify(options))
  }
  const good = [
    { maxStreamsPerConnection: Infinity },
    { admission: { rate: 0.5 } },
    { admission: { rate: 100, burst: 1, spread: 0 } }
  ]
  for (const options of good) {
    const app = Fastify()
    await app.register(ssePlugin, options)
    await app.ready()
    t.pass(`${JSON.stringify(options)} is accepted`)
    await app.close()
  }
})

t.test('HTTP/2: a session destroyed frees its count', async t => {
  t.setTimeout(20_000)
  const counts = counted()
  let serverSession: Http2Session | undefined
  const app = Fastify({ http2: true })
  await app.register(ssePlugin, { maxStreamsPerConnection: 3 })
  app.get('/events', (request, reply) => {
    serverSession = (request.raw as unknown as Http2ServerRequest).stream.session
    return reply.sse(counts.handler(request))
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const session = await h2Session(portOf(app))
  const opened = await Promise.all(Array.from({ length: 3 }, () => h2Open(session)))
  t.same(opened.map(o => o.status), [200, 200, 200])
  t.equal(streamsOpenOn(serverSession as Http2Session), 3, 'three counted')
  session.destroy()
  await within(counts.reached('finals', 3), 5000, 'the streams did not end with their session')
  t.equal(streamsOpenOn(serverSession as Http2Session), 0, 'the count is freed')
})
