import t from 'tap'
import { EventSource } from 'eventsource'
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import {
  encodeAhead, encodeItem, encodeParts, frameOf, frameSize, HEARTBEAT_FRAME, joinFrame, kFrame, retryFrame, withFrame
} from '../lib/encode.js'
import { parseEventStream, SseError, type SseItem } from '../lib/index.js'
import { all, deferred, open, startApp } from './helpers.js'

async function ours (wire: string): Promise<Array<SseItem<string>>> {
  const out: Array<SseItem<string>> = []
  for await (const item of parseEventStream([wire])) out.push(item)
  return out
}

function theirs (wire: string): EventSourceMessage[] {
  const out: EventSourceMessage[] = []
  const parser = createParser({ onEvent: e => out.push(e) })
  parser.feed(wire)
  return out
}

t.test('each field on its own line, in a fixed order, ended by a blank line', async t => {
  t.equal(
    encodeItem({ data: { a: 1 }, event: 'tick', id: '7', retry: 1500, comment: 'hi' }),
    ': hi\nid: 7\nevent: tick\nretry: 1500\ndata: {"a":1}\n\n'
  )
  t.equal(encodeItem({ data: 'plain text' }), 'data: plain text\n\n', 'strings are written as is')
  t.equal(encodeItem({ data: '"quoted"' }), 'data: "quoted"\n\n')
  t.equal(encodeItem({ data: 42 }), 'data: 42\n\n')
  t.equal(encodeItem({ data: null }), 'data: null\n\n', 'null is data')
  t.equal(encodeItem({ data: '' }), 'data: \n\n', 'empty string is data')
  t.equal(encodeItem({ id: '', retry: 0 }), 'id: \nretry: 0\n\n', "id '' and retry 0 are real values")
  t.equal(encodeItem({ event: 'ping' }), 'event: ping\ndata:\n\n', 'a named event without data gets an empty data line')
  t.equal(encodeItem({ id: '5' }), 'id: 5\n\n', 'an id alone is written as it is (it moves the last event id)')
  t.equal(encodeItem({ comment: '' }), ':\n\n'.replace(':', ': '), 'an empty comment is one comment line')
  t.equal(encodeItem({}), '', 'no field: nothing to send')
  t.equal(encodeItem({ data: undefined, event: undefined }), '', 'undefined fields are absent')
  t.equal(encodeItem({ data: ' lead' }), 'data:  lead\n\n', 'a leading space survives (the parser strips only one)')
  t.equal(HEARTBEAT_FRAME, ':\n\n')
  t.equal(retryFrame(3000), 'retry: 3000\n\n')
})

t.test('CR, LF and CRLF in data and comments start new lines of the same field', async t => {
  t.equal(encodeItem({ data: 'a\nb\rc\r\nd' }), 'data: a\ndata: b\ndata: c\ndata: d\n\n')
  t.equal(encodeItem({ data: 'end\n' }), 'data: end\ndata: \n\n', 'a trailing line break survives the round trip')
  t.equal(encodeItem({ comment: 'x\ny' }), ': x\n: y\n\n')
  t.equal(encodeItem({ data: { s: 'a\nb' } }), 'data: {"s":"a\\nb"}\n\n', 'JSON escapes its own line breaks')
  t.equal(encodeItem({ data: [1, 2] }, v => JSON.stringify(v, null, 1)), 'data: [\ndata:  1,\ndata:  2\ndata: ]\n\n',
    'a serializer that writes line breaks is split too')
  const [event] = await ours(encodeItem({ data: 'a\r\nb\rc\nd' }))
  t.equal(event?.data, 'a\nb\nc\nd', 'the client re-joins with LF')
})

t.test('refusals: a TypeError naming the field, before anything is built', async t => {
  const cases: Array<[unknown, string, RegExp]> = [
    [{ event: 'a\ndata: evil' }, 'event', /"event" must not contain CR or LF/],
    [{ event: 'a\rb' }, 'event', /CR or LF/],
    [{ id: '1\n\ndata: evil' }, 'id', /"id" must not contain CR or LF/],
    [{ id: 'a\0b' }, 'id', /"id" must not contain NUL/],
    [{ id: 7 }, 'id', /"id" must be a string, got number/],
    [{ event: null }, 'event', /must be a string, got null/],
    [{ retry: -1 }, 'retry', /"retry" must be a non-negative integer/],
    [{ retry: 1.5 }, 'retry', /non-negative integer/],
    [{ retry: Number.NaN }, 'retry', /non-negative integer/],
    [{ retry: '100' }, 'retry', /non-negative integer .*got "100" \(string\)/],
    [{ comment: 5 }, 'comment', /"comment" must be a string, got number/],
    [{ data: 10n }, 'data', /^SSE item field "data" could not be serialized$/],
    [{ data: () => 1 }, 'data', /the serializer returned undefined/],
    [{ data: Symbol('s') }, 'data', /could not be serialized/],
    [null, 'item', /must be an object .* got null/],
    ['text', 'item', /got string/],
    [[{ data: 1 }], 'item', /got an array/]
  ]
  for (const [item, field, message] of cases) {
    const err = t.throws(() => encodeItem(item)) as SseError
    t.type(err, TypeError)
    t.type(err, SseError)
    t.equal(err.field, field)
    t.equal(err.code, 'FST_SSE_INVALID_ITEM')
    t.match(err.message, message)
  }
  const cycle: Record<string, unknown> = {}
  cycle.self = cycle
  const err = t.throws(() => encodeItem({ id: '1', data: cycle })) as SseError
  t.equal(err.field, 'data')
  t.match((err.cause as Error).message, /circular/)
  t.type(err.cause, TypeError, 'the serializer error is kept as the cause')
  t.throws(() => encodeItem({ data: 1 }, () => { throw new Error('boom') }), { field: 'data', cause: { message: 'boom' } })
  t.match(t.throws(() => encodeItem({ data: 10n })), { cause: { message: /BigInt/ } }, "the serializer's reason is the cause")
  t.throws(() => encodeItem({ data: 1 }, (() => 5) as never), { field: 'data', message: /returned number/ })
  t.throws(() => encodeItem({ data: 1 }, (() => ({})) as never), { field: 'data', message: /returned an object/ })
})

t.test('no input can make a client see a field or event the item did not hold', async t => {
  const nasty = ['\n', '\r', '\r\n', '\n\n', 'x\ndata: evil', 'x\r\rid: 9', ': c', 'data: d', '\u2028\u2029', '\0', '\ufeff', '']
  for (const [n, s] of nasty.entries()) {
    for (const item of [{ data: s }, { comment: s }, { data: s, comment: s }]) {
      const wire = encodeItem(item)
      const want = item.data === undefined ? [] : [{ data: s.replace(/\r\n|\r/g, '\n') }]
      t.same(await ours(wire), want, `ours: case ${n} ${Object.keys(item).join('+')}`)
      t.same(theirs(wire).map(e => ({ data: e.data })), want, `eventsource-parser: case ${n} ${Object.keys(item).join('+')}`)
    }
  }
})

t.test('round trip through two independent parsers', async t => {
  const items: Array<SseItem<unknown>> = [
    { data: { n: 1, s: 'é✓😀' }, event: 'update', id: 'a-1' },
    { data: 'multi\nline\r\ntext', id: '' },
    { data: 'no id' },
    { comment: 'ignored', data: 'after comment', retry: 10 }
  ]
  const wire = items.map(i => encodeItem(i)).join('')
  const parsed = await ours(wire)
  t.same(parsed, [
    { data: '{"n":1,"s":"é✓😀"}', event: 'update', id: 'a-1' },
    { data: 'multi\nline\ntext', id: '' },
    { data: 'no id' },
    { data: 'after comment', retry: 10 }
  ])
  t.same(theirs(wire).map(e => [e.event, e.id, e.data]), [
    ['update', 'a-1', '{"n":1,"s":"é✓😀"}'],
    [undefined, '', 'multi\nline\ntext'],
    [undefined, undefined, 'no id'],
    [undefined, undefined, 'after comment']
  ])
})

t.test('frames encoded ahead of time: carried, but not copied by a spread', async t => {
  const frame = Buffer.from(encodeItem({ id: '1', data: 'pre' }))
  const item = withFrame({ id: '1', data: 'pre' }, frame)
  t.equal(frameOf(item), frame, 'the carried frame, not a new one')
  t.ok(Object.isFrozen(item))
  t.same(Object.keys(item), ['id', 'data'])
  t.equal(frameOf({ ...item, data: 'changed' }), undefined, 'a changed copy is encoded afresh')
  t.equal(frameOf(Object.assign({}, item)), undefined)
  t.equal(frameOf({ data: 'x', [kFrame]: frame }), frame)
  t.equal(frameOf(null), undefined)
  t.same(await ours(frame.toString()), [{ id: '1', data: 'pre' }])
})

t.test('frames for a store that gives the id: parts joined around the id line', async t => {
  const item = { comment: 'c', event: 'm', retry: 5, data: { n: 1 } }
  const parts = encodeParts(item)
  t.same(parts, { head: ': c\n', tail: 'event: m\nretry: 5\ndata: {"n":1}\n\n' })
  t.equal(joinFrame(parts, '7-0'), encodeItem({ ...item, id: '7-0' }), 'the frame encodeItem writes with that id')
  t.equal(joinFrame(encodeParts({}), '1-0'), 'id: 1-0\n\n', 'an empty item still carries its id')
  t.match(t.throws(() => encodeParts({ id: 'x', data: 1 })), { code: 'FST_SSE_INVALID_ITEM', field: 'id' })
  t.match(t.throws(() => encodeParts({ event: 'a\nb' })), { code: 'FST_SSE_INVALID_ITEM', field: 'event' })
  const ahead = encodeAhead({ id: '2', data: 'x' })
  t.equal(frameSize(ahead), Buffer.byteLength('id: 2\ndata: x\n\n'))
})

t.test('an event with a name and no data reaches EventSource listeners, with data ""', async t => {
  t.setTimeout(10_000)
  const { app, url } = await startApp(app => {
    app.get('/ping', async function * () {
      yield { event: 'ping' }
      yield { id: '5' } // sets the Last-Event-ID, dispatches nothing
      yield { event: 'done', data: 'bye' }
    })
  })
  t.teardown(() => app.close())

  t.equal(encodeItem({ event: 'ping' }), 'event: ping\ndata:\n\n')
  t.equal(encodeItem({ id: '5' }), 'id: 5\n\n', 'an id-only item is written as it is')
  const { events } = await open(url + '/ping')
  t.same(await all(events), [{ event: 'ping', data: '' }, { event: 'done', data: 'bye' }], 'the id-only frame dispatches nothing')

  const source = new EventSource(url + '/ping')
  t.teardown(() => source.close())
  const seen: Array<[string, string]> = []
  const done = deferred()
  source.addEventListener('ping', e => seen.push(['ping', e.data]))
  source.addEventListener('done', e => {
    seen.push(['done', e.data])
    source.close()
    done.resolve()
  })
  await done.promise
  t.same(seen, [['ping', ''], ['done', 'bye']], 'the ping reaches its listener')
})
