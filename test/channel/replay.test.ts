// Replays read in pages (in-memory channels): a subscriber holds one page, counted against its queue bounds, reads
// the next once it has handed this one out, and merges the live items published meanwhile without loss or
// duplicate. A reset never names an item the subscriber may not see.
import t from 'tap'
import type { Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { connect } from 'node:net'
import type { AddressInfo } from 'node:net'
import { once } from 'node:events'
import { replayPage, REPLAY_PAGE_ITEMS, type SseResetData } from '../../lib/channel/subscription.js'
import ssePlugin, { SSE_DIAGNOSTICS, subscribeSseDiagnostic, type SseItem } from '../../lib/index.js'
import { LogCapture, take, WARN, within } from '../helpers.js'

async function makeApp (t: Test, routes: (app: FastifyInstance) => void = () => {}) {
  const logs = new LogCapture()
  const app = Fastify({ logger: { level: 'warn', stream: logs } })
  await app.register(ssePlugin)
  routes(app)
  await app.ready()
  t.teardown(() => app.close())
  return { app, logs }
}

type Item = SseItem<number | SseResetData>

async function rest (sub: AsyncIterator<Item>): Promise<Item[]> {
  const out: Item[] = []
  for (let i = 0; i < 10_000; i++) {
    const step = await sub.next()
    if (step.done === true) return out
    out.push(step.value)
  }
  throw new Error('no end')
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i)

t.test('the page size: at most REPLAY_PAGE_ITEMS items and half of each queue bound, at least one item', async t => {
  t.same(replayPage({ queueItems: 512, queueBytes: 1024 * 1024 }), { items: REPLAY_PAGE_ITEMS, bytes: 512 * 1024 })
  t.same(replayPage({ queueItems: 8, queueBytes: 4096 }), { items: 4, bytes: 2048 })
  t.same(replayPage({ queueItems: 1, queueBytes: 1 }), { items: 1, bytes: 1 })
})

t.test('a replay longer than a page comes page by page; live items published meanwhile come once, in order', async t => {
  const { app } = await makeApp(t)
  const served: unknown[] = []
  t.teardown(subscribeSseDiagnostic(SSE_DIAGNOSTICS.replay, message => served.push(message)))
  const ch = app.sse.channel<number>('paged', { history: 1000, queueItems: 8 })
  const ids = range(0, 21).map(n => ch.publish({ data: n }))
  const sub = ch.subscribe({ lastEventId: ids[0] })
  const got = (await take(sub, 6)).map(i => i.data)
  t.same(served, [], 'no replay is served before its last page')
  // in the history already: the pages to come hold them
  ids.push(...[21, 22, 23].map(n => ch.publish({ data: n })))
  got.push(...(await take(sub, 17)).map(i => i.data))
  t.same(got, range(1, 24), 'every item once, in order, across the pages')
  // the last page was read when the one before it was handed out: what comes now is live
  ch.publish({ data: 24 })
  t.same((await take(sub, 1)).map(i => i.data), [24])
  t.match(served, [{ channel: 'paged', items: 23, position: ids.at(-1) }], 'served once: every page counted')
  await sub.return?.()
})

t.test('ids reused by publishers: live items published while a page is handed out come once at the last page', async t => {
  const { app } = await makeApp(t)
  const ch = app.sse.channel<number>('reused', { history: 100, queueItems: 8 })
  const from = ch.publish({ data: 0 })
  for (let n = 1; n < 6; n++) ch.publish({ data: n })
  const sub = ch.subscribe({ lastEventId: from })
  t.same((await take(sub, 1)).map(i => i.data), [1], 'holds its first page (4 items)')
  // queued while the page is handed out, and on the last page (4 items) too; the newest id is also the first
  // queued one's
  ch.publish({ id: 'same', data: 6 })
  ch.publish({ id: 'other', data: 7 })
  ch.publish({ id: 'same', data: 8 })
  t.same((await take(sub, 7)).map(i => i.data), range(2, 9), 'the rest of the replay, every item once')
  ch.publish({ data: 9 })
  t.same((await take(sub, 1)).map(i => i.data), [9], 'then live items, none of the replay twice')
  await sub.return?.()
})

t.test('the page is cut at half of queueBytes (at least one item)', async t => {
  const { app } = await makeApp(t)
  const big = 'x'.repeat(1024)
  const ch = app.sse.channel<string>('bytes', { history: 100, queueItems: 100, queueBytes: 4096 })
  const from = ch.publish({ data: 'start' })
  for (let i = 0; i < 10; i++) ch.publish({ data: big + i })
  const sub = ch.subscribe({ lastEventId: from })
  const got = await take(sub as AsyncIterator<Item>, 10)
  t.same(got.map(i => String(i.data).slice(1024)), range(0, 10).map(String))
  await sub.return?.()
})

t.test('what a subscriber holds of its replay counts against its bounds: one that does not read is cut off', async t => {
  const { app, logs } = await makeApp(t)
  const ch = app.sse.channel<number>('unread', { history: 100, queueItems: 8 })
  const ids = range(0, 20).map(n => ch.publish({ data: n }))
  const cut: unknown[] = []
  t.teardown(subscribeSseDiagnostic(SSE_DIAGNOSTICS.cutOff, message => cut.push(message)))
  // holds its first page (4 items): room for 4 live items, not 5
  const sub = ch.subscribe({ lastEventId: ids[0] })
  for (let n = 20; n < 24; n++) ch.publish({ data: n })
  t.same(cut, [], 'the page and 4 live items fit')
  ch.publish({ data: 24 })
  t.match(cut, [{ channel: 'unread', queuedItems: 8 }], 'the fifth is past the bounds: cut off, the page counted')
  t.equal(ch.size, 0, 'out of the fan-out')
  t.match(logs.lines.find(l => l.level === WARN), { queuedItems: 8, queueItems: 8 }, 'logged as too slow')
  t.same((await rest(sub)).map(i => i.data), [1, 2, 3, 4], 'it ends after the page it held: no gap, it resumes from there')
})

t.test('on its last page, the page and the live items after it share the bounds', async t => {
  const { app } = await makeApp(t)
  const ch = app.sse.channel<number>('last', { history: 100, queueItems: 8 })
  const ids = range(0, 4).map(n => ch.publish({ data: n }))
  const cut: unknown[] = []
  t.teardown(subscribeSseDiagnostic(SSE_DIAGNOSTICS.cutOff, message => cut.push(message)))
  const sub = ch.subscribe({ lastEventId: ids[0] })
  for (let n = 4; n < 9; n++) ch.publish({ data: n })
  t.same(cut, [], '3 replayed and 5 live fit')
  ch.publish({ data: 9 })
  t.equal(cut.length, 1, 'the sixth live item does not')
  t.same((await rest(sub)).map(i => i.data), range(1, 9), 'the page, then what was queued, then the end')
})

t.test('a page read after the history moved past it gives a reset, then the live items', async t => {
  const { app } = await makeApp(t)
  const ch = app.sse.channel<number>('moved', { history: 20, queueItems: 32 })
  const ids = range(0, 20).map(n => ch.publish({ data: n }))
  const sub = ch.subscribe({ lastEventId: ids[0] })
  t.same((await take(sub, 16)).map(i => i.data), range(1, 17), 'its first page')
  for (let n = 20; n < 40; n++) ch.publish({ data: n })
  const [reset] = await take(sub, 1)
  t.match(reset, { event: 'sse-reset', data: { reason: 'expired' } }, 'what came after the page is gone')
  ch.publish({ data: 40 })
  t.same((await take(sub, 1)).map(i => i.data), [40], 'then live items, none of those the reset covers')
  const resumed = ch.subscribe({ lastEventId: reset?.id })
  ch.publish({ data: 41 })
  t.same((await take(resumed, 2)).map(i => i.data), [40, 41], 'resuming from the reset\'s id loses nothing')
  await sub.return?.()
  await resumed.return?.()
})

t.test('targeted items: pages hold only what the subscriber may see; a reset names nothing private', async t => {
  const { app } = await makeApp(t)
  const ch = app.sse.channel<string>('dm', { history: 100, queueItems: 4 })
  const from = ch.publish({ data: 'hello' })
  for (let i = 0; i < 6; i++) ch.publish({ data: `for carl ${i}` }, { to: 'user:carl' })
  ch.publish({ data: 'to all' })
  ch.publish({ id: 'dm:ann->carl:salary-review', data: 'private' }, { to: 'user:carl' })
  const bob = ch.subscribe({ lastEventId: from, tags: 'user:bob' })
  t.same((await take(bob as AsyncIterator<Item>, 1)).map(i => i.data), ['to all'], 'pages with nothing for bob are skipped')
  await bob.return?.()
  for (const lastEventId of ['nope', 'x'.repeat(300)]) {
    const [reset] = await take(ch.subscribe({ lastEventId, tags: 'user:bob' }) as AsyncIterator<Item>, 1)
    t.match(reset, { event: 'sse-reset' })
    t.notMatch(String(reset?.id), /salary|carl/, `the reset of ${lastEventId.slice(0, 4)} names no private item`)
    const resumed = ch.subscribe({ lastEventId: reset?.id, tags: 'user:bob' })
    ch.publish({ data: 'next' })
    t.same((await take(resumed as AsyncIterator<Item>, 1)).map(i => i.data), ['next'], 'and resumes without loss')
    await resumed.return?.()
  }
})

t.test('over a socket: a client that does not read a long replay holds one page, and is cut off by live items', async t => {
  t.setTimeout(30_000)
  const { app } = await makeApp(t, app => {
    app.get('/s', (request, reply) => reply.sse(ch.subscribe({ lastEventId: request.headers['last-event-id'] })))
  })
  const ch = app.sse.channel<string>('socket', { history: 400, queueItems: 64, queueBytes: 256 * 1024 })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const big = 'y'.repeat(16 * 1024)
  const from = ch.publish({ data: 'start' })
  for (let i = 0; i < 400; i++) ch.publish({ data: big })
  const cut = new Promise(resolve => { t.teardown(subscribeSseDiagnostic(SSE_DIAGNOSTICS.cutOff, resolve)) })
  const { port } = app.server.address() as AddressInfo
  const socket = connect(port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  socket.write(`GET /s HTTP/1.1\r\nHost: x\r\nLast-Event-ID: ${from}\r\n\r\n`)
  await once(socket, 'data')
  // it reads nothing more: the server fills the socket, then holds one page
  socket.pause()
  const closed = once(socket, 'close')
  for (let i = 0; i < 10_000 && ch.size > 0; i++) {
    ch.publish({ data: big })
    await new Promise(resolve => setImmediate(resolve))
  }
  await within(cut, 10_000, 'cut off')
  t.equal(ch.size, 0, 'out of the fan-out')
  socket.resume()
  await within(closed, 10_000, 'its connection is closed')
})
