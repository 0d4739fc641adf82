// A channel's life in its registry over real sockets and on its own: forgotten once nobody uses it (at once when
// nothing was published, after `idleTimeout` otherwise), what an object that was forgotten still does, the
// busiest-first `stats()`, the history ring that grows as it fills, and the tag index of targeted publishes.
import t from 'tap'
import type { Test } from 'tap'
import Fastify from 'fastify'
import { setTimeout as sleep } from 'node:timers/promises'
import v8 from 'node:v8'
import { runInNewContext } from 'node:vm'
import { ChannelRegistry, type SseChannel } from '../../lib/channel/index.js'
import { ForgottenChannels, IdleChannels, largest, type IdleClock } from '../../lib/channel/lifecycle.js'
import type { ChannelBackendFactory, ChannelEncoder, ChannelItem, Replay, ReplayPage } from '../../lib/channel/backend.js'
import { MemoryBackend, memoryBackend } from '../../lib/channel/memory.js'
import { TagIndex, reaches, resolveTarget } from '../../lib/channel/target.js'
import { encodeAhead, encodeParts } from '../../lib/encode.js'
import { invalidOption, nearName } from '../../lib/errors.js'
import ssePlugin, { type SseItem } from '../../lib/index.js'
import { open, startApp, take, within } from '../helpers.js'

/** Polls `check` (every few ms, bounded) for state that has no event of its own, such as `channel.size`. */
async function until (check: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

async function makeApp (t: Test) {
  const app = Fastify()
  await app.register(ssePlugin)
  await app.ready()
  t.teardown(() => app.close())
  return app
}

const registered = (channel: object): boolean => (channel as SseChannel<unknown>).registered

t.test('over HTTP: a room subscribed once and left is forgotten at once; one with items waits its idleTimeout', async t => {
  t.setTimeout(30_000)
  // rooms wait seconds (a loaded machine still resumes within them); `quick-` rooms are forgotten soon
  const { app, url } = await startApp(app => {
    app.get<{ Params: { room: string } }>('/rooms/:room', (req, reply) => {
      const idleTimeout = req.params.room.startsWith('quick-') ? 100 : 10_000
      return reply.sse(app.sse.channel(req.params.room, { idleTimeout }).subscribe({ lastEventId: req.headers['last-event-id'] }))
    })
  })
  t.teardown(() => app.close())
  const rooms = Array.from({ length: 20 }, (_, i) => `r${i}`)
  const clients = await Promise.all(rooms.map(room => open(`${url}/rooms/${room}`)))
  t.equal(app.sse.stats().channelCount, 20, 'each room held while subscribed')
  const first = app.sse.channel('r0', { idleTimeout: 10_000 })
  const id = first.publish({ data: 'hello' })
  t.same(await take(clients[0]!.events, 1), [{ id, data: 'hello' }])
  for (const client of clients) client.res.body.destroy()
  await until(() => app.sse.stats().channelCount === 1, 'the rooms with nothing published forgotten')
  t.same(app.sse.stats().channels.map(c => c.name), ['r0'], 'the room with an item is kept')

  // a client that comes back within idleTimeout resumes exactly
  const back = await open(`${url}/rooms/r0`, { headers: { 'last-event-id': id } })
  const later = first.publish({ data: 'again' })
  t.same(await take(back.events, 1), [{ id: later, data: 'again' }], 'resumed: nothing replayed twice')
  back.res.body.destroy()

  // one that comes back after its room was forgotten gets a reset: the history went with it
  const quick = await open(`${url}/rooms/quick-1`)
  const items = [0, 1].map(n => app.sse.channel('quick-1', { idleTimeout: 100 }).publish({ data: n }))
  await take(quick.events, 2)
  quick.res.body.destroy()
  await until(() => app.sse.stats().channels.every(c => c.name !== 'quick-1'), 'quick-1 forgotten after its idleTimeout')
  t.ok(registered(first), 'r0 still held: it waits its own idleTimeout')
  const late = await open(`${url}/rooms/quick-1`, { headers: { 'last-event-id': items[0] } })
  const [reset] = await take(late.events, 1)
  // `expired` while the forgotten object is still alive (its ids go on), `unknown` once it was collected
  t.match(reset, { event: 'sse-reset', data: /^\{"reason":"(expired|unknown)"\}$/ }, 'told to reload')
  late.res.body.destroy()
})

t.test('over HTTP: on a quiet channel a client given a reset resumes from its position when it comes back', async t => {
  t.setTimeout(30_000)
  // the route holds no channel object: only the registry keeps the room
  const { app, url } = await startApp(app => {
    app.get<{ Params: { user: string } }>('/users/:user', (req, reply) => reply.sse(
      app.sse.channel(`user:${req.params.user}`).subscribe({ lastEventId: req.headers['last-event-id'] })
    ))
  })
  t.teardown(() => app.close())
  let lastEventId = 'from-a-previous-process-7'
  const firsts = []
  for (let i = 0; i < 3; i++) {
    const client = await open(`${url}/users/42`, { headers: { 'last-event-id': lastEventId } })
    await until(() => app.sse.channel('user:42').size === 1, 'subscribed')
    // a reset comes at once; a client that resumed gets the next item
    if (i > 0) app.sse.channel('user:42').publish({ data: `item ${i}` })
    const [item] = await take(client.events, 1)
    firsts.push(item?.event ?? item?.data)
    lastEventId = item?.id as string
    client.res.body.destroy()
    // looked at through stats(): channel(name) would make the room again
    await until(() => app.sse.stats().channels.every(c => c.name !== 'user:42' || c.subscribers === 0), 'left')
    t.ok(app.sse.stats().channels.some(c => c.name === 'user:42'), 'kept: its client holds one of its ids')
  }
  t.same(firsts, ['sse-reset', 'item 1', 'item 2'], 'one reset, then resumed each time')
})

t.test('a forgotten object still held is what channel(name) hands back: its options, its ids, its close()', async t => {
  t.setTimeout(10_000)
  const app = await makeApp(t)
  const news = app.sse.channel<string>('news', { history: 1000 })
  await news.subscribe().return?.()
  t.notOk(registered(news), 'forgotten as its only subscriber left, nothing published')
  t.equal(app.sse.stats().channelCount, 0, 'not held')
  const viaRoute = app.sse.channel<string>('news')
  t.equal(viaRoute, news, 'the object kept, taken back')
  t.ok(registered(news))
  t.equal((viaRoute as SseChannel<string>).limits.history, 1000, 'with its options')
  t.equal(app.sse.channel('news', { history: 1000 }), news, 'its options asked again: no refusal')
  const listening = viaRoute.subscribe()
  const id = news.publish({ data: 'through the kept object' })
  t.same(await within(listening.next(), 2000, 'the item'), { done: false, value: { id, data: 'through the kept object' } })
  await listening.return?.()

  // forgotten after its idleTimeout: taken back by a subscribe or a publish, its ids going on
  const alone = app.sse.channel<string>('alone', { idleTimeout: 0 })
  alone.publish({ data: 'x' })
  await until(() => !registered(alone), 'idleTimeout 0: forgotten as soon as it is idle')
  const next = alone.subscribe()
  t.ok(registered(alone), 'taken back by a subscribe')
  t.equal(app.sse.channel('alone'), alone)
  const again = alone.publish({ data: 'y' })
  t.same(await within(next.next(), 2000, 'the item'), { done: false, value: { id: again, data: 'y' } })
  t.match(again, /-2$/, 'its ids go on')
  await next.return?.()
  await until(() => !registered(alone), 'forgotten again')
  const taken = alone.publish({ data: 'z' })
  t.ok(registered(alone), 'taken back by a publish')
  t.match(taken, /-3$/, 'its ids go on')

  // close() of a forgotten object closes it: its name is free again
  const gone = app.sse.channel('gone')
  await gone.subscribe().return?.()
  t.notOk(registered(gone))
  gone.close()
  t.ok(gone.closed, 'closed')
  t.throws(() => gone.publish({ data: 'x' }), { code: 'FST_SSE_CHANNEL_CLOSED' }, 'no publish takes it back')
  t.notOk(registered(gone), 'not taken back')
  const fresh = app.sse.channel('gone')
  t.not(fresh, gone, 'channel(name) makes a new one')
  t.notOk(fresh.closed)

  // a forgotten in-memory object still held and a shared channel of its name: refused, not mixed
  const mem = app.sse.channel('mixed')
  await mem.subscribe().return?.()
  const shared = () => new MemoryBackend({ history: 1, historyMaxAge: Infinity }, () => {})
  t.throws(() => app.sse.channel('mixed', { backend: shared }), { code: 'FST_SSE_INVALID_OPTION', field: 'backend' })
  t.equal(app.sse.channel('mixed'), mem)
})

/** A full collection, and a turn of the loop after it (where FinalizationRegistry callbacks run). */
const collect = async (): Promise<void> => {
  // a turn first: a WeakRef made in this turn keeps its target alive until the turn ends
  await new Promise(resolve => setImmediate(resolve))
  gc()
  await new Promise(resolve => setImmediate(resolve))
}
v8.setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

t.test('a forgotten channel nobody holds is collected, its entry with it; channel(name) then makes a new one', async t => {
  t.setTimeout(20_000)
  const app = await makeApp(t)
  const forget = async (name: string): Promise<void> => {
    await app.sse.channel(name, { history: 7 }).subscribe().return?.()
  }
  await forget('room')
  t.equal(app.sse.stats().channelCount, 0)
  for (let i = 0; i < 20 && (app.sse.channel('room') as SseChannel<unknown>).limits.history === 7; i++) {
    await app.sse.channel('room').subscribe().return?.()
    await collect()
  }
  t.equal((app.sse.channel('room') as SseChannel<unknown>).limits.history, 100, 'made again, with the options of this call')

  // the entries: dropped when looked up after their channel was collected, or by the collection's callback
  const forgotten = new ForgottenChannels<{ name: string }>()
  const held = { name: 'held' }
  forgotten.keep(held)
  forgotten.keep({ name: 'a' })
  await collect()
  t.same(forgotten.values(), [held], 'only those alive')
  t.equal(forgotten.find('a'), undefined)
  t.equal(forgotten.find('held'), held)
  forgotten.keep({ name: 'b' })
  for (let i = 0; i < 20 && forgotten.size > 1; i++) await collect()
  t.equal(forgotten.size, 1, 'collected: its entry dropped')
  forgotten.drop(held)
  t.equal(forgotten.size, 0)
})

/** A clock of the test's own for IdleChannels: time moves only when `advance` moves it, running the timers due. */
function fakeClock () {
  let now = 0
  const timers = new Set<{ fn: () => void, at: number }>()
  const clock: IdleClock = {
    now: () => now,
    later: (fn, ms) => {
      const timer = { fn, at: now + ms }
      timers.add(timer)
      return () => { timers.delete(timer) }
    }
  }
  return {
    clock,
    /** Timers set and not yet run or cancelled. */
    get timers (): number { return timers.size },
    advance (ms: number): void {
      const end = now + ms
      for (let due = next(end); due !== undefined; due = next(end)) {
        timers.delete(due)
        now = Math.max(now, due.at)
        due.fn()
      }
      now = end
    }
  }
  function next (end: number) {
    return [...timers].filter(timer => timer.at <= end).sort((a, b) => a.at - b.at)[0]
  }
}

t.test('idleTimeout: published on while idle, the wait starts again, the history kept; Infinity keeps it', async t => {
  const time = fakeClock()
  const registry = new ChannelRegistry(Fastify().log, JSON.stringify, memoryBackend, undefined, time.clock)
  t.teardown(() => registry.close())
  const kept = registry.channel('kept', { idleTimeout: Infinity })
  await kept.subscribe().return?.()
  t.ok(registered(kept), 'Infinity: kept even with nothing given')
  const room = registry.channel('room', { idleTimeout: 300 })
  const ids = [room.publish({ data: 0 })]
  for (let n = 1; n <= 5; n++) {
    time.advance(200)
    ids.push(room.publish({ data: n }))
  }
  time.advance(200)
  t.ok(registered(room), 'published on every 200 ms: kept past its 300 ms')
  const replay = room.subscribe({ lastEventId: ids[0] })
  const got = await take(replay, 5)
  t.same(got.map(item => item.id), ids.slice(1), 'its history kept')
  await replay.return?.()
  time.advance(299)
  t.ok(registered(room), 'the wait starts again when its subscriber leaves')
  time.advance(2)
  t.notOk(registered(room), 'forgotten once idle for its idleTimeout')
  t.ok(registered(kept))
  const created = registry.channel('created', { idleTimeout: 50 })
  time.advance(51)
  t.notOk(registered(created), 'never used: forgotten too')
})

t.test('idleTimeout over real timers: each channel goes at its own time; bad values refused', async t => {
  t.setTimeout(20_000)
  const app = await makeApp(t)
  for (const idleTimeout of [-1, 1.5, '10', 2 ** 31, NaN]) {
    t.throws(() => app.sse.channel('bad', { idleTimeout: idleTimeout as number }), { code: 'FST_SSE_INVALID_OPTION', field: 'idleTimeout' })
  }
  t.equal(app.sse.channel('max', { idleTimeout: 2 ** 31 - 1 }).size, 0, 'a timer\'s limit taken')
  // several timeouts, one timer
  const short = app.sse.channel('short', { idleTimeout: 30 })
  const long = app.sse.channel('long', { idleTimeout: 10_000 })
  short.publish({ data: 1 })
  long.publish({ data: 1 })
  await until(() => !registered(short), 'the short one')
  t.ok(registered(long), 'the long one still there')
})

t.test('a backend without forget is never forgotten; close() stops the idle timer', async t => {
  const time = fakeClock()
  const registry = new ChannelRegistry(Fastify().log, JSON.stringify, memoryBackend, undefined, time.clock)
  const backend: ChannelBackendFactory<string> = (_name, options, deliver) => {
    const memory = new MemoryBackend(options, deliver)
    return {
      append: memory.append.bind(memory),
      replay: memory.replay.bind(memory),
      position: memory.position.bind(memory),
      close: () => {}
    }
  }
  const shared = registry.channel('shared', { backend, idleTimeout: 0 })
  await shared.subscribe().return?.()
  shared.publish({ data: 1 })
  time.advance(10)
  t.ok(registered(shared), 'kept')
  registry.channel('pending', { idleTimeout: 100_000 }).publish({ data: 1 })
  t.equal(time.timers, 1, 'a timer for the idle one')
  await registry.close()
  t.equal(time.timers, 0, 'stopped')
})

t.test('a held shared channel whose rejoin is refused: publish rejects, subscribe and channel(name) throw, until taken back', async t => {
  const time = fakeClock()
  const registry = new ChannelRegistry(Fastify().log, JSON.stringify, memoryBackend, undefined, time.clock)
  // the backend refuses one rejoin, as a shared one does while another app's channel has the name
  let refusals = 1
  let rejoins = 0
  const backend: ChannelBackendFactory<Promise<string>> = (_name, options, deliver) => {
    const memory = new MemoryBackend(options, deliver)
    return {
      asynchronous: true,
      append: async (item, encode) => memory.append(item, encode),
      replay: memory.replay.bind(memory),
      position: memory.position.bind(memory),
      forget: () => {},
      rejoined: () => {
        rejoins++
        if (refusals-- > 0) throw invalidOption('backend', 'of channel "room" already serves a channel of that name')
      },
      close: () => {}
    }
  }
  const held = registry.channel('room', { backend, idleTimeout: 100 })
  time.advance(101)
  t.notOk(registered(held), 'forgotten once idle')
  t.equal(registry.stats().channelCount, 0)
  const refusal = { code: 'FST_SSE_INVALID_OPTION', field: 'backend' }
  await t.rejects(held.publish({ data: 1 }), refusal, 'publish rejects')
  t.equal(rejoins, 1)
  refusals = 1
  t.throws(() => held.subscribe(), refusal, 'subscribe throws at once')
  refusals = 1
  t.throws(() => registry.channel('room', { backend }), refusal, 'channel(name) throws')
  t.notOk(registered(held), 'still forgotten')
  t.equal(registry.stats().channelCount, 0, 'nothing counted while refused')
  t.equal(rejoins, 3)
  t.equal(registry.channel('room', { backend }), held, 'taken back once the backend lets it')
  t.ok(registered(held))
  t.equal(registry.stats().channelCount, 1)
  t.match(await held.publish({ data: 2 }), /-\d+$/, 'publishes again')
  await registry.close()
})

t.test('a forgotten object after app.close(): closed like every channel, its publish throws', async t => {
  const app = await makeApp(t)
  const old = app.sse.channel('room')
  await old.subscribe().return?.()
  t.notOk(registered(old))
  await app.close()
  t.throws(() => old.publish({ data: 1 }), { code: 'FST_SSE_CHANNEL_CLOSED' })
  t.ok(old.closed)
  const sub = app.sse.channel('other')
  await sub.subscribe().return?.()
  await app.close()
  t.same(await sub.subscribe().next(), { done: true, value: undefined }, 'a subscription of it ends at once')
})

t.test('stats(): a total and the busiest channels first, as many as asked; options checked', async t => {
  const app = await makeApp(t)
  const subs = []
  for (let i = 0; i < 10; i++) {
    const channel = app.sse.channel(`c${i}`)
    for (let n = 0; n < (i * 7) % 10; n++) subs.push(channel.subscribe())
  }
  const stats = app.sse.stats({ channels: 3 })
  t.equal(stats.channelCount, 10)
  t.same(stats.channels.map(c => [c.name, c.subscribers]), [['c7', 9], ['c4', 8], ['c1', 7]])
  t.equal(app.sse.stats().channels.length, 10, 'all of them under the default 100')
  t.same(app.sse.stats({ channels: 0 }).channels, [])
  t.same(app.sse.stats({}).channels.length, 10)
  for (const channels of [-1, 1.5, '3']) {
    const refusal = { code: 'FST_SSE_INVALID_OPTION', field: 'channels', message: /^stats\(\) option/ }
    t.throws(() => app.sse.stats({ channels: channels as number }), refusal)
  }
  t.throws(() => app.sse.stats({ channel: 3 } as never), { field: 'channel', message: /did you mean "channels"\?$/ })
  t.throws(() => app.sse.stats(3 as never), { code: 'FST_SSE_INVALID_OPTION', field: 'options' })
  for (const sub of subs) await sub.return?.()
})

t.test('largest(): the heaviest, heaviest first, ties in the order given, without sorting them all', async t => {
  const weights = Array.from({ length: 1000 }, (_, i) => (i * 37) % 101)
  const order = (a: number, b: number): number => (weights[b] as number) - (weights[a] as number) || a - b
  const expected = [...weights.keys()].sort(order).slice(0, 5)
  t.same(largest(weights.keys(), 5, i => weights[i] as number), expected)
  t.same(largest([1, 2, 3], Infinity, x => x), [3, 2, 1])
  t.same(largest([1, 2, 3], 0, x => x), [])
})

t.test('IdleChannels: a sweep forgets only those due, in order, at most 1,000 a turn; clear() starts afresh', async t => {
  const time = fakeClock()
  const forgotten: string[] = []
  const idle = new IdleChannels<{ name: string, idleTimeout: number }>(c => forgotten.push(c.name), time.clock)
  const a = { name: 'a', idleTimeout: 20 }
  const b = { name: 'b', idleTimeout: 20 }
  idle.idle(a)
  time.advance(5)
  idle.idle(b)
  idle.idle(a) // again: now after b
  t.equal(idle.pending, 2)
  time.advance(21)
  t.same(forgotten, ['b', 'a'])
  t.equal(idle.pending, 0)

  // cleared: no timer left, and the next channel gets a timer of its own even if it is due later than the old one
  idle.idle({ name: 'c', idleTimeout: 10 })
  idle.clear()
  t.equal(time.timers, 0, 'the timer stopped')
  t.equal(idle.pending, 0)
  idle.idle({ name: 'd', idleTimeout: 50 })
  time.advance(51)
  t.same(forgotten.slice(2), ['d'], 'forgotten after clear()')

  // many due at once: 1,000 per sweep, the rest on the next turns, each timeout's in order
  forgotten.length = 0
  for (let i = 0; i < 1500; i++) idle.idle({ name: `x${i}`, idleTimeout: 10 })
  for (let i = 0; i < 1000; i++) idle.idle({ name: `y${i}`, idleTimeout: 20 })
  time.advance(10)
  t.equal(forgotten.length, 0)
  time.advance(11)
  t.equal(forgotten.length, 2500, 'all forgotten')
  t.equal(forgotten[999], 'x999')
  t.equal(forgotten[2499], 'y999')
  t.equal(idle.pending, 0)
  t.equal(time.timers, 0)
})

t.test('IdleChannels: a sweep of more than 1,000 leaves the rest to a later turn', async t => {
  const time = fakeClock()
  let count = 0
  const idle = new IdleChannels<{ idleTimeout: number }>(() => count++, time.clock)
  for (let i = 0; i < 2500; i++) idle.idle({ idleTimeout: 10 })
  const sweeps: number[] = []
  for (let turn = 0; turn < 4; turn++) {
    time.advance(turn === 0 ? 11 : 1)
    sweeps.push(count)
  }
  t.same(sweeps, [1000, 2000, 2500, 2500], 'a timer of a millisecond between sweeps')
})

t.test('options refused by name: channel(), subscribe(); near names suggested', async t => {
  const app = await makeApp(t)
  t.throws(() => app.sse.channel('x', { histroy: 5 } as never), {
    code: 'FST_SSE_INVALID_OPTION', field: 'histroy', message: /^fastify-typed-sse option "histroy" is not an option of channel\(\) \(its options: history, .*\); did you mean "history"\?$/
  })
  t.throws(() => app.sse.channel('x', 5 as never), { code: 'FST_SSE_INVALID_OPTION', field: 'options' })
  const channel = app.sse.channel('x')
  t.throws(() => channel.subscribe({ tag: 'a' } as never), { field: 'tag', message: /did you mean "tags"\?$/ })
  t.throws(() => channel.subscribe({ lastEventID: '1' } as never), { field: 'lastEventID', message: /did you mean "lastEventId"\?$/ })
  t.throws(() => channel.subscribe({ whatever: 1 } as never), { field: 'whatever', message: /\(its options: lastEventId, signal, tags\)$/ })
  t.throws(() => channel.subscribe('a' as never), { code: 'FST_SSE_INVALID_OPTION', field: 'options' })
  t.equal(channel.size, 0, 'nothing subscribed')
  t.throws(() => channel.publish({ data: 'x' }, { too: 'a' } as never), { field: 'too', message: /did you mean "to"\?$/ })
})

t.test('nearName: a clear typo of exactly one name, else nothing', async t => {
  const known = ['history', 'historyMaxAge', 'queueItems', 'queueBytes', 'to']
  t.equal(nearName('hsitory', known), '; did you mean "history"?', 'letters swapped')
  t.equal(nearName('HISTORY', known), '; did you mean "history"?', 'another case')
  t.equal(nearName('queueItem', known), '; did you mean "queueItems"?', 'one dropped')
  t.equal(nearName('queueByte', ['queueBytes', 'queueBytez']), '', 'two as near: no guess')
  t.equal(nearName('too', known), '; did you mean "to"?', 'short names: one letter off')
  t.equal(nearName('tooo', known), '', 'short names: two letters off is not a typo')
  t.equal(nearName('x', known), '')
  t.equal(nearName('anything', []), '')
})

t.test('an item with none of the item fields is refused, naming one: on a stream and on a channel', async t => {
  t.setTimeout(10_000)
  const app = await makeApp(t)
  const channel = app.sse.channel('x')
  const sub = channel.subscribe()
  t.throws(() => channel.publish({ dat: 'x' } as never), { code: 'FST_SSE_INVALID_ITEM', field: 'dat', message: 'SSE item field "dat" is not an item field (its fields: data, event, id, retry, comment); did you mean "data"?' })
  t.throws(() => channel.publish({ data: undefined, payload: 1 } as never), { field: 'payload', message: /comment\)$/ })
  const id = channel.publish({ data: 'fine', extra: 1 } as SseItem<unknown>)
  t.same(await within(sub.next(), 2000, 'the item'), { done: false, value: { id, data: 'fine', extra: 1 } }, 'only a fieldless item is looked at')
  await sub.return?.()
  const { app: server, url } = await startApp(app => {
    app.get('/bad', async function * () { yield { dat: 'x' } as never })
  })
  t.teardown(() => server.close())
  const { res } = await open(`${url}/bad`)
  t.equal(res.statusCode, 500, 'the first item refused before the headers: the route\'s error')
  await res.body.dump()
})

/** Small pages, so that a replay across the ring's growth is read in several. */
const PAGE: ReplayPage = { items: 7, bytes: 1024 * 1024 }

/** Every page of a replay from the in-memory backend (which answers synchronously), as ids. */
function replayed (first: Replay | Promise<Replay>): string[] {
  const ids: string[] = []
  for (let page = first as Replay; ; page = page.next?.() as Replay) {
    ids.push(...page.items.map(item => item.id))
    if (page.next === undefined) return ids
  }
}

t.test('history grows as it fills: a large bound costs nothing until items come; replay and expiry across growth', async t => {
  let now = 0
  const delivered: string[] = []
  const big = new MemoryBackend({ history: 5_000_000, historyMaxAge: Infinity }, item => { delivered.push(item.id) })
  t.equal(big.stats().history, 0)
  const encode: ChannelEncoder = { item: item => encodeAhead(item), parts: item => encodeParts(item) }
  const ids = Array.from({ length: 100 }, (_, n) => big.append({ data: n }, encode))
  t.same(replayed(big.replay(ids[9] as string, PAGE)), ids.slice(10), 'every item kept, in order, page by page')
  const ring = new MemoryBackend({ history: 20, historyMaxAge: 100 }, () => {}, () => now)
  const kept = Array.from({ length: 50 }, (_, n) => { now = n * 10; return ring.append({ data: n }, encode) })
  t.equal(ring.stats().history, 10, 'the last 100 ms')
  t.same(replayed(ring.replay(kept[39] as string, PAGE)), kept.slice(40))
  now = 10_000
  t.equal(ring.stats().history, 0, 'all expired')
  ring.forget()
  const next = ring.append({ data: 'after' }, encode)
  t.match(next, /-51$/, 'ids go on after forget()')
  t.same(replayed(ring.replay(kept[49] as string, PAGE)), [next])
  t.match(ring.replay(kept[0] as string, PAGE), { reset: 'expired' })
})

t.test('targeted publish through the tag index: to, exclude, both; many tags; the caller\'s arrays untouched', async t => {
  t.setTimeout(10_000)
  const app = await makeApp(t)
  const channel = app.sse.channel<number>('t')
  const tags = ['user:1', 'role:admin', 'user:1']
  const admin = channel.subscribe({ tags })
  t.notOk(Object.isFrozen(tags), 'not frozen')
  t.same(tags, ['user:1', 'role:admin', 'user:1'], 'not changed')
  const user2 = channel.subscribe({ tags: ['user:2', 'role:admin'] })
  const user3 = channel.subscribe({ tags: 'user:3' })
  const anon = channel.subscribe()
  channel.publish({ data: 1 }, { to: ['role:admin', 'user:1'] })
  channel.publish({ data: 2 }, { exclude: 'user:2' })
  channel.publish({ data: 3 }, { to: 'role:admin', exclude: ['user:1', 'nobody'] })
  channel.publish({ data: 4 }, { to: 'nobody' })
  channel.publish({ data: 5 }, { to: [] })
  channel.publish({ data: 6 })
  const got = async (sub: AsyncIterator<SseItem<unknown>>, n: number) => (await take(sub, n)).map(item => item.data)
  t.same(await got(admin, 3), [1, 2, 6], 'user:1 admin: once each')
  t.same(await got(user2, 3), [1, 3, 6], 'user:2 admin')
  t.same(await got(user3, 2), [2, 6])
  t.same(await got(anon, 2), [2, 6])
  await user2.return?.()
  await admin.return?.()
  channel.publish({ data: 7 }, { to: 'role:admin' })
  channel.publish({ data: 8 }, { to: 'user:3' })
  t.same(await got(user3, 1), [8], 'the index lets go of those that left')
  await user3.return?.()
  await anon.return?.()
})

/** A subscriber as the index sees it: its tags, and the items it got. */
interface FakeSubscriber { tags: readonly string[], got: number[], push: (item: ChannelItem) => void }
const fake = (tags: string[]): FakeSubscriber => {
  const got: number[] = []
  return { tags, got, push: item => { got.push(Number(item.data)) } }
}
const item = (n: number): ChannelItem => encodeAhead({ id: String(n), data: n })

t.test('TagIndex: built by the first targeted publish; a tag holds one subscriber alone, several in a set', async t => {
  const index = new TagIndex<FakeSubscriber>()
  const a = fake(['x'])
  const b = fake(['x', 'y'])
  const c = fake(['x'])
  index.add(a)
  t.same([...index.having(new Set(['x']))], [], 'not started: nothing held')
  index.delete(a)
  index.start([a])
  index.start([b])
  t.same([...index.having(new Set(['x']))], [a], 'started once, with the subscribers of then')
  index.add(b)
  index.add(c)
  t.same([...index.having(new Set(['x']))], [a, b, c])
  index.delete(b)
  index.delete(a)
  t.same([...index.having(new Set(['x', 'y']))], [c])
  index.delete(c)
  t.same([...index.having(new Set(['x']))], [])
})

t.test('TagIndex.deliver against reaches(): random subscribers, tags and targets', async t => {
  const TAGS = ['a', 'b', 'c', 'd', 'e']
  for (let run = 0; run < 300; run++) {
    let seed = run + 7
    const r = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff
    const pick = (): string[] => TAGS.filter(() => r() < 0.3)
    const index = new TagIndex<FakeSubscriber>()
    index.start([])
    let subscribers: FakeSubscriber[] = []
    for (let op = 0; op < 60; op++) {
      const x = r()
      if (x < 0.4) {
        const subscriber = fake([...new Set(pick())])
        subscribers.push(subscriber)
        index.add(subscriber)
      } else if (x < 0.6 && subscribers.length > 0) {
        const gone = subscribers[Math.floor(r() * subscribers.length)] as FakeSubscriber
        index.delete(gone)
        subscribers = subscribers.filter(s => s !== gone)
      } else {
        // one tag often, as the fast path takes it
        const to = r() < 0.3 ? undefined : r() < 0.5 ? [TAGS[Math.floor(r() * 5)] as string] : pick()
        const exclude = r() < 0.5 ? undefined : pick()
        const target = resolveTarget({ to, exclude }) ?? { to: undefined, exclude: new Set<string>(), one: undefined }
        for (const subscriber of subscribers) subscriber.got.length = 0
        index.deliver(item(op), target, subscribers)
        const wrong = subscribers.find(s => s.got.length !== (reaches(target, s.tags) ? 1 : 0))
        if (wrong !== undefined) {
          t.fail(`seed ${run + 7}, op ${op}: to ${JSON.stringify(to)} exclude ${JSON.stringify(exclude)}, tags ${JSON.stringify(wrong.tags)} got ${wrong.got.length}`)
          return
        }
      }
    }
  }
  t.pass('every delivery matched reaches()')
})

t.test('the registry on its own: the default backend, forgetting a channel it does not hold is a no-op', async t => {
  const registry = new ChannelRegistry(Fastify().log, JSON.stringify)
  const channel = registry.channel('a') as SseChannel<unknown>
  registry.forget(channel)
  registry.forget(channel)
  t.notOk(channel.registered)
  registry.closed(channel)
  await registry.close()
})
