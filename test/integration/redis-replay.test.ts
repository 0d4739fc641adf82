// Replays of Redis channels read in pages, against a redis-server of the test's own (its command counts are the
// test's alone): subscribers that resume from the same place at about the same time share the page reads, live
// items published while a replay is paged come once and in order, a shared page (or reset) that ends before what
// this process had delivered is read on from (or read anew), a page cut short by its bytes makes the next ask for
// fewer entries, and a channel shares at most 8 reads.
import t from 'tap'
import type { Test } from 'tap'
import { Redis } from 'ioredis'
import { connect, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { redisChannels } from '../../lib/channel/redis/index.js'
import type { Channel, SseItem, SseResetData } from '../../lib/index.js'
import { startApp, take, within } from '../helpers.js'
import { startRedis } from '../support/redis-server.js'

type Item = SseItem<number | SseResetData>

async function redisOf (t: Test): Promise<{ redis: () => Promise<Redis>, admin: Redis }> {
  const server = await startRedis(['--appendonly', 'no'])
  const clients: Redis[] = []
  t.teardown(async () => {
    for (const client of clients) client.disconnect()
    await server.stop()
  })
  const redis = async (): Promise<Redis> => {
    const client = new Redis(server.url, { lazyConnect: true })
    clients.push(client)
    await client.connect()
    return client
  }
  return { redis, admin: await redis() }
}

/** Calls of a command and bytes Redis sent, since the last `CONFIG RESETSTAT`. */
async function redisStats (admin: Redis): Promise<{ xrange: number, sent: number }> {
  const commands = await admin.info('commandstats')
  const stats = await admin.info('stats')
  return {
    xrange: Number(/cmdstat_xrange:calls=(\d+)/.exec(commands)?.[1] ?? 0),
    sent: Number(/total_net_output_bytes:(\d+)/.exec(stats)?.[1])
  }
}

t.test('1,000 clients resuming from one id over sockets share a few page reads, not one each', async t => {
  t.setTimeout(120_000)
  const { redis, admin } = await redisOf(t)
  const backend = redisChannels({ redis: await redis() })
  let chat!: Channel<string, Promise<string>>
  const { app } = await startApp(app => {
    chat = app.sse.channel<string>('chat', { backend, history: 1000 })
    app.get('/chat', (req, reply) => reply.sse(chat.subscribe({ lastEventId: req.headers['last-event-id'], signal: req.signal })))
  })
  t.teardown(() => app.close())
  const { port } = app.server.address() as AddressInfo
  const from = await chat.publish({ data: 'start' })
  const data = 'x'.repeat(1024)
  let last = from
  for (let i = 0; i < 300; i++) last = await chat.publish({ data })
  const CLIENTS = 1000
  await admin.config('RESETSTAT')
  const sockets: Socket[] = []
  t.teardown(() => { for (const socket of sockets) socket.destroy() })
  // each client reads until the newest id has come: the whole replay, two pages
  const done = Array.from({ length: CLIENTS }, () => new Promise<void>((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    sockets.push(socket)
    let tail = ''
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      const text = tail + chunk
      if (text.includes(`id: ${last}\n`)) resolve()
      tail = text.slice(-100)
    })
    socket.on('error', reject)
    socket.write(`GET /chat HTTP/1.1\r\nHost: x\r\nLast-Event-ID: ${from}\r\n\r\n`)
  }))
  await within(Promise.all(done), 90_000, 'every client got the whole replay')
  const { xrange, sent } = await redisStats(admin)
  t.ok(xrange >= 2, `the pages were read (${xrange} reads)`)
  t.ok(xrange <= 100, `by a few shared reads, not ${2 * CLIENTS}: ${xrange}`)
  const backlog = 301 * 1200
  t.ok(sent < 100 * backlog, `bytes Redis sent are bounded by the reads, not the clients: ${sent}`)
  t.comment(`${CLIENTS} clients: ${xrange} XRANGE, ${(sent / 1e6).toFixed(1)} MB from Redis`)
})

t.test('a replay paged while items are published: every item once, in order', async t => {
  t.setTimeout(60_000)
  const { redis } = await redisOf(t)
  const backend = redisChannels({ redis: await redis() })
  let chat!: Channel<number, Promise<string>>
  const { app } = await startApp(app => {
    chat = app.sse.channel<number>('paged', { backend, history: 1000, queueItems: 8 })
  })
  t.teardown(() => app.close())
  const ids: string[] = []
  for (let n = 0; n < 21; n++) ids.push(await chat.publish({ data: n }))
  const sub = chat.subscribe({ lastEventId: ids[0] })
  const got = (await take(sub, 6)).map(i => i.data)
  for (let n = 21; n < 24; n++) ids.push(await chat.publish({ data: n }))
  got.push(...(await take(sub, 17)).map(i => i.data))
  ids.push(await chat.publish({ data: 24 }))
  got.push(...(await take(sub, 1)).map(i => i.data))
  t.same(got, Array.from({ length: 24 }, (_, i) => i + 1), 'the pages, then what was published meanwhile, then live')
  await sub.return?.()
})

/** The socket of an ioredis client: paused, the answers to what it sent wait in this process. */
function socketOf (redis: Redis): Socket {
  return (redis as unknown as { stream: Socket }).stream
}

/**
 * Two processes on one Redis channel: `chat` here, over a connection whose `socket` a test can pause, and
 * `elsewhere`, over its own. A `standing` subscriber keeps this process's reader going; it has had the item `firstId`.
 */
async function twoProcesses (t: Test, redis: () => Promise<Redis>) {
  const publishing = await redis()
  let chat!: Channel<number, Promise<string>>
  let elsewhere!: Channel<number, Promise<string>>
  const a = await startApp(app => {
    chat = app.sse.channel<number>('chat', { backend: redisChannels({ redis: publishing }), history: 1000 })
  })
  t.teardown(() => a.app.close())
  const b = await startApp(async app => {
    elsewhere = app.sse.channel<number>('chat', { backend: redisChannels({ redis: await redis() }), history: 1000 })
  })
  t.teardown(() => b.app.close())
  const standing = chat.subscribe()
  const ready = standing.next()
  const first = await chat.publish({ data: 0 })
  await ready
  return { chat, elsewhere, standing, socket: socketOf(publishing), firstId: first }
}

t.test('a shared last page that ends before what this process had delivered: the late subscriber reads on', async t => {
  t.setTimeout(60_000)
  const { redis } = await redisOf(t)
  const { chat, elsewhere, standing, socket, firstId: from } = await twoProcesses(t, redis)
  // the first subscriber's read is answered by Redis, but the answer waits in this process's socket
  const first = chat.subscribe({ lastEventId: from })
  const firstItem = first.next()
  socket.pause()
  // published elsewhere, delivered here by the reader (its own connection) meanwhile
  const late = await elsewhere.publish({ data: 1 })
  t.equal((await within(standing.next(), 5000, 'the reader delivers')).value?.id, late)
  // joins the read in flight, whose page ends before `late`, which it did not get live
  const second = chat.subscribe({ lastEventId: from })
  const secondItem = second.next()
  socket.resume()
  t.equal((await within(firstItem, 5000, 'the first gets its replay')).value?.id, late, 'the first: queued live')
  t.equal((await within(secondItem, 5000, 'the second too')).value?.id, late, 'the second: read on after the page')
  await first.return?.()
  await second.return?.()
  await standing.return?.()
})

t.test('a shared reset that ends before what this process had delivered: the late subscriber reads it anew', async t => {
  t.setTimeout(60_000)
  const { redis, admin } = await redisOf(t)
  const { chat, elsewhere, standing, socket, firstId: before } = await twoProcesses(t, redis)
  await admin.config('RESETSTAT')
  // newer than anything the stream issued: a reset at the stream's newest entry
  const future = `${Date.now() + 1e9}-0`
  const first = chat.subscribe({ lastEventId: future })
  const firstItems = take(first, 2)
  socket.pause()
  const late = await elsewhere.publish({ data: 1 })
  t.equal((await within(standing.next(), 5000, 'the reader delivers')).value?.id, late)
  // joins the read in flight, whose reset names `before`: it did not get `late` live
  const second = chat.subscribe({ lastEventId: future })
  const secondItem = second.next()
  socket.resume()
  const [reset, live] = await within(firstItems, 5000, 'the first gets its reset, then what was queued')
  t.match(reset, { event: 'sse-reset', id: before, data: { reason: 'unknown' } }, 'the first: the shared reset')
  t.equal(live?.id, late, 'then the item delivered after it')
  const secondReset = (await within(secondItem, 5000, 'the second gets its reset')).value
  t.match(secondReset, { event: 'sse-reset', id: late, data: { reason: 'unknown' } }, 'the second: a reset read anew, at `late`')
  t.equal((await redisStats(admin)).xrange, 2, 'two reads: the shared one, then the second\'s own')
  await first.return?.()
  await second.return?.()
  await standing.return?.()
})

t.test('a page cut short by its bytes: the next page asks Redis for as many entries as it took', async t => {
  t.setTimeout(60_000)
  const { redis, admin } = await redisOf(t)
  let chat!: Channel<string, Promise<string>>
  const { app } = await startApp(async app => {
    // pages of at most 2048 bytes: one item of 1.2 KiB each; of at most 32 items
    chat = app.sse.channel<string>('big', { backend: redisChannels({ redis: await redis() }), history: 1000, queueItems: 64, queueBytes: 4096 })
  })
  t.teardown(() => app.close())
  const from = await chat.publish({ data: 'start' })
  const data = 'x'.repeat(1200)
  const ids: string[] = []
  for (let i = 0; i < 30; i++) ids.push(await chat.publish({ data }))
  await admin.config('RESETSTAT')
  const sub = chat.subscribe({ lastEventId: from })
  t.same((await within(take(sub as AsyncIterator<Item>, 30), 10_000, 'the replay')).map(i => i.id), ids, 'every item once, in order')
  const { xrange, sent } = await redisStats(admin)
  t.equal(xrange, 30, 'a page per item')
  // each page asks for 1 entry (and the id, and one more); 32 a page would have Redis send about 30 * 16 of them
  t.ok(sent < 30 * 16 * data.length, `what Redis sent is a few entries a page: ${sent} bytes`)
  await sub.return?.()
})

t.test('at most 8 page reads shared per channel: the oldest is forgotten first', async t => {
  t.setTimeout(60_000)
  const { redis, admin } = await redisOf(t)
  const publishing = await redis()
  let chat!: Channel<number, Promise<string>>
  const { app } = await startApp(app => {
    chat = app.sse.channel<number>('chat', { backend: redisChannels({ redis: publishing }), history: 1000 })
  })
  t.teardown(() => app.close())
  const standing = chat.subscribe()
  const ready = standing.next()
  const ids: string[] = []
  for (let n = 0; n < 10; n++) ids.push(await chat.publish({ data: n }))
  await ready
  await admin.config('RESETSTAT')
  // the answers wait in this process: every read stays in flight, so shared whatever the time it takes
  const socket = socketOf(publishing)
  socket.pause()
  const subs = ids.slice(0, 9).map(lastEventId => ({ lastEventId, sub: chat.subscribe({ lastEventId }) }))
  // the first read was forgotten when the ninth began; the ninth is still shared
  subs.push({ lastEventId: ids[0] as string, sub: chat.subscribe({ lastEventId: ids[0] }) })
  subs.push({ lastEventId: ids[8] as string, sub: chat.subscribe({ lastEventId: ids[8] }) })
  socket.resume()
  for (const { lastEventId, sub } of subs) {
    const after = ids.slice(ids.indexOf(lastEventId) + 1)
    t.same((await within(take(sub, after.length), 5000, 'a replay')).map(i => i.id), after, `from item ${ids.indexOf(lastEventId)}`)
    await sub.return?.()
  }
  t.equal((await redisStats(admin)).xrange, 10, '9 reads, and the first again')
  await standing.return?.()
})
