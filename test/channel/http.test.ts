// Channels over real sockets: undici, the `eventsource` client (reconnect with Last-Event-ID) and a raw TCP
// socket that never reads. Plus the plugin-wide maxConnections limit and the 204 "stop reconnecting" answer.
import t from 'tap'
import { EventSource } from 'eventsource'
import { getEventListeners } from 'node:events'
import { connect, type Socket } from 'node:net'
import { PassThrough } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import ssePlugin, { parseEventStream, type Channel, type SseError } from '../../lib/index.js'
import Fastify from 'fastify'
import { all, deferred, ERROR, open, startApp, take, WARN, within } from '../helpers.js'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

/** Polls `check` (every few ms, bounded) for state that has no event of its own, such as `channel.size`. */
async function until (check: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

t.test('N subscribers over HTTP receive identical, ordered items', async t => {
  t.setTimeout(20_000)
  let chat!: Channel<{ n: number }>
  const { app, url } = await startApp(app => {
    chat = app.sse.channel<{ n: number }>('chat')
    app.get('/chat', (req, reply) => reply.sse(chat.subscribe({ lastEventId: req.headers['last-event-id'], signal: req.signal })))
  })
  t.teardown(() => app.close())
  const clients = await Promise.all(Array.from({ length: 20 }, () => open(`${url}/chat`)))
  t.equal(chat.size, 20, 'subscribed by the time the headers arrived')
  const ids: string[] = []
  for (let n = 0; n < 50; n++) ids.push(chat.publish({ event: 'm', data: { n } }))
  const got = await Promise.all(clients.map(c => take(c.events, 50)))
  t.ok(got.every(events => JSON.stringify(events) === JSON.stringify(got[0])), 'identical')
  t.same(got[0], ids.map((id, n) => ({ id, event: 'm', data: JSON.stringify({ n }) })), 'all of them, in order')
  for (const c of clients) c.res.body.destroy()
  await until(() => chat.size === 0, 'size 0')
  t.equal(chat.size, 0, 'size back to 0 after the clients left')
})

t.test('eventsource client: forced disconnects, resumed by Last-Event-ID, lose and duplicate nothing', async t => {
  t.setTimeout(30_000)
  let chat!: Channel<string>
  const sockets: Socket[] = []
  const headers: Array<string | undefined> = []
  let connected = deferred()
  const { app, url } = await startApp(app => {
    chat = app.sse.channel<string>('chat', { history: 1000 })
    app.get('/chat', (req, reply) => {
      headers.push(req.headers['last-event-id'] as string | undefined)
      sockets.push(req.raw.socket)
      reply.sse(chat.subscribe({ lastEventId: req.headers['last-event-id'], signal: req.signal }))
      connected.resolve()
      return reply
    })
  }, { retry: 10 })
  t.teardown(() => app.close())
  const received: Array<{ id: string, n: number }> = []
  const resets: string[] = []
  const waiters: Array<{ count: number, resolve: () => void }> = []
  const es = new EventSource(`${url}/chat`)
  t.teardown(() => es.close())
  es.addEventListener('sse-reset', e => resets.push(e.data))
  es.addEventListener('message', e => {
    received.push({ id: e.lastEventId, n: Number(e.data) })
    for (const w of waiters.filter(w => received.length >= w.count)) w.resolve()
  })
  const receivedCount = (count: number) => new Promise<void>(resolve => {
    if (received.length >= count) resolve()
    else waiters.push({ count, resolve })
  })
  await connected.promise
  const ids: string[] = []
  let n = 0
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 20; i++) ids.push(chat.publish({ data: String(n++) }))
    await receivedCount(n)
    connected = deferred()
    sockets.at(-1)?.destroy() // the server drops the connection (a proxy timeout, a deploy)
    for (let i = 0; i < 15; i++) ids.push(chat.publish({ data: String(n++) })) // published while it is away
    await connected.promise
  }
  for (let i = 0; i < 20; i++) ids.push(chat.publish({ data: String(n++) }))
  await receivedCount(n)
  t.equal(headers.length, 4, 'connected four times')
  t.equal(headers[0], undefined)
  t.same(headers.slice(1), [ids[19], ids[54], ids[89]], 'each reconnect said where it was')
  t.same(received.map(r => r.n), Array.from({ length: n }, (_, i) => i), 'every item once, in order')
  t.same(received.map(r => r.id), ids)
  t.same(resets, [])
})

t.test('sse-reset over HTTP: garbage and over-long Last-Event-ID, and what an EventSource sees', async t => {
  t.setTimeout(20_000)
  let chat!: Channel<string>
  const { app, url } = await startApp(app => {
    chat = app.sse.channel<string>('chat', { history: 5 })
    app.get('/chat', (req, reply) => reply.sse(chat.subscribe({ lastEventId: req.headers['last-event-id'], signal: req.signal })))
  })
  t.teardown(() => app.close())
  let position = chat.publish({ data: 'old' })
  for (const [header, reason] of [['garbage', 'unknown'], ['x'.repeat(10 * 1024), 'invalid'], ['1', 'unknown']]) {
    const { res, events } = await open(`${url}/chat`, { headers: { 'last-event-id': header } })
    t.equal(res.statusCode, 200)
    const live = chat.publish({ data: 'live' })
    t.same(await take(events, 2), [
      { id: position, event: 'sse-reset', data: JSON.stringify({ reason }) },
      { id: live, data: 'live' }
    ], `${reason}: one reset first, then live`)
    position = live
    res.body.destroy()
  }
  // an EventSource listener fires for it (it has data) and the next connection resumes from its id
  const resetSeen = deferred<MessageEvent>()
  const es = new EventSource(`${url}/chat`, {
    fetch: (input, init) => fetch(input, { ...init, headers: { ...init?.headers, 'Last-Event-ID': 'from-a-previous-server' } })
  })
  t.teardown(() => es.close())
  es.addEventListener('sse-reset', e => resetSeen.resolve(e))
  const event = await resetSeen.promise
  t.same(JSON.parse(event.data), { reason: 'unknown' })
  t.equal(event.lastEventId, position, 'carries the channel position as its id')
})

// On both paths: the head written directly, and Fastify's stream-send path (an onSend hook)
for (const path of ['direct', 'send'] as const) {
  t.test(`${path} path: a raw socket that never reads is cut off at its bound; the others keep receiving`, async t => {
    t.setTimeout(60_000)
    let slow!: Channel<string>
    const arrived = deferred()
    const { app, url, logs } = await startApp(app => {
      // an onSend hook puts the stream on Fastify's stream-send path; without one its head is written directly
      if (path === 'send') app.addHook('onSend', async (_request, _reply, payload) => payload)
      slow = app.sse.channel<string>('slow', { queueItems: 4 })
      app.get('/slow', (req, reply) => {
        reply.sse(slow.subscribe({ signal: req.signal }))
        arrived.resolve()
        return reply
      })
    }, { heartbeat: false })
    t.teardown(() => app.close())
    const reader = await open(`${url}/slow`)
    const { port } = new URL(url)
    const raw = connect(Number(port), '127.0.0.1')
    t.teardown(() => raw.destroy())
    raw.pause() // reads nothing: the kernel buffers fill, then the server's, then the subscriber's queue
    raw.write('GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n')
    await arrived.promise
    await until(() => slow.size === 2, 'two subscribers')
    const payload = 'x'.repeat(32 * 1024)
    const ids: string[] = []
    const read: Array<string | undefined> = []
    let cut = false
    for (let i = 0; i < 3000 && !cut; i++) {
      ids.push(slow.publish({ data: payload }))
      read.push((await take(reader.events, 1))[0]?.id)
      cut = logs.lines.some(l => l.level === WARN)
    }
    t.same(read, ids, 'the reader got every item, in order')
    t.ok(cut, `cut off after ${ids.length} items (${ids.length * 32} KiB)`)
    t.match(logs.at(WARN)[0], { channel: 'slow', queuedItems: 4, queueItems: 4, msg: /too slow/ })
    t.equal(slow.size, 1, 'only the reader is left')
    for (let round = 0; round < 3; round++) {
      // bursts up to the queue bound are fine for a client that reads
      for (let i = 0; i < 4; i++) ids.push(slow.publish({ data: 'after' }))
      t.same((await take(reader.events, 4)).map(e => e.id), ids.slice(-4), 'the reader keeps receiving')
    }
    t.equal(slow.size, 1)
    // the stuck client's connection was closed at once, not left open behind its full socket
    t.match(await logs.waitFor(l => l.msg === 'SSE stream closed' && l.reason === 'too slow'), { reason: 'too slow' })
    // when it finally reads: a gapless prefix of what the kernel had buffered, then the closed connection
    let text = ''
    const closed = new Promise<void>(resolve => {
      raw.on('data', (chunk: Buffer) => { text += chunk.toString('latin1') })
      raw.on('error', () => {}) // a reset is one way to learn that the server closed
      raw.on('close', () => resolve())
    })
    raw.resume()
    await closed
    const got = Array.from(text.matchAll(/^id: (.+)$/gm), m => m[1])
    t.ok(got.length > 0 && got.length < ids.length - 12, `it got ${got.length} of ${ids.length} items`)
    t.same(got, ids.slice(0, got.length), 'in order, no gap, then nothing')
    const paths = logs.lines.filter(l => l.msg === 'SSE stream opened').map(l => l.direct)
    t.same(paths, [path === 'direct', path === 'direct'])
  })
}

t.test('disconnects release everything: size 0, no abort listener left, over 200 HTTP connections', async t => {
  t.setTimeout(60_000)
  let chat!: Channel<number>
  const signals: AbortSignal[] = []
  const refs: Array<WeakRef<object>> = []
  const { app, url } = await startApp(app => {
    chat = app.sse.channel<number>('chat')
    app.get('/chat', (req, reply) => {
      signals.push(req.signal)
      const subscription = chat.subscribe({ lastEventId: req.headers['last-event-id'], signal: req.signal })
      refs.push(new WeakRef(subscription), new WeakRef(req), new WeakRef(reply))
      return reply.sse(subscription)
    })
    app.get('/gen', async function * (req, reply) {
      signals.push(req.signal)
      const subscription = chat.subscribe({ signal: req.signal })
      refs.push(new WeakRef(subscription), new WeakRef(req), new WeakRef(reply))
      yield * subscription
    })
  })
  t.teardown(() => app.close())
  for (let round = 0; round < 10; round++) {
    const clients = await Promise.all(Array.from({ length: 20 }, (_, i) => open(`${url}/${i % 2 === 0 ? 'chat' : 'gen'}`)))
    const id = chat.publish({ data: round })
    const got = await Promise.all(clients.map(async c => (await take(c.events, 1))[0]?.id))
    t.same(got, clients.map(() => id), `round ${round}: every client got the item`)
    for (const c of clients) c.res.body.destroy()
    await until(() => chat.size === 0, `size 0 after round ${round}`)
  }
  t.equal(chat.size, 0)
  t.equal(signals.length, 200)
  t.equal(signals.filter(s => getEventListeners(s, 'abort').length > 0).length, 0, 'no abort listener left on any request signal')
  signals.length = 0
  // a few rounds: an object can outlive one collection while a settled promise still points at it
  for (let round = 0; round < 20 && refs.filter(r => r.deref() !== undefined).length > 3; round++) {
    await new Promise(resolve => setImmediate(resolve))
    gc()
  }
  const alive = refs.filter(r => r.deref() !== undefined).length
  t.ok(alive <= 3, `subscriptions, requests and replies are garbage-collected (${alive} of ${refs.length} alive)`)
})

t.test('app.close() ends the streams of every channel subscriber', async t => {
  t.setTimeout(20_000)
  let chat!: Channel<string>
  const { app, url } = await startApp(app => {
    chat = app.sse.channel<string>('chat')
    app.get('/chat', (req, reply) => reply.sse(chat.subscribe({ signal: req.signal })))
  })
  const clients = await Promise.all([1, 2, 3].map(() => open(`${url}/chat`)))
  const id = chat.publish({ data: 'bye' })
  await app.close()
  for (const c of clients) t.same(await all(c.events), [{ id, data: 'bye' }], 'got what was published, then the end')
  t.ok(chat.closed)
})

t.test('publish(badItem) over HTTP: the publisher gets the TypeError, no subscriber gets anything', async t => {
  t.setTimeout(20_000)
  let chat!: Channel<unknown>
  const { app, url } = await startApp(app => {
    chat = app.sse.channel('chat')
    app.get('/chat', (req, reply) => reply.sse(chat.subscribe({ signal: req.signal })))
  })
  t.teardown(() => app.close())
  const { events } = await open(`${url}/chat`)
  t.type(t.throws(() => chat.publish({ event: 'x\ndata: evil', data: 1 })), TypeError)
  const cycle: Record<string, unknown> = {}
  cycle.self = cycle
  t.match(t.throws(() => chat.publish({ data: cycle })), { field: 'data' })
  const id = chat.publish({ data: 'good' })
  t.same(await take(events, 1), [{ id, data: 'good' }], 'the first thing on the wire is the good item')
})

t.test('maxConnections: 503 with Retry-After beyond the limit, the refused source is stopped', async t => {
  t.setTimeout(20_000)
  let chat!: Channel<string>
  let generatorRan = false
  const { app, url, logs } = await startApp(app => {
    chat = app.sse.channel<string>('chat')
    app.get('/chat', (req, reply) => reply.sse(chat.subscribe({ signal: req.signal })))
    app.get('/gen', async function * () {
      generatorRan = true
      yield { data: 'never' }
    })
    app.get('/array', (_req, reply) => reply.sse([{ data: 'a' }]))
  }, { maxConnections: 2, retryAfter: 7 })
  t.teardown(() => app.close())
  const first = await open(`${url}/chat`)
  await open(`${url}/chat`)
  for (const path of ['/chat', '/gen', '/array']) {
    const res = await request(`${url}${path}`)
    t.equal(res.statusCode, 503, path)
    t.equal(res.headers['retry-after'], '7')
    t.match(await res.body.json(), { statusCode: 503, message: /No event stream now \(the limit of 2 open streams \(maxConnections\) is reached\); retry later/ })
  }
  t.equal(chat.size, 2, 'the refused subscription was released')
  t.notOk(generatorRan, 'the refused generator never ran')
  t.match(logs.at(WARN)[0], { maxConnections: 2, msg: /refused/ })
  first.res.body.destroy()
  await until(() => chat.size === 1, 'one stream closed')
  await until(() => logs.lines.some(l => l.msg === 'SSE stream closed'), 'the stream to be unregistered')
  const again = await open(`${url}/chat`)
  t.equal(again.res.statusCode, 200, 'a slot is free again')
})

t.test('plugin options maxConnections and retryAfter are validated', async t => {
  const bad: Array<[Record<string, unknown>, string]> = [
    [{ maxConnections: -1 }, 'maxConnections'], [{ maxConnections: 1.5 }, 'maxConnections'], [{ maxConnections: '10' }, 'maxConnections'],
    [{ maxConnections: 0 }, 'maxConnections'], [{ retryAfter: -1 }, 'retryAfter'], [{ retryAfter: 0.5 }, 'retryAfter']
  ]
  for (const [options, field] of bad) {
    const app = Fastify()
    const err = await app.register(ssePlugin, options).ready().then(() => undefined, (e: SseError) => e)
    t.match(err, { code: 'FST_SSE_INVALID_OPTION', field }, JSON.stringify(options))
    await app.close()
  }
  // 0 would refuse every stream: a limit that turns the plugin off is refused as a mistake
})

t.test('204 from a handler (or a preHandler hook) tells an EventSource to stop reconnecting', async t => {
  t.setTimeout(20_000)
  let hits = 0
  const { app, url } = await startApp(app => {
    app.get('/feed', {
      preHandler: async (req, reply) => {
        hits++
        if ((req.query as { closed?: string }).closed === '1') await reply.code(204).send()
      }
    }, async function * () {
      yield { data: 'open' }
    })
  })
  t.teardown(() => app.close())
  const errored = deferred<{ code: number | undefined, state: number }>()
  const es = new EventSource(`${url}/feed?closed=1`)
  t.teardown(() => es.close())
  es.onerror = (e) => errored.resolve({ code: e.code, state: es.readyState })
  t.same(await errored.promise, { code: 204, state: EventSource.CLOSED }, 'closed for good')
  t.equal(hits, 1)
  const res = await request(`${url}/feed`)
  t.equal(res.statusCode, 200, 'the same route streams when the hook lets it')
  t.same(await all(parseEventStream(res.body)[Symbol.asyncIterator]()), [{ data: 'open' }])
})

t.test('POST routes: a generator handler with request.signal, or reply.sse without a signal, stay subscribed', async t => {
  t.setTimeout(20_000)
  let chat!: Channel<string>
  const { app, url } = await startApp(app => {
    chat = app.sse.channel<string>('chat')
    app.post('/gen', async function * (req) {
      yield * chat.subscribe({ signal: req.signal })
    })
    app.post('/plain', (_req, reply) => reply.sse(chat.subscribe()))
  })
  t.teardown(() => app.close())
  const post = { method: 'POST' as const, body: JSON.stringify({ a: 1 }), headers: { 'content-type': 'application/json' } }
  const clients = [await open(`${url}/gen`, post), await open(`${url}/plain`, post)]
  await until(() => chat.size === 2, 'both subscribed')
  const id = chat.publish({ data: 'x' })
  for (const c of clients) t.same(await take(c.events, 1), [{ id, data: 'x' }])
  for (const c of clients) c.res.body.destroy()
  await until(() => chat.size === 0, 'both released')
  t.equal(chat.size, 0, 'released when the clients leave')
})

t.test('a subscription that feeds a stream already is refused by a second reply.sse(); the first stream keeps it', async t => {
  t.setTimeout(10_000)
  let chat!: Channel<string>
  let shared: ReturnType<Channel<string>['subscribe']> | undefined
  const { app, url } = await startApp(app => {
    chat = app.sse.channel<string>('shared')
    app.get('/shared', (_req, reply) => {
      shared ??= chat.subscribe()
      return reply.sse(shared)
    })
  })
  t.teardown(() => app.close())
  const first = await open(`${url}/shared`)
  const second = await request(`${url}/shared`, { bodyTimeout: 5000 })
  t.equal(second.statusCode, 500, 'refused')
  t.match(await second.body.json(), {
    code: 'FST_SSE_INVALID_SOURCE', message: /GET \/shared: this channel subscription feeds a stream already/
  })
  chat.publish({ data: 'one' })
  t.same((await within(take(first.events, 1), 5000, 'the first stream gets the item')).map(e => e.data), ['one'])
})

t.test('a client that leaves a stream whose subscription ends with request.signal closed it: "client closed"', async t => {
  t.setTimeout(10_000)
  let chat!: Channel<string>
  const { app, url, logs } = await startApp(app => {
    chat = app.sse.channel<string>('leave')
    app.get('/leave', (req, reply) => reply.sse(chat.subscribe({ signal: req.signal })))
  })
  t.teardown(() => app.close())
  const client = await open(`${url}/leave`)
  await until(() => chat.size === 1, 'subscribed')
  chat.publish({ data: 'one' })
  t.same((await take(client.events, 1)).map(e => e.data), ['one'])
  client.res.body.destroy()
  t.match(await logs.waitFor(l => l.msg === 'SSE stream closed'), { reason: 'client closed', items: 1 })
  t.match(app.sse.stats().closed, { 'client closed': 1, 'source ended': 0 })
  t.equal(chat.size, 0, 'released')
})

t.test('a burst the socket takes is written within publish(): nothing queues, nobody is cut off', async t => {
  t.setTimeout(10_000)
  let burst!: Channel<number>
  const { app, url } = await startApp(app => {
    burst = app.sse.channel<number>('burst', { queueItems: 4 })
    app.get('/burst', (_req, reply) => reply.sse(burst.subscribe()))
  }, { heartbeat: false })
  t.teardown(() => app.close())
  const { events } = await open(`${url}/burst`)
  await until(() => burst.size === 1, 'subscribed')
  const ids = Array.from({ length: 10 }, (_, i) => burst.publish({ data: i }))
  t.equal(app.sse.stats().items, 10, 'every item written before publish() returned')
  t.same((await take(events, 10)).map(e => e.id), ids, 'all ten, in order')
  t.equal(burst.size, 1, 'still subscribed')
  t.equal(app.sse.stats().cutOffs, 0, 'more than queueItems in one burst, and no cut-off')
})

t.test('a burst beyond the queue bound ends a reading client cleanly; it resumes from the history', async t => {
  t.setTimeout(20_000)
  let burst!: Channel<number>
  const hold = deferred()
  const { app, url } = await startApp(app => {
    burst = app.sse.channel<number>('burst', { queueItems: 4, history: 100 })
    // the stream starts writing only once this hook is done: the burst meets a queue
    app.addHook('onSend', async (request, _reply, payload) => {
      if (request.headers['last-event-id'] === undefined) await hold.promise
      return payload
    })
    app.get('/burst', (req, reply) => reply.sse(burst.subscribe({ lastEventId: req.headers['last-event-id'] })))
  }, { heartbeat: false })
  t.teardown(() => app.close())
  const opening = open(`${url}/burst`)
  await until(() => burst.size === 1, 'subscribed')
  const ids = Array.from({ length: 10 }, (_, i) => burst.publish({ data: i }))
  t.equal(burst.size, 0, 'cut off by the burst')
  hold.resolve()
  const before = await all((await opening).events)
  t.equal(before.length, 4, 'the 4 queued are delivered, then the stream ends cleanly')
  t.same(before.map(e => e.id), ids.slice(0, before.length), 'a gapless prefix')
  const again = await open(`${url}/burst`, { headers: { 'last-event-id': before.at(-1)?.id ?? '' } })
  const rest = await take(again.events, 10 - before.length)
  t.same(rest.map(e => e.id), ids.slice(before.length), 'the rest, replayed: nothing lost, nothing twice')
})

t.test('a stream whose onSend destination throws on a write is closed; publish() and the others go on', async t => {
  t.setTimeout(10_000)
  let chan!: Channel<string>
  const { app, url, logs } = await startApp(app => {
    chan = app.sse.channel('writes')
    app.get('/plain', (_req, reply) => reply.sse(chan.subscribe()))
    app.get('/broken', {
      onSend: (_req, _reply, payload, done) => {
        const through = new PassThrough()
        const write = through.write.bind(through) as (chunk: unknown) => boolean
        through.write = ((chunk: unknown) => {
          if (String(chunk).includes('boom')) throw new Error('boom in a write')
          return write(chunk)
        }) as typeof through.write
        ;(payload as PassThrough).pipe(through)
        done(null, through)
      }
    }, (_req, reply) => reply.sse(chan.subscribe()))
  }, { heartbeat: false })
  t.teardown(() => app.close())
  const plain = await open(`${url}/plain`)
  const opening = open(`${url}/broken`) // its head goes out with its first write, through the hook's stream
  await until(() => chan.size === 2, 'both subscribed')
  chan.publish({ data: 'ok' })
  const broken = await opening
  t.same((await take(plain.events, 1)).map(e => e.data), ['ok'])
  t.same((await take(broken.events, 1)).map(e => e.data), ['ok'], 'the broken one writes until it throws')
  t.doesNotThrow(() => chan.publish({ data: 'boom' }), 'publish() does not see the write fail')
  chan.publish({ data: 'after' })
  t.same((await take(plain.events, 2)).map(e => e.data), ['boom', 'after'], 'the other subscriber gets every item')
  await until(() => chan.size === 1, 'the broken stream released its subscription')
  t.match(logs.at(ERROR), [{ msg: 'SSE stream write failed; connection closed', err: { message: 'boom in a write' } }])
  broken.res.body.destroy()
})

t.test('a channel item changed by the route is written as changed, not as the bytes it was published as', async t => {
  t.setTimeout(10_000)
  let orders!: Channel<{ user: string, card: string }>
  const { app, url } = await startApp(app => {
    orders = app.sse.channel('orders')
    app.get('/orders', async function * (request) {
      for await (const item of orders.subscribe({ signal: request.signal })) {
        const data = item.data as { user: string, card: string }
        yield { ...item, event: 'order', data: { user: data.user, card: '**** redacted' } }
      }
    })
  })
  t.teardown(() => app.close())
  const { events } = await open(`${url}/orders`)
  await until(() => orders.size === 1, 'subscribed')
  const id = orders.publish({ data: { user: 'ann', card: '4111 1111 1111 1111' } })
  t.same(await take(events, 1), [{ id, event: 'order', data: '{"user":"ann","card":"**** redacted"}' }])
})

t.test('bad per-call options refuse the stream and release its subscription', async t => {
  t.setTimeout(10_000)
  let chat!: Channel<string>
  const { app, url } = await startApp(app => {
    chat = app.sse.channel('leak')
    app.get('/bad', (_req, reply) => reply.sse(chat.subscribe(), { heartbeat: 0 }))
  })
  t.teardown(() => app.close())
  for (let i = 0; i < 3; i++) t.equal((await request(`${url}/bad`)).statusCode, 500)
  t.equal(chat.size, 0, 'no subscription left behind')
})
