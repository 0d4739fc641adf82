// NATS channels against a nats-server of each test's own (./nats-server): killed with -9 and started again on the
// same port with its store (nothing acknowledged may be lost) or without it (subscribers get sse-reset), and stalled
// (a publish times out). Two apps, each with its own connection, stand for two servers.
import t from 'tap'
import type { Test } from 'tap'
import { subscribeSseDiagnostic, type SseItem } from '../../../lib/index.js'
import { open, take, within } from '../../helpers.js'
import { readUpTo, steadyPublish } from '../../support/steady-publish.js'
import { natsContext, natsServer, started, type NatsContext } from './context.js'
import { startNats, type NatsServer } from '../../support/nats-server.js'

/** A nats-server of the test's own, and a context on it; stopped at teardown, after the context. */
async function own (t: Test): Promise<{ server: NatsServer, ctx: NatsContext }> {
  const server = await startNats()
  t.teardown(() => server.stop())
  // quick reconnections: the outage is what the test waits for, not the client's back-off
  return { server, ctx: await natsContext(t, server.url) }
}

const reconnecting = { reconnectTimeWait: 50, maxReconnectAttempts: -1 }

t.test('kill -9, restart with its store, two servers publishing: each resolved publish reaches all, in order', async t => {
  t.setTimeout(90_000)
  const { server, ctx } = await own(t)
  const a = await natsServer(t, ctx, {}, { history: 500 }, reconnecting)
  const b = await natsServer(t, ctx, {}, { history: 500 }, reconnecting)
  const events: string[] = []
  const off = [
    subscribeSseDiagnostic('fastify-typed-sse:redis:reader-down', m => { events.push('down:' + m.channel) }),
    subscribeSseDiagnostic('fastify-typed-sse:redis:reader-up', m => { events.push('up:' + m.channel) })
  ]
  t.teardown(() => { for (const fn of off) fn() })
  const clients = await Promise.all([a, a, b, b].map(s => open(`${s.url}/room`)))
  const live = [a.room.subscribe(), b.room.subscribe()]
  await started(a.room, a.app)
  await started(b.room, b.app)
  const { resolved, rejected, until, stop } = steadyPublish([a.room, b.room], 30_000)
  await until(() => resolved.length >= 50, '50 publishes before the outage')
  await server.kill()
  await until(() => rejected.length >= 5, 'publishes rejected during the outage')
  const count = resolved.length
  const back = [a, b].map(s => s.logs.waitFor(line => /reader reconnected; resuming/.test(line.msg)))
  await server.restart()
  await within(Promise.all(back), 20_000, 'both readers back')
  await until(() => resolved.length >= count + 50, '50 publishes after the restart')
  await stop()
  t.ok(rejected.every(err => err.code === 'FST_SSE_CHANNEL_UNAVAILABLE'), 'each failed publish: CHANNEL_UNAVAILABLE')
  t.ok(rejected.some(err => /NATS is not connected/.test(err.message)), 'while reconnecting: not published')
  const seen = await readUpTo(resolved.at(-1) as string, [
    ...clients.map(c => async () => (await take(c.events, 1))[0]?.id as string),
    ...live.map(sub => async () => (await take(sub, 1))[0]?.id as string)
  ], 30_000)
  t.ok(seen.every(ids => JSON.stringify(ids) === JSON.stringify(seen[0])), 'one order on both servers')
  t.ok(seen.every(ids => new Set(ids).size === ids.length), 'no duplicate')
  const got = new Set(seen[0])
  t.same(resolved.filter(id => !got.has(id)), [], 'every resolved publish delivered')
  t.equal(a.logs.lines.filter(line => /reader lost its connection/.test(line.msg)).length, 1, 'one warning per outage')
  t.same(events.sort(), ['down:room', 'down:room', 'up:room', 'up:room'])
  for (const c of clients) c.res.body.destroy()
  for (const sub of live) await sub.return?.()
})

t.test('restarted without its store: subscribers get sse-reset (unknown), old ids too, and the channel goes on', async t => {
  t.setTimeout(60_000)
  const { server, ctx } = await own(t)
  const s = await natsServer(t, ctx, {}, {}, reconnecting)
  const sub = s.room.subscribe()
  await started(s.room, s.app)
  const old = await s.room.publish({ data: 1 })
  await take(sub, 1)
  await server.kill()
  await server.restart(true)
  const [reset] = await within(take(sub, 1), 20_000, 'the reset') as Array<SseItem<unknown>>
  t.match(reset, { event: 'sse-reset', data: { reason: 'unknown' } })
  t.not(String(reset?.id).split('-')[0], old.split('-')[0], 'at the new stream')
  const next = await s.room.publish({ data: 2 })
  t.equal((await within(take(sub, 1), 5000, 'the next item'))[0]?.id, next)
  const replay = s.room.subscribe({ lastEventId: old })
  t.match((await within(take(replay, 1), 5000, 'the replay'))[0], { event: 'sse-reset', data: { reason: 'unknown' }, id: next })
  for (const stream of [sub, replay]) await stream.return?.()
})

t.test('a stalled server: the publish times out, saying it may or may not have been published', async t => {
  const { server, ctx } = await own(t)
  const s = await natsServer(t, ctx, { publishTimeout: 300 })
  await s.room.publish({ data: 1 })
  await server.pause()
  t.teardown(() => server.resume())
  await t.rejects(s.room.publish({ data: 2 }, { idempotencyKey: 'k' }), {
    code: 'FST_SSE_CHANNEL_UNAVAILABLE',
    message: /NATS did not answer within 300 ms; the item may or may not have been published \(publish it again with the same idempotencyKey: it is stored once\)$/
  })
  server.resume()
})
