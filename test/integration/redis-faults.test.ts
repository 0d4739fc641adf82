// Redis channels against a redis-server of each test's own (test/support/redis-server.ts): killed with -9 and
// started again on the same port, stalled with SIGSTOP, watched with MONITOR, given an ACL — what the shared
// Redis at REDIS_URL must never suffer. Two Fastify instances in one process, each with its own ioredis client,
// stand for two servers behind a load balancer.
import t from 'tap'
import type { Test } from 'tap'
import { Redis, type RedisOptions } from 'ioredis'
import type { FastifyInstance } from 'fastify'
import { setTimeout as sleep } from 'node:timers/promises'
import { redisChannels, type RedisChannelsOptions } from '../../lib/channel/redis/index.js'
import {
  SSE_DIAGNOSTICS, subscribeSseDiagnostic, type Channel, type ChannelSubscription, type ResetReason, type SseItem,
  type SseResetData, type SseResetMessage, type SseRuntimeError
} from '../../lib/index.js'
import { ERROR, open, startApp, take, WARN, within, type LogCapture, type LogLine } from '../helpers.js'
import { startRedis, type RedisServer } from '../support/redis-server.js'

const INFO = 30

interface Server1 {
  app: FastifyInstance
  url: string
  logs: LogCapture
  chat: Channel<number, Promise<string>>
  redis: Redis
}

/** A redis-server of the test's own, stopped (and its directory removed) at teardown. */
type OwnRedis = RedisServer & { client: (options?: RedisOptions) => Promise<Redis> }

async function ownRedis (t: Test, args: string[] = []): Promise<OwnRedis> {
  const server = await startRedis(args)
  const clients: Redis[] = []
  t.teardown(async () => {
    for (const c of clients) c.disconnect()
    await server.stop()
  })
  return {
    ...server,
    client: async (options = {}) => {
      const c = new Redis(server.port, '127.0.0.1', options)
      c.on('error', () => {}) // the outages are the point here; ioredis would print each one
      clients.push(c)
      if (c.status !== 'ready') await new Promise(resolve => c.once('ready', resolve))
      return c
    }
  }
}

/** One "server": an app with the channel `chat` on that Redis and the route GET /chat. */
async function server (t: Test, redis: Redis, options: Partial<RedisChannelsOptions> = {}): Promise<Server1> {
  const backend = redisChannels({ redis, prefix: 'sse:', ...options })
  let chat!: Server1['chat']
  const { app, url, logs } = await startApp(app => {
    chat = app.sse.channel<number>('chat', { backend, history: 10_000 })
    app.get('/chat', (req, reply) =>
      reply.sse(chat.subscribe({ lastEventId: req.headers['last-event-id'], signal: req.signal })))
  })
  t.teardown(() => app.close())
  return { app, url, logs, chat, redis }
}

t.test('kill -9, restart with AOF, two servers publishing: each resolved publish reaches all, in order', async t => {
  t.setTimeout(60_000)
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => { process.off('unhandledRejection', onUnhandled) })
  const redis = await ownRedis(t)
  // a short reconnection delay: the outage is what the test waits for, not the client's back-off
  const options = { retryStrategy: () => 50 }
  const a = await server(t, await redis.client(options))
  const b = await server(t, await redis.client(options))
  const clients = await Promise.all([a, a, b, b].map(s => open(`${s.url}/chat`)))
  const live = [a.chat.subscribe(), b.chat.subscribe()]

  const resolved: string[] = []
  const rejected: SseRuntimeError[] = []
  let stop = false
  /** One publish every few ms from each server, in turn; bounded in count and time. */
  const publishing = (async () => {
    const deadline = Date.now() + 30_000
    for (let n = 0; !stop && n < 4000 && Date.now() < deadline; n++) {
      const s = n % 2 === 0 ? a : b
      try {
        resolved.push(await s.chat.publish({ data: n }))
      } catch (err) {
        rejected.push(err as SseRuntimeError)
        await sleep(5)
      }
    }
  })()
  /** Polls a condition the publishing loop changes, for at most 20 s. */
  const until = async (done: () => boolean, what: string): Promise<void> => {
    const deadline = Date.now() + 20_000
    while (!done()) {
      if (Date.now() > deadline) throw new Error(`timed out: ${what}`)
      await sleep(5)
    }
  }
  await until(() => resolved.length >= 50, '50 publishes before the outage')
  await redis.kill()
  await until(() => rejected.length >= 5, 'publishes rejected during the outage')
  const lost = (l: LogLine): boolean => l.level === WARN && /reader lost its connection/.test(l.msg)
  await within(a.logs.waitFor(lost), 5000, 'the reader noticed')
  let attempts = 0
  await within(a.logs.waitFor(l => /reader connection error/.test(l.msg) && ++attempts === 2), 5000, 'two attempts')
  t.equal(a.logs.lines.filter(lost).length, 1, 'one warning per outage')
  const before = resolved.length
  await redis.restart()
  await until(() => resolved.length >= before + 50, '50 publishes after the restart')
  stop = true
  await publishing
  await within(a.logs.waitFor(l => l.level === INFO && /reconnected; resuming/.test(l.msg)), 5000, 'reader back')

  t.ok(rejected.every(err => err.code === 'FST_SSE_CHANNEL_UNAVAILABLE'), 'each failed publish: CHANNEL_UNAVAILABLE')
  t.ok(rejected.some(err => /Redis is not connected/.test(err.message)), 'while reconnecting: not published')
  const last = resolved.at(-1) as string
  const overHttp = await within(Promise.all(clients.map(async c => {
    const ids: string[] = []
    while (ids.at(-1) !== last) ids.push(...(await take(c.events, 1)).map(i => i.id as string))
    return ids
  })), 20_000, 'every HTTP subscriber reached the last publish')
  const inProcess = await within(Promise.all(live.map(async sub => {
    const ids: string[] = []
    while (ids.at(-1) !== last) ids.push(...(await take(sub, 1)).map(i => i.id as string))
    return ids
  })), 20_000, 'every in-process subscriber reached the last publish')
  const seen = [...overHttp, ...inProcess]
  t.ok(seen.every(ids => JSON.stringify(ids) === JSON.stringify(seen[0])), 'one order on both servers')
  t.ok(seen.every(ids => new Set(ids).size === ids.length), 'no duplicate')
  const got = new Set(seen[0])
  t.same(resolved.filter(id => !got.has(id)), [], 'every resolved publish delivered')
  t.same(unhandled, [], 'no unhandled rejection')
  for (const c of clients) c.res.body.destroy()
})

t.test('Redis restarted without its data: resuming from an id of the lost stream gives sse-reset', async t => {
  t.setTimeout(30_000)
  const redis = await ownRedis(t, ['--appendonly', 'no'])
  const s = await server(t, await redis.client({ retryStrategy: () => 50 }))
  const first = await open(`${s.url}/chat`)
  const ids = [await s.chat.publish({ data: 1 }), await s.chat.publish({ data: 2 }), await s.chat.publish({ data: 3 })]
  const seen = await within(take(first.events, 1), 5000, 'the first item')
  first.res.body.destroy()
  await redis.kill()
  await redis.restart()
  const admin = await redis.client()
  t.equal(await admin.exists('sse:chat'), 0, 'the stream is gone')
  // the app's client reconnects on its own; publish until it has (bounded)
  const newer: string[] = []
  for (let i = 0; newer.length < 2 && i < 500; i++) {
    const id = await s.chat.publish({ data: 4 }).catch(() => undefined)
    if (id === undefined) await sleep(20)
    else newer.push(id)
  }
  t.equal(newer.length, 2, 'publishing again')
  const back = await open(`${s.url}/chat`, { headers: { 'last-event-id': seen[0]?.id as string } })
  const reset = (await within(take(back.events, 1), 5000, 'the reset'))[0]
  t.same(reset, { id: newer.at(-1), event: 'sse-reset', data: '{"reason":"unknown"}' }, 'not the new items')
  t.equal(ids.length, 3)
  back.res.body.destroy()
})

/** Publishes once the app's client is connected again (it reconnects apart from the reader), within 10 s. */
async function publishWhenBack (chat: Server1['chat'], data: number): Promise<string> {
  const deadline = Date.now() + 10_000
  for (;;) {
    try {
      return await chat.publish({ data })
    } catch (err) {
      if (Date.now() > deadline) throw err
      await sleep(20)
    }
  }
}

/** The `sse-reset` item an in-process subscriber gets. */
function resetAt (id: string | undefined, reason: ResetReason = 'unknown'): SseItem<SseResetData> {
  return { id, event: 'sse-reset', data: { reason } }
}

interface ReaderAway {
  s: Server1
  admin: Redis
  /** A subscriber of `chat` that got a first item: the reader reads the stream. */
  sub: ChannelSubscription<number>
  cutReader: () => Promise<void>
}

/**
 * A server on a Redis of the test's own, whose readers can be cut off (`cutReader`): it reconnects 300 ms later (it
 * is a duplicate of the app's client, and has its retry strategy), time for `admin` to change the streams.
 */
async function readerAway (t: Test): Promise<ReaderAway> {
  const redis = await ownRedis(t)
  const admin = await redis.client()
  const s = await server(t, await redis.client({ retryStrategy: () => 300 }))
  const sub = s.chat.subscribe()
  const before = await s.chat.publish({ data: 1 })
  t.equal((await take(sub, 1))[0]?.id, before, 'the reader reads chat')
  const cutReader = async (): Promise<void> => {
    const list = await admin.call('CLIENT', 'LIST') as string
    // every reader (one per backend): the connections named <readerName>:<prefix>
    const ids = list.split('\n').filter(l => / name=fastify-typed-sse:sse: /.test(l)).map(l => /^id=(\d+)/.exec(l)?.[1])
    for (const id of ids) await admin.call('CLIENT', 'KILL', 'ID', id as string)
  }
  return { s, admin, sub, cutReader }
}

t.test('Redis restarted without its data: a subscriber connected across it gets sse-reset, then new items', async t => {
  t.setTimeout(30_000)
  const redis = await ownRedis(t, ['--appendonly', 'no'])
  const resets: SseResetMessage[] = []
  t.teardown(subscribeSseDiagnostic(SSE_DIAGNOSTICS.reset, message => { resets.push(message) }))
  const s = await server(t, await redis.client({ retryStrategy: () => 50 }))
  const local = s.app.sse.channel<number>('local')
  const inMemory = local.subscribe()
  const backend = redisChannels({ redis: s.redis, prefix: 'sse:' })
  const other = s.app.sse.channel<number>('other', { backend }).subscribe()
  const c = await open(`${s.url}/chat`)
  const before = await s.chat.publish({ data: 1 })
  t.equal((await within(take(c.events, 1), 5000, 'an item before'))[0]?.id, before)
  await redis.kill()
  await within(s.logs.waitFor(l => l.level === WARN && /reader lost its connection/.test(l.msg)), 5000, 'down')
  await other.return?.() // leaves during the outage: not checked, not reset
  await redis.restart()
  const [reset] = await within(take(c.events, 1), 5000, 'the reset')
  t.same(reset, { id: '0-0', event: 'sse-reset', data: '{"reason":"unknown"}' }, 'at the new stream\'s start')
  const after = [await publishWhenBack(s.chat, 2), await s.chat.publish({ data: 3 })]
  t.same((await within(take(c.events, 2), 5000, 'the new items')).map(i => i.id), after, 'then the new items')
  t.same(resets, [{ channel: 'chat', reason: 'unknown', position: '0-0' }], 'one reset served')
  const stats = s.app.sse.stats()
  t.same(stats.resets, { expired: 0, unknown: 1, invalid: 0 })
  t.same(stats.channels.map(ch => [ch.name, ch.resets]), [['chat', 1], ['local', 0], ['other', 0]])
  t.equal(s.logs.lines.filter(l => /stream does not go on/.test(l.msg)).length, 1, 'one warning')
  local.publish({ data: 4 })
  t.same((await take(inMemory, 1))[0]?.data, 4, 'the in-memory channel: no reset')
  // a client that reconnects from the reset's id misses nothing
  const back = await open(`${s.url}/chat`, { headers: { 'last-event-id': '0-0' } })
  t.same((await within(take(back.events, 2), 5000, 'replayed')).map(i => i.id), after)
  c.res.body.destroy()
  back.res.body.destroy()
})

t.test('Redis restarted with its data (AOF): a subscriber connected across it gets no reset', async t => {
  t.setTimeout(30_000)
  const redis = await ownRedis(t)
  const s = await server(t, await redis.client({ retryStrategy: () => 50 }))
  const c = await open(`${s.url}/chat`)
  const before = await s.chat.publish({ data: 1 })
  t.equal((await within(take(c.events, 1), 5000, 'an item before'))[0]?.id, before)
  await redis.kill()
  await redis.restart()
  const after = await publishWhenBack(s.chat, 2)
  t.same(await within(take(c.events, 1), 5000, 'the next item'), [{ id: after, data: '2' }], 'no reset')
  t.same(s.app.sse.stats().resets, { expired: 0, unknown: 0, invalid: 0 })
  c.res.body.destroy()
})

t.test('a key replaced while the reader was away: its read fails until the key is a stream again, then a reset', async t => {
  t.setTimeout(30_000)
  const { s, admin, sub, cutReader } = await readerAway(t)
  await cutReader()
  await admin.multi().del('sse:chat').set('sse:chat', 'not a stream').exec()
  const wrong = (l: LogLine): boolean => l.level === ERROR && /WRONGTYPE/.test(String(l.err?.message))
  await within(s.logs.waitFor(l => wrong(l) && l.channel === 'chat'), 5000, 'the channel retries alone')
  await admin.del('sse:chat')
  t.same(await within(take(sub, 1), 5000, 'the reset'), [resetAt('0-0')])
  const after = await s.chat.publish({ data: 2 })
  t.equal((await within(take(sub, 1), 5000, 'the next item'))[0]?.id, after)
})

t.test('keys deleted while the reader was away: each channel still read is reset; one that left meanwhile is not', async t => {
  t.setTimeout(30_000)
  const { s, admin, cutReader } = await readerAway(t)
  const backend = redisChannels({ redis: s.redis, prefix: 'sse:' })
  const a = s.app.sse.channel<number>('a', { backend })
  const b = s.app.sse.channel<number>('b', { backend })
  const subA = a.subscribe()
  const subB = b.subscribe()
  const ids = [await a.publish({ data: 1 }), await b.publish({ data: 2 })]
  t.same([(await take(subA, 1))[0]?.id, (await take(subB, 1))[0]?.id], ids)
  // a's reset is told before b is checked: its listener ends b's last subscriber then (b goes quiet)
  t.teardown(subscribeSseDiagnostic(SSE_DIAGNOSTICS.reset, ({ channel }) => {
    if (channel === 'a') void subB.return?.()
  }))
  await cutReader()
  await admin.del('sse:a', 'sse:b')
  t.same(await within(take(subA, 1), 5000, 'a reset'), [resetAt('0-0')])
  const after = await a.publish({ data: 3 })
  t.equal((await within(take(subA, 1), 5000, 'the next item'))[0]?.id, after)
  t.same(s.app.sse.stats().channels.map(ch => [ch.name, ch.resets]), [['chat', 0], ['a', 1], ['b', 0]])
  t.same(s.logs.lines.filter(l => /stream does not go on/.test(l.msg)).map(l => l.channel), ['a'], 'b is not read')
})

t.test('a reader whose channels all left while it was away is up again as soon as its connection is', async t => {
  t.setTimeout(30_000)
  const { s, sub, cutReader } = await readerAway(t)
  const up = new Promise(resolve => { t.teardown(subscribeSseDiagnostic(SSE_DIAGNOSTICS.readerUp, resolve)) })
  await cutReader()
  await within(s.logs.waitFor(l => l.level === WARN && /reader lost its connection/.test(l.msg)), 5000, 'down')
  await sub.return?.()
  t.equal(s.app.sse.stats().channels[0]?.connected, false, 'down meanwhile')
  // nothing to read, so nothing to be answered: its connection being ready again is all there is to wait for
  t.match(await within(up, 5000, 'readerUp'), { channel: 'chat' })
  t.equal(s.app.sse.stats().channels[0]?.connected, true, 'up')
})

t.test('entries trimmed before the reader read them: sse-reset (expired) at the newest, then new items', async t => {
  t.setTimeout(30_000)
  const { s, admin, sub, cutReader } = await readerAway(t)
  await cutReader()
  const missed = [await s.chat.publish({ data: 2 }), await s.chat.publish({ data: 3 })]
  await admin.xtrim('sse:chat', 'MAXLEN', 1)
  t.same(await within(take(sub, 1), 5000, 'the reset'), [resetAt(missed[1], 'expired')])
  const after = await s.chat.publish({ data: 4 })
  t.equal((await within(take(sub, 1), 5000, 'the next item'))[0]?.id, after)
  t.same(s.app.sse.stats().resets, { expired: 1, unknown: 0, invalid: 0 })
})

t.test('a stalled Redis: the publish times out, and a retry with the same idempotencyKey stores it once', async t => {
  t.setTimeout(30_000)
  const redis = await ownRedis(t)
  const s = await server(t, await redis.client(), { publishTimeout: 200 })
  const admin = await redis.client()
  const sub = s.chat.subscribe()
  await within(s.chat.publish({ data: 0 }), 5000, 'a publish before the stall')
  t.equal((await take(sub, 1))[0]?.data, 0)
  redis.pause()
  let resumed = false
  t.teardown(() => { if (!resumed) redis.resume() })
  await t.rejects(s.chat.publish({ data: 1 }, { idempotencyKey: 'order-1' }), {
    code: 'FST_SSE_CHANNEL_UNAVAILABLE',
    message: new RegExp('did not answer within 200 ms; the item may or may not have been published ' +
      '\\(publish it again with the same idempotencyKey: it is stored once\\)')
  })
  redis.resume()
  resumed = true
  const id = await within(s.chat.publish({ data: 1 }, { idempotencyKey: 'order-1' }), 5000, 'the retry')
  const marker = await s.chat.publish({ data: 2 })
  t.same((await take(sub, 2)).map(i => i.id), [id, marker], 'delivered once')
  t.equal(await admin.xlen('sse:chat'), 3, 'stored once')
})

t.test('the reader closes while it waits to reconnect; a Redis that refuses XREAD is logged and retried', async t => {
  t.setTimeout(30_000)
  const redis = await ownRedis(t)
  const admin = await redis.client()
  // a long reconnection delay (the reader's connection is a duplicate of this client: it has it too)
  const s = await server(t, await redis.client({ retryStrategy: () => 10_000 }))
  const sub = s.chat.subscribe()
  const id = await s.chat.publish({ data: 1 })
  t.equal((await take(sub, 1))[0]?.id, id)
  await admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes')
  await within(s.logs.waitFor(l => l.level === WARN && /reader lost its connection/.test(l.msg)), 5000, 'waiting')
  await within(s.app.close(), 2000, 'app.close() while the reader waits to reconnect')

  // an ACL user that may not XREAD: the reader starts (XREVRANGE), every read fails, no channel is to blame
  await admin.call('ACL', 'SETUSER', 'noread', 'on', 'nopass', '~*', '&*', '+@all', '-xread')
  const limited = await redis.client({ username: 'noread', password: 'x' })
  const s2 = await server(t, limited, { blockTimeout: 100 })
  s2.chat.subscribe()
  let failed = 0
  const refused = (l: LogLine): boolean => l.level === ERROR && /reader failed; retrying/.test(l.msg) &&
    /NOPERM/.test(String(l.err?.message))
  await within(s2.logs.waitFor(l => refused(l) && ++failed === 2), 5000, 'logged and retried')
})

t.test('a channel without local subscribers is not read: XREAD names only streams with subscribers', async t => {
  t.setTimeout(30_000)
  const redis = await ownRedis(t)
  const monitor = await (await redis.client()).monitor()
  t.teardown(() => monitor.disconnect())
  const reads: string[][] = []
  let wake: (() => void) | undefined
  monitor.on('monitor', (_time: string, args: string[]) => {
    if (args[0]?.toUpperCase() !== 'XREAD') return
    reads.push(args.slice(args.indexOf('STREAMS') + 1))
    wake?.()
  })
  /** The streams (its control stream left out) of the first XREAD from now on that `match`es. */
  const nextRead = async (match: (streams: string[]) => boolean): Promise<string[]> => {
    for (let seen = reads.length; ; seen++) {
      while (reads.length === seen) await new Promise<void>(resolve => { wake = resolve })
      const all = reads[seen] as string[]
      const streams = all.slice(1, all.length / 2).sort()
      if (match(streams)) return streams
    }
  }
  const s = await server(t, await redis.client(), { blockTimeout: 60_000 })
  const backend = redisChannels({ redis: s.redis, prefix: 'sse:' })
  const a = s.app.sse.channel<number>('a', { backend })
  const b = s.app.sse.channel<number>('b', { backend })
  const c = s.app.sse.channel<number>('c', { backend })
  const readingA = nextRead(() => true)
  const subA = a.subscribe()
  t.same(await within(readingA, 5000, 'a read'), ['sse:a'])
  const readingAB = nextRead(streams => streams.length === 2)
  const subB = b.subscribe()
  t.same(await within(readingAB, 5000, 'a and b'), ['sse:a', 'sse:b'], 'b joined')
  await c.publish({ data: 1 }) // no subscriber to c here: stored, never read
  const idA = await a.publish({ data: 2 })
  t.equal((await take(subA, 1))[0]?.id, idA)
  await subB.return?.()
  // the read in flight still names b; the next one (once a has an item) does not
  const readingOnlyA = nextRead(streams => !streams.includes('sse:b'))
  const idA2 = await a.publish({ data: 3 })
  t.same(await within(readingOnlyA, 5000, 'after b left'), ['sse:a'], 'b left: not read any more')
  t.equal((await take(subA, 1))[0]?.id, idA2)
  t.ok(reads.every(streams => !streams.includes('sse:c')), 'c never read')
})

t.test('a stalled Redis (SIGSTOP): the reader is down within blockTimeout + 1 s, and back after SIGCONT with nothing lost', async t => {
  t.setTimeout(30_000)
  const redis = await ownRedis(t)
  const blockTimeout = 500
  const s = await server(t, await redis.client({ retryStrategy: () => 50 }), { blockTimeout, publishTimeout: 20_000 })
  const told: string[] = []
  const down = new Promise<void>(resolve => {
    t.teardown(subscribeSseDiagnostic(SSE_DIAGNOSTICS.readerDown, ({ channel }) => { told.push(`down ${channel}`); resolve() }))
  })
  const up = new Promise<void>(resolve => {
    t.teardown(subscribeSseDiagnostic(SSE_DIAGNOSTICS.readerUp, ({ channel }) => { told.push(`up ${channel}`); resolve() }))
  })
  const sub = s.chat.subscribe()
  const before = await s.chat.publish({ data: 1 })
  t.equal((await within(take(sub, 1), 5000, 'an item before the stall'))[0]?.id, before)
  const connected = (): boolean | undefined => s.app.sse.stats().channels.find(ch => ch.name === 'chat')?.connected
  t.equal(connected(), true)
  redis.pause()
  let resumed = false
  t.teardown(() => { if (!resumed) redis.resume() })
  const stalled = Date.now()
  // stored once Redis answers again: the reader must hand it on then, after the item before and before the next
  const during = s.chat.publish({ data: 2 })
  await within(down, blockTimeout + 1000 + 3000, 'readerDown')
  const detected = Date.now() - stalled
  t.comment(`a stalled Redis noticed after ${detected} ms (blockTimeout ${blockTimeout} ms)`)
  // the bound, and up to 1 s more for the timers of a loaded machine
  t.ok(detected <= blockTimeout + 1000 + 1000, `noticed within blockTimeout + 1 s (${detected} ms)`)
  t.equal(connected(), false, 'stats: not connected')
  t.equal(s.logs.lines.filter(l => l.level === WARN && /reader/.test(l.msg)).length, 1, 'one warning')
  redis.resume()
  resumed = true
  await within(up, 10_000, 'readerUp')
  t.equal(connected(), true, 'stats: connected again')
  const stored = await within(during, 10_000, 'the publish made during the stall')
  const after = await s.chat.publish({ data: 3 })
  t.same((await within(take(sub, 2), 5000, 'the items after')).map(i => i.id), [stored, after], 'nothing lost, nothing twice')
  t.same(told, ['down chat', 'up chat'], 'told once each')
  t.same(s.app.sse.stats().resets, { expired: 0, unknown: 0, invalid: 0 }, 'no reset')
})

t.test('a reader down when its channels all left stays until Redis answers it: readerUp told, then it closes when idle', async t => {
  t.setTimeout(30_000)
  const redis = await ownRedis(t)
  const admin = await redis.client()
  // a user whose XREAD can be taken away and given back: reads fail while its connection stays up
  await admin.call('ACL', 'SETUSER', 'reader', 'on', 'nopass', '~*', '&*', '+@all')
  const s = await server(t, await redis.client({ username: 'reader', password: 'x' }), { blockTimeout: 200, readerIdleTimeout: 300 })
  const told: string[] = []
  t.teardown(subscribeSseDiagnostic(SSE_DIAGNOSTICS.readerDown, ({ channel }) => { told.push(`down ${channel}`) }))
  const up = new Promise<void>(resolve => {
    t.teardown(subscribeSseDiagnostic(SSE_DIAGNOSTICS.readerUp, ({ channel }) => { told.push(`up ${channel}`); resolve() }))
  })
  const connected = (): boolean | undefined => s.app.sse.stats().channels[0]?.connected
  const sub = s.chat.subscribe()
  const id = await s.chat.publish({ data: 1 })
  t.equal((await within(take(sub, 1), 5000, 'an item'))[0]?.id, id)
  await admin.call('ACL', 'SETUSER', 'reader', '-xread')
  await within(s.logs.waitFor(l => l.level === WARN && /reader cannot read/.test(l.msg)), 5000, 'down')
  await sub.return?.()
  // longer than readerIdleTimeout: Redis is still refusing, so the reader is still down, not gone
  await sleep(900)
  t.equal(connected(), false, 'still down (not undefined: the reader is kept while down)')
  await admin.call('ACL', 'SETUSER', 'reader', '+xread')
  await within(up, 5000, 'readerUp once Redis answers, with no channel to read')
  t.same(told, ['down chat', 'up chat'], 'down, then up: told once each')
  for (let i = 0; i < 100 && connected() !== undefined; i++) await sleep(50)
  t.equal(connected(), undefined, 'then closed once idle')
})
