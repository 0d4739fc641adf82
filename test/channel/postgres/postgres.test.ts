// PostgreSQL channels against the database at PG_URL: options, refusals, idempotency, retention, the schema, and
// what the listener does with what it reads. Each test has tables of its own (./context).
import t from 'tap'
import type { Test } from 'tap'
import pg from 'pg'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { ensureSchema, postgresChannels, schemaSql } from '../../../lib/channel/postgres/index.js'
import { SSE_DIAGNOSTICS, subscribeSseDiagnostic, type SseItem } from '../../../lib/index.js'
import { deferred, open, take, WARN, within, type LogLine } from '../../helpers.js'
import { located, pgContext, pgServer, PG_URL, watchedPool, type PgServer } from './context.js'

/** Resolves at the first cut-off of a subscriber of `room` (from now on). */
function cutOff (t: Test): Promise<void> {
  const cut = deferred()
  t.teardown(subscribeSseDiagnostic(SSE_DIAGNOSTICS.cutOff, m => { if (m.channel === 'room') cut.resolve() }))
  return cut.promise
}

/** Resolves once the server's reader has handed `id` on (polled: nothing tells it). */
async function handedOn (s: PgServer, id: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (s.app.sse.stats({ channels: Infinity }).channels.find(c => c.name === 'room')?.position === id) return
    await sleep(10)
  }
  throw new Error(`timed out: the reader handed on ${id}`)
}

t.test('postgresChannels() refuses what it does not take, naming the option', async t => {
  const pool = new pg.Pool({ connectionString: PG_URL })
  t.teardown(() => pool.end())
  const bad: Array<[unknown, string, RegExp]> = [
    [null, 'options', /must be an object/],
    [{ pool, prefx: 'x' }, 'prefx', /is not an option of postgresChannels\(\) \(its options: pool, prefix, listener/],
    [{}, 'pool', /must be a pg Pool/],
    [{ pool: { query: () => {} } }, 'pool', /must be a pg Pool/],
    [{ pool, listener: 'x' }, 'listener', /must be a function/],
    [{ pool, readerName: 'a b' }, 'readerName', /letters, digits and _:.- only/],
    [{ pool, readerName: 'x'.repeat(31) }, 'readerName', /1 to 30/],
    [{ pool, prefix: 'Sse' }, 'prefix', /lowercase letters/],
    [{ pool, prefix: '1a' }, 'prefix', /lowercase letters/],
    [{ pool, publishTimeout: 0 }, 'publishTimeout', /positive whole number of milliseconds/],
    [{ pool, idempotencyWindow: 1.5 }, 'idempotencyWindow', /positive whole number of milliseconds/]
  ]
  for (const [options, field, message] of bad) {
    t.throws(() => postgresChannels(options as never), { code: 'FST_SSE_INVALID_OPTION', field, message }, field)
  }
  t.throws(() => schemaSql('X'), { field: 'prefix', message: /^schemaSql\(\) option "prefix"/ })
  await t.rejects(ensureSchema(pool, { prefx: 'x' } as never), { field: 'prefx', message: /ensureSchema\(\)/ })
  await t.rejects(ensureSchema(pool, 'x' as never), { code: 'FST_SSE_INVALID_OPTION', field: 'options' })
})

t.test('a channel name too long for an index, a name served twice, an item PostgreSQL text cannot hold', async t => {
  const ctx = await pgContext(t)
  const s = await pgServer(t, ctx)
  const backend = postgresChannels({ pool: ctx.pool(), prefix: ctx.prefix })
  t.throws(() => s.app.sse.channel('x'.repeat(1025), { backend }), {
    code: 'FST_SSE_INVALID_OPTION', field: 'name', message: /at most 1024 bytes/
  })
  s.app.sse.channel('twice', { backend })
  const other = await pgServer(t, ctx)
  t.throws(() => other.app.sse.channel('twice', { backend }), {
    code: 'FST_SSE_INVALID_OPTION', field: 'backend', message: /already serves a channel of that name/
  })
  await t.rejects(s.room.publish({ data: 1, id: 'mine' } as never), { field: 'id', message: /is given by PostgreSQL on a PostgreSQL channel/ })
  await t.rejects(s.room.publish({ comment: 'a\0b', data: 1 }), { code: 'FST_SSE_INVALID_ITEM', field: 'comment', message: /must not contain NUL/ })
  await t.rejects(s.room.publish({ event: 'a\0b', data: 1 }), { code: 'FST_SSE_INVALID_ITEM', field: 'event' })
  const text = s.app.sse.channel<string>('text', { backend })
  await t.rejects(text.publish({ data: 'a\0b' }), { code: 'FST_SSE_INVALID_ITEM', field: 'data' })
  await t.rejects(s.room.publish({ data: 1 }, { idempotencyKey: '' }), { code: 'FST_SSE_INVALID_OPTION', field: 'idempotencyKey' })
  t.equal(s.app.sse.stats().channels.find(c => c.name === 'room')?.publishFailures, 0, 'refusals are not failures')
})

t.test('no schema: the publish rejects and says how to make it', async t => {
  const ctx = await pgContext(t, { schema: false })
  const s = await pgServer(t, ctx)
  await t.rejects(s.room.publish({ data: 1 }), {
    code: 'FST_SSE_CHANNEL_UNAVAILABLE', message: new RegExp(`run ensureSchema\\(pool, \\{ prefix: '${ctx.prefix}' \\}\\) first`)
  })
})

t.test('ensureSchema() twice at once, and one that fails leaves nothing half made', async t => {
  const ctx = await pgContext(t, { schema: false })
  await Promise.all([ensureSchema(ctx.admin, { prefix: ctx.prefix }), ensureSchema(ctx.admin, { prefix: ctx.prefix })])
  const broken = `t${process.pid}_broken_`
  await ctx.admin.query(`DROP VIEW IF EXISTS ${broken}keys; CREATE VIEW ${broken}keys AS SELECT 1 AS x`)
  t.teardown(() => ctx.admin.query(`DROP VIEW IF EXISTS ${broken}keys`))
  await t.rejects(ensureSchema(ctx.admin, { prefix: broken }))
  const { rows } = await ctx.admin.query('SELECT to_regclass($1) AS t', [`${broken}channels`])
  t.equal(rows[0].t, null, 'rolled back')
  t.equal(ctx.admin.totalCount <= 2, true, 'the failed connection is not kept')
})

t.test('an idempotency key stores once within its window, then again', async t => {
  const ctx = await pgContext(t)
  const s = await pgServer(t, ctx, { idempotencyWindow: 300 })
  const sub = s.room.subscribe()
  await located(s.room, s.app)
  const first = await s.room.publish({ data: 1 }, { idempotencyKey: 'order-1' })
  t.equal(await s.room.publish({ data: 1 }, { idempotencyKey: 'order-1' }), first, 'the same id')
  const other = await s.room.publish({ data: 2 }, { idempotencyKey: 'order-2' })
  t.same((await take(sub, 2)).map(item => item.id), [first, other], 'delivered once')
  await sleep(400) // the window passes
  const again = await s.room.publish({ data: 1 }, { idempotencyKey: 'order-1' })
  t.not(again, first, 'a new item after the window')
  const { rows } = await ctx.admin.query(`SELECT key FROM ${ctx.prefix}keys ORDER BY key`)
  t.same(rows.map(r => r.key), ['order-1'], 'the expired keys are swept')
  await sub.return?.()
})

t.test('retention by age: the append trims what is too old, a replay of it is expired', async t => {
  const ctx = await pgContext(t)
  const s = await pgServer(t, ctx, {}, { historyMaxAge: 200 })
  const old = await s.room.publish({ data: 1 })
  const older = await s.room.publish({ data: 2 })
  await sleep(250) // the items age
  const replay = s.room.subscribe({ lastEventId: old })
  t.same((await within(take(replay, 1), 5000, 'the reset'))[0], { id: older, event: 'sse-reset', data: { reason: 'expired' } })
  await replay.return?.()
  await s.room.publish({ data: 3 })
  const { rows } = await ctx.admin.query(`SELECT seq FROM ${ctx.prefix}items`)
  t.same(rows.map(r => Number(r.seq)), [3], 'the old items went with the next append')
})

t.test('the listener: many items at once are read in batches; a notification not ours is ignored', async t => {
  const ctx = await pgContext(t)
  const s = await pgServer(t, ctx, {}, { history: 2000 })
  const sub = s.room.subscribe()
  await located(s.room, s.app)
  await ctx.admin.query(`SELECT pg_notify('${ctx.prefix}items', 'not ours'), pg_notify('${ctx.prefix}items', '5:e:other')`)
  // 600 items in one transaction: one notification each, all readable at once, more than one read holds
  await ctx.admin.query(`SELECT ${ctx.prefix}append('room', '', 'data: ' || n || E'\\n\\n', '{"data":' || n || '}',
    NULL, 2000, NULL, 1000) FROM generate_series(1, 600) AS n`)
  const items = await within(take(sub, 600), 10_000, '600 items')
  t.same(items.map(item => item.data), Array.from({ length: 600 }, (_, n) => n + 1), 'all, in order')
  await sub.return?.()
})

t.test('items trimmed before the listener read them: its subscribers get sse-reset, then what follows', async t => {
  const ctx = await pgContext(t)
  const s = await pgServer(t, ctx, {}, { history: 2 })
  const sub = s.room.subscribe()
  await located(s.room, s.app)
  const warned = s.logs.waitFor(line => line.level === WARN && /does not go on from the last item read/.test(line.msg))
  // ten appends in one transaction keep two: the listener reads after they all committed
  await ctx.admin.query(`SELECT ${ctx.prefix}append('room', '', 'data: ' || n || E'\\n\\n', '{"data":' || n || '}',
    NULL, 2, NULL, 1000) FROM generate_series(1, 10) AS n`)
  const [reset, ...rest] = await within(take(sub, 3), 5000, 'the reset and the kept items') as Array<SseItem<unknown>>
  t.match(reset, { event: 'sse-reset', data: { reason: 'expired' }, id: /-8$/ })
  t.same(rest.map(item => item.data), [9, 10])
  await warned
  await sub.return?.()
})

t.test("a channel's row deleted while it is read: its subscribers get sse-reset (unknown), then the new items", async t => {
  const ctx = await pgContext(t)
  const s = await pgServer(t, ctx)
  const sub = s.room.subscribe()
  await located(s.room, s.app)
  const before = await s.room.publish({ data: 1 })
  await take(sub, 1)
  await ctx.admin.query(`DELETE FROM ${ctx.prefix}channels WHERE name = 'room'`)
  const replay = s.room.subscribe({ lastEventId: before })
  t.match((await within(take(replay, 1), 5000, 'a replay of the deleted row'))[0], { event: 'sse-reset', data: { reason: 'unknown' } })
  await replay.return?.()
  // the next append makes the row again (another epoch) and notifies: the listener finds it is not the one it read
  const after = await s.room.publish({ data: 2 })
  const [reset] = await within(take(sub, 1), 5000, 'the reset') as Array<SseItem<unknown>>
  t.match(reset, { event: 'sse-reset', data: { reason: 'unknown' } })
  t.not(after.split('-')[0], before.split('-')[0], 'another epoch')
  const next = await s.room.publish({ data: 3 })
  t.same((await within(take(sub, 1), 5000, 'the items after it'))[0]?.id, next)
  await sub.return?.()
})

t.test('notified of a row that is not there any more: the listener finds where the channel is again', async t => {
  const ctx = await pgContext(t)
  const s = await pgServer(t, ctx)
  const sub = s.room.subscribe()
  await located(s.room, s.app)
  await take(sub, 0)
  const [{ epoch }] = (await ctx.admin.query(`DELETE FROM ${ctx.prefix}channels WHERE name = 'room' RETURNING epoch`)).rows
  await ctx.admin.query(`SELECT pg_notify('${ctx.prefix}items', '99:${epoch as string}:room')`)
  const [reset] = await within(take(sub, 1), 5000, 'the reset') as Array<SseItem<unknown>>
  t.match(reset, { event: 'sse-reset', data: { reason: 'unknown' }, id: /-0$/ })
  const next = await s.room.publish({ data: 1 })
  t.same((await within(take(sub, 1), 5000, 'the items after it'))[0]?.id, next)
  await sub.return?.()
})

t.test('a listener of your own (a Client), ended by the plugin; a channel closed while it starts', async t => {
  const ctx = await pgContext(t)
  const clients: pg.Client[] = []
  /** Settles once that client's connection has ended. */
  const ends: Array<Promise<unknown>> = []
  const listener = async (): Promise<pg.Client> => {
    const client = new pg.Client({ connectionString: PG_URL })
    clients.push(client)
    ends.push(once(client, 'end'))
    await client.connect()
    return client
  }
  const s = await pgServer(t, ctx, { listener, readerName: 'mine' })
  const client = await open(`${s.url}/room`)
  await located(s.room, s.app)
  const id = await s.room.publish({ data: 1 })
  t.equal((await within(take(client.events, 1), 5000, 'the item'))[0]?.id, id)
  const { rows } = await ctx.admin.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1',
    [`mine:${ctx.prefix}`])
  t.equal(rows[0].n, 1, 'named after readerName')
  client.res.body.destroy()
  await s.app.close()
  t.equal((clients[0] as unknown as { _ended: boolean })._ended, true, 'ended')
  // closed before its listener connected, and while it asks for its name: nothing is left open
  for (const delay of [0, 1]) {
    const slow = async (): Promise<pg.Client> => {
      const c = await listener()
      await sleep(delay * 20)
      return c
    }
    const quick = await pgServer(t, ctx, { listener: slow })
    quick.room.subscribe()
    await sleep(delay)
    await quick.app.close()
  }
  await within(Promise.all(ends.slice(1)), 10_000, 'every listener ended')
  t.ok(clients.slice(1).every(c => (c as unknown as { _ending: boolean })._ending), 'every listener ended by the plugin')
})

t.test('readerDown and readerUp are told for the channels of a listener that lost its connection', async t => {
  const ctx = await pgContext(t)
  const s = await pgServer(t, ctx)
  const events: string[] = []
  const off = [
    subscribeSseDiagnostic('fastify-typed-sse:redis:reader-down', m => { events.push('down:' + m.channel) }),
    subscribeSseDiagnostic('fastify-typed-sse:redis:reader-up', m => { events.push('up:' + m.channel) })
  ]
  t.teardown(() => { for (const fn of off) fn() })
  const sub = s.room.subscribe()
  await located(s.room, s.app)
  const back = s.logs.waitFor(line => /listens again; resuming/.test(line.msg))
  await ctx.admin.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [await ctx.listeners()])
  await within(back, 10_000, 'the listener listens again')
  t.same(events, ['down:room', 'up:room'])
  await sub.return?.()
})

t.test('replays: from the newest id (nothing missed), an invalid id before the reader knows where it is', async t => {
  const ctx = await pgContext(t)
  const s = await pgServer(t, ctx)
  const newest = await s.room.publish({ data: 1 })
  const invalid = s.room.subscribe({ lastEventId: 'x'.repeat(300) })
  t.same((await within(take(invalid, 1), 5000, 'the reset'))[0], { id: newest, event: 'sse-reset', data: { reason: 'invalid' } })
  const replayed = new Promise<number>(resolve => {
    const off = subscribeSseDiagnostic('fastify-typed-sse:channel:replay', m => { off(); resolve(m.items) })
  })
  const upToDate = s.room.subscribe({ lastEventId: newest })
  t.equal(await within(replayed, 5000, 'the replay'), 0, 'nothing missed')
  const next = await s.room.publish({ data: 2 })
  t.same((await within(take(upToDate, 1), 5000, 'the next item'))[0]?.id, next, 'nothing replayed, the next item live')
  await invalid.return?.()
  await upToDate.return?.()
})

t.test('a row no channel wrote is skipped and said; a publish PostgreSQL holds up times out', async t => {
  const ctx = await pgContext(t)
  const s = await pgServer(t, ctx, { publishTimeout: 200 })
  const sub = s.room.subscribe()
  await located(s.room, s.app)
  await ctx.admin.query(`UPDATE ${ctx.prefix}channels SET last_seq = 1 WHERE name = 'room';
    INSERT INTO ${ctx.prefix}items (channel, seq, at, head, tail, fields) VALUES ('room', 1, now(), '', 'data: x\n\n', 'nope');
    SELECT pg_notify('${ctx.prefix}items', '1:' || epoch || ':room') FROM ${ctx.prefix}channels`)
  await within(s.logs.waitFor(line => /skipped an item that no channel wrote/.test(line.msg)), 5000, 'skipped')
  const failures: string[] = []
  const off = subscribeSseDiagnostic('fastify-typed-sse:channel:publish-failed', m => { failures.push(m.channel) })
  t.teardown(off)
  const held = await ctx.admin.connect()
  await held.query(`BEGIN; SELECT * FROM ${ctx.prefix}channels WHERE name = 'room' FOR UPDATE`)
  await t.rejects(s.room.publish({ data: 2 }), {
    code: 'FST_SSE_CHANNEL_UNAVAILABLE', message: /PostgreSQL did not answer within 200 ms; the item may or may not have been published$/
  })
  t.same(failures, ['room'], 'told to diagnostics')
  await held.query('COMMIT')
  held.release()
  t.same((await within(take(sub, 1), 5000, 'the held publish'))[0]?.data, 2, 'it was published after all')
  await sub.return?.()
})

t.test('a channel that goes quiet while its reader starts, or while it cannot find its row, stops', async t => {
  const ctx = await pgContext(t)
  // the listener connects once the first subscriber has gone: its start finds the row after it went quiet
  let open!: () => void
  const gate = new Promise<void>(resolve => { open = resolve })
  let asked!: () => void
  const connecting = new Promise<void>(resolve => { asked = resolve })
  const listener = async (): Promise<pg.Client> => {
    asked()
    await gate
    const client = new pg.Client({ connectionString: PG_URL })
    await client.connect()
    return client
  }
  const s = await pgServer(t, ctx, { listener })
  const quick = s.room.subscribe()
  await within(connecting, 5000, 'the start under way (the listener connecting)')
  await quick.return?.()
  open()
  const probe = s.room.subscribe()
  await located(s.room, s.app)
  await probe.return?.()
  const away = `${ctx.prefix}channels_away`
  await ctx.admin.query(`ALTER TABLE ${ctx.prefix}channels RENAME TO ${away}`)
  // gone quiet before its start failed: the failure is dropped without a word, so the test gives it time to come
  // (the channel's own start failing: the listener's reads say so too, without a channel)
  const failed = (line: LogLine): boolean => line.channel === 'room' && /reader failed; retrying/.test(line.msg)
  const failures = (): number => s.logs.lines.filter(failed).length
  const dropped = s.room.subscribe()
  await dropped.return?.()
  await sleep(200)
  t.equal(failures(), 0, 'nothing said')
  // failed, said, then gone quiet: no retry
  const failing = s.room.subscribe()
  await within(s.logs.waitFor(failed), 5000, 'the failure')
  await failing.return?.()
  const said = failures()
  await ctx.admin.query(`ALTER TABLE ${away} RENAME TO ${ctx.prefix}channels`)
  const sub = s.room.subscribe()
  await located(s.room, s.app)
  const id = await s.room.publish({ data: 1 })
  t.equal((await within(take(sub, 1), 5000, 'the item'))[0]?.id, id)
  await sub.return?.()
  t.equal(failures(), said, 'no retry after it went quiet')
})

t.test('more channels notified at once than one read takes: read in several', async t => {
  const ctx = await pgContext(t)
  const backend = postgresChannels({ pool: ctx.pool(8), prefix: ctx.prefix })
  const s = await pgServer(t, ctx)
  const rooms = Array.from({ length: 300 }, (_, n) => s.app.sse.channel<number>(`r${n}`, { backend }))
  const subs = rooms.map(room => room.subscribe())
  for (const room of rooms) await located(room, s.app)
  await ctx.admin.query(`SELECT ${ctx.prefix}append('r' || n, '', E'data: 1\\n\\n', '{"data":1}', NULL, 10, NULL, 1000)
    FROM generate_series(0, 299) AS n`)
  const firsts = await within(Promise.all(subs.map(sub => take(sub, 1))), 10_000, 'an item in every room')
  t.equal(firsts.length, 300)
  for (const sub of subs) await sub.return?.()
})

t.test('a listener connection that fails while it starts listening, or ends without an error', async t => {
  const ctx = await pgContext(t)
  const clients: pg.Client[] = []
  let tries = 0
  const listener = async (): Promise<pg.Client> => {
    const client = new pg.Client({ connectionString: PG_URL })
    clients.push(client)
    await client.connect()
    // the first one is closed before it is handed over: SET application_name fails
    if (++tries === 1) await client.end()
    return client
  }
  const s = await pgServer(t, ctx, { listener })
  const sub = s.room.subscribe()
  await located(s.room, s.app)
  const back = s.logs.waitFor(line => /listens again; resuming/.test(line.msg))
  await clients.at(-1)?.end()
  await within(back, 5000, 'listening again after an end')
  t.ok(s.logs.lines.some(line => /lost its connection/.test(line.msg) && /ended/.test(line.err?.message ?? '')), 'ended')
  const id = await s.room.publish({ data: 1 })
  t.equal((await within(take(sub, 1), 5000, 'the item'))[0]?.id, id)
  await sub.return?.()
})

t.test('closed while the listener asks for its name, or while its connection fails', async t => {
  const ctx = await pgContext(t)
  for (const fail of [false, true]) {
    const app: { close?: () => Promise<void> } = {}
    const closed = deferred()
    const listener = async (): Promise<pg.Client> => {
      const client = new pg.Client({ connectionString: PG_URL })
      await client.connect()
      const query = client.query.bind(client) as (text: string) => Promise<unknown>
      // the app closes while the listener asks for its name (failing), or once it listens
      ;(client as unknown as { query: (text: string) => Promise<unknown> }).query = async (text: string) => {
        if (fail) {
          await app.close?.()
          closed.resolve()
          throw new Error('refused')
        }
        const result = await query(text)
        if (text.startsWith('LISTEN')) {
          await app.close?.()
          closed.resolve()
        }
        return result
      }
      return client
    }
    const s = await pgServer(t, ctx, { listener })
    app.close = () => s.app.close()
    const sub = s.room.subscribe()
    await within(closed.promise, 5000, 'closed')
    t.equal((await sub.next()).done, true, 'the subscription ended with the app')
  }
})

t.test('a channel left by its last subscriber on an item it hands on is not read on: a replay after it waits for the new start', async t => {
  const ctx = await pgContext(t)
  const watched = watchedPool(ctx)
  const s = await pgServer(t, ctx, { pool: watched.pool }, { queueItems: 2 })
  const other = await pgServer(t, ctx)
  // a subscriber that does not read is cut off by the third item: the channel has none then
  const cut = cutOff(t)
  const sub = s.room.subscribe()
  await located(s.room, s.app)
  const ids: string[] = []
  for (let n = 0; n < 4; n++) ids.push(await other.room.publish({ data: n }))
  await within(cut, 5000, 'cut off')
  t.same((await within(take(sub, 2), 5000, 'what it held')).map(e => e.id), ids.slice(0, 2))
  t.equal((await sub.next()).done, true, 'then ended')
  // a client resumes while the new start is held; another process publishes meanwhile
  watched.hold(true)
  const resumer = s.room.subscribe({ lastEventId: ids[1] })
  const release = await within(watched.held(1), 5000, 'the new start asks where the channel is')
  ids.push(await other.room.publish({ data: 4 }))
  release()
  const got = (await within(take(resumer, 3), 5000, 'the replay')).map(e => e.id)
  // the guard: before, the replay read its first page at once, from where the last read had stopped
  t.same(watched.order.slice(watched.order.indexOf('held')), ['held', 'located', 'replay', 'replay', 'replay'],
    'its replay read once the new start found where the channel is, a page of one item at a time')
  ids.push(await other.room.publish({ data: 5 }))
  got.push(...(await within(take(resumer, 1), 5000, 'the next live item')).map(e => e.id))
  t.same(got, ids.slice(2), 'every item after its id once, the one published meanwhile too')
  await resumer.return?.()
})

t.test('a reset at a new start that cuts off the last subscriber leaves the channel unread', async t => {
  const ctx = await pgContext(t)
  const watched = watchedPool(ctx)
  const s = await pgServer(t, ctx, { pool: watched.pool }, { queueItems: 2 })
  const cut = cutOff(t)
  const sub = s.room.subscribe()
  await located(s.room, s.app)
  const ids = [await s.room.publish({ data: 1 }), await s.room.publish({ data: 2 })]
  await handedOn(s, ids[1] as string)
  // the row made again: the start after the notification resets the subscriber, whose queue is full
  const [{ epoch }] = (await ctx.admin.query(`DELETE FROM ${ctx.prefix}channels WHERE name = 'room' RETURNING epoch`)).rows
  await ctx.admin.query(`SELECT pg_notify('${ctx.prefix}items', '99:${epoch as string}:room')`)
  await within(cut, 5000, 'cut off by the reset')
  watched.hold(true)
  const resumer = s.room.subscribe({ lastEventId: ids[1] })
  const release = await within(watched.held(1), 5000, 'the new start asks where the channel is')
  release()
  t.match((await within(take(resumer, 1), 5000, 'the reset'))[0], { event: 'sse-reset', data: { reason: 'unknown' } })
  t.same(watched.order.slice(watched.order.indexOf('held')), ['held', 'located', 'replay'],
    'its replay read once the new start found where the channel is')
  await resumer.return?.()
  await sub.return?.()
})

t.test('a start that answers after its channel went quiet and was started again leaves the new start alone', async t => {
  const ctx = await pgContext(t)
  const watched = watchedPool(ctx)
  const s = await pgServer(t, ctx, { pool: watched.pool })
  // the listener listens, and the channel has gone quiet again
  const probe = s.room.subscribe()
  await located(s.room, s.app)
  await probe.return?.()
  watched.hold(true)
  const first = s.room.subscribe()
  const releaseFirst = await within(watched.held(1), 5000, 'the first start')
  await first.return?.()
  const second = s.room.subscribe()
  const releaseSecond = await within(watched.held(2), 5000, 'the second start')
  releaseFirst()
  await within(watched.seen('located', 2), 5000, 'the first start answered (after the probe\'s)')
  await new Promise(resolve => setImmediate(resolve)) // its answer handled
  // a publish of this process waits for the start under way: its subscriber then gets the item
  const published = s.room.publish({ data: 1 })
  await new Promise(resolve => setImmediate(resolve))
  releaseSecond()
  const id = await within(published, 5000, 'the publish')
  t.same(watched.order.slice(watched.order.indexOf('held')), ['held', 'held', 'located', 'located', 'append'])
  t.same((await within(take(second, 1), 5000, 'the item')).map(e => e.id), [id])
  await second.return?.()
})
