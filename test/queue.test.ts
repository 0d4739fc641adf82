import t from 'tap'
import { BoundedQueue, feeding, type QueueKind } from '../lib/queue.js'
import type { QueueLimits } from '../lib/slow-client.js'
import { kAttachStream, WAIT, type StreamLink } from '../lib/source.js'
import type { SseItem } from '../lib/types.js'

interface Item { data: string, size: number }

/** A queue of items that say their size; records what the queue tells it. */
class TestQueue extends BoundedQueue<Item> {
  readonly log: string[] = []
  hold = false
  failWith: { error: unknown } | undefined

  constructor (readonly bounds: QueueLimits = { queueItems: 3, queueBytes: 100 }) {
    super()
  }

  protected get kind (): QueueKind {
    return 'push source'
  }

  protected limits (): QueueLimits {
    return this.bounds
  }

  protected sizeOf (item: Item): number {
    return item.size
  }

  protected overflowed (queued: number, bytes: number): { error: unknown } | undefined {
    this.log.push(`overflowed ${queued} ${bytes}`)
    return this.failWith
  }

  protected override held (): boolean {
    return this.hold
  }

  protected override onClose (): void {
    this.log.push('closed')
  }

  protected override onEnd (): void {
    this.log.push('ended')
  }

  protected override emptied (): void {
    this.log.push('emptied')
  }

  add (data: string, size = 1): boolean {
    return this.offer({ data, size })
  }

  roomyNow (): boolean {
    return this.roomy()
  }

  end (failure?: { error: unknown }): void {
    this.close(failure)
  }

  unhold (): void {
    this.hold = false
    this.release()
  }

  convertAll (convert: (item: Item) => Item): void {
    this.convert(convert)
  }

  dropLeading (count: number): Item[] {
    const seen = Array.from({ length: this.queued }, (_, i) => this.itemAt(i))
    this.dropFirst(count)
    return seen
  }

  get isEnded (): boolean {
    return this.ended
  }
}

/** A stream that records what the queue delivers, and answers `disconnect()` as told. */
function link (stuck = false): StreamLink & { delivered: unknown[], disconnects: number } {
  const l = {
    delivered: [] as unknown[],
    disconnects: 0,
    disconnect () { l.disconnects++; return stuck },
    encode: () => '',
    deliver (item?: SseItem<unknown>) { l.delivered.push(item === undefined ? 'end' : (item as unknown as Item).data) },
    stopsWith: () => false
  }
  return l
}

t.test('an item goes straight to a waiting stream, else it queues; take() hands the queue out, then WAIT', async t => {
  const q = new TestQueue()
  const s = link()
  t.equal(feeding(q), undefined, 'no stream reads it yet')
  t.equal(q[kAttachStream](s), q, 'the attach handshake answers the queue, to be read synchronously')
  t.equal(feeding(q), 'push source', 'now a stream reads it: named for a second one')
  t.equal(feeding({}), undefined, 'something that is no queue')
  t.equal(q.take(), WAIT, 'nothing yet: the stream waits')
  t.ok(q.add('a'))
  t.same(s.delivered, ['a'], 'delivered within the offer')
  t.equal(q.queued, 0)
  t.ok(q.add('b', 10))
  t.ok(q.add('c', 20))
  t.equal(q.queued, 2)
  t.same(q.take(), { data: 'b', size: 10 })
  t.same(q.take(), { data: 'c', size: 20 })
  t.same(q.log, ['emptied'], 'told once the last waiting item was taken')
  t.equal(q.take(), WAIT)
  q.end()
  t.same(s.delivered, ['a', 'end'], 'closed while the stream waits: it learns of the end at once')
  t.equal(q.take(), undefined, 'the end')
  t.same(q.log, ['emptied', 'closed', 'ended'])
  t.equal(q.add('d'), false, 'a closed queue takes nothing')
})

t.test('the limits: items, bytes (one big item alone fits), half of them for roomy()', async t => {
  const q = new TestQueue({ queueItems: 4, queueBytes: 100 })
  t.ok(q.add('big', 150), 'one item over queueBytes fits alone')
  t.equal(q.roomyNow(), false, 'and leaves no room')
  t.equal(q.add('more', 1), false, 'the next one does not')
  t.same(q.log, ['overflowed 1 150', 'closed'], 'told, then closed: no stream to reset, what is queued stays')
  t.same(q.take(), { data: 'big', size: 150 }, 'still handed out')
  t.equal(q.take(), undefined, 'then the end')

  const r = new TestQueue({ queueItems: 4, queueBytes: 100 })
  t.ok(r.add('1') && r.roomyNow(), 'one of four items: room')
  t.ok(r.add('2'))
  t.equal(r.roomyNow(), false, 'half the items: no room')
  r.add('3')
  r.add('4')
  r.failWith = { error: new Error('too slow') }
  t.equal(r.add('5'), false)
  t.same(r.log, ['overflowed 4 4', 'closed'])
  for (const data of ['1', '2', '3', '4']) t.same(r.take(), { data, size: 1 })
  t.throws(() => r.take(), /too slow/, 'then the failure it was cut off with, once')
  t.equal(r.take(), undefined, 'then the end')
})

t.test('a stuck client: its stream resets the connection, and the queue drops what it had', async t => {
  const q = new TestQueue({ queueItems: 1, queueBytes: 100 })
  const s = link(true)
  q[kAttachStream](s)
  t.equal(q.take(), WAIT)
  q.add('a') // delivered
  q.add('b')
  q.failWith = { error: new Error('unused') }
  t.equal(q.add('c'), false)
  t.equal(s.disconnects, 1)
  t.equal(q.queued, 0, 'dropped')
  t.same(q.log, ['overflowed 1 1', 'closed', 'ended'])
  t.equal(q.take(), undefined, 'the end, without the failure: nobody reads it')
})

t.test('iterated by hand: next() waits for an item, a second next() queues behind it; return() drops the queue', async t => {
  const q = new TestQueue()
  t.equal(q[Symbol.asyncIterator](), q)
  const first = q.next()
  const second = q.next()
  q.add('a')
  t.same(await first, { value: { data: 'a', size: 1 }, done: false })
  q.add('b')
  t.same(await second, { value: { data: 'b', size: 1 }, done: false })
  q.add('c')
  q.add('d')
  t.same(await q.next(), { value: { data: 'c', size: 1 }, done: false })
  t.same(await q.return(), { value: undefined, done: true })
  t.equal(q.queued, 0, 'what was queued is dropped')
  t.same(await q.next(), { value: undefined, done: true })
  q.stop() // twice: nothing more happens
  t.same(q.log, ['closed', 'ended'])
})

t.test('iterated by hand: a failure is handed out once after the queue, to a waiting next() too', async t => {
  const q = new TestQueue()
  const waiting = q.next()
  const behind = q.next()
  q.end({ error: new Error('boom') })
  await t.rejects(waiting, /boom/, 'the waiting next() gets the failure')
  t.same(await behind, { value: undefined, done: true }, 'the one behind it, the end')
  const r = new TestQueue()
  r.add('a')
  r.end({ error: new Error('later') })
  t.same(await r.next(), { value: { data: 'a', size: 1 }, done: false })
  await t.rejects(r.next(), /later/)
  t.same(await r.next(), { value: undefined, done: true })
})

t.test('held: items wait behind what is held back; release() hands the next to a waiting reader', async t => {
  const q = new TestQueue()
  q.hold = true
  const s = link()
  q[kAttachStream](s)
  t.equal(q.take(), WAIT)
  q.add('a')
  t.same(s.delivered, [], 'held: queued, not delivered')
  q.end()
  t.equal(q.take(), WAIT, 'closed but held: the end waits too')
  q.unhold()
  t.same(s.delivered, ['a'], 'released: the waiting stream gets the next item')
  t.equal(q.take(), undefined)

  const r = new TestQueue()
  r.hold = true
  const next = r.next()
  r.add('b')
  r.unhold()
  t.same(await next, { value: { data: 'b', size: 1 }, done: false }, 'a waiting next() too')
  r.unhold() // nobody waits: nothing happens
  r.hold = true
  const again = r.next()
  r.unhold()
  r.hold = true
  r.stop()
  t.same(await again, { value: undefined, done: true }, 'stopped while held: the end at once')
  t.ok(r.isEnded)
})

t.test('closed while held, and nothing left once released: a waiting reader gets the end, not a wait for ever', async t => {
  const q = new TestQueue({ queueItems: 1, queueBytes: 100 })
  q.hold = true
  const s = link()
  q[kAttachStream](s)
  t.equal(q.take(), WAIT)
  q.add('a')
  t.equal(q.add('b'), false, 'over the limits while held: cut off, the stream reads on')
  q.dropLeading(1) // what was queued turned out to be held back already (a replay that holds it)
  q.unhold()
  t.same(s.delivered, ['end'], 'the stream learns of the end')
  t.equal(q.take(), undefined)

  const r = new TestQueue()
  r.hold = true
  const next = r.next()
  r.end()
  r.unhold()
  t.same(await next, { value: undefined, done: true }, 'a waiting next() too')
})

t.test('convert(): each waiting item replaced and recounted; the first that throws fails the queue there', async t => {
  const q = new TestQueue({ queueItems: 10, queueBytes: 100 })
  q.add('a', 0)
  q.add('bad', 0)
  q.add('c', 0)
  q.convertAll(item => {
    if (item.data === 'bad') throw new Error('refused')
    return { data: item.data.toUpperCase(), size: 40 }
  })
  t.equal(q.queued, 1, 'what came after the bad item is gone')
  t.equal(q.roomyNow(), true, '40 bytes counted')
  t.same(q.take(), { data: 'A', size: 40 })
  t.throws(() => q.take(), /refused/)

  const r = new TestQueue({ queueItems: 10, queueBytes: 100 })
  r.add('x', 0)
  r.end({ error: new Error('first') })
  r.convertAll(() => { throw new Error('second') })
  t.throws(() => r.take(), /second/, 'a failure met converting replaces one given before')
})

t.test('dropFirst(): the leading items and their bytes go; itemAt() reads what waits', async t => {
  const q = new TestQueue({ queueItems: 10, queueBytes: 100 })
  q.add('a', 30)
  q.add('b', 30)
  q.add('c', 30)
  q.take()
  t.same(q.dropLeading(0).map(i => i.data), ['b', 'c'], 'nothing dropped')
  t.same(q.dropLeading(1).map(i => i.data), ['b', 'c'])
  t.equal(q.queued, 1)
  t.ok(q.add('d', 60), '30 + 60 bytes fit again')
  t.same(q.take(), { data: 'c', size: 30 })
})
