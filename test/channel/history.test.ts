// The in-memory history ring against a plain model: appends, replays page by page, forget() and time passing, with
// the clock injected; and a channel that stayed quiet longer than historyMaxAge after its ring wrapped.
import t from 'tap'
import Fastify from 'fastify'
import type { ChannelBackendFactory, ChannelEncoder, Replay, ReplayPage } from '../../lib/channel/backend.js'
import { MemoryBackend } from '../../lib/channel/memory.js'
import { encodeAhead, encodeParts } from '../../lib/encode.js'
import ssePlugin from '../../lib/index.js'
import { within } from '../helpers.js'

const encode: ChannelEncoder = { item: item => encodeAhead(item), parts: item => encodeParts(item) }

/** Every page of a replay from the in-memory backend (which answers synchronously): its ids, or its reset. */
function replayed (first: Replay | Promise<Replay>): string[] | string {
  const ids: string[] = []
  for (let page = first as Replay; ; page = page.next?.() as Replay) {
    if (page.reset !== undefined) return page.reset
    ids.push(...page.items.map(item => item.id))
    if (page.next === undefined) return ids
  }
}

/** A small deterministic generator, so a failing run can be told by its seed. */
function random (seed: number): () => number {
  return () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff
    return seed / 0x7fffffff
  }
}

t.test('a wrapped ring whose items all expired takes the next publish, and replays it', async t => {
  t.setTimeout(10_000)
  let now = 0
  const backend: ChannelBackendFactory<string> = (_name, options, deliver) =>
    new MemoryBackend(options, deliver, () => now)
  const app = Fastify()
  await app.register(ssePlugin)
  t.teardown(() => app.close())
  const channel = app.sse.channel('q', { history: 5, historyMaxAge: 30, backend })
  const ids = Array.from({ length: 10 }, (_, n) => channel.publish({ data: n }))
  now += 31
  const after = [channel.publish({ data: 'after a quiet spell' }), channel.publish({ data: 'and another' })]
  const sub = channel.subscribe({ lastEventId: ids[9] })
  t.same(await within(sub.next(), 2000, 'the replay'), { done: false, value: { id: after[0], data: 'after a quiet spell' } })
  t.same(await within(sub.next(), 2000, 'the replay'), { done: false, value: { id: after[1], data: 'and another' } })
  await sub.return?.()
  const old = channel.subscribe({ lastEventId: ids[3] })
  t.match(await within(old.next(), 2000, 'the reset'), { value: { event: 'sse-reset', data: { reason: 'expired' } } })
  await old.return?.()
})

t.test('the ring against a model: random appends, page-by-page replays, forget() and time', async t => {
  t.setTimeout(60_000)
  for (let run = 0; run < 600; run++) {
    const r = random(run + 1)
    const capacity = Math.floor(r() * 40)
    const maxAge = r() < 0.5 ? Infinity : 1 + Math.floor(r() * 50)
    // pages cut by count and by bytes (an item here is some 30 bytes)
    const page: ReplayPage = { items: 1 + Math.floor(r() * 10), bytes: 20 + Math.floor(r() * 200) }
    let now = 0
    const backend = new MemoryBackend({ history: capacity, historyMaxAge: maxAge }, () => {}, () => now)
    let model: Array<{ seq: number, id: string, time: number }> = []
    const all: string[] = []
    const failure = (what: string): string => `seed ${run + 1} (history ${capacity}, historyMaxAge ${maxAge}): ${what}`
    for (let op = 0; op < 200; op++) {
      const x = r()
      now += Math.floor(r() * 5)
      model = model.filter(m => m.time > now - maxAge)
      if (x < 0.7) {
        const id = backend.append({ data: op }, encode)
        all.push(id)
        if (capacity > 0) model.push({ seq: all.length, id, time: now })
        if (model.length > capacity) model = model.slice(model.length - capacity)
      } else if (x < 0.73) {
        backend.forget()
        model = []
      } else if (all.length > 0) {
        const k = Math.floor(r() * all.length)
        const firstKept = model[0]?.seq ?? all.length + 1
        const expected = k + 1 < firstKept - 1 ? 'expired' : model.filter(m => m.seq > k + 1).map(m => m.id)
        const got = replayed(backend.replay(all[k] as string, page))
        if (JSON.stringify(got) !== JSON.stringify(expected)) {
          t.fail(failure(`op ${op}: replay from #${k + 1} gave ${JSON.stringify(got)}, not ${JSON.stringify(expected)}`))
          return
        }
        if (backend.stats().history !== model.length) {
          t.fail(failure(`op ${op}: history ${backend.stats().history}, not ${model.length}`))
          return
        }
      }
    }
  }
  t.pass('every run matched the model')
})
