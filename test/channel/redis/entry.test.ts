// The stored entry layout (lib/channel/redis/entry.ts): what a publish stores and how every server reads it back,
// in the marked layout (v 1) and in the layout written before the mark; no Redis needed.
import t from 'tap'
import type { ChannelEncoder, ChannelItem } from '../../../lib/channel/backend.js'
import { entryFields, LAYOUT, readEntry } from '../../../lib/channel/redis/entry.js'
import { encodeAhead, encodeItem, encodeParts, kFrame } from '../../../lib/encode.js'
import type { SseItem, SseSerializer } from '../../../lib/types.js'

function encoder (serialize: SseSerializer = JSON.stringify): ChannelEncoder {
  return { item: item => encodeAhead(item, serialize), parts: item => encodeParts(item, serialize) }
}

/** The item a channel delivers for `item` stored with `id`: its fields, and its frame as the encoder makes it. */
function read (id: string, fields: string[]): ChannelItem {
  const item = readEntry(id, fields)
  if (typeof item === 'string') throw new Error(`not read: ${item}`)
  return item
}

t.test('an item is stored as v 1, h, t, j and read back as the encoder would have made it with its id', async t => {
  t.equal(LAYOUT, '1')
  const item: SseItem<unknown> = { comment: 'two\nlines', event: 'm', retry: 1000, data: { n: 1, text: 'é\u2028' } }
  const fields = entryFields(item, encoder())
  t.same(fields, [
    'v', '1',
    'h', ': two\n: lines\n',
    't', 'event: m\nretry: 1000\ndata: {"n":1,"text":"é\u2028"}\n\n',
    'j', '{"event":"m","retry":1000,"comment":"two\\nlines","data":{"n":1,"text":"é\u2028"}}'
  ])
  const got = read('1700000000000-3', fields)
  t.same({ ...got }, { ...item, id: '1700000000000-3' }, 'its fields, with the entry\'s id')
  t.equal(got[kFrame].toString(), encodeItem({ ...item, id: '1700000000000-3' }), 'its frame: the same bytes')
  t.ok(Object.isFrozen(got), 'frozen, as every item a channel hands out')

  for (const minimal of [{ data: 'text' }, { event: 'ping' }, { comment: 'c' }, { retry: 5 }, { data: null }]) {
    const again = read('2-0', entryFields(minimal, encoder()))
    t.same({ ...again }, { ...minimal, id: '2-0' }, JSON.stringify(minimal))
    t.equal(again[kFrame].toString(), encodeItem({ ...minimal, id: '2-0' }))
  }
  // the channel's serializer makes the frame; JSON keeps the fields
  const custom = entryFields({ data: { n: 1 } }, encoder(data => `custom ${JSON.stringify(data)}`))
  t.same(custom.slice(4), ['t', 'data: custom {"n":1}\n\n', 'j', '{"data":{"n":1}}'])
})

t.test('an entry written before the mark (h, t, j without v) is read exactly as before', async t => {
  const old = ['h', '', 't', 'event: m\ndata: {"n":1}\n\n', 'j', '{"event":"m","data":{"n":1}}']
  const item = read('5-1', old)
  t.same({ ...item }, { event: 'm', data: { n: 1 }, id: '5-1' })
  t.equal(item[kFrame].toString(), 'id: 5-1\nevent: m\ndata: {"n":1}\n\n')
  // the same item in either layout: the same fields and the same bytes
  const marked = read('5-1', entryFields({ event: 'm', data: { n: 1 } }, encoder()))
  t.same({ ...marked }, { ...item })
  t.same(marked[kFrame], item[kFrame])
  const commented = read('6-0', ['h', ': note\n', 't', 'data: 2\n\n', 'j', '{"comment":"note","data":2}'])
  t.equal(commented[kFrame].toString(), ': note\nid: 6-0\ndata: 2\n\n')
})

t.test('an entry it cannot read: written by no channel, or in a newer layout', async t => {
  const body = ['h', '', 't', 'data: 1\n\n', 'j', '{"data":1}']
  t.equal(readEntry('1-0', ['v', '2', ...body]), 'newer', 'layout 2')
  t.equal(readEntry('1-0', ['v', '10', 'x', 'y']), 'newer', 'a later layout, whatever its fields')
  for (const fields of [
    [], ['foo', 'bar'], ['v'], ['v', 'x', ...body], ['v', '0', ...body], ['v', '01', ...body], ['v', '-1', ...body],
    ['v', '1234567890', ...body], ['v', '1', ...body, 'x', 'y'], ['v', '1', ...body.slice(0, 4)], body.slice(0, 4),
    ['v', '1', 'h', '', 't', 'data: 1\n\n', 'j', '{broken'], ['h', '', 't', 'data: 1\n\n', 'j', '{broken'],
    ['h', '', 'x', 'data: 1\n\n', 'j', '{"data":1}'], ['t', '', 'h', 'data: 1\n\n', 'j', '{"data":1}'],
    ['v', '1', 'v', '1', ...body], [...body, 'v', '1']
  ]) {
    t.equal(readEntry('1-0', fields), 'foreign', JSON.stringify(fields))
  }
})

t.test('a refused item stores nothing: the encoder\'s refusal, or data JSON cannot hold', async t => {
  t.throws(() => entryFields({ event: 'a\nb' }, encoder()), { code: 'FST_SSE_INVALID_ITEM', field: 'event' })
  const bigint = encoder(data => typeof data === 'bigint' ? String(data) : JSON.stringify(data))
  t.throws(() => entryFields({ data: 10n }, bigint), { code: 'FST_SSE_INVALID_ITEM', field: 'data', message: /JSON-serializable on a Redis channel/ })
  t.throws(() => entryFields({ event: 'a\nb', data: 10n }, bigint), { code: 'FST_SSE_INVALID_ITEM', field: 'event' }, 'the encoder first')
})
