import t from 'tap'
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { request } from 'undici'
import ssePlugin, { SseError, sseSchema, type SseItem } from '../../lib/index.js'
import { isTextSchema, refResolver, sseSchemaInfo } from '../../lib/typed/schema.js'
import { all, deferred, ERROR, open, startApp, take } from '../helpers.js'

const Tick = Type.Object({ n: Type.Number() })
const events = { move: Type.Object({ x: Type.Number() }), note: Type.String() }

t.test('sseSchema(data): one item shape, data required, and the 3.2 item with data as JSON text', async t => {
  const schema = sseSchema(Tick, { description: 'ticks' })
  t.equal(schema.description, 'ticks')
  const item = { type: 'object', properties: { data: Tick, event: { type: 'string' }, id: { type: 'string' }, retry: { type: 'integer', minimum: 0 } }, required: ['data'] }
  t.same(JSON.parse(JSON.stringify(schema.content['text/event-stream'].schema)), JSON.parse(JSON.stringify(item)))
  t.same(sseSchemaInfo(schema)?.itemSchema, {
    ...item,
    properties: { ...item.properties, data: { type: 'string', contentMediaType: 'application/json', contentSchema: Tick } }
  })
  t.equal(sseSchema(Type.String()).description, 'A stream of Server-Sent Events', 'a default description')
  const itemSchema = sseSchemaInfo(sseSchema(Type.String()))?.itemSchema as { properties: { data: unknown } }
  t.same(itemSchema.properties.data, Type.String(),
    'string data is the string on the wire: no contentMediaType')
  t.same(sseSchemaInfo(sseSchema({ type: 'object', properties: { a: { type: 'number' } } }))?.data,
    { type: 'object', properties: { a: { type: 'number' } } }, 'a plain JSON Schema is a data schema')
  t.same(sseSchemaInfo(sseSchema({}))?.data, {}, '{} is the schema of any data, not an empty event map')
  t.same(Object.keys(sseSchemaInfo(sseSchema({ type: Type.Number(), title: Type.String() }))?.events ?? {}), ['type', 'title'],
    'a map of TypeBox schemas is a map, even with events named like keywords')
  t.same(sseSchemaInfo(sseSchema({ type: 'object', properties: { a: Type.Number() } }))?.data, { type: 'object', properties: { a: Type.Number() } })
  t.same(Object.keys(sseSchemaInfo(sseSchema({ a: { type: 'number' }, b: { type: 'string' } }))?.events ?? {}), ['a', 'b'],
    'a map of plain JSON Schemas, its names not keywords')
  t.equal(sseSchemaInfo({ content: {} }), undefined, 'only sseSchema() results are recognised')
  t.equal(sseSchemaInfo(null), undefined)
})

t.test('sseSchema(map): an event-keyed oneOf', async t => {
  const schema = sseSchema(events)
  const info = sseSchemaInfo(schema)
  t.same(info?.events, events)
  t.equal(info?.data, undefined)
  const variants = (JSON.parse(JSON.stringify(schema.content['text/event-stream'].schema)) as { oneOf: Array<{ properties: Record<string, unknown>, required: string[] }> }).oneOf
  t.same(variants.map(v => v.properties.event), [{ type: 'string', const: 'move' }, { type: 'string', const: 'note' }])
  t.same(variants.map(v => v.properties.data), JSON.parse(JSON.stringify([events.move, events.note])))
  t.same(variants[0]?.required, ['event', 'data'])
  const items = (info?.itemSchema as { oneOf: Array<{ properties: Record<string, unknown> }> }).oneOf
  t.same(items.map(v => v.properties.data), [
    { type: 'string', contentMediaType: 'application/json', contentSchema: events.move },
    events.note
  ])
})

t.test('sseSchema refuses what cannot be a schema or an event name, at once', async t => {
  const bad: Array<[unknown, RegExp]> = [
    [null, /must be a JSON Schema object, got null/],
    ['string', /got string/],
    [[Tick], /got an array/],
    [{ 'a\nb': Tick }, /event name "a\\nb" is not a valid SSE event name/],
    [{ 'a\rb': Tick }, /not a valid SSE event name/],
    [{ '': Tick, b: Tick }, /event name "" is not a valid/],
    [{ ok: Tick, bad: 42 }, /the data schema of event "bad" must be a JSON Schema object, got number/]
  ]
  for (const [input, message] of bad) {
    const err = (() => {
      try {
        sseSchema(input as never)
      } catch (error) {
        return error
      }
    })()
    t.ok(err instanceof SseError && err instanceof TypeError, 'an SseError, a TypeError')
    t.match(err, { code: 'FST_SSE_INVALID_SCHEMA', message }, String(message))
  }
})

t.test('a generator route streams with the serializer compiled from its data schema', async t => {
  const { app, url } = await startApp(app => {
    app.get('/ticks', { schema: { response: { 200: sseSchema(Tick) } } }, async function * () {
      // a compiled serializer writes what the schema names; JSON.stringify would also write `secret`
      yield { id: '1', data: { n: 1, secret: 'x' } }
      yield { comment: 'no data' }
    })
    app.get('/either', { schema: { response: { 200: sseSchema(Type.Union([Type.String(), Type.Number()])) } } }, async function * () {
      yield { data: 'a string' }
      yield { data: 1 }
    })
    app.get('/text', { schema: { response: { 200: sseSchema(Type.String()) } } }, async function * () {
      yield { data: '"as is"' }
    })
  })
  t.teardown(() => app.close())
  const { res, events } = await open(`${url}/ticks`)
  t.equal(res.headers['content-type'], 'text/event-stream; charset=utf-8', 'Fastify did not serialize the stream with the schema')
  t.same(await all(events), [{ id: '1', data: '{"n":1}' }])
  t.same(await all((await open(`${url}/either`)).events), [{ data: '"a string"' }, { data: '1' }],
    'a schema admitting more than strings: a string is JSON too, so a client decodes every event alike')
  t.same(await all((await open(`${url}/text`)).events), [{ data: '"as is"' }], 'a string schema: the text itself')
})

t.test('an event map picks the serializer by event; an unknown event falls back to the stream\'s', async t => {
  const { app, url } = await startApp(app => {
    app.get('/moves', { schema: { response: { 200: sseSchema({ ...events, message: Type.Object({ m: Type.Number() }) }) } } }, (request, reply) => {
      return reply.sse<unknown>([
        { event: 'move', data: { x: 1, y: 2 } },
        { data: { m: 3, extra: true } },
        { event: 'other', data: { kept: true } }
      ])
    })
  })
  t.teardown(() => app.close())
  const { events: stream } = await open(`${url}/moves`)
  t.same(await all(stream), [
    { event: 'move', data: '{"x":1}' },
    { data: '{"m":3}' },
    { event: 'other', data: '{"kept":true}' }
  ], 'no event is the "message" event; "other" is written with JSON.stringify')
})

t.test('a serializer given per call wins over the compiled one; $refs to shared schemas resolve', async t => {
  const { app, url } = await startApp(app => {
    app.addSchema(Type.Object({ name: Type.String() }, { $id: 'Pet' }))
    const pets = sseSchema(Type.Object({ pet: Type.Ref('Pet') }))
    app.get('/pets', { schema: { response: { 200: pets } } }, async function * () {
      yield { data: { pet: { name: 'Rex', age: 3 } } }
    })
    app.get('/pets-raw', { schema: { response: { 200: pets } } }, (request, reply) => {
      return reply.sse([{ data: { pet: { name: 'Rex', age: 3 } } }], { serialize: data => `raw ${JSON.stringify(data)}` })
    })
  })
  t.teardown(() => app.close())
  t.same(await all((await open(`${url}/pets`)).events), [{ data: '{"pet":{"name":"Rex"}}' }])
  t.same(await all((await open(`${url}/pets-raw`)).events), [{ data: 'raw {"pet":{"name":"Rex","age":3}}' }])
})

t.test('validate: a mismatching item is refused whole, logged naming the field and the route, and ends the stream', async t => {
  const finished = deferred()
  const { app, url, logs } = await startApp(app => {
    app.get('/ticks', { schema: { response: { 200: sseSchema(Tick) } } }, async function * () {
      try {
        yield { data: { n: 1 } }
        yield { comment: 'control items pass' }
        yield { id: '2', data: { n: 'two' } }
        yield { data: { n: 3 } }
      } finally {
        finished.resolve()
      }
    })
  }, { validate: true })
  t.teardown(() => app.close())
  const { res } = await open(`${url}/ticks`)
  const wire = await res.body.text()
  t.equal(wire, 'data: {"n":1}\n\n: control items pass\n\n', 'nothing of the bad item, nothing after it')
  await finished.promise
  const line = await logs.waitFor(l => l.level === ERROR)
  t.equal(line.msg, 'SSE item refused; stream ended')
  t.equal(line.err?.type, 'SseError')
  t.equal(line.err?.code, 'FST_SSE_INVALID_ITEM')
  t.equal(line.err?.field, 'data')
  t.match(line.err?.message, /SSE item field "data" does not match the schema of route GET \/ticks: \/n must be number/)
})

t.test('validate: an event the map does not name is refused; validate per call; data that cannot be copied', async t => {
  const { app, url, logs } = await startApp(app => {
    const schema = { response: { 200: sseSchema(events) } }
    app.get('/unknown', { schema }, (request, reply) => reply.sse<unknown>([{ comment: 'control' }, { event: 'move', data: { x: 1 } }, { event: 'jump', data: { x: 1 } }]))
    app.get('/not-an-item', { schema }, (request, reply) => reply.sse<unknown>([null] as never))
    app.get('/own-serializer', { schema }, (request, reply) => reply.sse<unknown>([{ event: 'move', data: { x: 1, y: 2 } }, { event: 'move', data: { x: 'no' } }], { serialize: data => `own ${JSON.stringify(data)}` }))
    app.get('/own-validator', {
      schema,
      validatorCompiler: () => Object.assign((data: unknown) => typeof data === 'string', { errors: null })
    }, (request, reply) => reply.sse<unknown>([{ event: 'move', data: { x: 1 } }]))
    app.route({ method: ['GET', 'POST'], url: '/two-methods', schema, handler: async () => ({ x: 1 }) as never })
    app.get('/no-event', { schema }, (request, reply) => reply.sse<unknown>([{ data: 'x' }]))
    app.get('/per-call', { schema }, (request, reply) => reply.sse<unknown>([{ event: 'note', data: { not: 'a string' } }], { validate: true }))
    app.get('/coerced', { schema }, (request, reply) => reply.sse<unknown>([{ event: 'note', data: 5 }]))
    app.get('/off', { schema }, (request, reply) => reply.sse<unknown>([{ event: 'note', data: 5 }], { validate: false }))
    app.get('/fn', { schema: { response: { 200: sseSchema({}) } } }, (request, reply) => reply.sse<unknown>([{ data: { f () {} } }]))
    app.get('/root', { schema: { response: { 200: sseSchema(Type.Number()) } } }, (request, reply) => reply.sse<unknown>([{ data: 'one' }]))
  }, { validate: true, headersDelay: 0 }) // refusals in an open stream; before the first item see test/route.test.ts
  t.teardown(() => app.close())

  t.equal(await (await request(`${url}/unknown`)).body.text(), ': control\n\nevent: move\ndata: {"x":1}\n\n', 'control items pass on an event map')
  let line = await logs.waitFor(l => l.level === ERROR)
  t.equal(line.err?.field, 'event')
  t.match(line.err?.message, /"jump" is not an event of route GET \/unknown \(expected one of "move", "note"\)/)

  t.equal(await (await request(`${url}/no-event`)).body.text(), '')
  line = await logs.waitFor(l => l.level === ERROR && /"event" is required on route GET \/no-event/.test(l.err?.message ?? ''))
  t.equal(line.err?.field, 'event', 'data without an event is none of the map\'s events')

  t.equal(await (await request(`${url}/per-call`)).body.text(), '')
  line = await logs.waitFor(l => l.level === ERROR && /route GET \/per-call/.test(l.err?.message ?? ''))
  t.match(line.err?.message, /"data" does not match the schema of route GET \/per-call: must be string/, 'a root mismatch has no path')

  t.equal(await (await request(`${url}/off`)).body.text(), 'event: note\ndata: "5"\n\n', 'validate: false per call; the compiled serializer still applies')
  t.equal(await (await request(`${url}/coerced`)).body.text(), 'event: note\ndata: "5"\n\n',
    'Fastify\'s ajv coerces by default: 5 passes for a string and is written as the string the schema names')

  t.equal(await (await request(`${url}/fn`)).body.text(), '')
  line = await logs.waitFor(l => l.level === ERROR && /route GET \/fn/.test(l.err?.message ?? ''))
  t.match(line.err?.message, /"data" could not be checked against the schema of route GET \/fn: .*could not be cloned/)

  t.equal(await (await request(`${url}/root`)).body.text(), '', 'a string is checked too (it would be written as is)')

  t.equal(await (await request(`${url}/not-an-item`)).body.text(), '')
  line = await logs.waitFor(l => l.level === ERROR && l.err?.field === 'item')
  t.match(line.err?.message, /must be an object/, 'the encoder refuses what is not an item, as on any route')

  t.equal(await (await request(`${url}/own-serializer`)).body.text(), 'event: move\ndata: own {"x":1,"y":2}\n\n',
    'a serializer given per call is used, and items are still checked')
  line = await logs.waitFor(l => l.level === ERROR && /route GET \/own-serializer/.test(l.err?.message ?? ''))
  t.match(line.err?.message, /\/x must be number/)

  t.equal(await (await request(`${url}/own-validator`)).body.text(), '')
  line = await logs.waitFor(l => l.level === ERROR && /route GET \/own-validator/.test(l.err?.message ?? ''))
  t.match(line.err?.message, /does not match the schema of route GET \/own-validator: rejected by the validator/, 'the route\'s validator compiler is the one used')

  const two = await request(`${url}/two-methods`)
  t.match(await two.body.json(), { code: 'FST_SSE_NOT_A_STREAM', message: /route GET,POST \/two-methods/ }, 'a route with several methods names them all')
})

t.test('the validate option must be a boolean', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  await t.rejects(async () => { await app.register(ssePlugin, { validate: 'yes' as never }) }, { code: 'FST_SSE_INVALID_OPTION', field: 'validate', message: /must be a boolean, got "yes" \(string\)/ })
})

t.test('a non-generator handler on an SSE route: iterables are streamed, anything else is an error naming the route', async t => {
  const later = deferred()
  const { app, url, logs } = await startApp(app => {
    const schema = { response: { 200: sseSchema(Tick), 404: Type.Object({ error: Type.String() }) } }
    app.get('/returns-generator', { schema }, async () => (async function * () { yield { data: { n: 1, x: 2 } } })())
    app.get('/returns-array', { schema }, () => [{ data: { n: 2 } }] as never)
    app.get('/returns-json', { schema }, async () => ({ n: 1 }) as never)
    app.get('/not-found', { schema }, async (request, reply) => {
      reply.code(404)
      return { error: 'no such stream' } as never
    })
    app.get('/callback', { schema }, (request, reply) => {
      void later.promise.then(() => reply.sse([{ data: { n: 3 } }]))
    })
    app.get('/sends', { schema }, (request, reply) => reply.code(404).send({ error: 'gone' }) as never)
    app.get('/buffer', { schema }, async (request, reply) => {
      reply.type('text/event-stream')
      return Buffer.from('data: raw\n\n') as never
    })
    app.get('/text', { schema }, async (request, reply) => {
      reply.type('text/event-stream')
      return 'data: text\n\n' as never
    })
    app.get('/number', { schema }, () => 42 as never)
    app.get('/null', { schema }, async () => null as never)
  })
  t.teardown(() => app.close())

  t.same(await all((await open(`${url}/returns-generator`)).events), [{ data: '{"n":1}' }], 'streamed, with the compiled serializer')
  t.same(await all((await open(`${url}/returns-array`)).events), [{ data: '{"n":2}' }])

  const json = await request(`${url}/returns-json`)
  t.equal(json.statusCode, 500)
  t.match(await json.body.json(), { code: 'FST_SSE_NOT_A_STREAM', message: /route GET \/returns-json has an sseSchema\(\) response but its handler neither yields nor calls reply\.sse\(\): it returned object/ })
  const line = await logs.waitFor(l => l.level === ERROR && l.err?.code === 'FST_SSE_NOT_A_STREAM')
  t.equal(line.err?.field, 'GET /returns-json')

  const notFound = await request(`${url}/not-found`)
  t.equal(notFound.statusCode, 404, 'a status whose schema is not SSE is answered as usual')
  t.same(await notFound.body.json(), { error: 'no such stream' })

  const pending = request(`${url}/callback`)
  later.resolve()
  t.same(await all((await open(`${url}/callback`)).events), [{ data: '{"n":3}' }], 'a handler may call reply.sse() later')
  await (await pending).body.text()

  t.equal((await request(`${url}/sends`)).statusCode, 404, 'a reply already sent is left alone')
  t.equal(await (await request(`${url}/buffer`)).body.text(), 'data: raw\n\n', 'a Buffer is a body, not a source of items')
  t.equal(await (await request(`${url}/text`)).body.text(), 'data: text\n\n', 'so is a string')
  t.match(await (await request(`${url}/number`)).body.json(), { code: 'FST_SSE_NOT_A_STREAM', message: /it returned number/ }, 'a sync handler too')
  t.match(await (await request(`${url}/null`)).body.json(), { code: 'FST_SSE_NOT_A_STREAM', message: /it returned null/ })
})

t.test('the schema that applies is the one for the reply status, its class, or default', async t => {
  const { app, url } = await startApp(app => {
    app.get('/class', { schema: { response: { '2xx': sseSchema(Tick) } } }, async function * () { yield { data: { n: 1, x: 1 } } })
    app.get('/default', { schema: { response: { default: sseSchema(Tick) } } }, async function * () { yield { data: { n: 2, x: 1 } } })
    app.get('/other', { schema: { response: { 201: sseSchema(Tick) } } }, async function * () { yield { data: { n: 3, x: 1 } } })
    app.get('/json-default', { schema: { response: { 200: sseSchema(Tick), default: Type.Object({ error: Type.String() }) } } }, async (request, reply) => {
      reply.code(500)
      return { error: 'boom' } as never
    })
  })
  t.teardown(() => app.close())
  t.same(await all((await open(`${url}/class`)).events), [{ data: '{"n":1}' }])
  t.same(await all((await open(`${url}/default`)).events), [{ data: '{"n":2}' }])
  t.same(await all((await open(`${url}/other`)).events), [{ data: '{"n":3}' }], 'no schema for 200: the route\'s SSE schema')
  const res = await request(`${url}/json-default`)
  t.equal(res.statusCode, 500)
  t.same(await res.body.json(), { error: 'boom' })
})

t.test('a data schema that is not valid JSON Schema fails at startup, naming the route', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(ssePlugin)
  app.get('/broken', { schema: { response: { 200: sseSchema({ type: 'strnig' }) } } }, async function * () {})
  await t.rejects(async () => { await app.ready() }, { code: 'FST_ERR_SCH_SERIALIZATION_BUILD', message: /GET: \/broken.*type must be equal to one of the allowed values/ })
})

t.test('untyped routes keep JSON.stringify', async t => {
  const { app, url } = await startApp(app => {
    app.get('/plain', (request, reply) => reply.sse([{ data: { n: 1, x: 2 } }]))
    app.get('/plain-schema', { schema: { response: { 200: Type.Object({ n: Type.Number() }) } } }, async () => ({ n: 1, x: 2 }))
  })
  t.teardown(() => app.close())
  const items: Array<SseItem<string>> = await take((await open(`${url}/plain`)).events, 1)
  t.same(items, [{ data: '{"n":1,"x":2}' }])
  t.same(await (await request(`${url}/plain-schema`)).body.json(), { n: 1 }, 'other routes are untouched')
})

t.test('a plain handler on an SSE route reads the stream\'s request.signal, even on POST (fastify#6725)', async t => {
  t.setTimeout(10_000)
  const { app, url } = await startApp(app => {
    const room = app.sse.channel<string>('room')
    app.post('/room', { schema: { response: { 200: sseSchema(Type.String()) } } }, (request, reply) => {
      return reply.sse(room.subscribe({ signal: request.signal })) // read before reply.sse, as users do
    })
  })
  t.teardown(() => app.close())
  const ac = new AbortController()
  const { events } = await open(url + '/room', { method: 'POST', body: '{"join":true}', headers: { 'content-type': 'application/json' }, signal: ac.signal })
  app.sse.channel<string>('room').publish({ data: 'hello' })
  t.match(await take(events, 1), [{ data: 'hello' }], 'the subscription outlived the read of the body')
  ac.abort()
})

t.test('sse-reset reaches a client of a typed route whole, whatever the data schema', async t => {
  t.setTimeout(10_000)
  const { app, url } = await startApp(app => {
    const chat = app.sse.channel<{ text: string }>('typed-chat')
    chat.publish({ data: { text: 'before' } })
    // typed as a user's route is: the subscription, sse-reset item included, is the route's source without a cast
    app.withTypeProvider<TypeBoxTypeProvider>().get('/strict', { schema: { response: { 200: sseSchema(Type.Object({ text: Type.String() })) } } },
      (request, reply) => reply.sse(chat.subscribe({ lastEventId: request.headers['last-event-id'] })))
    app.get('/map', { schema: { response: { 200: sseSchema({ message: Type.Object({ text: Type.String() }) }) } } },
      (request, reply) => reply.sse(chat.subscribe({ lastEventId: request.headers['last-event-id'] }), { validate: true }))
  })
  t.teardown(() => app.close())
  for (const path of ['/strict', '/map']) {
    const { events } = await open(url + path, { headers: { 'last-event-id': 'not-an-id-of-this-channel' } })
    const [reset] = await take(events, 1)
    t.equal(reset?.event, 'sse-reset', path)
    t.same(JSON.parse(reset?.data ?? ''), { reason: 'unknown' }, `${path}: the reason survives the route's serializer`)
  }
})

t.test('isTextSchema: the one rule of what data is on the wire (text, or JSON), $refs followed', async t => {
  const shared: Record<string, unknown> = {
    Name: { type: 'string' },
    Pet: { type: 'object', properties: { name: { type: 'string' }, 'a/b~c': { type: 'string' } } },
    Loop: { $ref: 'Loop' }
  }
  const resolve = refResolver(id => shared[id])
  const text = [
    Type.String(), Type.Literal('a'), Type.Union([Type.Literal('a'), Type.Literal('b')]), { enum: ['a', 'b'] },
    { const: 'a' }, { type: ['string'] }, { oneOf: [{ type: 'string' }, { const: 'x' }] }, { allOf: [{ minLength: 1 }, { type: 'string' }] },
    { $ref: 'Name' }, { $ref: 'Name#' }, { $ref: 'Pet#/properties/name' }, { $ref: 'Pet#/properties/a~1b~0c' }
  ]
  const json = [
    Type.Number(), Type.Object({}), Type.Any(), {}, Type.Union([Type.String(), Type.Null()]), { type: 'string', nullable: true },
    { type: ['string', 'null'] }, { type: [] }, { enum: ['a', 1] }, { enum: [] }, { const: 1 }, { anyOf: [] }, { allOf: [{ minLength: 1 }] },
    { $ref: 'Pet' }, { $ref: 'Missing' }, { $ref: 'Pet#name' }, { $ref: 'Pet#/properties/name/deeper/still' }, { $ref: 'Loop' }, null, 'string'
  ]
  for (const schema of text) t.equal(isTextSchema(schema, resolve), true, `text: ${JSON.stringify(schema)}`)
  for (const schema of json) t.equal(isTextSchema(schema, resolve), false, `JSON: ${JSON.stringify(schema)}`)
  t.equal(isTextSchema({ $ref: 'Name' }), false, 'a $ref with nothing to resolve it: JSON')
})

t.test('sseSchema() refuses options it does not take, naming them', async t => {
  t.throws(() => sseSchema({ type: 'string' }, { descripton: 'x' } as never), {
    code: 'FST_SSE_INVALID_OPTION', field: 'descripton', message: /^sseSchema\(\) option "descripton" is unknown \(its options: description, json\); did you mean "description"\?$/
  })
  t.throws(() => sseSchema({ type: 'string' }, 'x' as never), { code: 'FST_SSE_INVALID_OPTION', field: 'options' })
})
