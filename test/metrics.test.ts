// app.sse.stats() and the diagnostics_channel events, over real sockets: each counter and event moves when the
// thing it counts happens, and not otherwise.
import t, { type Test } from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { Redis } from 'ioredis'
import { redisChannels } from '../lib/channel/redis/index.js'
import type { Channel } from '../lib/index.js'
import { SSE_DIAGNOSTICS, subscribeSseDiagnostic, type SseDiagnosticMessages, type SseDiagnosticName } from '../lib/diagnostics.js'
import { all, deferred, open, runExample, startApp, take } from './helpers.js'

type Seen<N extends SseDiagnosticName> = Array<{ name: N, message: SseDiagnosticMessages[N] }>

/** Every message published on `names` while the test runs. */
function record<N extends SseDiagnosticName> (t: Test, names: N[]): Seen<N> {
  const seen: Seen<N> = []
  for (const name of names) {
    const unsubscribe = subscribeSseDiagnostic(name, message => { seen.push({ name, message }) })
    t.teardown(unsubscribe)
  }
  return seen
}

/** Polls `check` (every few ms, bounded) for state that has no event of its own. */
async function until (check: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const ZERO_REJECTED = {
  'max connections': 0, 'max streams per connection': 0, admission: 0, 'server closing': 0, 'not acceptable': 0
}
const ZERO_CLOSED = { 'source ended': 0, 'source failed': 0, 'item refused': 0, 'client closed': 0, 'server closing': 0, 'too slow': 0 }

t.test('a stream: open and close events, items and exact bytes, by route, and the reason it closed', async t => {
  const events = record(t, [SSE_DIAGNOSTICS.streamOpen, SSE_DIAGNOSTICS.streamClose])
  const release = deferred()
  const { app, url } = await startApp(app => {
    app.get('/rooms/:room', async function * () {
      yield { id: '1', data: 'héllo' } // 2 bytes in UTF-8 for é
      yield { data: { n: 2 } }
      await release.promise
      yield { event: 'last', data: 'bye' }
    })
  }, { heartbeat: false })
  t.teardown(() => app.close())
  t.same(app.sse.stats(), { open: 0, openByRoute: {}, opened: 0, closed: ZERO_CLOSED, rejected: 0, rejectedByReason: ZERO_REJECTED, items: 0, bytes: 0, refused: 0, heartbeats: 0, cutOffs: 0, replays: 0, resets: { expired: 0, unknown: 0, invalid: 0 }, channelCount: 0, channels: [] }, 'all zero before any stream')
  const a = await open(`${url}/rooms/a`)
  const b = await open(`${url}/rooms/b`)
  await take(a.events, 2)
  await take(b.events, 2)
  let stats = app.sse.stats()
  t.match(stats, { open: 2, openByRoute: { '/rooms/:room': 2 }, opened: 2, items: 4, closed: ZERO_CLOSED })
  const frames = 'id: 1\ndata: héllo\n\n' + 'data: {"n":2}\n\n'
  t.equal(stats.bytes, 2 * Buffer.byteLength(frames), 'bytes, not characters')
  t.same(events.map(e => [e.name, e.message.route]), [[SSE_DIAGNOSTICS.streamOpen, '/rooms/:room'], [SSE_DIAGNOSTICS.streamOpen, '/rooms/:room']])

  b.res.body.destroy()
  await until(() => app.sse.stats().open === 1, 'the client\'s close seen')
  release.resolve()
  t.same((await all(a.events)).map(e => e.event), ['last'])
  await until(() => app.sse.stats().open === 0, 'the source\'s end seen')
  stats = app.sse.stats()
  t.match(stats, { open: 0, openByRoute: {}, opened: 2, items: 5, closed: { ...ZERO_CLOSED, 'client closed': 1, 'source ended': 1 } })
  t.equal(stats.bytes, 2 * Buffer.byteLength(frames) + Buffer.byteLength('event: last\ndata: bye\n\n'), 'kept once closed')
  const closes = events.filter(e => e.name === SSE_DIAGNOSTICS.streamClose).map(e => e.message as SseDiagnosticMessages['fastify-typed-sse:stream:close'])
  t.match(closes, [
    { route: '/rooms/:room', reason: 'client closed', items: 2, bytes: Buffer.byteLength(frames) },
    { route: '/rooms/:room', reason: 'source ended', items: 3, bytes: Buffer.byteLength(frames) + 23 }
  ])
  t.ok(closes.every(c => c.durationMs >= 0 && c.durationMs < 5000))
})

t.test('a refused item, heartbeats and streams answered 503 or 406: each counted when it happens, and only then', async t => {
  const events = record(t, [SSE_DIAGNOSTICS.itemRefused, SSE_DIAGNOSTICS.streamClose])
  const quiet = deferred()
  const { app, url } = await startApp(app => {
    app.get('/bad', async function * () {
      yield { data: 'fine' }
      yield { event: 'two\nlines' }
    })
    app.get('/quiet', async function * (request) {
      yield { data: 'first' }
      await quiet.promise
    })
  }, { heartbeat: 40, maxConnections: 1 })
  t.teardown(() => app.close())

  const bad = await all((await open(`${url}/bad`)).events)
  t.same(bad.map(e => e.data), ['fine'], 'nothing of the bad item written')
  let stats = app.sse.stats()
  t.match(stats, { refused: 1, items: 1, heartbeats: 0, rejected: 0, closed: { 'item refused': 1 } })
  t.match(events.map(e => e.name), [SSE_DIAGNOSTICS.itemRefused, SSE_DIAGNOSTICS.streamClose])
  t.match(events[0]?.message, { route: '/bad', error: { code: 'FST_SSE_INVALID_ITEM', field: 'event' } })

  const res = await request(`${url}/quiet`)
  let text = ''
  const beats = (): number => text.split(':\n\n').length - 1
  const twoBeats = new Promise<void>(resolve => res.body.on('data', (chunk: Buffer) => {
    text += chunk.toString()
    if (beats() === 2) resolve()
  }))
  // a second stream while the first is open: over maxConnections
  const refused = await request(`${url}/quiet`)
  t.equal(refused.statusCode, 503)
  await refused.body.dump()
  t.equal(app.sse.stats().rejected, 1, 'the 503 counted')
  // an Accept that rules out text/event-stream: 406, before the limit is looked at
  const unacceptable = await request(`${url}/quiet`, { headers: { accept: 'application/json' } })
  t.equal(unacceptable.statusCode, 406)
  await unacceptable.body.dump()
  t.match(app.sse.stats(), { rejected: 2, rejectedByReason: { ...ZERO_REJECTED, 'max connections': 1, 'not acceptable': 1 } }, 'the 406 counted, by its reason')
  await twoBeats
  stats = app.sse.stats()
  t.ok(stats.heartbeats >= 2, `heartbeats written (${stats.heartbeats}) at least as many as read`)
  t.equal(stats.refused, 1, 'a heartbeat is no refusal')
  t.equal(stats.items, 2, 'nor an item')
  quiet.resolve()
  await res.body.dump()
  await until(() => app.sse.stats().open === 0, 'closed')
  stats = app.sse.stats()
  t.equal(stats.heartbeats, beats(), 'every heartbeat written was read')
  t.equal(stats.bytes, Buffer.byteLength('data: fine\n\n') + Buffer.byteLength(text), 'bytes written are the bytes read')
  t.equal(stats.opened, 2, 'a 503 or a 406 is not a stream')
})

t.test('channels: cut-offs, replays and resets over HTTP, counted per channel and in total', async t => {
  const events = record(t, [SSE_DIAGNOSTICS.cutOff, SSE_DIAGNOSTICS.replay, SSE_DIAGNOSTICS.reset])
  let burst!: Channel<number>
  const hold = deferred()
  const { app, url } = await startApp(app => {
    burst = app.sse.channel<number>('burst', { queueItems: 4, history: 8 })
    // the first stream starts writing once this hook is done: the burst meets its queue
    app.addHook('onSend', async (_request, _reply, payload) => {
      await hold.promise
      return payload
    })
    app.get('/burst', (req, reply) => reply.sse(burst.subscribe({ lastEventId: req.headers['last-event-id'], signal: req.signal })))
  }, { heartbeat: false })
  t.teardown(() => app.close())
  const opening = open(`${url}/burst`)
  await until(() => burst.size === 1, 'subscribed')
  t.match(app.sse.stats().channels, [{ name: 'burst', subscribers: 1, history: 0, items: 0, cutOffs: 0, replays: 0, resets: 0 }])
  t.same(events, [], 'no event yet')

  const ids = Array.from({ length: 10 }, (_, i) => burst.publish({ data: i }))
  hold.resolve()
  const before = await all((await opening).events)
  t.equal(before.length, 4, 'the 4 queued, then the end')
  t.match(events, [{ name: SSE_DIAGNOSTICS.cutOff, message: { channel: 'burst', queuedItems: 4 } }], 'one cut-off')
  t.match(app.sse.stats(), { cutOffs: 1, channels: [{ name: 'burst', subscribers: 0, history: 8, position: ids[9], items: 10, cutOffs: 1 }] })

  const again = await open(`${url}/burst`, { headers: { 'last-event-id': before.at(-1)?.id as string } })
  t.same((await take(again.events, 6)).map(e => e.id), ids.slice(4), 'the rest, replayed')
  t.match(events.at(-1), { name: SSE_DIAGNOSTICS.replay, message: { channel: 'burst', items: 6, position: ids[9] } })
  const expired = await open(`${url}/burst`, { headers: { 'last-event-id': ids[0] as string } })
  t.match((await take(expired.events, 1))[0], { event: 'sse-reset' })
  const invalid = await open(`${url}/burst`, { headers: { 'last-event-id': 'x'.repeat(300) } })
  t.match((await take(invalid.events, 1))[0], { event: 'sse-reset' })
  const unknown = await open(`${url}/burst`, { headers: { 'last-event-id': 'nope' } })
  t.match((await take(unknown.events, 1))[0], { event: 'sse-reset' })
  t.match(events.slice(-3), [
    { name: SSE_DIAGNOSTICS.reset, message: { channel: 'burst', reason: 'expired', position: ids[9] } },
    { name: SSE_DIAGNOSTICS.reset, message: { channel: 'burst', reason: 'invalid' } },
    { name: SSE_DIAGNOSTICS.reset, message: { channel: 'burst', reason: 'unknown' } }
  ])
  const plain = await open(`${url}/burst`)
  await until(() => burst.size === 5, 'five subscribers')
  t.equal(events.length, 5, 'a subscriber without Last-Event-ID is neither a replay nor a reset')
  t.match(app.sse.stats(), {
    cutOffs: 1,
    replays: 1,
    resets: { expired: 1, invalid: 1, unknown: 1 },
    channels: [{ name: 'burst', subscribers: 5, replays: 1, resets: 3, cutOffs: 1 }]
  })
  for (const c of [again, expired, invalid, unknown, plain]) c.res.body.destroy()
  // a closed channel leaves the list; the totals keep what it did
  burst.close()
  t.match(app.sse.stats(), { cutOffs: 1, replays: 1, resets: { expired: 1, invalid: 1, unknown: 1 }, channels: [] })
})

t.test('a stream from the not-found handler is counted under a route of its own', async t => {
  const routes: string[] = []
  t.teardown(subscribeSseDiagnostic(SSE_DIAGNOSTICS.streamOpen, m => { routes.push(m.route) }))
  const { app, url } = await startApp(app => {
    app.setNotFoundHandler((_request, reply) => reply.sse([{ data: 'nothing here' }]))
  })
  t.teardown(() => app.close())
  const { res, events } = await open(`${url}/nowhere/42`)
  t.equal(res.statusCode, 200)
  t.same((await all(events)).map(e => e.data), ['nothing here'])
  t.same(routes, ['(not found)'])
  t.match(app.sse.stats(), { opened: 1, items: 1 })
})

t.test('subscribeSseDiagnostic: the returned function unsubscribes', async t => {
  const seen: string[] = []
  const unsubscribe = subscribeSseDiagnostic(SSE_DIAGNOSTICS.streamOpen, m => { seen.push(m.route) })
  const { app, url } = await startApp(app => {
    app.get('/one', async function * () { yield { data: 1 } })
  })
  t.teardown(() => app.close())
  await all((await open(`${url}/one`)).events)
  unsubscribe()
  await all((await open(`${url}/one`)).events)
  t.same(seen, ['/one'])
  t.equal(app.sse.stats().opened, 2)
})

t.test('Redis channels: reader down and up, publishes Redis did not store, in events and stats', async t => {
  t.setTimeout(30_000)
  const events = record(t, [SSE_DIAGNOSTICS.readerDown, SSE_DIAGNOSTICS.readerUp, SSE_DIAGNOSTICS.publishFailed])
  const prefix = `test:fastify-typed-sse:metrics:${process.pid}:`
  const redis = new Redis(REDIS_URL)
  const admin = new Redis(REDIS_URL)
  t.teardown(async () => {
    const keys = await admin.keys(prefix + '*')
    if (keys.length > 0) await admin.del(...keys)
    admin.disconnect()
    redis.disconnect()
  })
  let chat!: Channel<number, Promise<string>>
  const { app } = await startApp(app => {
    const backend = redisChannels({ redis, prefix, readerName: `metrics-${process.pid}` })
    chat = app.sse.channel<number>('chat', { backend })
    // no subscriber: not read, yet served by the same reader once it runs
    app.sse.channel<number>('news', { backend })
  })
  t.teardown(() => app.close())
  t.match(app.sse.stats().channels, [
    { name: 'chat', position: '0-0', connected: undefined, publishFailures: 0 },
    { name: 'news', position: '0-0', connected: undefined, publishFailures: 0 }
  ], 'no reader before a channel has a subscriber')
  const seen = (name: SseDiagnosticName, n: number): Promise<void> =>
    until(() => events.filter(e => e.name === name).length >= n, name)
  // the reader is connected once a subscriber sees what is published
  const sub = chat.subscribe()
  const first = sub.next()
  const id = await chat.publish({ data: 1 })
  await first
  t.match(app.sse.stats().channels, [
    { name: 'chat', subscribers: 1, history: undefined, position: id, items: 1, connected: true, publishFailures: 0 },
    { name: 'news', subscribers: 0, history: undefined, position: '0-0', items: 0, connected: true }
  ])
  t.same(events, [], 'nothing to report while all is well')

  const connectedWhenDown: Array<Array<boolean | undefined>> = []
  t.teardown(subscribeSseDiagnostic(SSE_DIAGNOSTICS.readerDown, () => {
    connectedWhenDown.push(app.sse.stats().channels.map(c => c.connected))
  }))
  // one reader connection for the backend, named after it
  const list = (await admin.call('CLIENT', 'LIST') as string).split('\n')
  const readers = list.filter(l => l.includes(` name=metrics-${process.pid}:`))
  t.equal(readers.length, 1, 'one reader for both channels')
  t.match(readers[0], ` name=metrics-${process.pid}:${prefix} `)
  const reader = /id=(\d+)/.exec(readers[0] ?? '')?.[1]
  await admin.call('CLIENT', 'KILL', 'ID', reader as string)
  await seen(SSE_DIAGNOSTICS.readerDown, 2)
  t.same(events.map(e => [e.name, e.message]), [
    [SSE_DIAGNOSTICS.readerDown, { channel: 'chat', after: id }],
    [SSE_DIAGNOSTICS.readerDown, { channel: 'news', after: undefined }]
  ], 'every channel the reader serves, each with where it is')
  t.same(connectedWhenDown, [[false, false], [false, false]], 'not connected while it is down')
  await seen(SSE_DIAGNOSTICS.readerUp, 2)
  t.same(events.slice(2).map(e => [e.name, e.message]), [
    [SSE_DIAGNOSTICS.readerUp, { channel: 'chat', after: id }],
    [SSE_DIAGNOSTICS.readerUp, { channel: 'news', after: undefined }]
  ])
  t.match(app.sse.stats().channels, [{ connected: true }, { connected: true }])

  // Redis itself away: the publish fails and is reported
  redis.disconnect()
  await t.rejects(chat.publish({ data: 2 }), { code: 'FST_SSE_CHANNEL_UNAVAILABLE' })
  t.match(events.at(-1), { name: SSE_DIAGNOSTICS.publishFailed, message: { channel: 'chat', error: { code: 'FST_SSE_CHANNEL_UNAVAILABLE' } } })
  t.match(app.sse.stats().channels, [{ publishFailures: 1 }, { publishFailures: 0 }])
  t.equal(events.filter(e => e.name === SSE_DIAGNOSTICS.publishFailed).length, 1)
  await sub.return?.()
  t.match(app.sse.stats().channels, [{ subscribers: 0, position: id }], 'no longer read: the newest id it knew')
})

/** The value of one series in Prometheus text (undefined when absent). */
function series (text: string, name: string): number | undefined {
  const line = text.split('\n').find(l => l.startsWith(name + ' '))
  return line === undefined ? undefined : Number(line.slice(name.length + 1))
}

t.test('examples/metrics.ts: /metrics in Prometheus text follows the streams and the channel', async t => {
  t.setTimeout(30_000)
  const url = await runExample(t, 'examples/metrics.ts')
  const scrape = async (): Promise<string> => {
    const res = await request(`${url}/metrics`)
    t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/)
    return await res.body.text()
  }
  let text = await scrape()
  t.equal(series(text, 'sse_streams_opened_total'), 0)
  t.equal(series(text, 'sse_channel_subscribers{channel="news"}'), 0)
  t.match(text, /# TYPE sse_stream_duration_seconds histogram/)

  const clock = await open(`${url}/clock`)
  const news = await open(`${url}/news`)
  await take(clock.events, 2)
  await take(news.events, 1)
  text = await scrape()
  t.equal(series(text, 'sse_streams_open{route="/clock"}'), 1)
  t.equal(series(text, 'sse_streams_open{route="/news"}'), 1)
  t.equal(series(text, 'sse_streams_opened_total'), 2)
  t.ok((series(text, 'sse_items_total') ?? 0) >= 3, 'items written')
  t.ok((series(text, 'sse_bytes_total') ?? 0) > 0, 'bytes written')
  t.equal(series(text, 'sse_channel_subscribers{channel="news"}'), 1)

  clock.res.body.destroy()
  const closed = 'sse_stream_duration_seconds_count{route="/clock",reason="client closed"}'
  for (let i = 0; i < 100 && series(text, closed) !== 1; i++) text = await scrape()
  t.equal(series(text, closed), 1, 'the closed stream in the histogram')
  t.equal(series(text, 'sse_streams_closed_total{reason="client closed"}'), 1)
  t.equal(series(text, 'sse_streams_open{route="/clock"}'), undefined, 'a route with no open stream has no series')
  t.equal(series(text, 'sse_streams_rejected_total{reason="not acceptable"}'), 0)
  const unacceptable = await request(`${url}/clock`, { headers: { accept: 'application/json' } })
  t.equal(unacceptable.statusCode, 406)
  await unacceptable.body.dump()
  text = await scrape()
  t.equal(series(text, 'sse_streams_rejected_total{reason="not acceptable"}'), 1, 'a 406, by its reason')
  t.equal(series(text, 'sse_streams_rejected_total{reason="max connections"}'), 0)
  news.res.body.destroy()
})

t.test('a failure before the first item, answered by the error handler, is a stream closed for its reason', async t => {
  t.setTimeout(10_000)
  const headSent: boolean[] = []
  const { app, url } = await startApp(app => {
    app.setErrorHandler((err, request, reply) => { reply.code(418).send({ said: (err as Error).message }) })
    // no onSend hook: the head would be written directly; with one: Fastify's send path
    const fails = async function * (): AsyncGenerator<never> { throw new Error('no luck') }
    const refused = async function * (): AsyncGenerator<{ data: bigint }> { yield { data: 1n } }
    app.get('/fails', fails)
    app.get('/refused', refused)
    app.get('/fails-hooked', { onSend: async (request, reply, payload) => payload }, fails)
    app.get('/refused-hooked', { onSend: async (request, reply, payload) => payload }, refused)
    app.get('/ok', async function * (request, reply) {
      headSent.push(reply.raw.headersSent)
      yield { data: 'one' }
    })
  })
  t.teardown(() => app.close())
  for (const path of ['/fails', '/fails-hooked', '/refused', '/refused-hooked']) {
    const res = await request(url + path)
    t.equal(res.statusCode, 418, `${path}: the error handler answered`)
    t.match(await res.body.json(), { said: path.startsWith('/fails') ? 'no luck' : /could not be serialized/ })
  }
  t.same(await all((await open(url + '/ok')).events), [{ data: 'one' }])
  t.same(headSent, [false], 'the direct path writes no head before the first item')
  const stats = app.sse.stats()
  t.equal(stats.opened, 5)
  t.match(stats.closed, { 'source failed': 2, 'item refused': 2, 'source ended': 1 })
  t.equal(stats.refused, 2, 'an item refused before the head counts as refused')
  t.equal(stats.open, 0)
})
