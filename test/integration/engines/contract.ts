// One contract for every channel engine (memory, Redis, PostgreSQL, NATS): two Fastify apps ("servers") share a
// channel through the engine, and clients talk to them over real sockets (undici). What differs between engines is
// said by the engine itself (`shared`): an in-memory channel reaches one process only, so there "the other server"
// is the same one, and a restarted server has no history (its clients get sse-reset).
import type { Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { setTimeout as sleep } from 'node:timers/promises'
import v8 from 'node:v8'
import { runInNewContext } from 'node:vm'
import type { ChannelBackendFactory } from '../../../lib/channel/backend.js'
import type { Channel, SseItem } from '../../../lib/index.js'
import { open, startApp, take, within, type LogCapture } from '../../helpers.js'

/** How the contract reaches one engine. */
export interface Engine {
  readonly name: string
  /** Whether the engine is shared by processes (false: in-memory). */
  readonly shared: boolean
  /** A backend for one server (its own client or connection); undefined: the in-memory default. Closed at teardown. */
  backend: (t: Test) => Promise<ChannelBackendFactory | undefined>
  /** A backend whose store cannot be reached (a closed port, a closed connection), for shared engines. */
  unreachable?: (t: Test) => Promise<ChannelBackendFactory>
  /** The connections (or consumers) the engine holds for the apps now, to see them released on close. */
  held?: () => Promise<number>
  /** Items to publish past a history of 3 for the oldest to be gone (Redis trims whole nodes). Default 10. */
  readonly gapItems?: number
}

type AnyChannel = Channel<number, string | Promise<string>>

export interface Server {
  app: FastifyInstance
  url: string
  logs: LogCapture
  room: AnyChannel
}

let rooms = 0

/** A channel's bounds on each subscriber's queue, which also bound a replay's pages. */
interface QueueBounds { queueItems?: number, queueBytes?: number }

/** One server: an app with the channel `name` on the engine and the route GET /room. */
async function server (
  t: Test, backend: ChannelBackendFactory | undefined, name: string, history = 100, queue: QueueBounds = {}
): Promise<Server> {
  let room!: AnyChannel
  const started = await startApp(app => {
    const shared = backend as ChannelBackendFactory<Promise<string>>
    room = (backend === undefined
      ? app.sse.channel<number>(name, { history, ...queue })
      : app.sse.channel<number>(name, { history, ...queue, backend: shared })) as AnyChannel
    app.get('/room', (req, reply) =>
      reply.sse(room.subscribe({ lastEventId: req.headers['last-event-id'], signal: req.signal })))
  })
  t.teardown(() => started.app.close())
  return { ...started, room }
}

/** Two servers sharing a channel (for an engine that is not shared, the same server twice). */
async function pair (t: Test, engine: Engine, history = 100): Promise<[Server, Server]> {
  const name = `room-${process.pid}-${++rooms}`
  const a = await server(t, await engine.backend(t), name, history)
  const b = engine.shared ? await server(t, await engine.backend(t), name, history) : a
  return [a, b]
}

/** How long a channel of `roomServer()` waits with no subscriber before it is forgotten. */
const ROOM_IDLE = 1000

/** A server whose route GET /rooms/:room subscribes to the channel the request names, as an app of many rooms does. */
async function roomServer (t: Test, backend: ChannelBackendFactory<Promise<string>>) {
  const room = (app: FastifyInstance, name: string): AnyChannel =>
    app.sse.channel<number>(name, { idleTimeout: ROOM_IDLE, backend }) as AnyChannel
  const started = await startApp(app => {
    app.get<{ Params: { room: string } }>('/rooms/:room', (req, reply) => reply.sse(room(app, req.params.room)
      .subscribe({ lastEventId: req.headers['last-event-id'], signal: req.signal })))
  })
  t.teardown(() => started.app.close())
  return { ...started, room: (name: string) => room(started.app, name) }
}

/** Polls `check` every 10 ms, for at most `ms`. */
async function until (check: () => boolean, what: string, ms = 5000): Promise<void> {
  for (const deadline = Date.now() + ms; !check();) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`)
    await sleep(10)
  }
}

/** A full collection, and a turn of the loop after it (where a WeakRef made in the turn before lets go). */
async function collect (): Promise<void> {
  await new Promise(resolve => setImmediate(resolve))
  gc()
  await new Promise(resolve => setImmediate(resolve))
}
v8.setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

type Client = Awaited<ReturnType<typeof open>>

/**
 * Asserts that the engine holds for the apps what it held `before` (a connection closed lingers a moment in the
 * engine's own list: asked for up to 5 s).
 */
async function released (t: Test, engine: Engine, before: number | undefined, what: string): Promise<void> {
  if (engine.held === undefined) return
  for (let tries = 0; tries < 50 && await engine.held() !== before; tries++) await sleep(100)
  t.equal(await engine.held(), before, what)
}

/** Subscribes, publishes until the subscription gets an item (the channel's reader is started then), and leaves. */
async function received (channel: Channel<number, Promise<string>>, data: number): Promise<void> {
  const subscription = channel.subscribe()
  const first = subscription.next().then(() => true)
  for (let round = 0; ; round++) {
    await channel.publish({ data })
    if (await Promise.race([first, sleep(100).then(() => false)])) break
    if (round === 50) throw new Error('timed out: the subscriber got an item')
  }
  await subscription.return?.()
}

/**
 * Publishes until every client got an item (a shared channel's reader finds where the channel is when it gets its
 * first subscriber: what is published before that is not live for it); resolves with the last published id, which
 * every client has read up to when it resolves. At most 50 rounds of 100 ms.
 */
async function prime (t: Test, publish: () => Promise<string> | string, clients: Client[]): Promise<string> {
  const firsts = clients.map(c => c.events.next())
  let last = ''
  for (let round = 0; ; round++) {
    last = await publish()
    const all = await Promise.race([Promise.all(firsts), sleep(100).then(() => undefined)])
    if (all !== undefined) break
    if (round === 50) throw new Error('timed out: every client got an item')
  }
  await Promise.all(clients.map(async (c, i) => {
    for (let step = await (firsts[i] as Promise<IteratorResult<SseItem<string>>>); step.value?.id !== last;) {
      step = await c.events.next()
    }
  }))
  t.pass('every client gets items')
  return last
}

/**
 * Resolves once the server has seen every client leave (else its close would wait for a keep-alive socket the
 * client's pool still holds).
 */
async function settled (...servers: Array<Pick<Server, 'logs'>>): Promise<void> {
  for (const s of new Set(servers)) {
    const count = (msg: string): number => s.logs.lines.filter(line => line.msg === msg).length
    const done = (): boolean => count('SSE stream closed') >= count('SSE stream opened')
    if (!done()) await within(s.logs.waitFor(done), 5000, 'the server saw its clients leave')
  }
}

/**
 * Resolves once the server's reader knows where the channel is (a subscriber gets items from then on). On Redis
 * the position is never empty (`0-0` before any item): there, `connected` alone says it, as a Redis reader exists
 * only once its start has answered.
 */
async function reading (s: Server): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const stats = s.app.sse.stats({ channels: Infinity }).channels.find(c => c.name === s.room.name)
    if (stats?.position !== '' && stats?.connected === true) return
    await sleep(10)
  }
  throw new Error('timed out: the reader knows where the channel is')
}

function ids (items: Array<SseItem<string>>): string[] {
  return items.map(item => item.id as string)
}

/** The contract, as subtests of `t`. */
export function contract (t: Test, engine: Engine): void {
  t.test(`${engine.name}: items published on both servers reach every client on both in one order`, async t => {
    const [a, b] = await pair(t, engine)
    const clients = await Promise.all([a, a, b, b].map(s => open(`${s.url}/room`)))
    await prime(t, () => a.room.publish({ data: -1 }), clients)
    const published: string[] = []
    for (let n = 0; n < 20; n++) published.push(await (n % 2 === 0 ? a : b).room.publish({ data: n }))
    const seen = await within(Promise.all(clients.map(c => take(c.events, 20))), 10_000, 'twenty items each')
    for (const items of seen) t.same(ids(items), published, 'every item, once, in publish order')
    t.same(seen[0]?.map(item => item.data), Array.from({ length: 20 }, (_, n) => String(n)))
    for (const c of clients) c.res.body.destroy()
    await settled(a, b)
  })

  t.test(`${engine.name}: a client that reconnects to the other server gets exactly what it missed`, async t => {
    const [a, b] = await pair(t, engine)
    const first = await open(`${a.url}/room`, { reset: true })
    await prime(t, () => a.room.publish({ data: -1 }), [first])
    const before = await a.room.publish({ data: 0 })
    t.same(ids(await within(take(first.events, 1), 5000, 'the first item')), [before])
    first.res.body.destroy()
    const missed: string[] = []
    for (let n = 1; n <= 5; n++) missed.push(await (n % 2 === 0 ? a : b).room.publish({ data: n }))
    const back = await open(`${b.url}/room`, { reset: true, headers: { 'last-event-id': before } })
    const replayed = await within(take(back.events, 5), 5000, 'the replay')
    t.same(ids(replayed), missed, 'exactly the missed items, in order')
    const live = await b.room.publish({ data: 6 })
    t.same(ids(await within(take(back.events, 1), 5000, 'a live item after the replay')), [live])
    back.res.body.destroy()
    await settled(a, b)
  })

  t.test(`${engine.name}: the history outlives a server`, async t => {
    const name = `room-${process.pid}-${++rooms}`
    const a = await server(t, await engine.backend(t), name)
    const kept: string[] = []
    for (let n = 1; n <= 3; n++) kept.push(await a.room.publish({ data: n }))
    await a.app.close()
    const c = await server(t, await engine.backend(t), name)
    const back = await open(`${c.url}/room`, { reset: true, headers: { 'last-event-id': kept[0] as string } })
    const first = await within(take(back.events, 1), 5000, 'what the new server sends first')
    if (engine.shared) {
      t.same(ids([...first, ...await within(take(back.events, 1), 5000, 'the second item')]), kept.slice(1),
        'the items after the id, from the store')
    } else {
      t.same(first[0], { id: first[0]?.id, event: 'sse-reset', data: '{"reason":"unknown"}' },
        'in memory the history went with the server: sse-reset')
    }
    back.res.body.destroy()
    await settled(c)
  })

  t.test(`${engine.name}: a client that missed more than the history gets sse-reset, then live items`, async t => {
    const [a, b] = await pair(t, engine, 3)
    const at = await a.room.publish({ data: 0 })
    let newest = at
    const gap = engine.gapItems ?? 10
    for (let n = 1; n <= gap; n++) newest = await a.room.publish({ data: n })
    const back = await open(`${b.url}/room`, { reset: true, headers: { 'last-event-id': at } })
    const [reset] = await within(take(back.events, 1), 5000, 'the reset')
    t.same(reset, { id: newest, event: 'sse-reset', data: '{"reason":"expired"}' }, 'expired, at the newest item')
    const live = await a.room.publish({ data: gap + 1 })
    t.same(ids(await within(take(back.events, 1), 5000, 'the next live item')), [live], 'nothing before it twice')
    back.res.body.destroy()
    for (const [id, reason] of [['not-an-id', 'unknown'], ['x'.repeat(300), 'invalid']]) {
      const other = await open(`${b.url}/room`, { reset: true, headers: { 'last-event-id': id as string } })
      const [item] = await within(take(other.events, 1), 5000, `the ${reason} reset`)
      t.same(item, { id: live, event: 'sse-reset', data: `{"reason":"${reason}"}` }, `${reason}: at the newest item`)
      other.res.body.destroy()
    }
    await settled(a, b)
  })

  if (engine.shared) {
    t.test(`${engine.name}: a replay longer than a page comes page by page (cut by count, or by bytes), items published meanwhile once`, async t => {
      t.setTimeout(30_000)
      const name = `room-${process.pid}-${++rooms}`
      const byCount = await server(t, await engine.backend(t), name, 100, { queueItems: 8 })
      const byBytes = await server(t, await engine.backend(t), name, 100, { queueItems: 64, queueBytes: 200 })
      // a standing subscriber each, reading what comes (never cut off): their readers go
      const standing = [byCount.room.subscribe(), byBytes.room.subscribe()]
      t.teardown(async () => { for (const sub of standing) await sub.return?.() })
      await reading(byCount)
      await reading(byBytes)
      const read = standing.map(sub => take(sub, 13))
      const published: string[] = []
      for (let n = 0; n < 13; n++) published.push(await byCount.room.publish({ data: n }))
      // both readers have handed every item on: what a client gets meanwhile comes from its pages alone
      await within(Promise.all(read), 5000, 'the standing subscribers read all')
      for (const s of [byCount, byBytes]) {
        const client = await open(`${s.url}/room`, { headers: { 'last-event-id': published[0] as string } })
        const got = ids(await within(take(client.events, 6), 5000, 'the first pages'))
        const more = await s.room.publish({ data: 13 })
        const expected = [...published.slice(1), more]
        got.push(...ids(await within(take(client.events, expected.length - 6), 5000, 'the rest')))
        t.same(got, expected, 'every item once, in order')
        published.push(more)
        client.res.body.destroy()
      }
      await settled(byCount, byBytes)
    })
  }

  if (engine.shared) {
    t.test(`${engine.name}: a room left is forgotten after idleTimeout and nothing of it is held; a new channel of its name replays from the store, a held one taken back works`, async t => {
      t.setTimeout(30_000)
      const name = `room-${process.pid}-${++rooms}`
      const before = await engine.held?.()
      const shared = async (): Promise<ChannelBackendFactory<Promise<string>>> =>
        await engine.backend(t) as ChannelBackendFactory<Promise<string>>
      const [a, b] = [await roomServer(t, await shared()), await roomServer(t, await shared())]
      // a's is held, as by a module-level const; b's is made by the request, and nothing of the app holds it
      const held = a.room(name)
      const client = await open(`${b.url}/rooms/${name}`, { reset: true })
      const seen = await prime(t, () => held.publish({ data: -1 }), [client])
      const made = new WeakRef(b.room(name))
      client.res.body.destroy()
      await settled(b)
      t.equal(b.app.sse.stats().channelCount, 1, 'not forgotten at once: its ids are in the store, a client may hold one')
      await until(() => a.app.sse.stats().channelCount + b.app.sse.stats().channelCount === 0, 'both forgotten')
      for (let i = 0; i < 20 && made.deref() !== undefined; i++) await collect()
      t.equal(made.deref(), undefined, 'b\'s channel collected: nothing of its backend holds it')
      await released(t, engine, before, 'the last channel forgotten released the reader')

      // published on, the held one is taken back; a new channel of the name on b replays from the store
      const missed = [await held.publish({ data: 1 }), await held.publish({ data: 2 })]
      t.equal(a.room(name), held, 'a hands its held channel back')
      const back = await open(`${b.url}/rooms/${name}`, { reset: true, headers: { 'last-event-id': seen } })
      t.same(ids(await within(take(back.events, 2), 5000, 'the replay')), missed, 'exactly what it missed')
      const other = await open(`${a.url}/rooms/${name}`, { reset: true })
      await prime(t, () => held.publish({ data: 3 }), [back, other])
      t.equal(a.app.sse.stats().channels[0]?.subscribers, 1, 'the held one serves a\'s subscriber')
      for (const c of [back, other]) c.res.body.destroy()
      await settled(a, b)
      // the held one taken back is its backend's channel again: closed with its app, it closes the reader it started
      await Promise.all([a.app.close(), b.app.close()])
      await released(t, engine, before, 'both apps closed: the reader of the channel taken back released')
    })
  }

  if (engine.shared) {
    t.test(`${engine.name}: a held channel whose name another app of its backend took meanwhile is refused, and taken back once the name is free`, async t => {
      t.setTimeout(30_000)
      const before = await engine.held?.()
      const backend = await engine.backend(t) as ChannelBackendFactory<Promise<string>>
      const name = `room-${process.pid}-${++rooms}`
      const [one, two] = await Promise.all([0, 1].map(() => startApp(() => {})))
      for (const s of [one, two]) t.teardown(() => s?.app.close())
      const first = (one as Server).app
      const held = first.sse.channel<number>(name, { backend, idleTimeout: 0 })
      // more channels than a Redis cluster has slot groups, so some share a reader; a few had a subscriber (a reader
      // started for them): the last channel of a reader forgotten closes it
      for (let n = 0; n < 20; n++) {
        const channel = first.sse.channel<number>(`${name}-${n}`, { backend, idleTimeout: 0 })
        if (n % 5 === 0) await received(channel, n)
        else await channel.publish({ data: n })
      }
      await until(() => first.sse.stats().channelCount === 0, 'all forgotten')
      await released(t, engine, before, 'the last channel of each reader forgotten closed it')
      const other = (two as Server).app.sse.channel<number>(name, { backend })
      await t.rejects(held.publish({ data: 1 }), { code: 'FST_SSE_INVALID_OPTION', field: 'backend' },
        'its backend serves the other app\'s channel of that name: refused')
      t.throws(() => first.sse.channel(name, { backend }), { code: 'FST_SSE_INVALID_OPTION', field: 'backend' })
      t.equal(first.sse.stats().channelCount, 0, 'still forgotten')
      other.close()
      t.match(await held.publish({ data: 2 }), /-/, 'the name free: taken back')
      t.equal(first.sse.channel(name, { backend }), held)
    })
  }

  if (engine.unreachable !== undefined) {
    const unreachable = engine.unreachable
    t.test(`${engine.name}: an engine that cannot be reached rejects the publish, and says why`, async t => {
      const s = await server(t, await unreachable(t), `room-${process.pid}-${++rooms}`)
      const failed = await Promise.resolve(s.room.publish({ data: 1 })).then(() => undefined, (err: unknown) => err)
      t.match(failed, { code: 'FST_SSE_CHANNEL_UNAVAILABLE', message: /^SSE channel "room-[0-9-]+": / })
      t.match(s.app.sse.stats().channels[0], { publishFailures: 1 }, 'counted')
    })
  }

  t.test(`${engine.name}: app.close() ends the streams and releases what the engine holds`, async t => {
    const before = await engine.held?.()
    const [a, b] = await pair(t, engine)
    const clients = await Promise.all([a, b].map(s => open(`${s.url}/room`)))
    await prime(t, () => b.room.publish({ data: -1 }), clients)
    await Promise.all([...new Set([a.app, b.app])].map(app => app.close()))
    for (const c of clients) {
      t.same((await within(c.events.next(), 5000, 'the stream ends')).done, true, 'the stream ended')
    }
    await released(t, engine, before, 'nothing more held than before')
  })
}
