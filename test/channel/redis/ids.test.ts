// Stream ids as numbers, and where an id stands in a stream (lib/channel/redis/ids.ts): pure functions over what
// Redis answers, fed here with replies shaped as Redis 7 gives them; no Redis needed.
import t from 'tap'
import { gap, idKey, keyOf, NO_STREAM, redisNow, streamInfo, type StreamInfo } from '../../../lib/channel/redis/ids.js'

const MAX = '18446744073709551615' // 2^64 - 1

t.test('idKey: a stream id Redis could issue, as one number that orders like the ids', async t => {
  t.equal(idKey('0-0'), 0n)
  t.equal(idKey('1-2'), (1n << 64n) + 2n)
  t.equal(idKey(`${MAX}-0`), BigInt(MAX) << 64n, 'the largest time')
  t.ok((idKey('1-18446744073709551614') as bigint) < (idKey('2-0') as bigint), 'the time first, then the sequence')
  t.ok((idKey('9-0') as bigint) < (idKey('10-0') as bigint), 'numbers, not strings')
  t.equal(keyOf('3-4'), idKey('3-4'))
  for (const bad of ['', '1', '1-', '-1', '1-1-1', '01-1', '1-01', 'a-b', ' 1-1', '1-1 ', '+', '-', '1.5-0',
    `${MAX}0-0`, '18446744073709551616-0', `1-${MAX}`, '1-123456789012345678901']) {
    t.equal(idKey(bad), undefined, JSON.stringify(bad))
  }
})

/** An `XINFO STREAM` reply of Redis 7: a flat list of names and values. */
function xinfo (fields: {
  length: number, added: number, lastGenerated: string, maxDeleted: string, first?: string, last?: string
}): unknown[] {
  const entry = (id: string | undefined) => id === undefined ? null : [id, ['v', '1']]
  return [
    'length', fields.length, 'radix-tree-keys', 1, 'radix-tree-nodes', 2, 'last-generated-id', fields.lastGenerated,
    'max-deleted-entry-id', fields.maxDeleted, 'entries-added', fields.added, 'recorded-first-entry-id',
    fields.first ?? '0-0', 'groups', 0, 'first-entry', entry(fields.first), 'last-entry', entry(fields.last)
  ]
}

t.test('streamInfo: what a stream issued and removed, from XINFO STREAM', async t => {
  t.same(streamInfo(xinfo({ length: 3, added: 3, lastGenerated: '5-0', maxDeleted: '0-0', first: '3-0', last: '5-0' })),
    { lastGenerated: '5-0', removedBefore: '0-0', deleted: '0-0', lastEntry: '5-0' }, 'nothing removed')
  t.same(streamInfo(xinfo({ length: 3, added: 5, lastGenerated: '5-0', maxDeleted: '0-0', first: '3-0', last: '5-0' })),
    { lastGenerated: '5-0', removedBefore: '3-0', deleted: '0-0', lastEntry: '5-0' }, 'trimmed: before the oldest kept')
  t.same(streamInfo(xinfo({ length: 2, added: 5, lastGenerated: '5-0', maxDeleted: '4-0', first: '3-0', last: '5-0' })),
    { lastGenerated: '5-0', removedBefore: '4-0', deleted: '4-0', lastEntry: '5-0' }, 'deleted after the oldest kept: before that')
  t.same(streamInfo(xinfo({ length: 0, added: 2, lastGenerated: '2-0', maxDeleted: '2-0' })),
    { lastGenerated: '2-0', removedBefore: '2-0', deleted: '2-0', lastEntry: undefined }, 'emptied by XDEL')
  t.same(streamInfo(xinfo({ length: 0, added: 0, lastGenerated: '0-0', maxDeleted: '0-0' })),
    { lastGenerated: '0-0', removedBefore: '0-0', deleted: '0-0', lastEntry: undefined }, 'made empty (XGROUP CREATE … MKSTREAM)')
  t.same(NO_STREAM, { lastGenerated: '0-0', removedBefore: '0-0', deleted: '0-0', lastEntry: undefined }, 'no stream: nothing issued')
})

t.test('gap: whether a client at an id can go on without missing anything', async t => {
  const at = (id: string, stream: StreamInfo, found: boolean) => gap(stream, id, keyOf(id), found)
  const kept: StreamInfo = { lastGenerated: '9-0', removedBefore: '0-0', deleted: '0-0', lastEntry: '9-0' }
  t.equal(at('5-0', kept, true), undefined, 'an entry it holds')
  t.equal(at('9-0', kept, true), undefined, 'its newest')
  t.equal(at('0-0', kept, false), undefined, 'the origin: everything follows')
  t.equal(at('10-0', kept, false), 'unknown', 'newer than anything it issued')
  t.equal(at('5-1', kept, false), 'unknown', 'not in it, never removed: another stream (a Redis that lost its data)')

  const trimmed: StreamInfo = { lastGenerated: '9-0', removedBefore: '6-0', deleted: '0-0', lastEntry: '9-0' }
  t.equal(at('5-0', trimmed, false), 'expired', 'before what was trimmed')
  t.equal(at('6-0', trimmed, true), undefined, 'the oldest kept')

  const deleted: StreamInfo = { lastGenerated: '9-0', removedBefore: '7-0', deleted: '7-0', lastEntry: '9-0' }
  t.equal(at('7-0', deleted, false), undefined, 'the deleted one itself: nothing missed after it')
  t.equal(at('6-0', deleted, true), 'expired', 'what follows it was deleted')

  const newestDeleted: StreamInfo = { lastGenerated: '9-0', removedBefore: '0-0', deleted: '0-0', lastEntry: '8-0' }
  t.equal(at('9-0', newestDeleted, false), undefined, 'the newest id it issued, gone: nothing after it')
  t.equal(at('0-0', NO_STREAM, false), undefined, 'no stream: the origin resumes')
  t.equal(at('1-0', NO_STREAM, false), 'unknown', 'no stream: anything else is unknown')
})

t.test('redisNow: milliseconds from the reply of TIME', async t => {
  t.equal(redisNow(['1700000000', '123456']), 1_700_000_000_123)
  t.equal(redisNow(['1700000000', '999']), 1_700_000_000_000, 'microseconds round down')
})
