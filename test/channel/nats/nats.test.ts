// NATS channels against the server at NATS_URL: options, refusals, the stream the backend makes or finds, replays,
// messages no channel wrote, and a gap the reader sees. Each test has a stream of its own (./context).
import t from 'tap'
import { natsChannels } from '../../../lib/channel/nats/index.js'
import { subscribeSseDiagnostic, type SseItem } from '../../../lib/index.js'
import { DEBUG, ERROR, take, WARN, within } from '../../helpers.js'
import { natsContext, natsServer, started } from './context.js'

t.test('natsChannels() refuses what it does not take, naming the option', async t => {
  const ctx = await natsContext(t)
  const connection = await ctx.connection()
  const bad: Array<[unknown, string, RegExp]> = [
    [undefined, 'options', /must be an object/],
    [{ connection, prefx: 'x' }, 'prefx', /is not an option of natsChannels\(\) \(its options: connection, prefix/],
    [{}, 'connection', /must be a NATS connection/],
    [{ connection: { publish: () => {} } }, 'connection', /must be a NATS connection/],
    [{ connection, prefix: 'a.*' }, 'prefix', /subject tokens/],
    [{ connection, stream: 'a.b' }, 'stream', /letters, digits/],
    [{ connection, maxPerChannel: 1 }, 'maxPerChannel', />= 2/],
    [{ connection, maxAge: 0 }, 'maxAge', /positive whole number of milliseconds/],
    [{ connection, storage: 'disk' }, 'storage', /'file' or 'memory'/],
    [{ connection, publishTimeout: -1 }, 'publishTimeout', /positive/],
    [{ connection, idempotencyWindow: 'x' }, 'idempotencyWindow', /positive/]
  ]
  for (const [options, field, message] of bad) {
    t.throws(() => natsChannels(options as never), { code: 'FST_SSE_INVALID_OPTION', field, message }, field)
  }
})

t.test('the stream is made with the options; a name served twice, a history over the stream limit, an id', async t => {
  const ctx = await natsContext(t)
  const s = await natsServer(t, ctx, { maxPerChannel: 50, maxAge: 60_000, storage: 'memory', idempotencyWindow: 10_000 },
    { history: 10 })
  t.throws(() => s.app.sse.channel('deep', { backend: s.backend, history: 50 }), {
    code: 'FST_SSE_INVALID_OPTION', field: 'history', message: /maxPerChannel 50/
  })
  t.throws(() => s.app.sse.channel('é'.repeat(513), { backend: s.backend }), { code: 'FST_SSE_INVALID_OPTION', field: 'name' })
  const other = await natsServer(t, ctx)
  s.app.sse.channel('twice', { backend: s.backend, history: 10 })
  t.throws(() => other.app.sse.channel('twice', { backend: s.backend, history: 10 }), { code: 'FST_SSE_INVALID_OPTION', field: 'backend' })
  await t.rejects(s.room.publish({ data: 1, id: 'x' } as never), { field: 'id', message: /is given by NATS on a NATS channel/ })
  const first = await s.room.publish({ data: 1 }, { idempotencyKey: 'k1' })
  t.equal(await s.room.publish({ data: 1 }, { idempotencyKey: 'k1' }), first, 'stored once')
  const { config } = await ctx.manager.streams.info(ctx.stream)
  t.match(config, {
    subjects: [ctx.prefix + '.>'],
    storage: 'memory',
    max_msgs_per_subject: 50,
    max_age: 60_000 * 1e6,
    duplicate_window: 10_000 * 1e6
  })
})

t.test('a stream of that name with other subjects: publishes and the reader fail, saying why, until it is fixed', async t => {
  const ctx = await natsContext(t)
  await ctx.manager.streams.add({ name: ctx.stream, subjects: [ctx.prefix + '.>', 'elsewhere.' + ctx.stream] })
  const s = await natsServer(t, ctx)
  await t.rejects(s.room.publish({ data: 1 }), {
    code: 'FST_SSE_CHANNEL_UNAVAILABLE', message: /NATS did not store the item: the stream T[0-9_]+ has the subjects/
  })
  const sub = s.room.subscribe()
  await within(s.logs.waitFor(line => line.level === ERROR && /reader failed; retrying/.test(line.msg)), 5000, 'said')
  await within(s.logs.waitFor(line => line.level === DEBUG && /reader failed again/.test(line.msg)), 5000, 'then debug')
  // a publish does not wait for a reader that fails
  await t.rejects(s.room.publish({ data: 1 }), { code: 'FST_SSE_CHANNEL_UNAVAILABLE' })
  await ctx.manager.streams.update(ctx.stream, { subjects: [ctx.prefix + '.>'] })
  await started(s.room, s.app)
  const id = await s.room.publish({ data: 2 })
  t.equal((await within(take(sub, 1), 5000, 'the item'))[0]?.id, id)
  await sub.return?.()
})

t.test('replays: an empty channel, one behind by as many as the stream keeps, one that is up to date', async t => {
  const ctx = await natsContext(t)
  const s = await natsServer(t, ctx, { maxPerChannel: 5 }, { history: 4 })
  const empty = s.room.subscribe({ lastEventId: 'not-an-id' })
  const [reset] = await within(take(empty, 1), 5000, 'the reset') as Array<SseItem<unknown>>
  t.match(reset, { event: 'sse-reset', data: { reason: 'unknown' }, id: /^[0-9a-z]+-0$/ }, 'at the stream end')
  await empty.return?.()
  const ids: string[] = []
  for (let n = 0; n < 6; n++) ids.push(await s.room.publish({ data: n }))
  const behind = s.room.subscribe({ lastEventId: ids[0] })
  t.same((await within(take(behind, 1), 5000, 'the reset'))[0], { id: ids[5], event: 'sse-reset', data: { reason: 'expired' } })
  const replayed = new Promise<number>(resolve => {
    const off = subscribeSseDiagnostic('fastify-typed-sse:channel:replay', m => { off(); resolve(m.items) })
  })
  const current = s.room.subscribe({ lastEventId: ids[5] })
  t.equal(await within(replayed, 5000, 'the replay'), 0, 'nothing missed')
  const next = await s.room.publish({ data: 6 })
  t.equal((await within(take(current, 1), 5000, 'the next item'))[0]?.id, next, 'nothing replayed')
  const recent = s.room.subscribe({ lastEventId: ids[4] })
  t.same((await within(take(recent, 2), 5000, 'the replay')).map(item => item.id), [ids[5], next])
  for (const sub of [behind, current, recent]) await sub.return?.()
})

t.test('a message no channel wrote is skipped and said, live and in a replay', async t => {
  const ctx = await natsContext(t)
  const s = await natsServer(t, ctx)
  const sub = s.room.subscribe()
  await started(s.room, s.app)
  const before = await s.room.publish({ data: 1 })
  await take(sub, 1)
  await ctx.js.publish(`${ctx.prefix}.room`, 'not ours')
  await within(s.logs.waitFor(line => line.level === WARN && /skipped an item that no channel wrote/.test(line.msg)), 5000, 'said')
  const after = await s.room.publish({ data: 2 })
  t.equal((await within(take(sub, 1), 5000, 'the next item'))[0]?.id, after)
  const replay = s.room.subscribe({ lastEventId: before })
  t.same((await within(take(replay, 1), 5000, 'the replay')).map(item => item.id), [after], 'skipped in the replay')
  for (const stream of [sub, replay]) await stream.return?.()
})
