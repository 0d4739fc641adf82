// lastEventId(request): the Last-Event-ID a client sent as UTF-8 bytes, read back as the id the route wrote, over
// raw TCP (the exact bytes on the wire) and through the package's own client.
import t from 'tap'
import { once } from 'node:events'
import { connect as netConnect } from 'node:net'
import { connect } from '../lib/client/index.js'
import { lastEventId, parseEventStream, type RequestWithHeaders, type SseItem } from '../lib/index.js'
import { startApp, within } from './helpers.js'

const IDS = ['a', '✓', '日本', 'z']

/** An HTTP/1.0 GET on a raw connection, `Last-Event-ID` given as these exact bytes; the events of the answer. */
async function get (url: string, path: string, id?: Buffer): Promise<Array<SseItem<string>>> {
  const socket = netConnect(Number(new URL(url).port), '127.0.0.1')
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  const head = Buffer.from(`GET ${path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n`, 'latin1')
  const header = id === undefined
    ? []
    : [Buffer.from('Last-Event-ID: ', 'latin1'), id, Buffer.from('\r\n', 'latin1')]
  socket.write(Buffer.concat([head, ...header, Buffer.from('\r\n', 'latin1')]))
  await within(once(socket, 'end'), 5000, `the answer to GET ${path}`) // HTTP/1.0: the body ends with the connection
  socket.destroy()
  const response = Buffer.concat(chunks)
  const bodyAt = response.indexOf('\r\n\r\n') + 4
  const out: Array<SseItem<string>> = []
  for await (const item of parseEventStream([response.subarray(bodyAt)])) out.push(item)
  return out
}

/** A route that resumes after the id it is given (its header, else its query parameter). */
async function * resume (request: RequestWithHeaders): AsyncGenerator<SseItem<string>> {
  const from = lastEventId(request)
  for (let i = from === undefined ? 0 : IDS.indexOf(from) + 1; i < IDS.length; i++) {
    yield { id: IDS[i] as string, data: IDS[i] as string }
  }
}

t.test('a generator route resumes from a non-ASCII id it wrote, sent back as UTF-8 bytes', async t => {
  t.setTimeout(10_000)
  const { app, url } = await startApp(app => {
    app.get('/resume', resume)
    app.get('/echo', async function * (request) {
      yield { data: JSON.stringify({ decoded: lastEventId(request) ?? null, raw: request.headers['last-event-id'] ?? null }) }
    })
  })
  t.teardown(() => app.close())

  const all = await get(url, '/resume')
  t.same(all.map(e => e.id), IDS, 'the ids as written')
  for (const [id, rest] of [['✓', ['日本', 'z']], ['日本', ['z']], ['a', ['✓', '日本', 'z']]] as const) {
    const items = await get(url, '/resume', Buffer.from(id, 'utf8'))
    t.same(items.map(e => e.data), rest, `after ${id}`)
  }

  const echo = async (id?: Buffer): Promise<unknown> => JSON.parse((await get(url, '/echo', id))[0]?.data as string)
  t.same(await echo(Buffer.from('✓', 'utf8')), { decoded: '✓', raw: 'â\u009c\u0093' }, 'Node alone reads each byte as a character')
  t.same(await echo(Buffer.from('日本', 'utf8')), { decoded: '日本', raw: Buffer.from('日本', 'utf8').toString('latin1') })
  t.same(await echo(), { decoded: null, raw: null }, 'absent: undefined')
  t.same(await echo(Buffer.from('42-0', 'utf8')), { decoded: '42-0', raw: '42-0' }, 'ASCII as it is')
  t.same(await echo(Buffer.from([0x63, 0x61, 0x66, 0xe9])), { decoded: 'café', raw: 'café' }, 'bytes that are not UTF-8 (latin1 é) kept as read')

  // the package's client sends the id as a browser does: UTF-8
  const resumed: string[] = []
  for await (const item of connect(`${url}/resume`, { lastEventId: '✓', reconnect: false, json: false })) resumed.push(item.data)
  t.same(resumed, ['日本', 'z'], 'connect() resumes after ✓')
})

t.test('an array (headers kept apart) gives its first value; text beyond a byte is kept as it is', async t => {
  const bytes = (text: string): string => Buffer.from(text, 'utf8').toString('latin1')
  t.equal(lastEventId({ headers: { 'last-event-id': [bytes('日本'), 'b'] } }), '日本')
  t.equal(lastEventId({ headers: { 'last-event-id': [] } }), undefined)
  t.equal(lastEventId({ headers: {} }), undefined)
  t.equal(lastEventId({ headers: { 'last-event-id': '' } }), '', 'an empty id is an id (the client reset its own)')
  t.equal(lastEventId({ headers: { 'last-event-id': '日本' } }), '日本', 'already text (app.inject() headers): as it is')
})

t.test('without the header, the lastEventId query parameter: a first connection resumes from a cursor in its URL', async t => {
  t.setTimeout(10_000)
  const { app, url } = await startApp(app => {
    app.get('/resume', resume)
    app.get('/cursor', async function * (request) {
      yield { data: JSON.stringify({ cursor: lastEventId(request, { query: 'cursor' }) ?? null, off: lastEventId(request, { query: false }) ?? null }) }
    })
  })
  t.teardown(() => app.close())

  t.same((await get(url, `/resume?lastEventId=${encodeURIComponent('✓')}`)).map(e => e.data), ['日本', 'z'], 'percent-encoded UTF-8, over the wire')
  t.same((await get(url, '/resume?lastEventId=%E2%9C%93', Buffer.from('日本', 'utf8'))).map(e => e.data), ['z'], 'the header wins: a reconnection repeats its first URL')
  t.same((await get(url, '/cursor?cursor=41')).map(e => JSON.parse(e.data as string)), [{ cursor: '41', off: null }], 'another name; false: the header only')

  const events = connect(`${url}/resume?lastEventId=a`, { json: false, reconnect: false })
  const got: string[] = []
  for await (const item of events) got.push(item.data)
  t.same(got, ['✓', '日本', 'z'], 'connect() with the cursor in its URL')

  t.equal(lastEventId({ headers: {}, url: '/x?lastEventId=' }), '', 'empty: an empty id')
  t.equal(lastEventId({ headers: {}, url: '/x?other=1' }), undefined)
  t.equal(lastEventId({ headers: {}, url: '/x' }), undefined)
  t.equal(lastEventId({ headers: {} }), undefined, 'no url (a bare object): the header only')
  for (const bad of ['a%0Ab', 'a%0Db', 'a%00b']) {
    t.equal(lastEventId({ headers: {}, url: `/x?lastEventId=${bad}` }), undefined, `${bad}: no stream sends such an id`)
  }
})

t.test('lastEventId() refuses options it does not take, naming them', async t => {
  const request = { headers: {}, url: '/x?lastEventId=1' }
  t.throws(() => lastEventId(request, { qurey: 'x' } as object), { code: 'FST_SSE_INVALID_OPTION', field: 'qurey', message: /is not an option of lastEventId\(\) \(its options: query\); did you mean "query"\?$/ })
  t.throws(() => lastEventId(request, null as never), { code: 'FST_SSE_INVALID_OPTION', field: 'options', message: /^lastEventId\(\) option "options" must be an object/ })
  for (const bad of ['', 5, true, null]) {
    t.throws(() => lastEventId(request, { query: bad as never }), { code: 'FST_SSE_INVALID_OPTION', field: 'query', message: /^lastEventId\(\) option "query" must be a query parameter name or false, got / }, String(bad))
  }
  t.equal(lastEventId(request, {}), '1')
})
