// PostgreSQL channels when connections die: the shared server cannot be killed here, so its backends are
// (pg_terminate_backend) — the listener's, and every connection of the apps' pools — under a steady publish from
// two servers. Nothing acknowledged may be lost, nothing delivered twice, and every subscriber sees one order.
import t from 'tap'
import pg from 'pg'
import { DEBUG, ERROR, open, take, within } from '../../helpers.js'
import { readUpTo, steadyPublish } from '../../support/steady-publish.js'
import { located, pgContext, pgServer, PG_URL } from './context.js'

t.test('listeners and pool connections terminated under a steady publish: each resolved publish reaches all, in order', async t => {
  t.setTimeout(90_000)
  const ctx = await pgContext(t)
  const a = await pgServer(t, ctx, {}, { history: 10_000 })
  const b = await pgServer(t, ctx, {}, { history: 10_000 })
  const clients = await Promise.all([a, a, b, b].map(s => open(`${s.url}/room`)))
  const live = [a.room.subscribe(), b.room.subscribe()]
  await located(a.room, a.app)
  await located(b.room, b.app)
  const { resolved, rejected, until, stop } = steadyPublish([a.room, b.room], 20_000)
  await until(() => resolved.length >= 50, '50 publishes')
  const listening = [a, b].map(s => s.logs.waitFor(line => /listens again; resuming/.test(line.msg)))
  t.equal((await ctx.listeners()).length, 2, 'one listener per server')
  await ctx.admin.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [await ctx.listeners()])
  await within(Promise.all(listening), 10_000, 'both listeners listen again')
  await until(() => resolved.length >= 150, '100 publishes after the listeners came back')
  t.ok(await ctx.terminate() >= 2, 'every connection of the pools terminated')
  const count = resolved.length
  await until(() => resolved.length >= count + 100, '100 publishes after the pools lost their connections')
  await stop()
  t.ok(rejected.every(err => err.code === 'FST_SSE_CHANNEL_UNAVAILABLE'), 'a failed publish: CHANNEL_UNAVAILABLE')
  const seen = await readUpTo(resolved.at(-1) as string, [
    ...clients.map(c => async () => (await take(c.events, 1))[0]?.id as string),
    ...live.map(sub => async () => (await take(sub, 1))[0]?.id as string)
  ], 20_000)
  t.ok(seen.every(ids => JSON.stringify(ids) === JSON.stringify(seen[0])), 'one order everywhere')
  t.ok(seen.every(ids => new Set(ids).size === ids.length), 'no duplicate')
  const got = new Set(seen[0])
  t.same(resolved.filter(id => !got.has(id)), [], 'every resolved publish delivered')
  t.equal(a.logs.lines.filter(line => /listener lost its connection/.test(line.msg)).length >= 1, true, 'said')
  for (const c of clients) c.res.body.destroy()
  for (const sub of live) await sub.return?.()
})

t.test('a listener that cannot connect: said once, tried again, and the channel works once it can', async t => {
  const ctx = await pgContext(t)
  let tries = 0
  const listener = async (): Promise<pg.Client> => {
    if (++tries <= 3) throw new Error(`refused ${tries}`)
    const client = new pg.Client({ connectionString: PG_URL })
    await client.connect()
    return client
  }
  const s = await pgServer(t, ctx, { listener })
  const sub = s.room.subscribe()
  // while it cannot listen, a publish does not wait for the reader
  await within(s.logs.waitFor(line => line.level === ERROR && /listener failed; retrying/.test(line.msg)), 5000, 'said')
  const early = await s.room.publish({ data: 0 })
  t.match(early, /-1$/, 'published at once')
  await located(s.room, s.app)
  t.equal(s.logs.lines.filter(line => line.level === ERROR).length, 1, 'one error for the outage')
  t.ok(s.logs.lines.some(line => line.level === DEBUG && /listener failed again/.test(line.msg)), 'then at debug')
  const id = await s.room.publish({ data: 1 })
  t.equal((await within(take(sub, 1), 5000, 'the item'))[0]?.id, id)
  await sub.return?.()
})

t.test('the reader cannot find its channel or read it while PostgreSQL refuses: it retries, then reads', async t => {
  const ctx = await pgContext(t)
  const s = await pgServer(t, ctx)
  const sub = s.room.subscribe()
  await located(s.room, s.app)
  const renamed = `${ctx.prefix}items_away`
  await ctx.admin.query(`ALTER TABLE ${ctx.prefix}items RENAME TO ${renamed}`)
  await ctx.admin.query(`SELECT pg_notify('${ctx.prefix}items', '99:' || epoch || ':room') FROM ${ctx.prefix}channels`)
  await within(s.logs.waitFor(line => /channel reader failed; retrying/.test(line.msg)), 5000, 'the read failed')
  await ctx.admin.query(`ALTER TABLE ${renamed} RENAME TO ${ctx.prefix}items`)
  // a channel that gets its first subscriber while its row cannot be found retries
  const away = `${ctx.prefix}channels_away`
  await ctx.admin.query(`ALTER TABLE ${ctx.prefix}channels RENAME TO ${away}`)
  const late = s.app.sse.channel<number>('late', { backend: s.backend })
  const lateSub = late.subscribe()
  await within(s.logs.waitFor(line => line.channel === 'late' && /reader failed; retrying/.test(line.msg)), 5000, 'said')
  await ctx.admin.query(`ALTER TABLE ${away} RENAME TO ${ctx.prefix}channels`)
  await located(late, s.app)
  const lateId = await late.publish({ data: 2 })
  t.equal((await within(take(lateSub, 1), 5000, 'the late channel works'))[0]?.id, lateId)
  await lateSub.return?.()
  const id = await s.room.publish({ data: 1 })
  t.equal((await within(take(sub, 1), 5000, 'the item after the outage'))[0]?.id, id)
  await sub.return?.()
})
