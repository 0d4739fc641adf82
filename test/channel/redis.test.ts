// Channels shared through Redis Streams, against the real Redis at REDIS_URL (no mock): two Fastify instances in
// one process, each with its own ioredis client, as two servers behind a load balancer would be. Every test
// uses its own key prefix and deletes its keys afterwards.
import t from 'tap'
import type { Test } from 'tap'
import { Redis, type RedisOptions } from 'ioredis'
import { createServer, type AddressInfo, type Server } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { redisChannels, type RedisChannels } from '../../lib/channel/redis/index.js'
import type { ChannelItem } from '../../lib/channel/backend.js'
import { kFrame } from '../../lib/encode.js'
import {
  SSE_DIAGNOSTICS, SseRuntimeError, subscribeSseDiagnostic, type Channel, type SseError, type SseItem, type SseResetData
} from '../../lib/index.js'
import { all, deferred, ERROR, open, startApp, take, WARN, within, type LogCapture } from '../helpers.js'

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const INFO = 30
let tests = 0

interface Context {
  prefix: string
  /** A connected client of its own; quit at teardown (after the apps closed). */
  client: (options?: RedisOptions) => Promise<Redis>
  /** Registers something to run at teardown, before the keys are deleted and the clients quit. */
  later: (fn: () => unknown) => void
}

/** A prefix of its own, clients, and a teardown that closes apps, then deletes the keys, then quits. */
function context (t: Test): Context {
  const prefix = `test:fastify-typed-sse:${process.pid}:${++tests}:`
  const clients: Redis[] = []
  const cleanups: Array<() => unknown> = []
  t.teardown(async () => {
    for (const fn of cleanups.reverse()) await fn()
    const admin = new Redis(REDIS_URL)
    const keys = await admin.keys(prefix + '*')
    if (keys.length > 0) await admin.del(...keys)
    await admin.quit()
    for (const c of clients) c.disconnect()
  })
  return {
    prefix,
    later: fn => { cleanups.push(fn) },
    client: async (options = {}) => {
      const c = new Redis(REDIS_URL, options)
      clients.push(c)
      if (c.status !== 'ready') await new Promise(resolve => c.once('ready', resolve))
      return c
    }
  }
}

interface Server1 { app: FastifyInstance, url: string, logs: LogCapture, chat: Channel<{ n: number }, Promise<string>> }

/** One "server": an app with the channel `chat` on Redis and the route GET /chat. */
async function server (
  ctx: Context,
  options: {
    history?: number
    historyMaxAge?: number
    serialize?: (data: unknown) => string
    backend?: RedisChannels
    blockTimeout?: number
  } = {}
): Promise<Server1> {
  const redis = await ctx.client()
  const backend = options.backend ?? redisChannels({ redis, prefix: ctx.prefix, blockTimeout: options.blockTimeout })
  let chat!: Server1['chat']
  const { app, url, logs } = await startApp(app => {
    chat = app.sse.channel<{ n: number }>('chat', { backend, history: options.history ?? 1000, historyMaxAge: options.historyMaxAge })
    app.get('/chat', (req, reply) => reply.sse(chat.subscribe({ lastEventId: req.headers['last-event-id'], signal: req.signal })))
  }, options.serialize === undefined ? {} : { serialize: options.serialize })
  ctx.later(() => app.close())
  return { app, url, logs, chat }
}

/** Resolves once the reader of the channel knows where the stream is (it logs nothing; a subscriber sees it). */
async function readerReady (chat: Channel<{ n: number }, Promise<string>>): Promise<void> {
  const sub = chat.subscribe()
  const got = sub.next()
  await chat.publish({ event: 'warmup' })
  await got
  await sub.return?.()
}

/** The client id of the connection of that name, from CLIENT LIST (undefined when there is none). */
async function readerId (admin: Redis, name: string): Promise<string | undefined> {
  const list = await admin.call('CLIENT', 'LIST') as string
  const line = list.split('\n').find(l => l.includes(` name=${name} `))
  return line === undefined ? undefined : /id=(\d+)/.exec(line)?.[1]
}

/** A TCP port with nothing listening on it. */
async function closedPort (): Promise<number> {
  const s = createServer()
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  const { port } = s.address() as AddressInfo
  await new Promise(resolve => s.close(resolve))
  return port
}

t.test('two servers share a channel: publish on one, subscribers on both get identical ordered items, encoded once per process', async t => {
  t.setTimeout(30_000)
  const ctx = context(t)
  let serializedA = 0
  let serializedB = 0
  const a = await server(ctx, { serialize: data => { serializedA++; return JSON.stringify(data) } })
  const b = await server(ctx, { serialize: data => { serializedB++; return JSON.stringify(data) } })
  await readerReady(a.chat)
  await readerReady(b.chat)
  const clients = await Promise.all([a, a, a, b, b, b].map(s => open(`${s.url}/chat`)))
  t.equal(a.chat.size, 3)
  t.equal(b.chat.size, 3)
  const receiving = Promise.all(clients.map(c => take(c.events, 30)))
  const published = a.chat.publish({ event: 'm', data: { n: 0 } })
  t.type(published, Promise, 'publish on a Redis channel returns a promise')
  const ids = [await published]
  for (let n = 1; n < 30; n++) ids.push(await (n % 2 === 0 ? a : b).chat.publish({ event: 'm', data: { n }, comment: n === 1 ? 'two\nlines' : undefined }))
  t.match(ids[0], /^\d+-\d+$/, 'the id is the stream id')
  const got = await within(receiving, 10_000, '30 items on 6 clients')
  t.ok(got.every(events => JSON.stringify(events) === JSON.stringify(got[0])), 'identical on both servers')
  t.same(got[0], ids.map((id, n) => ({ id, event: 'm', data: JSON.stringify({ n }) })), 'all of them, in order')
  t.equal(serializedA, 15, 'A serialized what it published, once each (the warmup has no data)')
  t.equal(serializedB, 15, 'B too: what it received from the stream was not serialized again')

  // the items as a subscriber iterating itself sees them: fields, and the one shared frame with the id
  const sub = b.chat.subscribe()
  const next = sub.next()
  const id = await a.chat.publish({ event: 'm', data: { n: 99 }, retry: 1000, comment: 'c' })
  const item = (await next).value as ChannelItem
  t.same(JSON.parse(JSON.stringify(item)), { id, event: 'm', data: { n: 99 }, retry: 1000, comment: 'c' }, 'the fields, data as an object again')
  t.equal(item[kFrame].toString(), `: c\nid: ${id}\nevent: m\nretry: 1000\ndata: {"n":99}\n\n`, 'the encoder\'s frame, its id filled in')
  t.ok(Object.isFrozen(item))
  for (const c of clients) c.res.body.destroy()
})

t.test('one reader connection per backend whatever the number of channels (1, then 1,000): channels join without waiting out the block', async t => {
  t.setTimeout(60_000)
  const ctx = context(t)
  const admin = await ctx.client()
  const name = `conn-${process.pid}-${tests}`
  const redis = await ctx.client({ connectionName: name + '-client' })
  // a block far longer than the test: a channel that had to wait it out would time the test out
  const backend = redisChannels({ redis, prefix: ctx.prefix, readerName: name, blockTimeout: 60_000 })
  const connections = async (): Promise<number> =>
    (await admin.call('CLIENT', 'LIST') as string).split('\n').filter(line => line.includes(` name=${name}`)).length
  const { app, url } = await startApp(app => {
    app.get<{ Params: { n: string } }>('/room/:n', (req, reply) => {
      const room = app.sse.channel<number>('room:' + req.params.n, { backend })
      return reply.sse(room.subscribe({ lastEventId: req.headers['last-event-id'], signal: req.signal }))
    })
  })
  ctx.later(() => app.close())
  const room = (n: number): Channel<number, Promise<string>> => app.sse.channel<number>('room:' + n, { backend })

  const first = await open(`${url}/room/0`)
  const firstId = await room(0).publish({ data: 0 })
  t.same((await within(take(first.events, 1), 5000, 'room 0'))[0], { id: firstId, data: '0' })
  t.equal(await connections(), 2, 'one channel: your client and one reader')

  // 999 more rooms: 9 subscribed over HTTP, 990 in process; each joins while the reader blocks on the others
  const clients = [first]
  for (let n = 1; n < 10; n++) clients.push(await open(`${url}/room/${n}`))
  const subs = Array.from({ length: 990 }, (_, i) => room(i + 10).subscribe())
  const published = await Promise.all(Array.from({ length: 1000 }, (_, n) => room(n).publish({ data: n })))
  const overHttp = await within(Promise.all(clients.map(async c => (await take(c.events, 1))[0])), 20_000, 'ten rooms over HTTP')
  t.same(overHttp, published.slice(0, 10).map((id, n) => ({ id, data: String(n) })), 'each room its own item')
  const inProcess = await within(Promise.all(subs.map(async sub => (await take(sub, 1))[0])), 20_000, '990 rooms in process')
  t.ok(inProcess.every((item, i) => item?.id === published[i + 10] && item?.data === i + 10), 'each of 990 rooms its own item, once')
  t.ok(await connections() <= 3, '1,000 channels: still at most 3 connections')
  t.equal(await connections(), 2)

  // one more room while the reader blocks on 1,000 streams: it is read at once
  const late = room(1000).subscribe()
  const lateId = await room(1000).publish({ data: 1000 })
  t.equal((await within(take(late, 1), 5000, 'a room that joined a blocked reader'))[0]?.id, lateId)
  for (const c of clients) c.res.body.destroy()
})

t.test('the reader closes once no channel has had a local subscriber for readerIdleTimeout, and opens again with the next', async t => {
  t.setTimeout(30_000)
  const ctx = context(t)
  const admin = await ctx.client()
  const name = `idle-${process.pid}-${tests}`
  const redis = await ctx.client()
  const backend = redisChannels({ redis, prefix: ctx.prefix, readerName: name, readerIdleTimeout: 200 })
  const a = await server(ctx, { backend })
  const other = a.app.sse.channel<number>('other', { backend })
  const reader = async (): Promise<string | undefined> => await readerId(admin, `${name}:${ctx.prefix}`)
  /** Polls until the reader connection is gone, for 5 s at most. */
  const closed = async (): Promise<boolean> => {
    for (let i = 0; i < 100 && await reader() !== undefined; i++) await sleep(50)
    return await reader() === undefined
  }
  await readerReady(a.chat)
  const first = await reader()
  t.ok(first, 'a reader while a channel has a subscriber')
  t.ok(await closed(), 'closed once idle')
  t.equal(a.app.sse.stats().channels[0]?.connected, undefined, 'no reader: connected unknown')

  const missed = await a.chat.publish({ data: { n: 1 } })
  const back = a.chat.subscribe({ lastEventId: '0-0' })
  const next = a.chat.publish({ data: { n: 2 } })
  t.same((await within(take(back, 3), 5000, 'replay, then live')).map(i => i.id).slice(1), [missed, await next],
    'a subscriber again: what it missed, then live')
  const second = await reader()
  t.ok(second !== undefined && second !== first, 'read on a new reader connection')
  t.equal(a.app.sse.stats().channels[0]?.connected, true)

  // one channel with a subscriber keeps it open, however long the others are quiet
  const staying = other.subscribe()
  await back.return?.()
  await sleep(400)
  t.equal(await reader(), second, 'still open while "other" has a subscriber')
  await staying.return?.()
  t.ok(await closed(), 'closed once that one left too')
})

t.test('a client moves from server A to server B with Last-Event-ID and loses nothing', async t => {
  t.setTimeout(30_000)
  const ctx = context(t)
  const a = await server(ctx)
  await readerReady(a.chat)
  const first = await open(`${a.url}/chat`)
  const ids: string[] = []
  const seeing = take(first.events, 5)
  for (let n = 0; n < 5; n++) ids.push(await a.chat.publish({ data: { n } }))
  const seen = await within(seeing, 5000, 'five items on A')
  first.res.body.destroy() // server A goes away
  for (let n = 5; n < 10; n++) ids.push(await a.chat.publish({ data: { n } })) // published while the client is away
  const b = await server(ctx) // a server started since: its reader starts at the stream's newest entry
  const moved = await open(`${b.url}/chat`, { headers: { 'last-event-id': seen.at(-1)?.id as string } })
  const resting = take(moved.events, 7)
  for (let n = 10; n < 12; n++) ids.push(await b.chat.publish({ data: { n } }))
  const rest = await within(resting, 5000, 'seven items on B')
  t.same([...seen, ...rest].map(i => i.id), ids, 'every item once, in order, across the move')
  t.same(rest.map(i => i.data), [5, 6, 7, 8, 9, 10, 11].map(n => JSON.stringify({ n })))
  moved.res.body.destroy()
})

t.test('cut off while its replay is on its way: the replay and what was queued meet once; a stream that starts late still gets them', async t => {
  t.setTimeout(30_000)
  const ctx = context(t)
  const a = await server(ctx)
  // server B, whose publishing connection (the one replays read on) is held up below
  const redisB = await ctx.client()
  const hold = deferred()
  let chat!: Channel<{ n: number }, Promise<string>>
  const { app, url } = await startApp(app => {
    chat = app.sse.channel<{ n: number }>('chat', { backend: redisChannels({ redis: redisB, prefix: ctx.prefix }), queueItems: 2 })
    // a stream asked to start late starts writing once this hook is done
    app.addHook('onSend', async (request, _reply, payload) => {
      if (request.headers['x-late'] !== undefined) await hold.promise
      return payload
    })
    app.get('/chat', (req, reply) => reply.sse(chat.subscribe({ lastEventId: req.headers['last-event-id'], signal: req.signal })))
  })
  ctx.later(() => app.close())
  // a standing subscriber, reading all along, keeps B's reader going
  const standing = chat.subscribe()
  const warm = deferred()
  void (async () => { while ((await standing.next()).done !== true) warm.resolve() })()
  const from = await a.chat.publish({ data: { n: 0 } })
  await within(warm.promise, 5000, 'B reads the channel')
  const block = `${ctx.prefix}block`
  const admin = await ctx.client()
  ctx.later(() => admin.lpush(block, 'x'))
  void redisB.blpop(block, 0)
  let cutOffs = 0
  const cut = deferred()
  t.teardown(subscribeSseDiagnostic(SSE_DIAGNOSTICS.cutOff, () => { if (++cutOffs === 2) cut.resolve() }))
  const early = await open(`${url}/chat`, { headers: { 'last-event-id': from } })
  const late = open(`${url}/chat`, { headers: { 'last-event-id': from, 'x-late': '1' } })
  while (chat.size < 3) await new Promise(resolve => setImmediate(resolve))
  const ids: string[] = []
  for (let n = 1; n <= 5; n++) ids.push(await a.chat.publish({ data: { n } }))
  await within(cut.promise, 5000, 'both cut off while their replays wait')
  hold.resolve()
  // its headers go out as it starts writing, still before the replay
  const started = await within(late, 5000, 'the late stream starts')
  await admin.lpush(block, 'x')
  // a page of the replay (one item: half of queueItems), then the end: cut off, it resumes from there
  t.same((await within(all(early.events), 5000, 'the early stream ends')).map(e => e.id), ids.slice(0, 1), 'its first page, then the end')
  t.same((await within(all(started.events), 5000, 'the late stream ends')).map(e => e.id), ids.slice(0, 1), 'the late one too')
  await standing.return?.()
  const rest = await open(`${url}/chat`, { headers: { 'last-event-id': ids[0] as string } })
  t.same((await take(rest.events, 4)).map(e => e.id), ids.slice(1), 'resumed from there: the rest, each once, in order')
  await rest.res.body.destroy()
})

t.test('the only subscriber, cut off while its replay is on its way: the replay still comes, then the stream ends', async t => {
  t.setTimeout(30_000)
  const ctx = context(t)
  const a = await server(ctx)
  const redisB = await ctx.client()
  let chat!: Channel<{ n: number }, Promise<string>>
  const { app, url } = await startApp(app => {
    chat = app.sse.channel<{ n: number }>('chat', { backend: redisChannels({ redis: redisB, prefix: ctx.prefix }), queueItems: 2 })
    app.get('/chat', (req, reply) => reply.sse(chat.subscribe({ lastEventId: req.headers['last-event-id'], signal: req.signal })))
  })
  ctx.later(() => app.close())
  // B's reader goes, then B's publishing connection (the one replays read on) is held up
  const standing = chat.subscribe()
  const warm = standing.next()
  const from = await a.chat.publish({ data: { n: 0 } })
  await within(warm, 5000, 'B reads the channel')
  const block = `${ctx.prefix}block`
  const admin = await ctx.client()
  ctx.later(() => admin.lpush(block, 'x'))
  void redisB.blpop(block, 0)
  const client = await open(`${url}/chat`, { headers: { 'last-event-id': from } })
  await standing.return?.()
  const cut = new Promise(resolve => { t.teardown(subscribeSseDiagnostic(SSE_DIAGNOSTICS.cutOff, resolve)) })
  const ids: string[] = []
  for (let n = 1; n <= 5; n++) ids.push(await a.chat.publish({ data: { n } }))
  await within(cut, 5000, 'cut off while its replay waits')
  await admin.lpush(block, 'x')
  t.same((await within(all(client.events), 5000, 'the stream ends')).map(e => e.id), ids.slice(0, 1),
    'the first page of its replay (one item: half of queueItems), then the end')
})

t.test('the only subscriber, cut off by an item its reader hands on: the channel is not read on, and a reset after it is at the stream\'s newest', async t => {
  t.setTimeout(30_000)
  const ctx = context(t)
  const a = await server(ctx)
  const redisB = await ctx.client()
  let chat!: Channel<{ n: number }, Promise<string>>
  const { app } = await startApp(app => {
    chat = app.sse.channel<{ n: number }>('chat', { backend: redisChannels({ redis: redisB, prefix: ctx.prefix }), queueItems: 2 })
  })
  ctx.later(() => app.close())
  const cut = new Promise(resolve => { t.teardown(subscribeSseDiagnostic(SSE_DIAGNOSTICS.cutOff, resolve)) })
  // B's only subscriber does not read: the third item cuts it off, and B's channel has no subscriber from then on
  const sub = chat.subscribe()
  const first = sub.next()
  const ids = [await a.chat.publish({ data: { n: 0 } })]
  await within(first, 5000, 'B reads the channel')
  // sent at once, so that B's reader reads most of them in one read: it hands on the rest after the cut
  ids.push(...await Promise.all([1, 2, 3, 4].map(n => a.chat.publish({ data: { n } }))))
  await within(cut, 5000, 'cut off')
  ids.push(await a.chat.publish({ data: { n: 5 } }))
  // B finds where the stream is again before it answers: not where its last reader stopped
  const reset = await within(take(chat.subscribe({ lastEventId: 'nonsense' }), 1), 5000, 'the reset')
  t.same(reset.map(e => [e.event, e.id]), [['sse-reset', ids.at(-1)]])
})

t.test('a client that missed nothing reconnects with the newest id: nothing is replayed, the next item comes live', async t => {
  t.setTimeout(30_000)
  const ctx = context(t)
  const a = await server(ctx)
  await readerReady(a.chat)
  const newest = await a.chat.publish({ data: { n: 0 } })
  const replayed = new Promise(resolve => { t.teardown(subscribeSseDiagnostic(SSE_DIAGNOSTICS.replay, resolve)) })
  const again = await open(`${a.url}/chat`, { headers: { 'last-event-id': newest } })
  t.equal(again.res.statusCode, 200)
  t.match(await within(replayed, 5000, 'the replay answered'), { channel: 'chat', items: 0, position: newest })
  const next = await a.chat.publish({ data: { n: 1 } })
  t.same((await within(take(again.events, 1), 5000, 'the next item')).map(i => i.id), [next], 'only the new one')
  again.res.body.destroy()
})

t.test('the reader connection killed mid-stream: it reconnects and resumes, no loss, no duplicate; a replay racing it meets it exactly', async t => {
  t.setTimeout(30_000)
  const ctx = context(t)
  const admin = await ctx.client()
  const a = await server(ctx)
  // B's client (and so its reader, a duplicate) reconnects only after 300 ms: room to publish while it is away
  const slow = await ctx.client({ retryStrategy: () => 300 })
  const b = await server(ctx, { backend: redisChannels({ redis: slow, prefix: ctx.prefix, readerName: 'server-b' }) })
  await readerReady(a.chat)
  await readerReady(b.chat)
  const client = await open(`${b.url}/chat`)
  const ids: string[] = []
  const receiving = take(client.events, 10)
  for (let n = 0; n < 10; n++) ids.push(await a.chat.publish({ data: { n } }))
  const before = await within(receiving, 5000, 'ten items')

  const reader = await readerId(admin, 'server-b:' + ctx.prefix)
  t.ok(reader, 'the reader connection is named after the backend\'s prefix')
  await admin.call('CLIENT', 'KILL', 'ID', reader as string)
  await within(b.logs.waitFor(l => l.level === WARN && /lost its connection/.test(l.msg)), 5000, 'the reader noticed')
  const from = ids.at(-1) as string
  const receivingAfter = take(client.events, 15)
  for (let n = 10; n < 20; n++) ids.push(await a.chat.publish({ data: { n } })) // while B's reader is away
  // a subscriber resuming now: its replay reads items the reader has not handed on yet
  const resumed = b.chat.subscribe({ lastEventId: from })
  for (let n = 20; n < 25; n++) ids.push(await a.chat.publish({ data: { n } }))
  const after = await within(receivingAfter, 10_000, 'fifteen items after the kill')
  t.same([...before, ...after].map(i => i.id), ids, 'the stream stayed open: every item once, in order')
  t.same((await within(take(resumed, 15), 5000, 'the resumed subscriber')).map(i => i.id), ids.slice(10), 'replay then live: once each')
  await within(b.logs.waitFor(l => l.level === INFO && /reconnected; resuming/.test(l.msg)), 5000, 'logged')
  t.not(await readerId(admin, 'server-b:' + ctx.prefix), reader, 'a new reader connection')
  const last = await a.chat.publish({ data: { n: 25 } })
  t.same((await take(resumed, 1))[0]?.id, last, 'and live after that')
  await resumed.return?.()
  client.res.body.destroy()
})

t.test('publish while Redis is unreachable or silent rejects clearly; the reader keeps retrying until closed', async t => {
  t.setTimeout(30_000)
  const ctx = context(t)
  // unreachable: nothing listens on the port
  const port = await closedPort()
  const down = new Redis({ host: '127.0.0.1', port, retryStrategy: () => 20, maxRetriesPerRequest: 1 })
  // refused connections are the point here; like any application, the owner of the client listens for its errors
  down.on('error', () => {})
  ctx.later(() => down.disconnect())
  const s = await server(ctx, { backend: redisChannels({ redis: down, prefix: ctx.prefix }) })
  const sub = s.chat.subscribe()
  t.equal(s.chat.size, 1, 'subscribers stay subscribed')
  const unavailable = (l: { err?: { code?: string } }): boolean => l.err?.code === 'FST_SSE_CHANNEL_UNAVAILABLE'
  let failed = 0
  await within(s.logs.waitFor(l => l.level === ERROR && /reader failed; retrying/.test(l.msg) && unavailable(l) && ++failed === 3), 5000, 'it keeps trying to find where the stream is')
  await within(new Promise(resolve => down.once('reconnecting', resolve)), 5000, 'the client waits to reconnect')
  const refused = await s.chat.publish({ data: { n: 1 } }).catch((err: unknown) => err)
  t.match(refused, { code: 'FST_SSE_CHANNEL_UNAVAILABLE', message: /Redis is not connected \((reconnecting|close)\); the item was not published/ })
  t.ok(refused instanceof SseRuntimeError && !(refused instanceof TypeError), 'a runtime condition, not a bad argument')
  const closing = s.app.close()
  await within(closing, 5000, 'app.close() with the reader still retrying')
  t.same(await sub.next(), { value: undefined, done: true })

  // silent: a server that accepts the connection and never answers
  const sockets = new Set<import('node:net').Socket>()
  const silent: Server = createServer(socket => { sockets.add(socket) })
  await new Promise<void>(resolve => silent.listen(0, '127.0.0.1', resolve))
  ctx.later(() => { for (const socket of sockets) socket.destroy(); silent.close() })
  const stuck = new Redis({ host: '127.0.0.1', port: (silent.address() as AddressInfo).port, maxRetriesPerRequest: null })
  ctx.later(() => stuck.disconnect())
  const s2 = await server(ctx, { backend: redisChannels({ redis: stuck, prefix: ctx.prefix, publishTimeout: 100 }) })
  await t.rejects(s2.chat.publish({ data: { n: 2 } }), { code: 'FST_SSE_CHANNEL_UNAVAILABLE', message: /did not answer within 100 ms; the item may or may not have been published/ })
})

t.test('sse-reset: malformed, newer than the stream, trimmed away, too old; resuming from the position works', async t => {
  t.setTimeout(30_000)
  const ctx = context(t)
  const admin = await ctx.client()
  const s = await server(ctx, { history: 3 })
  const key = ctx.prefix + 'chat'
  const reset = async (lastEventId: string) =>
    (await take(s.chat.subscribe({ lastEventId }), 1))[0] as SseItem<SseResetData>

  // a channel whose reader does not know yet where the stream is: the reset waits for it, never says 0-0
  const stored = await admin.call('XADD', ctx.prefix + 'fresh', '*', 'h', '', 't', 'data: 1\n\n', 'j', '{"data":1}') as string
  const fresh = s.app.sse.channel('fresh', { backend: redisChannels({ redis: admin, prefix: ctx.prefix }) })
  t.same((await take(fresh.subscribe({ lastEventId: 'garbage' }), 1))[0], { id: stored, event: 'sse-reset', data: { reason: 'unknown' } }, 'malformed')
  fresh.close()
  const again = s.app.sse.channel('fresh', { backend: redisChannels({ redis: admin, prefix: ctx.prefix }) })
  t.same((await take(again.subscribe({ lastEventId: 'x'.repeat(300) }), 1))[0], { id: stored, event: 'sse-reset', data: { reason: 'invalid' } }, 'too long')
  // no stream yet: the origin resumes, anything else is unknown
  const empty = s.chat.subscribe({ lastEventId: '0-0' })
  t.same(await reset('5-0'), { id: '0-0', event: 'sse-reset', data: { reason: 'unknown' } }, 'nothing issued yet')
  await readerReady(s.chat)
  const warmup = (await take(empty, 1))[0]
  t.equal(warmup?.event, 'warmup', 'from 0-0: everything')

  const ids: string[] = []
  const live = s.chat.subscribe()
  for (let n = 0; n < 6; n++) ids.push(await s.chat.publish({ data: { n } }))
  const newest = ids.at(-1) as string
  await take(live, 6) // the reader has handed them on: its position is the newest
  t.same(await reset('garbage'), { id: newest, event: 'sse-reset', data: { reason: 'unknown' } }, 'malformed: the reader\'s position')
  t.same(await reset('1-99999999999999999999'), { id: newest, event: 'sse-reset', data: { reason: 'unknown' } }, 'beyond 64 bits')
  t.same(await reset(`${Date.now() + 60_000}-0`), { id: newest, event: 'sse-reset', data: { reason: 'unknown' } }, 'newer than the stream (another stream, a flushed Redis)')
  // (from ids[0]: a page read from ids[1] would be shared for a second, trimmed meanwhile or not)
  t.same((await take(s.chat.subscribe({ lastEventId: ids[0] as string }), 5)).map(i => i.id), ids.slice(1), 'still kept: replayed')

  await admin.call('XTRIM', key, 'MAXLEN', 2) // exact: what MAXLEN ~ does in whole nodes
  t.same(await reset(ids[1] as string), { id: newest, event: 'sse-reset', data: { reason: 'expired' } }, 'what follows it was trimmed')
  t.same(await reset(ids[3] as string), { id: newest, event: 'sse-reset', data: { reason: 'expired' } }, 'the last trimmed one: Redis does not say which ids it trimmed')
  t.same((await take(s.chat.subscribe({ lastEventId: ids[4] as string }), 1)).map(i => i.id), ids.slice(5), 'the oldest kept one: replayed')
  const after = s.chat.subscribe({ lastEventId: newest })
  const next = await s.chat.publish({ data: { n: 6 } })
  t.same((await take(after, 1)).map(i => i.id), [next], 'from the reset\'s id: live, nothing missed')
  const later = await s.chat.publish({ data: { n: 7 } })
  await admin.call('XDEL', key, next)
  t.same(await reset(newest), { id: later, event: 'sse-reset', data: { reason: 'expired' } }, 'what follows it was deleted (XDEL)')
  t.same((await take(s.chat.subscribe({ lastEventId: next }), 1)).map(i => i.id), [later], 'the deleted one itself: nothing missed after it')

  // the stream lost and started again (a Redis that restarted without its data): newer ids, nothing trimmed,
  // but the client's id is not in it and nothing was deleted there: never a silent gap
  await admin.del(key)
  const reborn = [await s.chat.publish({ data: { n: 8 } }), await s.chat.publish({ data: { n: 9 } })]
  t.same(await reset(later), { id: reborn[1], event: 'sse-reset', data: { reason: 'unknown' } }, 'an id of the lost stream')
  t.same((await take(s.chat.subscribe({ lastEventId: '0-0' }), 2)).map(i => i.id), reborn, 'the origin: everything')
  t.same((await take(s.chat.subscribe({ lastEventId: reborn[0] as string }), 1)).map(i => i.id), reborn.slice(1), 'its own ids resume')

  // MAXLEN ~ bounds the stream
  await Promise.all(Array.from({ length: 400 }, (_, n) => s.chat.publish({ data: { n } })))
  t.ok(Number(await admin.call('XLEN', key)) < 400, 'trimmed by XADD MAXLEN ~')
})

t.test('historyMaxAge: an item older than that is not replayed (sse-reset expired)', async t => {
  t.setTimeout(10_000)
  const ctx = context(t)
  const s = await server(ctx, { historyMaxAge: 100 })
  await readerReady(s.chat)
  const from = await s.chat.publish({ data: { n: 0 } })
  const old = await s.chat.publish({ data: { n: 1 } })
  t.same((await take(s.chat.subscribe({ lastEventId: from }), 1)).map(i => i.id), [old], 'young: replayed')
  await sleep(150) // the age is the event here
  t.same((await take(s.chat.subscribe({ lastEventId: from }), 1))[0], { id: old, event: 'sse-reset', data: { reason: 'expired' } })
})

t.test('historyMaxAge is measured on Redis\'s clock (the stream ids\' clock), not on this server\'s', async t => {
  t.setTimeout(10_000)
  const ctx = context(t)
  const s = await server(ctx, { historyMaxAge: 60_000 })
  await readerReady(s.chat)
  const from = await s.chat.publish({ data: { n: 0 } })
  const young = await s.chat.publish({ data: { n: 1 } })
  const now = Date.now
  t.teardown(() => { Date.now = now })
  Date.now = () => now() + 3_600_000 // this server's clock an hour ahead
  t.same((await take(s.chat.subscribe({ lastEventId: from }), 1)).map(i => i.id), [young], 'a second old: replayed')
})

t.test('bad items and refusals reject, store nothing and reach no subscriber', async t => {
  t.setTimeout(10_000)
  const ctx = context(t)
  const admin = await ctx.client()
  // the reader asks again every 100 ms, so it meets the key while it holds something else
  const s = await server(ctx, { blockTimeout: 100, serialize: data => typeof data === 'bigint' ? String(data) : JSON.stringify(data) })
  await readerReady(s.chat)
  const key = ctx.prefix + 'chat'
  const length = Number(await admin.call('XLEN', key))
  const sub = s.chat.subscribe()
  const publish = s.chat.publish.bind(s.chat) as (item: unknown) => Promise<string>
  await t.rejects(publish({ event: 'a\nb' }), { name: 'SseError', code: 'FST_SSE_INVALID_ITEM', field: 'event' }, 'the encoder\'s TypeError, as a rejection')
  await t.rejects(publish('text'), { code: 'FST_SSE_INVALID_ITEM', field: 'item' })
  await t.rejects(publish({ id: '1-1', data: 1 }), { code: 'FST_SSE_INVALID_ITEM', field: 'id', message: /given by the Redis stream/ })
  await t.rejects(publish({ data: 10n }), { code: 'FST_SSE_INVALID_ITEM', field: 'data', message: /JSON-serializable on a Redis channel/ })
  const error = await publish({ event: 'a\nb' }).catch((err: unknown) => err as SseError)
  t.ok(error instanceof TypeError)
  t.equal(Number(await admin.call('XLEN', key)), length, 'nothing stored')
  const good = await s.chat.publish({ data: { n: 1 } })
  t.equal((await take(sub, 1))[0]?.id, good, 'the first thing the subscriber sees is the good item')

  // Redis refuses (the key holds something else): the rejection says so; the reader and replays log it
  await admin.del(key)
  await admin.set(key, 'not a stream')
  await t.rejects(s.chat.publish({ data: { n: 2 } }), { code: 'FST_SSE_CHANNEL_UNAVAILABLE', message: /Redis did not store the item: WRONGTYPE/ })
  const replay = s.chat.subscribe({ lastEventId: good })
  t.same(await replay.next(), { value: undefined, done: true }, 'a replay that fails ends the subscription')
  await within(s.logs.waitFor(l => l.level === ERROR && /replay failed/.test(l.msg) && l.err?.code === 'FST_SSE_CHANNEL_UNAVAILABLE' && /WRONGTYPE/.test(String(l.err?.message))), 5000, 'logged')
  await within(s.logs.waitFor(l => l.level === ERROR && /reader failed; retrying/.test(l.msg) && /WRONGTYPE/.test(String(l.err?.message))), 5000, 'the reader logs and retries')
  // a channel created on such a key: its reader cannot even find where the stream is, and retries that
  await admin.set(ctx.prefix + 'other', 'not a stream')
  const other = s.app.sse.channel<number>('other', { backend: redisChannels({ redis: admin, prefix: ctx.prefix, blockTimeout: 100 }) })
  const otherSub = other.subscribe()
  let failed = 0
  await within(s.logs.waitFor(l => l.channel === 'other' && /reader failed; retrying/.test(l.msg) && ++failed === 2), 5000, 'two failed starts')
  await admin.del(ctx.prefix + 'other')
  // what was published before the reader could start is not live for it: publish until one arrives
  const otherIds: string[] = []
  const firstOther = otherSub.next()
  const delivered = await within((async () => {
    for (;;) {
      otherIds.push(await other.publish({ data: 1 }))
      const got = await Promise.race([firstOther, sleep(100, undefined, { ref: false })])
      if (got !== undefined) return got.value?.id as string
    }
  })(), 5000, 'the reader of "other" started')
  t.ok(otherIds.includes(delivered), 'once the key is a stream, its reader starts and delivers')
  await admin.del(key)
  const back = await s.chat.publish({ data: { n: 3 } })
  t.equal((await within(take(sub, 1), 5000, 'the reader is back'))[0]?.id, back)

  // entries no channel wrote are skipped (and logged), live and in a replay
  await admin.call('XADD', key, '*', 'foo', 'bar')
  await admin.call('XADD', key, '*', 'h', '', 't', 'data: x\n\n', 'j', '{broken')
  const fine = await s.chat.publish({ data: { n: 4 } })
  t.equal((await take(sub, 1))[0]?.id, fine, 'the subscriber skips them')
  t.same((await take(s.chat.subscribe({ lastEventId: back }), 1)).map(i => i.id), [fine], 'so does a replay')
  t.ok(s.logs.at(WARN).filter(l => /no channel wrote/.test(l.msg)).length >= 2)

  s.chat.close()
  await t.rejects(s.chat.publish({ data: { n: 5 } }), { code: 'FST_SSE_CHANNEL_CLOSED' }, 'a closed channel rejects too')
})

t.test('entries carry their layout (v 1); entries written before the mark (no v) are replayed and delivered live as before', async t => {
  t.setTimeout(15_000)
  const ctx = context(t)
  const admin = await ctx.client()
  const key = ctx.prefix + 'chat'
  /** An entry as a version before the mark stored it: XADD <key> * h <head> t <tail> j <fields>. */
  const unmarked = async (head: string, tail: string, json: string): Promise<string> =>
    await admin.call('XADD', key, '*', 'h', head, 't', tail, 'j', json) as string
  const fieldsOf = async (id: string): Promise<string[]> => ((await admin.call('XRANGE', key, id, id)) as Array<[string, string[]]>)[0]?.[1] ?? []
  const old = [
    await unmarked('', 'event: m\ndata: {"n":1}\n\n', '{"event":"m","data":{"n":1}}'),
    await unmarked(': two\n: lines\n', 'data: {"n":2}\n\n', '{"comment":"two\\nlines","data":{"n":2}}')
  ]
  const s = await server(ctx)
  const http = await open(`${s.url}/chat`, { headers: { 'last-event-id': '0-0' } })
  t.teardown(() => http.res.body.destroy())
  const sub = s.chat.subscribe({ lastEventId: '0-0' })
  const replayed = await take(sub, 2) as ChannelItem[]
  t.same(replayed.map(i => ({ ...i })), [
    { id: old[0], event: 'm', data: { n: 1 } },
    { id: old[1], comment: 'two\nlines', data: { n: 2 } }
  ], 'replayed: the fields as stored')
  t.same(replayed.map(i => i[kFrame].toString()), [
    `id: ${old[0] as string}\nevent: m\ndata: {"n":1}\n\n`,
    `: two\n: lines\nid: ${old[1] as string}\ndata: {"n":2}\n\n`
  ], 'replayed: the frames as the encoder makes them')

  // new entries carry the mark, whether stored by XADD or by the idempotent script
  const plain = await s.chat.publish({ event: 'm', data: { n: 3 } })
  const idempotent = await s.chat.publish({ comment: 'c', data: { n: 4 } }, { idempotencyKey: 'k' })
  t.same(await fieldsOf(plain), ['v', '1', 'h', '', 't', 'event: m\ndata: {"n":3}\n\n', 'j', '{"event":"m","data":{"n":3}}'])
  t.same(await fieldsOf(idempotent), ['v', '1', 'h', ': c\n', 't', 'data: {"n":4}\n\n', 'j', '{"comment":"c","data":{"n":4}}'])
  // an unmarked entry that arrives while the channel is read is delivered live like any other; one in a newer
  // layout is skipped (and said so), live and in a replay
  await admin.call('XADD', key, '*', 'v', '2', 'h', '', 't', 'data: {"n":0}\n\n', 'j', '{"data":{"n":0}}')
  const late = await unmarked('', 'data: {"n":5}\n\n', '{"data":{"n":5}}')
  const live = await take(sub, 3) as ChannelItem[]
  t.same(live.map(i => ({ ...i })), [
    { id: plain, event: 'm', data: { n: 3 } },
    { id: idempotent, comment: 'c', data: { n: 4 } },
    { id: late, data: { n: 5 } }
  ], 'live: both layouts, in stream order')
  t.equal(live[2]?.[kFrame].toString(), `id: ${late}\ndata: {"n":5}\n\n`)
  const warned = s.logs.at(WARN).filter(l => /layout newer than this version reads/.test(l.msg))
  t.equal(warned.length, 1, 'the newer entry is skipped, once')
  t.equal(warned[0]?.layout, '2', 'naming its layout')
  t.same((await take(http.events, 5)).map(e => [e.id, e.event, e.data]), [
    [old[0], 'm', '{"n":1}'], [old[1], undefined, '{"n":2}'], [plain, 'm', '{"n":3}'], [idempotent, undefined, '{"n":4}'],
    [late, undefined, '{"n":5}']
  ], 'over HTTP: replayed, then live, the newer entry skipped')
  const again = await take(s.chat.subscribe({ lastEventId: '0-0' }), 5) as ChannelItem[]
  t.same(again.map(i => i[kFrame].toString()), [...replayed, ...live].map(i => i[kFrame].toString()), 'a replay of everything: the same bytes')
  t.equal(s.logs.at(WARN).filter(l => /layout newer than this version reads/.test(l.msg)).length, 2, 'skipped in the replay too')
})

t.test('publish with an idempotencyKey: stored once within the window, whatever the number of tries', async t => {
  t.setTimeout(10_000)
  const ctx = context(t)
  const admin = await ctx.client()
  const redis = await ctx.client()
  const s = await server(ctx, { backend: redisChannels({ redis, prefix: ctx.prefix, idempotencyWindow: 200 }) })
  const key = ctx.prefix + 'chat'
  const sub = s.chat.subscribe()
  const tries = await Promise.all([1, 2, 3].map(() => s.chat.publish({ data: { n: 1 } }, { idempotencyKey: 'order-1' })))
  const again = await s.chat.publish({ data: { n: 1 } }, { idempotencyKey: 'order-1' })
  t.same(new Set([...tries, again]).size, 1, 'one id for every try')
  const other = await s.chat.publish({ data: { n: 2 } }, { idempotencyKey: 'order-2' })
  t.not(other, again, 'another key: another item')
  t.same((await take(sub, 2)).map(i => i.id), [again, other], 'delivered once each')
  t.equal(Number(await admin.call('XLEN', key)), 2, 'stored once each')
  const remembered = `#${key.length}:${key}:order-1`
  t.ok(Number(await admin.call('PTTL', remembered)) <= 200, 'remembered for the window')
  // past the window (the key expires in Redis: wait for that, bounded), the same key stores again
  for (let i = 0; i < 100 && await admin.exists(remembered) === 1; i++) await sleep(10)
  const later = await s.chat.publish({ data: { n: 1 } }, { idempotencyKey: 'order-1' })
  t.not(later, again, 'a new item once the window is over')
  const publish = s.chat.publish.bind(s.chat) as (item: unknown, options: unknown) => Promise<string>
  for (const bad of ['', 'x'.repeat(257), 5]) {
    await t.rejects(publish({ data: 1 }, { idempotencyKey: bad }), { code: 'FST_SSE_INVALID_OPTION', field: 'idempotencyKey', message: /non-empty string of at most 256/ })
  }
  t.throws(() => redisChannels({ redis, idempotencyWindow: -1 }), { code: 'FST_SSE_INVALID_OPTION', field: 'idempotencyWindow' })
  t.equal(Number(await admin.call('XLEN', key)), 3, 'nothing stored by a refused publish')
})

t.test('a client with a keyPrefix: its keys carry it, and the reader still hands on what it reads', async t => {
  t.setTimeout(10_000)
  const ctx = context(t)
  // ioredis prefixes every key it sends; XREAD answers with the full key names
  const redis = await ctx.client({ keyPrefix: ctx.prefix })
  const backend = redisChannels({ redis, prefix: 'kp:' })
  const { app } = await startApp(() => {})
  ctx.later(() => app.close())
  const chat = app.sse.channel<number>('chat', { backend })
  const sub = chat.subscribe()
  const got = take(sub, 2)
  const ids = [await chat.publish({ data: 1 })]
  ids.push(await chat.publish({ data: 2 }))
  t.same((await within(got, 5000, 'live items')).map(item => item.id), ids, 'delivered live')
  t.equal(await (await ctx.client()).xlen(ctx.prefix + 'kp:chat'), 2, 'stored under the client\'s keyPrefix')
  t.same((await take(chat.subscribe({ lastEventId: ids[0] }), 1)).map(item => item.id), [ids[1]], 'replayed')
})

t.test('an idempotency key is no channel\'s key, and two channels\' idempotency keys never meet', async t => {
  t.setTimeout(10_000)
  const ctx = context(t)
  const redis = await ctx.client()
  const backend = redisChannels({ redis, prefix: ctx.prefix })
  const { app } = await startApp(() => {})
  ctx.later(() => app.close())
  const channel = (name: string): Channel<number, Promise<string>> => app.sse.channel<number>(name, { backend })
  // a channel named like where another channel's publish remembers its key
  const first = await channel('chat').publish({ data: 1 }, { idempotencyKey: 'k' })
  const named = channel('chat:idempotent:k')
  const sub = named.subscribe()
  const id = await named.publish({ data: 2 })
  t.equal((await within(take(sub, 1), 5000, 'the channel named like a key'))[0]?.id, id, 'a channel like any other')
  t.equal(await channel('chat').publish({ data: 1 }, { idempotencyKey: 'k' }), first, 'and the key still remembered')
  // names and keys that would spell the same key when joined
  await channel('a').publish({ data: 3 }, { idempotencyKey: 'b:idempotent:c' })
  await channel('a:idempotent:b').publish({ data: 4 }, { idempotencyKey: 'c' })
  t.same([await redis.xlen(ctx.prefix + 'a'), await redis.xlen(ctx.prefix + 'a:idempotent:b')], [1, 1], 'two channels, two items')
  const hashed = app.sse.channel<number>('hashed', { backend: redisChannels({ redis, prefix: '#' + ctx.prefix }) })
  t.match(await hashed.publish({ data: 5 }, { idempotencyKey: 'k' }), /^\d+-\d+$/, 'a prefix that starts with #')
  const stream = `#${ctx.prefix}hashed`
  t.equal(await redis.exists(`!${stream.length}:${stream}:k`), 1, 'its idempotency keys start with !')
  await redis.del(stream, `!${stream.length}:${stream}:k`)
  t.throws(() => redisChannels({ redis, prefix: '' }), { code: 'FST_SSE_INVALID_OPTION', field: 'prefix', message: /non-empty/ })
})

t.test('stats() of a channel this server does not read: the newest id it published or read, \'0-0\' before either', async t => {
  t.setTimeout(10_000)
  const ctx = context(t)
  const s = await server(ctx)
  const position = (): string | undefined => s.app.sse.stats().channels.find(c => c.name === 'chat')?.position
  t.equal(position(), '0-0', 'nothing published or read here yet')
  const first = await s.chat.publish({ data: { n: 1 } })
  t.equal(position(), first, 'not read, but published here: that id')
  const ids = await Promise.all([2, 3, 4].map(async n => await s.chat.publish({ data: { n } })))
  t.equal(position(), ids.sort().at(-1), 'the newest of publishes that answered in any order')
  const older = await s.chat.publish({ data: { n: 5 } }, { idempotencyKey: 'k' })
  t.equal(await s.chat.publish({ data: { n: 5 } }, { idempotencyKey: 'k' }), older, 'a repeated publish answers the first id')
  t.equal(position(), older)
  await readerReady(s.chat)
  t.not(position(), older, 'read: the reader\'s position')
})

t.test('a backend serves one channel of a name at a time; a channel that goes quiet before its reader started is left alone', async t => {
  t.setTimeout(10_000)
  const ctx = context(t)
  const admin = await ctx.client()
  const redis = await ctx.client()
  const backend = redisChannels({ redis, prefix: ctx.prefix })
  const a = await server(ctx, { backend })
  const other = await startApp(() => {})
  ctx.later(() => other.app.close())
  t.throws(() => other.app.sse.channel('chat', { backend }), { code: 'FST_SSE_INVALID_OPTION', field: 'backend', message: /give each app its own redisChannels\(\)/ })
  a.chat.close()
  const again = other.app.sse.channel<number>('chat', { backend })
  // subscribed and gone again before Redis answered where the stream is: that answer is dropped
  await again.subscribe().return?.()
  await admin.set(ctx.prefix + 'bad', 'not a stream')
  const bad = other.app.sse.channel<number>('bad', { backend })
  await bad.subscribe().return?.()
  const sub = again.subscribe()
  const id = await again.publish({ data: 1 })
  t.equal((await take(sub, 1))[0]?.id, id, 'the channel works')
  t.equal(other.logs.lines.filter(l => /reader failed/.test(l.msg)).length, 0, 'nothing logged for the channel that went quiet')
})

t.test('app.close() closes each reader connection, not the client it was given', async t => {
  t.setTimeout(10_000)
  const ctx = context(t)
  const admin = await ctx.client()
  const redis = await ctx.client()
  const s = await server(ctx, { backend: redisChannels({ redis, prefix: ctx.prefix }) })
  await readerReady(s.chat)
  const other = s.app.sse.channel('other', { backend: redisChannels({ redis, prefix: ctx.prefix, readerName: 'other' }) })
  await readerReady(other as Channel<{ n: number }, Promise<string>>)
  t.ok(await readerId(admin, 'fastify-typed-sse:' + ctx.prefix), 'a reader stays while its channels exist, subscribed or not')
  t.ok(await readerId(admin, 'other:' + ctx.prefix))
  const sub = s.chat.subscribe()
  await s.app.close()
  t.same(await sub.next(), { value: undefined, done: true }, 'subscriptions ended')
  t.equal(await readerId(admin, 'fastify-typed-sse:' + ctx.prefix), undefined, 'the reader connection is gone')
  t.equal(await readerId(admin, 'other:' + ctx.prefix), undefined)
  t.equal(redis.status, 'ready', 'the user\'s client is still open')
  t.equal(await redis.ping(), 'PONG')
  t.ok(other.closed)
})

t.test('options: redisChannels() and the backend option are validated; a channel keeps its backend', async t => {
  const ctx = context(t)
  const redis = await ctx.client()
  t.throws(() => redisChannels({ redis: {} as Redis }), { code: 'FST_SSE_INVALID_OPTION', field: 'redis' })
  t.throws(() => redisChannels(undefined as unknown as { redis: Redis }), { code: 'FST_SSE_INVALID_OPTION', field: 'options', message: /redisChannels\(\) option "options" must be an object/ })
  t.throws(() => redisChannels({ redis, prefix: 1 as unknown as string }), { code: 'FST_SSE_INVALID_OPTION', field: 'prefix' })
  t.throws(() => redisChannels({ redis, publishTimeout: 0 }), { code: 'FST_SSE_INVALID_OPTION', field: 'publishTimeout', message: /positive whole number/ })
  t.throws(() => redisChannels({ redis, blockTimeout: 1.5 }), { code: 'FST_SSE_INVALID_OPTION', field: 'blockTimeout' })
  t.throws(() => redisChannels({ redis, readerName: 'has space' }), { code: 'FST_SSE_INVALID_OPTION', field: 'readerName' })
  const s = await server(ctx)
  t.throws(() => s.app.sse.channel('x', { backend: 'redis' as unknown as RedisChannels }), { code: 'FST_SSE_INVALID_OPTION', field: 'backend' })
  t.throws(() => s.app.sse.channel('chat'), { code: 'FST_SSE_INVALID_OPTION', field: 'backend', message: /pass the same backend/ }, 'a Redis channel asked for without its backend')
  t.throws(() => s.app.sse.channel('chat', { backend: redisChannels({ redis }) }), { code: 'FST_SSE_INVALID_OPTION', field: 'backend' }, 'another backend')
  s.app.sse.channel('memory')
  t.throws(() => s.app.sse.channel('memory', { backend: redisChannels({ redis }) }), { code: 'FST_SSE_INVALID_OPTION', field: 'backend' })
})
