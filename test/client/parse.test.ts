import t from 'tap'
import { createParser } from 'eventsource-parser'
import { encodeItem } from '../../lib/encode.js'
import { parseEventStream, SseParseError, type ParseOptions, type SseItem } from '../../lib/index.js'
import * as client from '../../lib/client/index.js'

/** Everything the parser reports, in order: dispatched items and every callback. */
async function trace (chunks: Array<string | Uint8Array>, options: ParseOptions = {}): Promise<unknown[]> {
  const out: unknown[] = []
  const parsed = parseEventStream(chunks, {
    ...options,
    onRetry: r => out.push(['retry', r]),
    onComment: c => out.push(['comment', c]),
    onId: id => out.push(['id', id])
  })
  for await (const item of parsed) out.push(item)
  return out
}

async function items (
  chunks: Iterable<string | Uint8Array>, options: ParseOptions = {}
): Promise<Array<SseItem<string>>> {
  const out: Array<SseItem<string>> = []
  for await (const item of parseEventStream(chunks, options)) out.push(item)
  return out
}

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)

t.test('the client entry exports the same parser', async t => {
  t.equal(client.parseEventStream, parseEventStream)
  t.equal(client.SseParseError, SseParseError)
})

t.test('line ends: LF, CR, CRLF, and a CRLF split across chunks', async t => {
  t.same(await items(['data: a\n\ndata: b\r\rdata: c\r\n\r\n']), [{ data: 'a' }, { data: 'b' }, { data: 'c' }])
  t.same(await items(['data: a\r', '\n', '\r', '\ndata: b\r', '\r']), [{ data: 'a' }, { data: 'b' }],
    'a CR ending one chunk and the LF starting the next are one line end')
  t.same(await items(['data: a\r', '', '\ndata: b\n\n']), [{ data: 'a\nb' }], 'an empty chunk between CR and LF changes nothing')
  t.same(await items(['data: x\r', 'data: y\n\n']), [{ data: 'x\ny' }], 'a lone CR at a chunk end is a line end by itself')
})

t.test('fields, as the spec reads them', async t => {
  t.same(await trace([
    ': a comment\n:no space\n:\n', // comments
    'data\n\n', // a field name alone: empty value
    'data:  two spaces\n\n', // only one leading space is stripped
    'event: e\nid: 7\nretry: 250\ndata: x\nunknown: ignored\n\n',
    'retry: 1.5\nretry: -1\nretry: \nretry: 9a\ndata: bad retries ignored\n\n',
    'id: nul\0id\ndata: id with NUL ignored\n\n',
    'id: only\n\n', // an id with no data: no event, but the last event ID is set
    'event: lonely\n\n', // no data: nothing dispatched
    'id: 1\ndata: y\n\n',
    'data: a\ndata\ndata: b\n\n'
  ]), [
    ['comment', 'a comment'], ['comment', 'no space'], ['comment', ''],
    { data: '' },
    { data: ' two spaces' },
    ['retry', 250], ['id', '7'], { data: 'x', event: 'e', id: '7', retry: 250 },
    { data: 'bad retries ignored' },
    { data: 'id with NUL ignored' },
    ['id', 'only'],
    ['id', '1'], { data: 'y', id: '1' },
    { data: 'a\n\nb' }
  ])
})

t.test('BOM: skipped at the start only, in bytes or strings, even split', async t => {
  t.same(await items(['\ufeffdata: s\n\n']), [{ data: 's' }], 'string stream')
  t.same(await items(['', '\ufeffdata: s\n\n']), [{ data: 's' }], 'after an empty chunk')
  t.same(await items([bytes('\ufeffdata: b\n\n')]), [{ data: 'b' }], 'byte stream')
  const bom = bytes('\ufeffdata: split\n\n')
  t.same(await items([bom.subarray(0, 1), bom.subarray(1, 2), bom.subarray(2)]), [{ data: 'split' }], 'BOM split across chunks')
  t.same(await items(['data: a\n\n', '\ufeffdata: b\n\n']), [{ data: 'a' }], 'a later BOM is part of a field name (ignored field)')
})

t.test('malformed streams: spec behaviour or a clear error, never a hang', async t => {
  t.same(await items(['data: complete\n\ndata: no blank line\n']), [{ data: 'complete' }], 'an unterminated last event is dropped')
  t.same(await items(['data: complete\n\ndata: no line end']), [{ data: 'complete' }], 'an unterminated last line too')
  t.same(await items([]), [], 'an empty body')

  const invalid = Uint8Array.from([...bytes('data: a'), 0xff, 0xfe, ...bytes('b\n\n')])
  t.same(await items([invalid]), [{ data: 'a\ufffd\ufffdb' }], 'invalid UTF-8 becomes U+FFFD, as the spec decodes')
  const euro = bytes('data: €\n\n') // € is 3 bytes: split it
  t.same(await items([euro.subarray(0, 7), euro.subarray(7, 8), euro.subarray(8)]), [{ data: '€' }], 'a character split across chunks')
  const truncated = Uint8Array.from([...bytes('data: x'), 0xe2, 0x82, ...bytes('\n\n')])
  t.same(await items([truncated]), [{ data: 'x\ufffd' }], 'a truncated sequence is one U+FFFD')

  const mb = 'x'.repeat(1024 * 1024)
  t.same(await items([`data: ${mb}\n\n`]), [{ data: mb }], 'a 1 MB line is fine under the default 4 MiB limit')
  const limited = { maxEventLength: 64 * 1024 }
  await t.rejects(items([`data: ${mb}\n\n`], limited), { name: 'SseParseError', code: 'FST_SSE_PARSE', message: 'line longer than 65536 characters' },
    'a 1 MB line in one chunk is refused over a 64 KiB limit')
  const chunks = Array.from({ length: 1024 }, () => 'x'.repeat(1024))
  await t.rejects(items(['data: ', ...chunks, '\n\n'], limited), SseParseError, 'a line that never ends is refused once it passes the limit')
  let pulled = 0
  function * endless (): Generator<string> {
    for (;;) {
      pulled++
      yield 'y'.repeat(4096)
    }
  }
  await t.rejects(items(endless(), limited), { message: /line longer than 65536/ }, 'a peer that never sends a line break: refused, not buffered forever')
  t.ok(pulled <= 17, `it stopped reading at the limit (${pulled} chunks of 4 KiB)`)
  const lines = Array.from({ length: 40 }, () => `data: ${'z'.repeat(2000)}\n`).join('')
  await t.rejects(items([lines + '\n'], limited), { message: 'event data longer than 65536 characters' }, 'many short data lines add up: refused too')
})

t.test('a long line in many small chunks is read in linear time', async t => {
  t.setTimeout(30_000)
  const piece = 'p'.repeat(64)
  const chunks = ['data: ', ...Array.from({ length: 3 * 16 * 1024 }, () => piece), '\n\n'] // 3 MiB in 64-byte chunks
  const started = process.hrtime.bigint()
  const [item] = await items(chunks)
  const ms = Number(process.hrtime.bigint() - started) / 1e6
  t.equal(item?.data?.length, 3 * 1024 * 1024)
  // about 0.5 s here; the quadratic way (joining the pending text at every chunk) copies ~77 GB and takes minutes
  t.ok(ms < 10_000, `3 MiB in 49152 chunks took ${ms.toFixed(0)} ms`)
})

// A small seeded generator (mulberry32): the same cases on every run, another seed with SSE_SEED=n.
function random (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const ALPHABET = ['\n', '\r', '\r\n', '\0', ':', ' ', 'data: ', 'id: ', '\ufeff', 'é', '✓', '😀', '\u2028', 'a', 'Z', '0', '\t', '"', '\\']

function randomString (next: () => number, max: number): string {
  let s = ''
  const length = Math.floor(next() * max)
  for (let i = 0; i < length; i++) s += ALPHABET[Math.floor(next() * ALPHABET.length)]
  return s
}

const noBreaks = (s: string): string => s.replace(/[\r\n]/g, '')

t.test('property: every item the encoder writes comes back the same, however the bytes are cut', async t => {
  const seed = Number(process.env.SSE_SEED ?? 20261126)
  const next = random(seed)
  const CASES = 300
  for (let n = 0; n < CASES; n++) {
    const written: Array<SseItem<unknown>> = []
    const expected: unknown[] = []
    for (let k = Math.floor(next() * 5) + 1; k > 0; k--) {
      const item: SseItem<unknown> = {}
      if (next() < 0.4) item.comment = randomString(next, 12)
      if (next() < 0.5) item.id = noBreaks(randomString(next, 8)).replace(/\0/g, '')
      if (next() < 0.4) item.event = noBreaks(randomString(next, 8))
      if (next() < 0.2) item.retry = Math.floor(next() * 100000)
      const kind = next()
      if (kind < 0.6) item.data = randomString(next, 30)
      else if (kind < 0.8) {
        const a = [randomString(next, 4), null, true]
        item.data = { s: randomString(next, 10), n: Math.floor(next() * 1e6) - 5e5, a }
      }
      written.push(item)
      if (item.comment !== undefined) for (const line of item.comment.split(/\r\n|\r|\n/)) expected.push(['comment', line])
      if (item.retry !== undefined) expected.push(['retry', item.retry])
      if (item.id !== undefined) expected.push(['id', item.id])
      // a named event without data is written with an empty data line, so it is dispatched with data ''
      if (item.data !== undefined || item.event !== undefined) {
        const data = item.data === undefined
          ? ''
          : typeof item.data === 'string' ? item.data.replace(/\r\n|\r/g, '\n') : JSON.stringify(item.data)
        const parsed: SseItem<string> = { data }
        if (item.event !== undefined && item.event !== '') parsed.event = item.event
        if (item.id !== undefined) parsed.id = item.id
        if (item.retry !== undefined) parsed.retry = item.retry
        expected.push(parsed)
      }
    }
    const wire = bytes(written.map(item => encodeItem(item)).join(''))
    // cut the bytes at random places: inside CRLF, inside a UTF-8 sequence, anywhere
    const chunks: Uint8Array[] = []
    for (let at = 0; at < wire.length;) {
      const size = Math.floor(next() * 12) + 1
      chunks.push(wire.subarray(at, at + size))
      at += size
    }
    const got = await trace(chunks)
    if (!t.same(got, expected, `case ${n} (seed ${seed})`)) {
      t.comment(JSON.stringify(written))
      break
    }
    // and an independent parser agrees on the dispatched events
    const theirs: unknown[] = []
    const parser = createParser({ onEvent: e => theirs.push([e.event === '' ? undefined : e.event, e.id, e.data]) })
    parser.feed(new TextDecoder().decode(wire))
    const ours = (got.filter(x => !Array.isArray(x)) as Array<SseItem<string>>).map(i => [i.event, i.id, i.data])
    t.same(theirs, ours, `case ${n}: eventsource-parser agrees`)
  }
})

t.test('parsers consumed in turn do not disturb each other', async t => {
  // each yields in the middle of a chunk holding many events, while the other one runs
  const wire = Array.from({ length: 30 }, (_, n) => encodeItem({ id: String(n), data: n })).join('')
  const a = parseEventStream([wire])[Symbol.asyncIterator]()
  const b = parseEventStream([bytes(wire)])[Symbol.asyncIterator]()
  const seen: Array<[string | undefined, string | undefined]> = []
  for (let i = 0; i < 30; i++) {
    const [x, y] = [await a.next(), await b.next()]
    seen.push([x.done === true ? undefined : x.value.id, y.done === true ? undefined : y.value.id])
  }
  t.same(seen, Array.from({ length: 30 }, (_, n) => [String(n), String(n)]))
  t.same([await a.next(), await b.next()], [{ value: undefined, done: true }, { value: undefined, done: true }])
})

t.test('bad options are refused at the call, naming the option; the edges of the range are taken', async t => {
  const bad = (options: unknown): void => { parseEventStream([], options as ParseOptions) }
  for (const maxEventLength of [NaN, -1, 0, 1.5, -Infinity, '100', null]) {
    const err = t.throws(() => bad({ maxEventLength }), {
      name: 'SseError',
      code: 'FST_SSE_INVALID_OPTION',
      field: 'maxEventLength',
      message: /^parseEventStream\(\) option "maxEventLength" must be a whole number of characters >= 1 \(or Infinity\), got /
    }, `maxEventLength: ${String(maxEventLength)}`)
    t.type(err, TypeError)
  }
  t.throws(() => bad({ maxEventLength: '100' }), { message: /got "100" \(string\)$/ }, 'the value shown with its type')
  for (const name of ['onRetry', 'onComment', 'onId']) {
    t.throws(() => bad({ [name]: 'log' }), { code: 'FST_SSE_INVALID_OPTION', field: name, message: new RegExp(`"${name}" must be a function, got "log" \\(string\\)$`) })
  }
  t.throws(() => bad(null), { code: 'FST_SSE_INVALID_OPTION', field: 'options', message: /must be an object, got null$/ })
  // names the types would refuse in a literal, in an object built at run time (or a JavaScript caller's)
  for (const name of ['maxLength', 'onEvent', 'onid', 'retry']) {
    const err = t.throws(() => bad({ [name]: () => {} }), {
      name: 'SseError',
      code: 'FST_SSE_INVALID_OPTION',
      field: name,
      message: `parseEventStream() option "${name}" is unknown (its options: maxEventLength, onRetry, onComment, onId)`
    }, name)
    t.type(err, TypeError)
  }
  const seen: string[] = []
  const every: Required<ParseOptions> = {
    maxEventLength: 100,
    onRetry: retry => seen.push(`retry ${retry}`),
    onComment: comment => seen.push(`comment ${comment}`),
    onId: id => seen.push(`id ${id}`)
  }
  t.same(await items([': hi\nretry: 5\nid: 1\ndata: a\n\n'], every), [{ data: 'a', id: '1', retry: 5 }], 'every documented option taken')
  t.same(seen, ['comment hi', 'retry 5', 'id 1'])
  t.same(await items(['data: a\n\n'], { maxEventLength: Infinity }), [{ data: 'a' }], 'Infinity: no limit')
  t.same(await items(['data: a\n\n'], { maxEventLength: 7 }), [{ data: 'a' }], 'the line "data: a" is 7 characters')
  t.same(await items(['data: a\n\n'], { maxEventLength: undefined }), [{ data: 'a' }], 'undefined: the default')
  await t.rejects(items(['data: ab\n\n'], { maxEventLength: 7 }), SseParseError, 'one more is refused')
})
