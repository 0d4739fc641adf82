// The NATS reader's own rules, with a stand-in for the JetStream consumer (the real one is exercised by the contract
// and the fault tests): a jump of the stream sequence resets every channel read; a stream made again restarts it.
import t from 'tap'
import type { FastifyBaseLogger } from 'fastify'
import pino from 'pino'
import { Cursor } from '../../../lib/channel/store/cursor.js'
import { NatsReader, type ReaderHost } from '../../../lib/channel/nats/reader.js'
import type { NatsChannel } from '../../../lib/channel/nats/channel.js'
import type { StreamFacts } from '../../../lib/channel/nats/stream.js'
import { pack } from '../../../lib/channel/nats/subjects.js'

interface Fake {
  host: ReaderHost
  /** Delivers a message on `<prefix>.<token>` to the consumer started last. */
  deliver: (seq: number, token: string) => void
  starts: number[]
  facts: StreamFacts
  /** Called when the reader asks for its consumer. */
  onGet: () => void
  stopped: number
  /** What the next consumer's status() says, when `say` is called. */
  statuses: Array<{ type: string }>
  say: () => void
}

function fake (): Fake {
  const callbacks: Array<(message: unknown) => void> = []
  const starts: number[] = []
  const state: Fake = {
    facts: { tag: 'a', first: 1, last: 10, perChannel: 0 },
    starts,
    onGet: () => {},
    stopped: 0,
    statuses: [],
    say: () => {},
    deliver: (seq, token) => {
      const body = pack({ head: '', tail: `data: ${seq}\n\n`, fields: `{"data":${seq}}` })
      callbacks.at(-1)?.({ seq, subject: 'p.' + token, string: () => body })
    },
    host: undefined as unknown as ReaderHost
  }
  const consumer = {
    consume: async ({ callback }: { callback: (message: unknown) => void }) => {
      callbacks.push(callback)
      const statuses = state.statuses
      let say!: () => void
      const said = new Promise<void>(resolve => { say = resolve })
      state.say = say
      return {
        stop: () => { state.stopped++ },
        status: async function * () {
          await said
          yield * statuses
        }
      }
    },
    delete: async () => true
  }
  state.host = {
    settings: {
      prefix: 'p',
      stream: 'S',
      js: {
        consumers: {
          get: async (_stream: string, options: { opt_start_seq: number }) => {
            starts.push(options.opt_start_seq)
            state.onGet()
            return consumer
          }
        }
      }
    } as unknown as ReaderHost['settings'],
    cursor: new Cursor(),
    facts: async () => state.facts
  }
  return state
}

function channel (token: string): NatsChannel & { calls: string[] } {
  const calls: string[] = []
  return {
    token,
    calls,
    handOn: (tag: string, item: { seq: number }) => { calls.push(`item ${tag}-${item.seq}`) },
    lost: (reason: string, tag: string, seq: number) => { calls.push(`${reason} ${tag}-${seq}`) }
  } as unknown as NatsChannel & { calls: string[] }
}

const log = pino({ level: 'silent' }) as unknown as FastifyBaseLogger

t.test('messages in sequence are handed on; a jump resets every channel read first', async t => {
  const f = fake()
  const reader = new NatsReader(f.host, log)
  const room = channel('room')
  const other = channel('other')
  reader.add(room)
  reader.add(other)
  await reader.starting
  t.same(f.starts, [11], 'from after the stream end')
  f.deliver(11, 'room')
  f.deliver(11, 'room') // again: dropped
  f.deliver(14, 'other')
  t.same(room.calls, ['item a-11', 'expired a-13'])
  t.same(other.calls, ['expired a-13', 'item a-14'])
  reader.remove(other)
  f.deliver(15, 'other')
  t.same(other.calls, ['expired a-13', 'item a-14'], 'not read any more')
  t.equal(f.host.cursor.at, 15)
  await reader.close()
})

t.test('a check finds the stream made again: every channel read is reset (unknown), the reader starts at its end', async t => {
  const f = fake()
  const reader = new NatsReader(f.host, log)
  const room = channel('room')
  reader.add(room)
  await reader.starting
  await reader.check()
  t.same(f.starts, [11], 'the same stream: nothing to do')
  f.facts = { tag: 'b', first: 1, last: 3, perChannel: 0 }
  await reader.check()
  await reader.starting
  t.same(room.calls, ['unknown b-3'])
  t.same(f.starts, [11, 4])
  f.deliver(12, 'room') // of the old consumer's numbering: this is the new one's, and after 3
  t.same(room.calls, ['unknown b-3', 'expired b-11', 'item b-12'])
  await reader.close()
  await reader.check()
  t.equal(f.host.cursor.at, undefined, 'closed: nothing checked')
})

t.test('a check that cannot read the stream says so and changes nothing', async t => {
  const f = fake()
  const errors: string[] = []
  const logger = { ...log, error: (_: unknown, msg: string) => { errors.push(msg) } } as unknown as FastifyBaseLogger
  const reader = new NatsReader(f.host, logger)
  await reader.starting
  f.host.facts = async () => { throw new Error('no answer') }
  await reader.check()
  t.same(errors, ['SSE NATS channel reader could not check its stream'])
  await reader.close()
})

t.test('closed while it starts: no consumer, or the one it got is stopped', async t => {
  const f = fake()
  const reader = new NatsReader(f.host, log)
  await reader.close()
  await reader.starting
  t.same(f.starts, [], 'closed before it found the stream: no consumer')
  const g = fake()
  const late = new NatsReader(g.host, log)
  g.onGet = () => { void late.close() }
  await late.starting
  t.same(g.starts, [11])
  t.equal(g.stopped, 1, 'stopped at once')
  g.deliver(11, 'room')
  t.equal(g.host.cursor.at, undefined, 'nothing handed on')
})

t.test('what the consumer says: a consumer made again is checked; an old consumer is not listened to', async t => {
  const f = fake()
  let checks = 0
  const facts = f.host.facts
  f.host.facts = async (fresh) => { checks++; return await facts(fresh) }
  f.statuses = [{ type: 'heartbeat' }, { type: 'ordered_consumer_recreated' }, { type: 'stream_not_found' }]
  const reader = new NatsReader(f.host, log)
  await reader.starting
  const first = f.say
  f.statuses = [{ type: 'ordered_consumer_recreated' }]
  reader.restart()
  await reader.starting
  t.equal(checks, 2, 'two starts')
  first() // the first consumer speaks after it was replaced: not heard
  await new Promise(resolve => setImmediate(resolve))
  t.equal(checks, 2)
  f.say()
  await new Promise(resolve => setImmediate(resolve))
  t.equal(checks, 3, 'the current one is heard: one check')
  await reader.close()
  reader.restart()
  t.equal(checks, 3, 'closed: no restart')
})

t.test('a start that fails after the reader closed is not retried', async t => {
  const f = fake()
  f.host.facts = async () => { throw new Error('no answer') }
  const reader = new NatsReader(f.host, log)
  await reader.close()
  await reader.starting
  t.equal(reader.failing, false, 'not counted')
})
