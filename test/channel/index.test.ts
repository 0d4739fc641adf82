// The channel on its own (the subscription API, no sockets): fan-out, encode-once, replay and its resets,
// bounded queues, release on return()/abort/close, options, and the backend interface's asynchronous path.
import t from 'tap'
import type { Test } from 'tap'
import Fastify from 'fastify'
import { getEventListeners } from 'node:events'
import { ChannelRegistry, MAX_LAST_EVENT_ID, type Channel, type SseResetData } from '../../lib/channel/index.js'
import type { ChannelBackend, ChannelEncoder, ChannelItem, Deliver, Replay, ReplayPage } from '../../lib/channel/backend.js'
import { MemoryBackend } from '../../lib/channel/memory.js'
import { kFrame } from '../../lib/encode.js'
import ssePlugin, { SseError, SseRuntimeError, type SseItem, type SsePluginOptions } from '../../lib/index.js'
import { LogCapture, WARN, ERROR } from '../helpers.js'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

const PAGE: ReplayPage = { items: 256, bytes: 1024 * 1024 }

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

async function makeApp (t: Test, options: SsePluginOptions = {}) {
  const logs = new LogCapture()
  const app = Fastify({ logger: { level: 'debug', stream: logs } })
  await app.register(ssePlugin, options)
  await app.ready()
  t.teardown(() => app.close())
  return { app, logs }
}

type Step<T> = IteratorResult<SseItem<T | SseResetData>, undefined>

/** The next `n` items of a subscription, failing instead of hanging when it ends first. */
async function pull<T> (
  sub: AsyncIterator<SseItem<T | SseResetData>>, n: number
): Promise<Array<SseItem<T | SseResetData>>> {
  const out: Array<SseItem<T | SseResetData>> = []
  while (out.length < n) {
    const step = await sub.next()
    if (step.done === true) throw new Error(`subscription ended after ${out.length} of ${n} items`)
    out.push(step.value)
  }
  return out
}

/** Whether a promise has settled by the time queued microtasks and one macrotask have run. */
async function settled (promise: Promise<unknown>): Promise<boolean> {
  let done = false
  promise.then(() => { done = true }, () => { done = true })
  await new Promise(resolve => setImmediate(resolve))
  return done
}

const frameText = (item: SseItem<unknown> | undefined): string => ((item as ChannelItem)[kFrame]).toString()

t.test('publish: monotonic ids, every subscriber gets the same items in order, encoded once', async t => {
  t.setTimeout(10_000)
  let serialized = 0
  const { app } = await makeApp(t, { serialize: (data) => { serialized++; return JSON.stringify(data) } })
  const chat = app.sse.channel<{ n: number }>('chat')
  t.equal(app.sse.channel('chat'), chat, 'the same object for the same name')
  t.equal(chat.name, 'chat')
  const subs = [chat.subscribe(), chat.subscribe(), chat.subscribe()]
  t.equal(chat.size, 3)
  const ids = Array.from({ length: 5 }, (_, n) => chat.publish({ event: 'm', data: { n } }))
  t.equal(serialized, 5, 'one serialization per publish, not per subscriber')
  const [first, second] = ids.map(id => /^(.+)-(\d+)$/.exec(id))
  t.equal(first?.[1], second?.[1], 'one epoch')
  t.equal(Number(second?.[2]), Number(first?.[2]) + 1, 'consecutive')
  const got = await Promise.all(subs.map(s => pull(s, 5)))
  t.same(got[0]?.map(i => i.id), ids)
  t.same(got[0]?.map(i => i.data), [0, 1, 2, 3, 4].map(n => ({ n })), 'fields stay readable on the item')
  t.equal(got[1]?.[0], got[0]?.[0], 'the very same item object')
  t.equal(got[2]?.[4], got[0]?.[4])
  t.ok(Object.isFrozen(got[0]?.[0]), 'shared, so frozen')
  t.equal(frameText(got[0]?.[0]), `id: ${ids[0]}\nevent: m\ndata: {"n":0}\n\n`, 'the frame is the encoder\'s, with the id')
  t.ok(Buffer.isBuffer((got[0]?.[0] as ChannelItem)[kFrame]), 'as bytes')
  t.equal(chat.publish({ id: 'own', data: { n: 9 } }), 'own', 'an id given by the publisher is kept')
  t.match((await pull(subs[0]!, 1))[0], { id: 'own', data: { n: 9 } })
})

t.test('a subscriber sees only what is published after it subscribed (without lastEventId)', async t => {
  const { app } = await makeApp(t)
  const news = app.sse.channel<string>('news')
  news.publish({ data: 'before' })
  const sub = news.subscribe({ lastEventId: '' })
  const waiting = sub.next()
  t.notOk(await settled(waiting), 'waits for a publish')
  news.publish({ data: 'after' })
  t.equal(((await waiting) as Step<string>).value?.data, 'after', 'a waiting next() is resolved by the publish')
  const [a, b, c] = [sub.next(), sub.next(), sub.next()]
  news.publish({ data: 'x' })
  news.publish({ data: 'y' })
  t.same([(await a).value?.data, (await b).value?.data], ['x', 'y'], 'next() calls made at once are answered in order')
  await sub.return?.()
  t.same(await c, { value: undefined, done: true }, 'and the last one ends with the subscription')
})

t.test('replay after lastEventId, then live, without gap or duplicate', async t => {
  const { app } = await makeApp(t)
  const ch = app.sse.channel<number>('r', { history: 10 })
  const ids = [0, 1, 2, 3].map(n => ch.publish({ data: n }))
  const sub = ch.subscribe({ lastEventId: ids[1] })
  ch.publish({ data: 4 }) // races the subscription: must come once, after the replay
  const got = await pull(sub, 3)
  t.same(got.map(i => i.data), [2, 3, 4])
  t.equal(got[0], (await pull(ch.subscribe({ lastEventId: ids[1] }), 1))[0], 'replayed items are the stored ones')
  const upToDate = ch.subscribe({ lastEventId: ch.publish({ data: 5 }) })
  ch.publish({ data: 6 })
  t.same((await pull(upToDate, 1)).map(i => i.data), [6], 'nothing missed: straight to live')
  t.same((await pull(sub, 2)).map(i => i.data), [5, 6])
})

t.test('history 0 still resumes without loss from the newest id', async t => {
  const { app } = await makeApp(t)
  const ch = app.sse.channel<number>('h0', { history: 0 })
  const last = ch.publish({ data: 1 })
  const sub = ch.subscribe({ lastEventId: last })
  ch.publish({ data: 2 })
  t.same((await pull(sub, 1)).map(i => i.data), [2])
  const behind = ch.subscribe({ lastEventId: last })
  t.same(await pull(behind, 1), [{ id: `${last.split('-')[0]}-2`, event: 'sse-reset', data: { reason: 'expired' } }], 'one behind: reset')
})

t.test('sse-reset: unknown, expired and invalid ids give one reset item (with the position) first, never a throw', async t => {
  const { app } = await makeApp(t)
  const ch = app.sse.channel<number>('reset', { history: 2 })
  const other = app.sse.channel<number>('other')
  const ids = [0, 1, 2, 3, 4].map(n => ch.publish({ data: n }))
  const otherId = other.publish({ data: 0 })
  const epoch = ids[0]!.split('-')[0]!
  const cases: Array<[unknown, string]> = [
    ['garbage', 'unknown'],
    ['12', 'unknown'],
    [otherId, 'unknown'],
    [`${epoch}-99`, 'unknown'],
    [`${epoch}-01`, 'unknown'],
    [`${epoch}-1e3`, 'unknown'],
    [`${epoch}-`, 'unknown'],
    [`${epoch}-9999999999999999`, 'unknown'],
    ['x'.repeat(MAX_LAST_EVENT_ID), 'unknown'],
    ['x'.repeat(MAX_LAST_EVENT_ID + 1), 'invalid'],
    ['9'.repeat(10 * 1024), 'invalid'],
    [['a', 'b'], 'invalid'],
    [ids[0], 'expired'],
    [ids[1], 'expired'],
    [`${epoch}-0`, 'expired']
  ]
  t.same((await pull(ch.subscribe({ lastEventId: ids[3] }), 1)).map(i => i.data), [4], 'the oldest kept id resumes')
  t.same((await pull(ch.subscribe({ lastEventId: ids[2] }), 1)).map(i => i.data), [3, 4].slice(0, 1),
    'so does the one just before it: nothing after it was dropped')
  let newest = ids[4]
  for (const [lastEventId, reason] of cases) {
    const sub = ch.subscribe({ lastEventId: lastEventId as string })
    const [reset] = await pull(sub, 1)
    t.same(reset, { id: newest, event: 'sse-reset', data: { reason } }, `${String(lastEventId).slice(0, 40)} → ${reason}`)
    newest = ch.publish({ data: 9 })
    t.equal((await pull(sub, 1))[0]?.data, 9, 'then live items')
    await sub.return?.()
  }
  const again = app.sse.channel<number>('again')
  const oldId = again.publish({ data: 1 })
  again.close()
  const recreated = app.sse.channel<number>('again')
  t.not(recreated, again, 'a closed channel is forgotten')
  recreated.publish({ data: 1 })
  t.same((await pull(recreated.subscribe({ lastEventId: oldId }), 1))[0]?.data, { reason: 'unknown' }, 'ids of a previous channel object are unknown')
})

t.test('ids given by publishers: replay by them, duplicates resolve to the newest', async t => {
  const { app } = await makeApp(t)
  const ch = app.sse.channel<string>('own', { history: 3 })
  ch.publish({ id: 'a', data: '1' })
  ch.publish({ id: 'b', data: '2' })
  ch.publish({ id: 'a', data: '3' })
  t.same((await pull(ch.subscribe({ lastEventId: 'b' }), 1)).map(i => i.data), ['3'])
  ch.publish({ id: 'c', data: '4' }) // evicts the first 'a'; the newer 'a' stays known
  ch.publish({ data: '5' })
  const sub = ch.subscribe({ lastEventId: 'a' })
  t.same((await pull(sub, 2)).map(i => i.data), ['4', '5'])
  ch.publish({ data: '6' })
  ch.publish({ id: 'd', data: '7' }) // evicts the newer 'a'
  const reset = (await pull(ch.subscribe({ lastEventId: 'a' }), 1))[0]
  t.match(reset, { id: /^[0-9a-z]+\.[0-9a-z]+-7$/, event: 'sse-reset', data: { reason: 'unknown' } },
    'a forgotten id is unknown; the reset carries <epoch>-<seq>, never a publisher\'s id')
  t.equal((await pull(ch.subscribe({ lastEventId: 'nope' }), 1))[0]?.id, reset?.id)
  const resumed = ch.subscribe({ lastEventId: reset?.id })
  ch.publish({ data: '8' })
  t.same((await pull(resumed, 1)).map(i => i.data), ['8'], 'resuming from the reset loses nothing')
})

t.test('history by age (in-memory backend with a clock)', async t => {
  let now = 1000
  const delivered: ChannelItem[] = []
  const encode: ChannelEncoder = {
    item: item => Object.freeze({ ...item, [kFrame]: Buffer.from(String(item.id)) }) as ChannelItem,
    parts: () => t.fail('not called') as never
  }
  const backend = new MemoryBackend({ history: 10, historyMaxAge: 100 }, item => delivered.push(item), () => now)
  const a = backend.append({ data: 'a' }, encode)
  now += 60
  const b = backend.append({ data: 'b' }, encode)
  t.same((backend.replay(a, PAGE) as Replay).items.map(i => i.data), ['b'])
  now += 50 // a is 110 ms old, b 50
  t.equal(backend.replay(a, PAGE).reset, undefined, 'a itself aged out, but nothing after it did: still no loss')
  now += 60
  t.same(backend.replay(a, PAGE), { reset: 'expired', items: [], position: backend.resetId() }, 'b aged out too: a is expired')
  t.same(backend.replay(b, PAGE), { items: [], position: b }, 'the newest id always resumes')
  const c = backend.append({ data: 'c' }, encode)
  t.same(delivered.map(i => i.data), ['a', 'b', 'c'], 'delivered on append')
  t.equal(backend.position(), c)
  backend.close()
  t.same(backend.replay(c, PAGE), { items: [], position: c }, 'closed: nothing kept')
})

t.test('bad input: publish throws the encoder\'s TypeError, no subscriber sees it, ids stay consecutive', async t => {
  const { app } = await makeApp(t)
  const ch = app.sse.channel<unknown>('bad')
  const sub = ch.subscribe()
  const first = ch.publish({ data: 'ok' })
  const bad: Array<[unknown, string]> = [
    [null, 'item'], ['text', 'item'], [[{ data: 1 }], 'item'],
    [{ id: 'a\nb' }, 'id'], [{ event: 'x\rdata: evil' }, 'event'], [{ data: 10n }, 'data'], [{ retry: -1 }, 'retry']
  ]
  for (const [item, field] of bad) {
    const err = t.throws(() => ch.publish(item as SseItem<unknown>)) as SseError
    t.type(err, TypeError)
    t.type(err, SseError)
    t.equal(err.field, field)
  }
  const next = ch.publish({ data: 'ok' })
  t.equal(Number(next.split('-')[1]), Number(first.split('-')[1]) + 1, 'refused items used no id')
  t.same((await pull(sub, 2)).map(i => i.id), [first, next], 'only the good items arrived')
})

t.test('a subscriber that stops pulling is cut off at its item bound, logged; the others are not', async t => {
  const { app, logs } = await makeApp(t)
  const ch = app.sse.channel<number>('slow', { queueItems: 3 })
  const slow = ch.subscribe()
  const fast = ch.subscribe()
  const seen: number[] = []
  for (let n = 0; n < 10; n++) {
    ch.publish({ data: n })
    seen.push(...(await pull(fast, 1)).map(i => i.data as number))
  }
  t.same(seen, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 'the reader got everything')
  t.equal(ch.size, 1, 'the slow one is gone')
  const warn = await logs.waitFor(l => l.level === WARN)
  t.match(warn, { channel: 'slow', queuedItems: 3, queueItems: 3, msg: /too slow/ })
  t.same((await pull(slow, 3)).map(i => i.data), [0, 1, 2], 'what it had queued is still delivered')
  t.same(await slow.next(), { value: undefined, done: true }, 'then it ends (the client resumes from the history)')
})

t.test('the byte bound: a queue over queueBytes is cut off; one big item alone always fits', async t => {
  const { app, logs } = await makeApp(t)
  const ch = app.sse.channel<string>('bytes', { queueBytes: 100 })
  const sub = ch.subscribe()
  ch.publish({ data: 'x'.repeat(500) }) // alone in the queue: kept
  ch.publish({ data: 'small' }) // 500 + more > 100: cut
  t.equal(ch.size, 0)
  t.match(await logs.waitFor(l => l.level === WARN), { channel: 'bytes', queuedItems: 1, queueBytes: 100 })
  t.equal((await pull(sub, 1))[0]?.data, 'x'.repeat(500), 'the queued item is delivered')
  t.same(await sub.next(), { value: undefined, done: true }, 'then the end')
  const ok = ch.subscribe()
  ch.publish({ data: 'a'.repeat(40) })
  t.equal((await pull(ok, 1))[0]?.data, 'a'.repeat(40), 'pulled in time: no cut')
  ch.publish({ data: 'b'.repeat(40) })
  t.equal((await pull(ok, 1))[0]?.data, 'b'.repeat(40))
})

t.test('release: return(), signal abort and close end the subscription and leave nothing behind', async t => {
  const { app } = await makeApp(t)
  const ch = app.sse.channel<number>('release')
  const controller = new AbortController()
  const sub = ch.subscribe({ signal: controller.signal })
  t.equal(getEventListeners(controller.signal, 'abort').length, 1)
  const waiting = sub.next()
  controller.abort()
  t.same(await waiting, { value: undefined, done: true }, 'a waiting next() ends on abort')
  t.equal(getEventListeners(controller.signal, 'abort').length, 0, 'listener removed')
  t.equal(ch.size, 0)
  const aborted = ch.subscribe({ signal: controller.signal })
  t.equal(ch.size, 0, 'an already aborted signal never joins')
  t.same(await aborted.next(), { value: undefined, done: true })
  t.equal(getEventListeners(controller.signal, 'abort').length, 0)
  const other = new AbortController()
  const returned = ch.subscribe({ signal: other.signal })
  ch.publish({ data: 1 })
  t.same(await returned.return?.(), { value: undefined, done: true })
  t.same(await returned.next(), { value: undefined, done: true }, 'done after return()')
  t.same(await returned.return?.(), { value: undefined, done: true }, 'return() twice is fine')
  t.equal(getEventListeners(other.signal, 'abort').length, 0)
  t.equal(returned[Symbol.asyncIterator](), returned)
  const items: unknown[] = []
  const live = ch.subscribe()
  const reading = (async () => { for await (const item of live) items.push(item.data) })()
  ch.publish({ data: 2 })
  ch.close()
  await reading
  t.same(items, [2], 'for await ends when the channel closes')
  t.ok(ch.closed)
  t.equal(ch.size, 0)
  ch.close() // twice is fine
  const late = ch.subscribe()
  t.same(await late.next(), { value: undefined, done: true }, 'subscribing to a closed channel ends at once')
  const err = t.throws(() => ch.publish({ data: 3 })) as SseRuntimeError
  t.equal(err.code, 'FST_SSE_CHANNEL_CLOSED')
  t.ok(err instanceof SseRuntimeError && !(err instanceof TypeError), 'a runtime condition, not a bad argument')
  t.match(err.message, /"release" is closed/)
})

t.test('1,000 subscribe/release cycles leak no subscriber and no listener', async t => {
  t.setTimeout(20_000)
  const { app } = await makeApp(t)
  const ch = app.sse.channel<number>('cycles', { history: 5 })
  const signal = new AbortController().signal
  const refs: Array<WeakRef<object>> = []
  let last = ch.publish({ data: 0 })
  // one cycle per call: suspended in a loop, V8 on Node 22 and later keeps the last cycle's `sub` alive
  const cycle = async (i: number): Promise<void> => {
    const controller = new AbortController()
    const sub = ch.subscribe({ lastEventId: last, signal: i % 2 === 0 ? controller.signal : signal })
    refs.push(new WeakRef(sub))
    last = ch.publish({ data: i })
    const [item] = await pull(sub, 1)
    t.equal(item?.data, i, `cycle ${i}`, { diagnostic: false })
    if (i % 2 === 0) controller.abort()
    else await sub.return?.()
  }
  for (let i = 0; i < 1000; i++) await cycle(i)
  t.equal(ch.size, 0)
  t.equal(getEventListeners(signal, 'abort').length, 0)
  // a few rounds: an object can outlive one collection while a settled promise still points at it
  for (let round = 0; round < 20 && refs.some(r => r.deref() !== undefined); round++) {
    await new Promise(resolve => setImmediate(resolve))
    gc()
  }
  t.equal(refs.filter(r => r.deref() !== undefined).length, 0, 'every released subscription was garbage-collected')
})

t.test('options: validated with the option named; a second call with other options is refused', async t => {
  const { app } = await makeApp(t)
  const bad: Array<[Record<string, unknown>, string]> = [
    [{ history: -1 }, 'history'], [{ history: 1.5 }, 'history'], [{ history: 1e8 }, 'history'], [{ history: '10' }, 'history'],
    [{ historyMaxAge: 0 }, 'historyMaxAge'], [{ historyMaxAge: '1' }, 'historyMaxAge'], [{ historyMaxAge: Number.NaN }, 'historyMaxAge'],
    [{ queueItems: 0 }, 'queueItems'], [{ queueItems: Infinity }, 'queueItems'],
    [{ queueBytes: 0 }, 'queueBytes'], [{ queueBytes: 2.5 }, 'queueBytes']
  ]
  for (const [options, option] of bad) {
    const err = t.throws(() => app.sse.channel('c', options)) as SseError
    t.type(err, SseError)
    t.equal(err.code, 'FST_SSE_INVALID_OPTION')
    t.equal(err.field, option)
  }
  for (const name of ['', 5, undefined]) {
    t.match(t.throws(() => app.sse.channel(name as string)), { field: 'name' })
  }
  const ch = app.sse.channel('c', { history: 10, historyMaxAge: 60_000 })
  t.equal(app.sse.channel('c', { history: 10 }), ch, 'options not given are not compared... ')
  t.match(t.throws(() => app.sse.channel('c', { history: 20 })), { field: 'history', message: /channel "c" is 10/ })
  t.equal(app.sse.channel('c', { history: 10, historyMaxAge: 60_000 }), ch, 'the same options: the same channel')
  t.equal(app.sse.channel('c'), ch)
})

t.test('app.close() closes every channel: subscriptions end, publish refuses', async t => {
  const logs = new LogCapture()
  const app = Fastify({ logger: { level: 'debug', stream: logs } })
  await app.register(ssePlugin)
  const a = app.sse.channel('a')
  const b = app.sse.channel('b')
  const subs = [a.subscribe(), b.subscribe()]
  const ends = subs.map(s => s.next())
  await app.close()
  t.same(await Promise.all(ends), [{ value: undefined, done: true }, { value: undefined, done: true }])
  t.ok(a.closed && b.closed)
  t.throws(() => a.publish({ data: 1 }), { code: 'FST_SSE_CHANNEL_CLOSED' })
})

/** A backend that answers replays later, as a Redis one would: the channel must merge live items by position. */
class LaterBackend implements ChannelBackend {
  readonly memory: MemoryBackend
  readonly pending: Array<{ lastEventId: string, resolve: (replay: Replay) => void, reject: (err: Error) => void }> = []
  constructor (deliver: Deliver) {
    this.memory = new MemoryBackend({ history: 100, historyMaxAge: Infinity }, deliver)
  }

  append (item: SseItem<unknown>, encode: ChannelEncoder): string {
    return this.memory.append(item, encode)
  }

  replay (lastEventId: string): Promise<Replay> {
    return new Promise((resolve, reject) => this.pending.push({ lastEventId, resolve, reject }))
  }

  /** Reads the replay now (the position is now) and answers it. */
  answer (): void {
    const next = this.pending.shift()
    next?.resolve(this.memory.replay(next.lastEventId, PAGE))
  }

  position (): string {
    return this.memory.position()
  }

  close (): void {
    this.memory.close()
  }
}

t.test('an asynchronous backend: live items that race the replay are neither lost nor doubled', async t => {
  const logs = new LogCapture()
  const app = Fastify({ logger: { level: 'debug', stream: logs } })
  t.teardown(() => app.close())
  const backends: LaterBackend[] = []
  const registry = new ChannelRegistry(app.log, JSON.stringify, (_name, _options, deliver) => {
    const backend = new LaterBackend(deliver)
    backends.push(backend)
    return backend
  })
  const ch: Channel<number> = registry.channel<number>('later')
  const backend = backends[0]!
  const from = ch.publish({ data: 0 })
  ch.publish({ data: 1 })

  // 1: live items arrive before the read; the read sees some of them; the rest come after, once
  const sub = ch.subscribe({ lastEventId: from })
  const first = sub.next()
  ch.publish({ data: 2 })
  t.notOk(await settled(first), 'nothing before the replay is in')
  backend.answer() // reads 1, 2
  ch.publish({ data: 3 })
  t.same([(await first).value?.data, ...(await pull(sub, 2)).map(i => i.data)], [1, 2, 3])

  // 2: the read happens before any live item: all live items are kept
  const sub2 = ch.subscribe({ lastEventId: from })
  const queued = backend.pending[0] as { resolve: (r: Replay) => void }
  const early = backend.memory.replay(from, PAGE)
  backend.pending.shift()
  ch.publish({ data: 4 })
  queued.resolve(early)
  t.same((await pull(sub2, 4)).map(i => i.data), [1, 2, 3, 4])

  // 3: an asynchronous reset, answered while nobody waits
  const sub3 = ch.subscribe({ lastEventId: 'nope' })
  backend.answer()
  await settled(Promise.resolve())
  t.same((await pull(sub3, 1))[0], { id: backend.position(), event: 'sse-reset', data: { reason: 'unknown' } })

  // 4: released before the replay answered: the answer is ignored
  const sub4 = ch.subscribe({ lastEventId: from })
  await sub4.return?.()
  backend.answer()
  t.same(await sub4.next(), { value: undefined, done: true })

  // 5: an answer with nothing to replay leaves a waiting next() waiting for live items
  const sub5 = ch.subscribe({ lastEventId: backend.position() })
  const waiting = sub5.next()
  backend.answer()
  t.notOk(await settled(waiting))
  ch.publish({ data: 5 })
  t.equal((await waiting).value?.data, 5)

  // 6: the read fails: logged, the subscription ends
  const sub6 = ch.subscribe({ lastEventId: from })
  const ended = sub6.next()
  backend.pending.shift()?.reject(new Error('backend down'))
  t.same(await ended, { value: undefined, done: true })
  t.match(await logs.waitFor(l => l.level === ERROR), {
    channel: 'later', err: { code: 'FST_SSE_CHANNEL_UNAVAILABLE', message: /the replay failed: backend down/ }, msg: /replay failed/
  })
  t.equal(ch.size, 4, 'sub, sub2, sub3 and sub5 are live')
  registry.close()
  t.equal(ch.size, 0)
})
