import t from 'tap'
import { parseEventStream, SseParseError, type SseItem } from '../lib/index.js'
import { encodeItem, frameOf, kFrame } from '../lib/encode.js'

async function parse (chunks: Array<string | Uint8Array>, options = {}): Promise<Array<SseItem<string>>> {
  const out: Array<SseItem<string>> = []
  for await (const item of parseEventStream(chunks, options)) out.push(item)
  return out
}

t.test('fields, defaults and dispatch (WHATWG event-stream rules)', async t => {
  t.same(await parse(['data: a\n\n']), [{ data: 'a' }])
  t.same(await parse(['data:no-space\n\n']), [{ data: 'no-space' }], 'the space after the colon is optional')
  t.same(await parse(['data:  two\n\n']), [{ data: ' two' }], 'only one leading space is removed')
  t.same(await parse(['data\n\n']), [{ data: '' }], 'a field name alone has an empty value')
  t.same(await parse(['data: a\ndata: b\n\n']), [{ data: 'a\nb' }], 'data lines join with LF')
  t.same(await parse(['event: x\nid: 7\nretry: 300\ndata: d\n\n']), [{ event: 'x', id: '7', retry: 300, data: 'd' }])
  t.same(await parse(['event: x\n\ndata: d\n\n']), [{ data: 'd' }], 'an event without data is not dispatched, and its type is reset')
  t.same(await parse(['event:\ndata: d\n\n']), [{ data: 'd' }], 'an empty event name means message')
  t.same(await parse(['id: \ndata: d\n\n']), [{ id: '', data: 'd' }], "id '' is a value")
  t.same(await parse(['id: a\0b\ndata: d\n\n']), [{ data: 'd' }], 'an id with NUL is ignored')
  t.same(await parse(['retry: 1.5\nretry: -1\nretry: x\ndata: d\n\n']), [{ data: 'd' }], 'retry only of ASCII digits')
  t.same(await parse(['foo: bar\ndata: d\n\n']), [{ data: 'd' }], 'unknown fields are ignored')
  t.same(await parse(['data: d\n']), [], 'an unterminated last event is dropped')
  t.same(await parse(['data: d']), [], 'an unterminated last line is dropped')
  t.same(await parse([]), [])
})

t.test('line ends: CR, LF, CRLF, also split across chunks', async t => {
  t.same(await parse(['data: a\rdata: b\r\n\r\n']), [{ data: 'a\nb' }])
  t.same(await parse(['data: a\r', '\ndata: b\r', '\r']), [{ data: 'a\nb' }], 'CR | LF across chunks is one line end')
  t.same(await parse(['data: a\r', 'data: b\r\r']), [{ data: 'a\nb' }], 'a lone CR at a chunk end')
  t.same(await parse(['da', 'ta: x', 'y\n', '\n']), [{ data: 'xy' }])
  const bytes = new TextEncoder().encode('data: é😀\n\n')
  const split = [bytes.subarray(0, 8), bytes.subarray(8, 10), bytes.subarray(10)]
  t.same(await parse(split), [{ data: 'é😀' }], 'multi-byte characters split across chunks')
})

t.test('BOM, comments, invalid UTF-8', async t => {
  t.same(await parse(['\ufeffdata: a\n\n']), [{ data: 'a' }], 'a leading BOM in a string stream is skipped')
  t.same(await parse([new Uint8Array([0xef, 0xbb, 0xbf]), 'data: b\n\n']), [{ data: 'b' }], 'and in a byte stream')
  t.same(await parse(['\ufeff\ufeffdata: c\n\n']), [], 'only one: the second makes the field name unknown')
  t.same(await parse(['', '\ufeffdata: d\n\n']), [{ data: 'd' }], 'an empty first chunk does not count')
  t.same(await parse(['data: e\n\n', '\ufeffdata: f\n\n']), [{ data: 'e' }], 'a BOM later is part of a line')
  const comments: string[] = []
  const retries: number[] = []
  t.same(await parse([': one\n:two\n:\ndata: x\n\nretry: 50\n\n'], { onComment: (c: string) => comments.push(c), onRetry: (r: number) => retries.push(r) }),
    [{ data: 'x' }])
  t.same(comments, ['one', 'two', ''])
  t.same(retries, [50], 'retry is reported even when no event follows')
  t.same(await parse([new Uint8Array([0x64, 0x61, 0x74, 0x61, 0x3a, 0x20, 0xff, 0x0a, 0x0a])]), [{ data: '\ufffd' }],
    'invalid UTF-8 becomes U+FFFD')
})

t.test('the length guard: a peer that never ends a line or an event', async t => {
  await t.rejects(parse(['data: ' + 'x'.repeat(100)], { maxEventLength: 50 }), { name: 'SseParseError', code: 'FST_SSE_PARSE', message: /line longer than 50/ })
  await t.rejects(parse(['data: 1234567890\n'.repeat(10)], { maxEventLength: 50 }), new SseParseError('event data longer than 50 characters'))
  t.same(await parse(['data: ' + 'x'.repeat(40) + '\n\n'], { maxEventLength: 50 }), [{ data: 'x'.repeat(40) }])
})

t.test('frames encoded ahead of time are written as they are', async t => {
  const frame = Buffer.from(encodeItem({ id: '1', data: 'pre' }))
  t.equal(frameOf({ data: 'ignored', [kFrame]: frame }, JSON.stringify), frame, 'the carried frame, not a new one')
  t.equal(frameOf({ data: 'fresh' }, JSON.stringify), 'data: fresh\n\n')
  t.same(await parse([frame]), [{ id: '1', data: 'pre' }])
})
