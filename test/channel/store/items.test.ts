// The pure pieces PostgreSQL and NATS channels share: stored items, their ids, the checks of names and keys.
import t from 'tap'
import { kFrame } from '../../../lib/encode.js'
import {
  checkIdempotencyKey, checkName, formatId, parseId, positiveMs, rebuild, storedItem
} from '../../../lib/channel/store/items.js'

t.test('an item is stored as its frame parts and its fields, and rebuilt around its id', async t => {
  const stored = storedItem({ event: 'e', data: { a: 1 } }, { head: ': hi\n', tail: 'event: e\ndata: {"a":1}\n\n' }, 'X')
  t.same(stored, { head: ': hi\n', tail: 'event: e\ndata: {"a":1}\n\n', fields: '{"event":"e","data":{"a":1}}' })
  const item = rebuild(stored, 'abc-7')
  t.same(item, { event: 'e', data: { a: 1 }, id: 'abc-7' })
  t.equal(String((item as unknown as Record<symbol, Buffer>)[kFrame]), ': hi\nid: abc-7\nevent: e\ndata: {"a":1}\n\n')
  t.ok(Object.isFrozen(item))
})

t.test('data JSON cannot carry is refused, naming the engine', async t => {
  t.throws(() => storedItem({ data: 1n }, { head: '', tail: '' }, 'PostgreSQL'), {
    code: 'FST_SSE_INVALID_ITEM', field: 'data', message: /must be JSON-serializable on a PostgreSQL channel/
  })
})

t.test('fields no channel wrote rebuild to nothing', async t => {
  for (const fields of ['not json', 'null', '[1]', '7']) {
    t.equal(rebuild({ head: '', tail: 'data: x\n\n', fields }, 'a-1'), undefined, fields)
  }
})

t.test('ids are <tag>-<seq>; anything else is not one', async t => {
  t.equal(formatId('ab12', 0), 'ab12-0')
  t.same(parseId('ab12-42'), { tag: 'ab12', seq: 42 })
  t.same(parseId('0-9007199254740991'), { tag: '0', seq: 9007199254740991 })
  for (const id of ['', 'ab12', 'ab12-', 'AB-1', 'ab-01', 'ab--1', 'ab-1.5', 'a'.repeat(17) + '-1', 'ab-9007199254740993']) {
    t.equal(parseId(id), undefined, JSON.stringify(id))
  }
})

t.test('idempotency keys, names and milliseconds are checked, naming the field', async t => {
  checkIdempotencyKey('k')
  checkIdempotencyKey('k'.repeat(256))
  for (const key of ['', 'k'.repeat(257), 7]) {
    t.throws(() => checkIdempotencyKey(key), { code: 'FST_SSE_INVALID_OPTION', field: 'idempotencyKey' })
  }
  checkName('é'.repeat(512), 'NATS')
  t.throws(() => checkName('é'.repeat(513), 'NATS'), {
    field: 'name', message: /of a NATS channel must be at most 1024 bytes in UTF-8, without NUL, got "é{40}"…$/
  })
  t.throws(() => checkName('a\0b', 'PostgreSQL'), { field: 'name', message: /got "a\\u0000b"$/ })
  t.equal(positiveMs('x', 5, 'f()'), 5)
  for (const value of [0, -1, 1.5, '5', Infinity]) {
    t.throws(() => positiveMs('x', value, 'f()'), {
      field: 'x', message: /^f\(\) option "x" must be a positive whole number of milliseconds/
    })
  }
})
