// Redis channels on a Redis Cluster of the tests' own (test/support/redis-cluster.ts: three masters on free ports):
// channels spread over slots and nodes, two Fastify instances each with its own ioredis Cluster client standing
// for two servers, a slot moved to another node under blocked readers, a reader's connection killed, a failover
// (on a second cluster, with a replica per master), connections counted on every node.
import t from 'tap'
import type { Test } from 'tap'
import { Cluster, type ClusterOptions, type Redis } from 'ioredis'
import type { FastifyInstance } from 'fastify'
import { redisChannels, type RedisChannelsOptions } from '../../lib/channel/redis/index.js'
import { hashTag, place } from '../../lib/channel/redis/keys.js'
import { SSE_DIAGNOSTICS, subscribeSseDiagnostic, type Channel, type SseItem, type SseResetData } from '../../lib/index.js'
import { open, startApp, take, WARN, within, type LogCapture } from '../helpers.js'
import { startCluster, type RedisCluster } from '../support/redis-cluster.js'

const cluster = await startCluster()
t.teardown(() => cluster.stop())
let tests = 0

interface Context {
  prefix: string
  /** A ready cluster client of its own; disconnected at teardown, after the apps closed. */
  client: (options?: ClusterOptions) => Promise<Cluster>
  later: (fn: () => unknown) => void
}

function context (t: Test, on: RedisCluster = cluster): Context {
  // the cluster is this file's own: a prefix of the test alone, so the slots its groups land on are always the same
  const prefix = `t${++tests}:`
  const clients: Cluster[] = []
  const cleanups: Array<() => unknown> = []
  t.teardown(async () => {
    for (const fn of cleanups.reverse()) await fn()
    for (const c of clients) c.disconnect()
  })
  return {
    prefix,
    later: fn => { cleanups.push(fn) },
    client: async (options = {}) => {
      const c = new Cluster(on.nodes, options)
      clients.push(c)
      if (c.status !== 'ready') await new Promise(resolve => c.once('ready', resolve))
      return c
    }
  }
}

type Room = Channel<{ n: number }, Promise<string>>
interface Server1 { app: FastifyInstance, url: string, logs: LogCapture, room: (name: string) => Room }

/** One "server": an app with its own cluster client and backend, and GET /room/:name. */
async function server (ctx: Context, options: Partial<RedisChannelsOptions> = {}): Promise<Server1> {
  const redis = options.redis ?? await ctx.client()
  const backend = redisChannels({ prefix: ctx.prefix, ...options, redis })
  let room!: Server1['room']
  const { app, url, logs } = await startApp(app => {
    room = name => app.sse.channel<{ n: number }>(name, { backend, history: 100 })
    app.get<{ Params: { name: string } }>('/room/:name', (req, reply) =>
      reply.sse(room(req.params.name).subscribe({ lastEventId: req.headers['last-event-id'], signal: req.signal })))
  })
  ctx.later(() => app.close())
  return { app, url, logs, room }
}

/** Resolves once the channel's reader reads its stream (a subscriber gets an item published now). */
async function readerReady (room: Room): Promise<void> {
  const sub = room.subscribe()
  const got = sub.next()
  await room.publish({ event: 'warmup' })
  await within(got, 5000, 'the reader')
  await sub.return?.()
}

/** Every key of the test's prefix on each node, by port. */
async function keysByNode (prefix: string): Promise<Map<number, string[]>> {
  const found = new Map<number, string[]>()
  for (const [port, node] of cluster.admin) {
    found.set(port, (await node.keys('*')).filter(key => key.includes(prefix)).sort())
  }
  return found
}

/** How many connections of that name each node has (CLIENT LIST), in the nodes' order. */
async function connections (name: string, on: RedisCluster = cluster): Promise<number[]> {
  return await Promise.all(Array.from(on.admin.values(), async node =>
    (await node.call('CLIENT', 'LIST') as string).split('\n').filter(line => line.includes(` name=${name} `)).length))
}

const sum = (counts: number[]): number => counts.reduce((a, b) => a + b, 0)

t.test('two servers on a 3-node cluster: channels on every node, published on either, delivered once and in order on both', async t => {
  t.setTimeout(30_000)
  const ctx = context(t)
  const a = await server(ctx)
  const b = await server(ctx)
  // 12 rooms over the 16 slot groups, two that share a tag of their own, two whose braces are no tag
  const names = [...Array.from({ length: 12 }, (_, n) => `room:${n}`), '{tenant}a', '{tenant}b', 'x{}y', 'x{y']
  for (const name of names) {
    await readerReady(a.room(name))
    await readerReady(b.room(name))
  }
  const clients = await Promise.all(names.flatMap(name => [a, b].map(async s => await open(`${s.url}/room/${encodeURIComponent(name)}`))))
  const receiving = Promise.all(clients.map(async c => await take(c.events, 4)))
  const ids = new Map<string, string[]>()
  for (let n = 0; n < 4; n++) {
    for (const name of names) {
      const id = await (n % 2 === 0 ? a : b).room(name).publish({ data: { n } })
      ids.set(name, [...(ids.get(name) ?? []), id])
    }
  }
  const got = await within(receiving, 10_000, '4 items on each of 32 clients')
  names.forEach((name, i) => {
    const expected = (ids.get(name) as string[]).map((id, n) => ({ id, data: JSON.stringify({ n }) }))
    t.same(got[2 * i], expected, `${name} on A: every item once, in order`)
    t.same(got[2 * i + 1], expected, `${name} on B: the same`)
  })

  // where the streams are: each in its slot group's slot, or its own tag's
  const keys = await keysByNode(ctx.prefix)
  const control = Array.from(keys.values()).flat().filter(key => key.includes(ctx.prefix + 'reader:'))
  t.ok(control.every(key => /^\{t\d+:\d+\}t\d+:reader:[\w-]+$/.test(key)), 'each reader\'s control stream carries its group\'s tag')
  for (const list of keys.values()) list.splice(0, list.length, ...list.filter(key => !control.includes(key)))
  const all = Array.from(keys.values()).flat()
  t.equal(all.length, names.length, 'one stream per channel')
  t.ok(all.every(key => /^\{t\d+:\d+\}(room:\d+|x\{\}y|x\{y|\{tenant\}[ab])$/.test(key)), 'keys: {<prefix><group>}<name>, a name with a tag of its own too')
  t.ok(Array.from(keys.values()).filter(list => list.length > 0).length >= 2, 'the streams are on more than one node')
  const tenant = all.filter(key => key.includes('{tenant}'))
  t.equal(new Set(tenant.map(key => hashTag(key))).size, 1, 'a tag of their own, shared: one slot')
  t.ok(Array.from(keys.values()).some(list => tenant.every(key => list.includes(key))), 'so one node')
  for (const c of clients) c.res.body.destroy()
})

t.test('on the cluster: Last-Event-ID replay across servers, sse-reset, idempotent publish', async t => {
  t.setTimeout(20_000)
  const ctx = context(t)
  const redis = await ctx.client()
  const a = await server(ctx, { redis })
  const b = await server(ctx)
  for (const name of ['chat', '{tenant}chat']) {
    const ids: string[] = []
    for (let n = 0; n < 5; n++) ids.push(await a.room(name).publish({ data: { n } }))
    const moved = await open(`${b.url}/room/${encodeURIComponent(name)}`, { headers: { 'last-event-id': ids[1] as string } })
    const resting = take(moved.events, 4)
    ids.push(await a.room(name).publish({ data: { n: 5 } }))
    t.same((await within(resting, 5000, 'replay then live')).map(item => item.id), ids.slice(2), `${name}: replayed, then live, once each`)
    moved.res.body.destroy()

    const reset = async (lastEventId: string): Promise<SseItem<SseResetData>> =>
      (await take(b.room(name).subscribe({ lastEventId }), 1))[0] as SseItem<SseResetData>
    t.same(await reset('garbage'), { id: ids[5], event: 'sse-reset', data: { reason: 'unknown' } }, `${name}: malformed`)
    const [key] = Array.from((await keysByNode(ctx.prefix)).values()).flat().filter(k => k.endsWith(name))
    await redis.call('XTRIM', key as string, 'MAXLEN', 2)
    // (from ids[0]: the page read from ids[1] above may still be shared, and holds what was trimmed since)
    t.same(await reset(ids[0] as string), { id: ids[5], event: 'sse-reset', data: { reason: 'expired' } }, `${name}: trimmed`)

    // the idempotency key is in the stream's slot (else the script would fail with CROSSSLOT)
    const sub = b.room(name).subscribe()
    const tries = await Promise.all([1, 2, 3].map(async () => await a.room(name).publish({ data: { n: 6 } }, { idempotencyKey: 'once' })))
    t.equal(new Set(tries).size, 1, `${name}: one id for every try`)
    const next = await a.room(name).publish({ data: { n: 7 } })
    t.same((await within(take(sub, 2), 5000, 'delivered')).map(item => item.id), [tries[0], next], `${name}: delivered once`)
    await sub.return?.()
  }
})

t.test('a channel joins a reader blocked on the cluster at once; a slot moved to another node under it loses nothing', async t => {
  t.setTimeout(30_000)
  const ctx = context(t)
  // a block far longer than the test: a channel that had to wait it out would time it out
  const a = await server(ctx, { blockTimeout: 60_000, readerName: `move-${process.pid}` })
  const b = await server(ctx, { blockTimeout: 60_000 })
  await readerReady(a.room('{move}first'))
  const room = a.room('{move}chat')
  const sub = room.subscribe()
  const first = await room.publish({ data: { n: 0 } })
  t.equal((await within(take(sub, 1), 5000, 'a channel that joined a blocked reader'))[0]?.id, first)

  const key = place({ prefix: ctx.prefix, cluster: true, slotGroups: 16 }, '{move}chat').key
  const from = await cluster.owner(key)
  const to = cluster.nodes.find(node => node.port !== from)?.port as number
  const onB = await open(`${b.url}/room/${encodeURIComponent('{move}chat')}`)
  const ids = [first]
  const receiving = take(sub, 6)
  const receivingB = take(onB.events, 6)
  for (let n = 1; n < 4; n++) ids.push(await b.room('{move}chat').publish({ data: { n } }))
  const readers = await connections(`move-${process.pid}:${ctx.prefix}`)
  await cluster.moveSlot(key, to)
  t.equal(await cluster.owner(key), to, 'the slot is on another node')
  for (let n = 4; n < 7; n++) ids.push(await b.room('{move}chat').publish({ data: { n } }))
  t.same((await within(receiving, 10_000, 'after the move, on A')).map(item => item.id), ids.slice(1), 'every item once, in order')
  t.same((await within(receivingB, 10_000, 'after the move, on B')).map(item => item.id), ids.slice(1), 'on B too')
  const ports = cluster.nodes.map(node => node.port)
  const after = await connections(`move-${process.pid}:${ctx.prefix}`)
  t.equal(readers[ports.indexOf(from)], 1, 'the reader was on the slot\'s node')
  t.equal(after[ports.indexOf(to)], 1, 'it followed the slot: MOVED, handled by its cluster client')
  t.same((await take(a.room('{move}chat').subscribe({ lastEventId: first }), 6)).map(item => item.id), ids.slice(1), 'replay from before the move')
  await sub.return?.()
  onB.res.body.destroy()
})

t.test('a master fails over to its replica under blocked readers: nothing lost, nothing twice, read on the new master', async t => {
  t.setTimeout(30_000)
  const replicated = await startCluster(1)
  t.teardown(() => replicated.stop())
  const ctx = context(t, replicated)
  const name = `failover-${process.pid}`
  const a = await server(ctx, { blockTimeout: 60_000, readerName: name })
  const b = await server(ctx, { blockTimeout: 60_000 })
  const room = '{failover}chat'
  await readerReady(a.room(room))
  await readerReady(b.room(room))
  const sub = a.room(room).subscribe()
  const onB = await open(`${b.url}/room/${encodeURIComponent(room)}`)
  const receiving = take(sub, 6)
  const receivingB = take(onB.events, 6)
  const ids: string[] = []
  for (let n = 0; n < 3; n++) ids.push(await b.room(room).publish({ data: { n } }))
  const key = place({ prefix: ctx.prefix, cluster: true, slotGroups: 16 }, room).key
  const master = await replicated.owner(key)
  const promoted = await replicated.failover(key)
  t.not(promoted, master, 'the replica serves the slot now')
  for (let n = 3; n < 6; n++) ids.push(await a.room(room).publish({ data: { n } }))
  t.same((await within(receiving, 10_000, 'on A')).map(item => item.id), ids, 'every item once, in order, on A')
  t.same((await within(receivingB, 10_000, 'on B')).map(item => item.id), ids, 'and on B')
  const ports = replicated.nodes.map(node => node.port)
  t.equal((await connections(`${name}:${ctx.prefix}`, replicated))[ports.indexOf(promoted)], 1, 'the reader reads on the new master')
  t.same((await take(b.room(room).subscribe({ lastEventId: ids[0] as string }), 5)).map(item => item.id), ids.slice(1), 'replay from before the failover')
  await sub.return?.()
  onB.res.body.destroy()
})

t.test('a reader\'s connection killed on the cluster: its cluster client connects again and resends the read, nothing lost or twice', async t => {
  t.setTimeout(30_000)
  const ctx = context(t)
  const name = `killed-${process.pid}`
  const a = await server(ctx, { readerName: name })
  const room = a.room('{killed}chat')
  await readerReady(room)
  const sub = room.subscribe()
  const ids = [await room.publish({ data: { n: 0 } })]
  const receiving = take(sub, 6)
  /** The node and client id of the reader's connection. */
  const reader = async (): Promise<[Redis, string] | undefined> => {
    for (const node of cluster.admin.values()) {
      const line = (await node.call('CLIENT', 'LIST') as string).split('\n').find(l => l.includes(` name=${name}:${ctx.prefix} `))
      const id = /id=(\d+)/.exec(line ?? '')?.[1]
      if (id !== undefined) return [node, id]
    }
    return undefined
  }
  const [node, killed] = await reader() as [Redis, string]
  await node.call('CLIENT', 'KILL', 'ID', killed)
  for (let n = 1; n < 6; n++) ids.push(await room.publish({ data: { n } }))
  t.same((await within(receiving, 10_000, 'after the kill')).map(item => item.id), ids, 'every item once, in order')
  const [, id] = await reader() as [Redis, string]
  t.not(id, killed, 'read on a new connection')
  t.match(a.app.sse.stats().channels.find(c => c.name === '{killed}chat'), { connected: true })
  t.equal(a.logs.lines.filter(l => /reader/.test(l.msg)).length, 0, 'nothing to say: its cluster client took care of it')
  await sub.return?.()
})

t.test('connections per process on the cluster: one reader per slot group in use, whatever the number of channels', async t => {
  t.setTimeout(60_000)
  const ctx = context(t)
  const name = `conn-${process.pid}`
  const redis = await ctx.client({ redisOptions: { connectionName: `${name}-client` } })
  const s = await server(ctx, { redis, readerName: name, slotGroups: 4 })
  const readers = async (): Promise<number[]> => await connections(`${name}:${ctx.prefix}`)

  await readerReady(s.room('room:0'))
  t.equal(sum(await readers()), 1, 'one channel: one reader')
  const rooms = Array.from({ length: 1000 }, (_, n) => s.room(`room:${n}`))
  const subs = rooms.map(room => room.subscribe())
  const published = await Promise.all(rooms.map(async (room, n) => await room.publish({ data: { n } })))
  const got = await within(Promise.all(subs.map(async sub => (await take(sub, 1))[0]?.id)), 20_000, '1,000 rooms')
  t.same(got, published, 'each of 1,000 rooms its own item')
  const counts = await readers()
  t.equal(sum(counts), 4, '1,000 channels: one reader per slot group (4)')
  t.ok(sum(await connections(`${name}-client`)) <= 3, 'and your client: at most one connection per node')
  t.comment(`reader connections per node: ${counts.join(' / ')}; client: ${(await connections(`${name}-client`)).join(' / ')}`)

  // a channel with a tag of its own is in one of the groups: no reader more
  await readerReady(s.room('{own}room'))
  t.equal(sum(await readers()), 4, 'a tag of its own: read by its group\'s reader')
  for (const sub of subs) await sub.return?.()
  await s.app.close()
  t.equal(sum(await readers()), 0, 'app.close(): no reader left')
  t.equal(redis.status, 'ready', 'your client stays open')
})

t.test('options on a cluster: the prefix holds no hash tag, slotGroups is a number of slots', async t => {
  const ctx = context(t)
  const redis = await ctx.client()
  t.throws(() => redisChannels({ redis, prefix: '' }), { code: 'FST_SSE_INVALID_OPTION', field: 'prefix', message: /non-empty/ })
  for (const prefix of ['{app}:', 'a}']) {
    t.throws(() => redisChannels({ redis, prefix }), { code: 'FST_SSE_INVALID_OPTION', field: 'prefix', message: /without \{ or \} on a Redis Cluster/ })
  }
  for (const slotGroups of [0, 1.5, 16385, '4']) {
    t.throws(() => redisChannels({ redis, slotGroups: slotGroups as number }), { code: 'FST_SSE_INVALID_OPTION', field: 'slotGroups', message: /whole number from 1 to 16384/ })
  }
  t.doesNotThrow(() => redisChannels({ redis, slotGroups: 1, prefix: 'one:' }))
  const tagged = await ctx.client({ keyPrefix: '{app}:' })
  t.throws(() => redisChannels({ redis: tagged }), { code: 'FST_SSE_INVALID_OPTION', field: 'redis', message: /keyPrefix without \{ or \}/ })

  // where a name lives must never change (a channel would lose its history): FNV-1a 32, modulo slotGroups
  const s = await server(ctx, { redis })
  const one = await server(ctx, { redis, slotGroups: 1, prefix: ctx.prefix + 'one:' })
  for (const name of ['chat', 'a', 'room:42']) await s.room(name).publish({ data: { n: 0 } })
  await one.room('chat').publish({ data: { n: 0 } })
  const keys = Array.from((await keysByNode(ctx.prefix)).values()).flat().sort()
  // FNV-1a of "a" is 0xe40c292c: 12 modulo 16
  const p = ctx.prefix
  // each node's bus on a free port of its own, not port + 10000 (past 65535 for a node above 55535)
  for (const [port, node] of cluster.admin) {
    const busPort = Number((await node.call('CONFIG', 'GET', 'cluster-port') as string[])[1])
    t.ok(busPort > 0 && busPort !== port + 10_000, `node ${port}: its bus on a port chosen free (${busPort})`)
  }
  t.same(keys, [`{${p}10}room:42`, `{${p}11}chat`, `{${p}12}a`, `{${p}one:0}chat`], 'the same keys in every version')

  // a keyPrefix of the client's comes before every key; the reader finds its streams in XREAD's answer all the same
  const prefixed = await server(ctx, { redis: await ctx.client({ keyPrefix: ctx.prefix + 'kp:' }), prefix: 'sse:' })
  const sub = prefixed.room('chat').subscribe()
  const live = take(sub, 1)
  const id = await prefixed.room('chat').publish({ data: { n: 1 } })
  t.same((await within(live, 5000, 'live on a prefixed client')).map(item => item.id), [id], 'delivered live')
  t.ok(Array.from((await keysByNode(ctx.prefix + 'kp:')).values()).flat().includes(`${ctx.prefix}kp:{sse:11}chat`), 'at <keyPrefix>{<prefix><n>}<name>')
  await sub.return?.()
})

t.test('a master down under a reader of many channels: the reader is down, says it retries once per try, not once per channel; all reset and resume', async t => {
  t.setTimeout(30_000)
  const ctx = context(t)
  const s = await server(ctx, { slotGroups: 1 })
  const told: string[] = []
  t.teardown(subscribeSseDiagnostic(SSE_DIAGNOSTICS.readerDown, ({ channel }) => { told.push(`down ${channel}`) }))
  t.teardown(subscribeSseDiagnostic(SSE_DIAGNOSTICS.readerUp, ({ channel }) => { told.push(`up ${channel}`) }))
  const connected = (): Array<boolean | undefined> => s.app.sse.stats().channels.map(ch => ch.connected)
  const rooms = Array.from({ length: 20 }, (_, n) => s.room(`room:${n}`))
  const subs = rooms.map(room => room.subscribe())
  const first = Promise.all(subs.map(async sub => await take(sub, 1)))
  await Promise.all(rooms.map(async room => await room.publish({ data: { n: 0 } })))
  await within(first, 5000, 'every room read')
  const port = await cluster.owner(`{${ctx.prefix}0}room:0`)
  const failures = (): LogCapture['lines'] => s.logs.lines.filter(l => /reader failed/.test(l.msg))
  t.ok(connected().every(up => up === true), 'connected before')
  await cluster.kill(port)
  const killed = Date.now()
  try {
    await within(s.logs.waitFor(l => l.level === WARN && /reader cannot read; retrying/.test(l.msg)), 10_000, 'the reader down')
    t.comment(`a dead master noticed after ${Date.now() - killed} ms`)
    t.ok(connected().every(up => up === false), 'not connected while the master is dead')
    t.same(told, rooms.map(room => `down ${room.name}`), 'readerDown told for each channel of the reader, once')
    await within(s.logs.waitFor(() => failures().length >= 2), 15_000, 'the reader failing twice')
  } finally {
    await cluster.restart(port)
  }
  t.same(new Set(failures().map(l => /^SSE channel "([^"]*)"/.exec(String(l.err?.message))?.[1])), new Set([`${ctx.prefix}*`]), 'only the reader says so, not each of its 20 channels')
  // the node is back (with no data: no persistence), the cluster whole again; the reader reads on
  const admin = cluster.admin.get(port) as Redis
  for (let i = 0; i < 200 && !String(await admin.call('CLUSTER', 'INFO').catch(() => '')).includes('cluster_state:ok'); i++) {
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  // what the node held is gone: each room's subscriber is told so, at the start of the stream made again
  const resets = await within(Promise.all(subs.map(async sub => (await take(sub, 1))[0])), 10_000, 'the resets')
  const reset: SseItem<SseResetData> = { id: '0-0', event: 'sse-reset', data: { reason: 'unknown' } }
  t.same(resets, rooms.map(() => reset), 'every room: one sse-reset')
  const next = Promise.all(subs.map(async sub => (await take(sub, 1))[0]?.id))
  const ids = await Promise.all(rooms.map(async room => await room.publish({ data: { n: 1 } })))
  t.same(await within(next, 10_000, 'every room after the restart'), ids, 'every room gets what is published after')
  t.equal(s.app.sse.stats().resets.unknown, 20)
  t.ok(connected().every(up => up === true), 'connected again')
  t.same(told.slice(rooms.length), rooms.map(room => `up ${room.name}`), 'readerUp told for each, once')
  t.equal(s.logs.lines.filter(l => l.level === WARN && /reader/.test(l.msg)).length, 1, 'one warning for the outage')
  for (const sub of subs) await sub.return?.()
})

t.test('500 names with tags of their own: at most one reader per slot group, closed once idle, opened again on demand', async t => {
  t.setTimeout(60_000)
  const ctx = context(t)
  const name = `tags-${process.pid}`
  const redis = await ctx.client({ redisOptions: { connectionName: `${name}-client` } })
  const s = await server(ctx, { redis, readerName: name, slotGroups: 4, readerIdleTimeout: 300 })
  const readers = async (): Promise<number> => sum(await connections(`${name}:${ctx.prefix}`))
  const rooms = Array.from({ length: 500 }, (_, n) => s.room(`{tenant-${n}}room`))
  const subs = rooms.map(room => room.subscribe())
  const published = await Promise.all(rooms.map(async (room, n) => await room.publish({ data: { n } })))
  const got = await within(Promise.all(subs.map(async sub => (await take(sub, 1))[0]?.id)), 20_000, '500 rooms')
  t.same(got, published, 'each of 500 rooms its own item')
  const open = await readers()
  t.comment(`500 tagged names: ${open} reader connections, ${sum(await connections(`${name}-client`))} of the client`)
  t.ok(open <= 4, `at most one reader per slot group (${open})`)
  for (const sub of subs) await sub.return?.()
  const idle = Date.now()
  for (let i = 0; i < 100 && await readers() > 0; i++) await new Promise(resolve => setTimeout(resolve, 50))
  t.equal(await readers(), 0, `no reader once idle (after ${Date.now() - idle} ms)`)
  t.equal(s.app.sse.stats().channels.find(c => c.name === '{tenant-7}room')?.connected, undefined, 'no reader: connected unknown')
  await readerReady(rooms[7] as Room)
  t.equal(await readers(), 1, 'a subscriber again: its group\'s reader opens again')
  t.equal(redis.status, 'ready', 'your client stays open')
})

t.test('a master stalled (SIGSTOP) under a reader: down within blockTimeout + 1 s, up after SIGCONT with nothing lost', async t => {
  t.setTimeout(30_000)
  const ctx = context(t)
  const blockTimeout = 500
  const s = await server(ctx, { blockTimeout, publishTimeout: 20_000 })
  const told: string[] = []
  const down = new Promise<void>(resolve => {
    t.teardown(subscribeSseDiagnostic(SSE_DIAGNOSTICS.readerDown, ({ channel }) => { told.push(`down ${channel}`); resolve() }))
  })
  const up = new Promise<void>(resolve => {
    t.teardown(subscribeSseDiagnostic(SSE_DIAGNOSTICS.readerUp, ({ channel }) => { told.push(`up ${channel}`); resolve() }))
  })
  const room = s.room('{stall}chat')
  const sub = room.subscribe()
  const before = await room.publish({ data: { n: 0 } })
  t.equal((await within(take(sub, 1), 5000, 'an item before the stall'))[0]?.id, before)
  const port = await cluster.owner(place({ prefix: ctx.prefix, cluster: true, slotGroups: 16 }, '{stall}chat').key)
  // shorter than the cluster's node timeout (5 s): the others do not take the node for failed
  cluster.pause(port)
  let resumed = false
  t.teardown(() => { if (!resumed) cluster.resume(port) })
  const stalled = Date.now()
  const during = room.publish({ data: { n: 1 } })
  await within(down, blockTimeout + 1000 + 3000, 'readerDown')
  const detected = Date.now() - stalled
  t.comment(`a stalled master noticed after ${detected} ms (blockTimeout ${blockTimeout} ms)`)
  t.ok(detected <= blockTimeout + 1000 + 1000, `noticed within blockTimeout + 1 s (${detected} ms)`)
  t.equal(s.app.sse.stats().channels[0]?.connected, false, 'stats: not connected')
  cluster.resume(port)
  resumed = true
  await within(up, 10_000, 'readerUp')
  t.equal(s.app.sse.stats().channels[0]?.connected, true, 'stats: connected again')
  const stored = await within(during, 10_000, 'the publish made during the stall')
  const after = await room.publish({ data: { n: 2 } })
  t.same((await within(take(sub, 2), 5000, 'the items after')).map(i => i.id), [stored, after], 'nothing lost, nothing twice')
  t.same(told, ['down {stall}chat', 'up {stall}chat'], 'told once each')
  t.equal(s.logs.lines.filter(l => l.level === WARN && /reader/.test(l.msg)).length, 1, 'one warning')
  await sub.return?.()
})
