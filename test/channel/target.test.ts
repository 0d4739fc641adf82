// Targeted publish over real sockets: subscribers tagged at subscribe(), publish({ to, exclude }) reaching only
// the matching ones, live and in the replay a reconnecting client gets; refused where the backend keeps no
// targeting (an asynchronous store such as Redis), and bad tags refused naming the option.
import t from 'tap'
import Fastify from 'fastify'
import { ChannelRegistry, type Channel } from '../../lib/channel/index.js'
import type { ChannelBackend, ChannelEncoder, Deliver, ReplayPage } from '../../lib/channel/backend.js'
import { MemoryBackend } from '../../lib/channel/memory.js'
import type { SseItem } from '../../lib/index.js'
import { open, startApp, take } from '../helpers.js'

t.test('publish({ to, exclude }) reaches only the matching subscribers, live and in replays', async t => {
  let room!: Channel<string>
  const { app, url } = await startApp(app => {
    room = app.sse.channel<string>('room', { history: 100 })
    app.get<{ Querystring: { tags?: string } }>('/room', (req, reply) => {
      const tags = req.query.tags === undefined ? undefined : req.query.tags.split(',')
      return reply.sse(room.subscribe({ lastEventId: req.headers['last-event-id'], signal: req.signal, tags }))
    })
  }, { headersDelay: 0 })
  t.teardown(() => app.close())
  const alice = await open(`${url}/room?tags=user:alice`)
  const bob = await open(`${url}/room?tags=user:bob`)
  const admin = await open(`${url}/room?tags=user:carol,role:admin`)
  const anonymous = await open(`${url}/room`)
  const first = room.publish({ data: 'hello all' })
  room.publish({ data: 'for alice' }, { to: 'user:alice' })
  room.publish({ data: 'not for bob' }, { exclude: 'user:bob' })
  room.publish({ data: 'admins' }, { to: ['role:admin', 'role:owner'] })
  room.publish({ data: 'admins but carol' }, { to: 'role:admin', exclude: ['user:carol'] })
  room.publish({ data: 'nobody' }, { to: [] })
  const last = room.publish({ data: 'bye all' })
  const texts = async (client: typeof alice, n: number): Promise<Array<string | undefined>> =>
    (await take(client.events, n)).map(e => e.data)
  t.same(await texts(alice, 4), ['hello all', 'for alice', 'not for bob', 'bye all'])
  t.same(await texts(bob, 2), ['hello all', 'bye all'])
  t.same(await texts(admin, 4), ['hello all', 'not for bob', 'admins', 'bye all'])
  t.same(await texts(anonymous, 3), ['hello all', 'not for bob', 'bye all'], 'no tags: untargeted items, and those that only exclude')
  // a reconnect by Last-Event-ID replays what it missed, with the same targeting
  const bobAgain = await open(`${url}/room?tags=user:bob`, { headers: { 'last-event-id': first } })
  const aliceAgain = await open(`${url}/room?tags=user:alice`, { headers: { 'last-event-id': first } })
  room.publish({ data: 'after' })
  t.same(await texts(bobAgain, 2), ['bye all', 'after'], 'the replay holds nothing bob was excluded from')
  const replayed = await take(aliceAgain.events, 4)
  t.same(replayed.map(e => e.data), ['for alice', 'not for bob', 'bye all', 'after'])
  t.equal(replayed[2]?.id, last)
  for (const client of [alice, bob, admin, anonymous, bobAgain, aliceAgain]) client.res.body.destroy()
})

/** A store elsewhere (as Redis is): its items are rebuilt from what it stored, so no targeting survives. */
class ElsewhereBackend implements ChannelBackend<Promise<string>> {
  readonly asynchronous = true
  readonly memory: MemoryBackend
  constructor (deliver: Deliver) {
    this.memory = new MemoryBackend({ history: 10, historyMaxAge: Infinity }, deliver)
  }

  append (item: SseItem<unknown>, encode: ChannelEncoder): Promise<string> {
    return Promise.resolve(this.memory.append(item, encode))
  }

  replay (id: string, page: ReplayPage) { return this.memory.replay(id, page) }
  position () { return this.memory.position() }
  close () {}
}

t.test('targeting is refused where the backend does not keep it; bad tags and targets name the option', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  const elsewhere = (_name: string, _options: unknown, deliver: Deliver) => new ElsewhereBackend(deliver)
  const registry = new ChannelRegistry(app.log, JSON.stringify, elsewhere)
  const shared = registry.channel('shared') as unknown as Channel<string, Promise<string>>
  const untyped = shared.publish as (item: SseItem<string>, options?: object) => Promise<string>
  const publish = untyped.bind(shared)
  await t.rejects(publish({ data: 'x' }, { to: 'user:1' }), {
    code: 'FST_SSE_INVALID_OPTION', field: 'to', message: /publish\(\) option "to" is not supported by the backend of channel "shared"/
  })
  await t.rejects(publish({ data: 'x' }, { exclude: 'user:1' }), { code: 'FST_SSE_INVALID_OPTION', field: 'exclude' })
  t.ok(typeof await publish({ data: 'x' }, { to: undefined }) === 'string', 'no targeting: published')
  const memory = new ChannelRegistry(app.log, JSON.stringify).channel<string>('mem')
  t.throws(() => memory.publish({ data: 'x' }, { to: [''] }), { code: 'FST_SSE_INVALID_OPTION', field: 'to' })
  t.throws(() => memory.publish({ data: 'x' }, { exclude: 5 as never }), { field: 'exclude', message: /publish\(\) option "exclude" must be a non-empty string or an array of them/ })
  t.throws(() => memory.subscribe({ tags: [1] as never }), { field: 'tags', message: /subscribe\(\) option "tags"/ })
  t.equal(memory.size, 0, 'a refused subscription never joined')
  // a targeting that would be ignored would send the item to everyone
  t.throws(() => memory.publish({ data: 'x' }, 'user:1' as never), { code: 'FST_SSE_INVALID_OPTION', field: 'options', message: /publish\(\) option "options" must be an object \(\{ to, exclude \}\), got "user:1" \(string\)/ })
  t.throws(() => memory.publish({ data: 'x' }, null as never), { code: 'FST_SSE_INVALID_OPTION', field: 'options' })
  t.throws(() => memory.publish({ data: 'x' }, { only: 'user:1' } as never), { field: 'only', message: /"only" is not an option of publish\(\)/ })
  t.ok(typeof await publish({ data: 'x' }, { idempotencyKey: 'k' }) === 'string', 'a shared channel\'s own option is taken')
})

t.test('once a channel has targeted, a publish looks its targeting up once, not once per subscriber', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  const channel = new ChannelRegistry(app.log, JSON.stringify).channel<string>('lookups')
  channel.publish({ data: 'targeted' }, { to: 'user:1' })
  /** WeakMap lookups made by one publish to `subscribers` subscribers. */
  const lookups = (subscribers: number, options?: { to: string }): number => {
    const controller = new AbortController()
    for (let i = 0; i < subscribers; i++) channel.subscribe({ signal: controller.signal, tags: `user:${i}` })
    const get = t.capture(WeakMap.prototype, 'get')
    try {
      channel.publish({ data: 'x' }, options)
    } finally {
      get.restore()
      controller.abort()
    }
    return get.calls.length
  }
  t.equal(lookups(100), lookups(1), 'an untargeted publish: as many lookups for 100 subscribers as for 1')
  t.equal(lookups(100, { to: 'user:7' }), lookups(1, { to: 'user:7' }), 'a targeted one too')
})
