import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import swagger from '@fastify/swagger'
import { Type } from '@sinclair/typebox'
import { request } from 'undici'
import ssePlugin, { sseSchema, sseSwaggerTransform, type SwaggerTransformInput } from '../../lib/index.js'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { all, open, runExample } from '../helpers.js'
import { sseSchemaInfo } from '../../lib/typed/schema.js'
import { Validator } from '@seriousme/openapi-schema-validator'
import { Ajv2020 } from 'ajv/dist/2020.js'

// Asserted against @fastify/swagger's real output, field by field.

type Json = Record<string, unknown>

const RETRY = { type: 'integer', minimum: 0 }
const ID = { type: 'string' }
const TICK = { type: 'object', required: ['n'], properties: { n: { type: 'number' } } }
const PET = { type: 'object', required: ['name'], properties: { name: { type: 'string' } } }

async function documented (
  version: string | undefined, transform?: (input: SwaggerTransformInput & Json) => { schema: unknown, url: string }
): Promise<{ app: FastifyInstance, doc: Json }> {
  const app = Fastify()
  await app.register(swagger, {
    openapi: { ...(version === undefined ? {} : { openapi: version }), info: { title: 't', version: '1' } },
    ...(transform === undefined ? {} : { transform: transform as never })
  })
  await app.register(ssePlugin)
  app.addSchema(Type.Object({ name: Type.String() }, { $id: 'Pet' }))
  app.get('/clock', { schema: { response: { 200: sseSchema(Type.Object({ n: Type.Number() }), { description: 'ticks' }) } } }, async function * () {})
  app.get('/zoo', {
    schema: { response: { 200: sseSchema({ tick: Type.Object({ n: Type.Number() }), pet: Type.Ref('Pet') }), 404: Type.Object({ error: Type.String() }) } }
  }, async function * () {})
  app.get('/logs', { schema: { response: { 200: sseSchema(Type.String()) } } }, async function * () {})
  app.get('/json', { schema: { response: { 200: Type.Object({ ok: Type.Boolean() }) } } }, async () => ({ ok: true }))
  await app.ready()
  return { app, doc: app.swagger() as unknown as Json }
}

function media (doc: Json, path: string, status = '200'): Json {
  type Responses = Record<string, { description: string, content: Json }>
  const responses = (doc.paths as Record<string, { get: { responses: Responses } }>)[path]?.get.responses
  return responses?.[status]?.content as Json
}

function variant (event: string, data: unknown): Json {
  return { type: 'object', properties: { data, event: { type: 'string', enum: [event] }, id: ID, retry: RETRY }, required: ['event', 'data'] }
}

for (const version of [undefined, '3.0.3', '3.1.0']) {
  t.test(`OpenAPI ${version ?? '(default 3.0.3)'}: text/event-stream with one item as the schema, no itemSchema`, async t => {
    const { app, doc } = await documented(version, sseSwaggerTransform as never)
    t.teardown(() => app.close())
    t.equal(doc.openapi, version ?? '3.0.3')
    const paths = doc.paths as Record<string, { get: { responses: Record<string, { description: string }> } }>
    t.equal(paths['/clock']?.get.responses['200']?.description, 'ticks')
    t.equal(paths['/zoo']?.get.responses['200']?.description, 'A stream of Server-Sent Events')
    t.same(Object.keys(media(doc, '/clock')), ['text/event-stream'], 'only text/event-stream, not application/json')
    t.same(media(doc, '/clock')['text/event-stream'], {
      schema: { type: 'object', properties: { data: TICK, event: { type: 'string' }, id: ID, retry: RETRY }, required: ['data'] }
    })
    t.same(media(doc, '/zoo')['text/event-stream'], {
      schema: { oneOf: [variant('tick', TICK), variant('pet', { $ref: '#/components/schemas/def-0' })] }
    }, 'an event-keyed oneOf (const written as enum by @fastify/swagger\'s default convertConstToEnum)')
    t.same((doc.components as { schemas: Json }).schemas['def-0'], { ...PET, title: 'Pet' }, 'the $ref resolves to the shared schema')
    t.same(media(doc, '/zoo', '404'), { 'application/json': { schema: { type: 'object', required: ['error'], properties: { error: { type: 'string' } } } } },
      'other statuses are documented as usual')
    t.same(media(doc, '/logs')['text/event-stream'], {
      schema: { type: 'object', properties: { data: { type: 'string' }, event: { type: 'string' }, id: ID, retry: RETRY }, required: ['data'] }
    })
    t.same(Object.keys(media(doc, '/json')), ['application/json'])
  })
}

t.test('OpenAPI 3.2.0 with sseSwaggerTransform: itemSchema too, data as a string holding JSON', async t => {
  const { app, doc } = await documented('3.2.0', sseSwaggerTransform as never)
  t.teardown(() => app.close())
  t.equal(doc.openapi, '3.2.0')
  const clockItem = {
    type: 'object',
    properties: { data: { type: 'string', contentMediaType: 'application/json', contentSchema: TICK }, event: { type: 'string' }, id: ID, retry: RETRY },
    required: ['data']
  }
  t.same(media(doc, '/clock')['text/event-stream'], { schema: { type: 'array', items: clockItem }, itemSchema: clockItem },
    'schema: the whole stream, an array of items; itemSchema: one item')
  const zoo = media(doc, '/zoo')['text/event-stream'] as { itemSchema: Json }
  t.same(zoo.itemSchema, {
    oneOf: [
      variant('tick', { type: 'string', contentMediaType: 'application/json', contentSchema: TICK }),
      variant('pet', { type: 'string', contentMediaType: 'application/json', contentSchema: { $ref: '#/components/schemas/def-0' } })
    ]
  }, '$refs inside contentSchema resolve as well')
  t.same((media(doc, '/logs')['text/event-stream'] as { itemSchema: { properties: Json } }).itemSchema.properties.data, { type: 'string' },
    'string data is plain text on the wire: no contentMediaType')
  t.same(Object.keys(media(doc, '/json')), ['application/json'], 'other routes unchanged')
  t.notOk('itemSchema' in (media(doc, '/zoo', '404')['application/json'] as Json))
})

t.test('OpenAPI 3.2.0 without the transform: valid, but no itemSchema (@fastify/swagger 9 does not know it)', async t => {
  const { app, doc } = await documented('3.2.0')
  t.teardown(() => app.close())
  t.same(Object.keys(media(doc, '/clock')['text/event-stream'] as Json), ['schema'])
})

t.test('sseSwaggerTransform composes with another transform and leaves Swagger 2.0 alone', async t => {
  const other = (input: SwaggerTransformInput & Json): { schema: unknown, url: string } => ({ schema: input.schema, url: input.url.replace('/clock', '/renamed') })
  const { app, doc } = await documented('3.2.0', input => sseSwaggerTransform({ ...input, ...other(input) } as SwaggerTransformInput))
  t.teardown(() => app.close())
  t.ok((media(doc, '/renamed')['text/event-stream'] as Json).itemSchema)
  const schema = { response: { 200: sseSchema(Type.Number()) } }
  t.equal(sseSwaggerTransform({ schema, url: '/x' }).schema, schema, 'no openapiObject: unchanged')
  t.equal(sseSwaggerTransform({ schema, url: '/x', openapiObject: {} }).schema, schema, 'no version: unchanged')
  const noSse = { response: { 200: Type.Number() } }
  t.equal(sseSwaggerTransform({ schema: noSse, url: '/x', openapiObject: { openapi: '3.2.0' } }).schema, noSse)
  t.equal(sseSwaggerTransform({ schema: {}, url: '/x', openapiObject: { openapi: '3.2.0' } }).schema.response, undefined)
  const item = (sseSwaggerTransform({ schema, url: '/x', openapiObject: { openapi: '3.2.0' } }).schema.response as Json)['200'] as Json
  t.same((item.content as Json)['text/event-stream'], {
    schema: { type: 'array', items: sseSchemaInfo(schema.response[200])?.itemSchema },
    itemSchema: sseSchemaInfo(schema.response[200])?.itemSchema
  }, 'a route the plugin did not see: the item schema sseSchema() made')
})

t.test('examples/openapi.ts serves the JSON and swagger-ui, and its routes stream', async t => {
  for (const version of ['3.1.0', '3.2.0']) {
    const url = await runExample(t, 'examples/openapi.ts', { OPENAPI: version })

    const json = await request(`${url}/docs/json`)
    t.equal(json.statusCode, 200)
    const doc = await json.body.json() as Json
    t.equal(doc.openapi, version)
    t.same(Object.keys(doc.paths as Json).sort(), ['/chat', '/clock', '/logs'], 'the SSE routes, and not the docs routes')
    const chat = media(doc, '/chat')['text/event-stream'] as { schema: { oneOf?: Json[], items?: { oneOf: Json[] } }, itemSchema?: Json }
    t.same((chat.schema.oneOf ?? chat.schema.items?.oneOf)?.map(v => (v.properties as { event: { enum: string[] } }).event.enum[0]), ['message', 'joined', 'left'])
    t.equal(chat.itemSchema !== undefined, version === '3.2.0', 'itemSchema only in 3.2')
    t.match((doc.components as { schemas: Json }).schemas, { 'def-0': { title: 'ChatMessage' } })

    const ui = await request(`${url}/docs`)
    t.equal(ui.statusCode, 200, 'the swagger-ui page answers')
    t.match(ui.headers['content-type'], /text\/html/)
    t.match(await ui.body.text(), /swagger-ui/)
    const init = await request(`${url}/docs/static/swagger-initializer.js`)
    t.match(await init.body.text(), /SwaggerUIBundle/, 'and loads the document')

    t.same(await all((await open(`${url}/chat`)).events), [
      { event: 'joined', data: '{"user":"ann"}' },
      { event: 'message', data: '{"user":"ann","text":"hello"}' },
      { event: 'left', data: '{"user":"ann","reason":"done"}' }
    ])
    t.same(await all((await open(`${url}/logs`)).events), [{ data: 'first line\nsecond line' }])
    const clock = await open(`${url}/clock`)
    const first = await clock.events.next()
    t.match(first.value, { id: '0', event: 'tick', data: /^\{"now":"\d{4}-.*","seq":0\}$/ })
    await clock.events.return?.()
  }
})

/** An app documenting every kind of SSE route, as a user's would. */
async function fullApp (version: string): Promise<{ app: FastifyInstance, doc: Json, url: string }> {
  const app = Fastify()
  await app.register(swagger, { openapi: { openapi: version, info: { title: 't', version: '1' } }, transform: sseSwaggerTransform as never })
  await app.register(ssePlugin, { validate: true })
  app.addSchema(Type.Object({ name: Type.String() }, { $id: 'Pet' }))
  app.addSchema(Type.String({ $id: 'Name' }))
  const feed = sseSchema({
    state: Type.Union([Type.Literal('up'), Type.Literal('down')]),
    level: Type.Unsafe<'low' | 'high'>({ type: 'string', enum: ['low', 'high'] }),
    pet: Type.Ref('Pet'),
    name: Type.Ref('Name'),
    count: Type.Union([Type.Number(), Type.String()])
  })
  app.get('/feed', { schema: { response: { 200: feed } } }, async function * () {
    yield { event: 'state' as const, data: 'up' as const, id: '1' }
    yield { event: 'level' as const, data: 'high' as const }
    yield { event: 'pet' as const, data: { name: 'rex' }, retry: 100 }
    yield { event: 'name' as const, data: 'ann' }
    yield { event: 'count' as const, data: 3 }
    yield { event: 'count' as const, data: 'three' }
  })
  app.get('/untyped', async function * () { yield { data: 'hi' } })
  app.get('/plain', async () => 'not a stream')
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address() as { port: number }
  return { app, doc: app.swagger() as unknown as Json, url: `http://127.0.0.1:${address.port}` }
}

for (const version of ['3.0.3', '3.1.0', '3.2.0']) {
  t.test(`OpenAPI ${version}: the document is valid (an independent validator) and a generator route is a stream`, async t => {
    const { app, doc } = await fullApp(version)
    t.teardown(() => app.close())
    const result = await new Validator().validate(doc)
    t.same(result, { valid: true }, 'valid by @seriousme/openapi-schema-validator')
    const untyped = (doc.paths as Record<string, { get: { responses: Record<string, { description: string, content: Json }> } }>)['/untyped']!.get.responses
    t.same(Object.keys(untyped), ['200'])
    t.equal(untyped['200']!.description, 'A stream of Server-Sent Events', 'not "Default Response"')
    t.same(Object.keys(untyped['200']!.content), ['text/event-stream'], 'not application/json')
    t.notMatch(JSON.stringify((doc.paths as Json)['/plain']), /event-stream/, 'a plain route with no schema is left alone')
  })
}

t.test('OpenAPI 3.2: what the document says each item is, each live item is, and string data is text', async t => {
  const { app, doc, url } = await fullApp('3.2.0')
  t.teardown(() => app.close())
  const feed = media(doc, '/feed')['text/event-stream'] as { schema: Json, itemSchema: { oneOf: Array<{ properties: { data: Json } }> } }
  const data = feed.itemSchema.oneOf.map(variant => variant.properties.data)
  t.same(data.slice(0, 2), [
    { anyOf: [{ type: 'string', enum: ['up'] }, { type: 'string', enum: ['down'] }] },
    { type: 'string', enum: ['low', 'high'] }
  ], 'a union or enum of strings is text on the wire, documented as such')
  t.same(data[2], { type: 'string', contentMediaType: 'application/json', contentSchema: { $ref: '#/components/schemas/def-0' } })
  t.match(data[3], { $ref: String }, 'a $ref to a shared string schema: text, not JSON')
  t.same(data[4], { type: 'string', contentMediaType: 'application/json', contentSchema: { anyOf: [{ type: 'number' }, { type: 'string' }] } },
    'a schema admitting strings and more: JSON, a string value too')
  t.same(feed.schema, { type: 'array', items: feed.itemSchema })

  // the live items, checked against the document's own itemSchema (and their JSON data against its contentSchema)
  const ajv = new Ajv2020({ strict: false })
  ajv.addSchema({ $id: 'doc.json', components: doc.components })
  const rebase = (schema: unknown): unknown => JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', '"doc.json#/components/'))
  const checkItem = ajv.compile(rebase(feed.itemSchema) as Json)
  const items = await all((await open(`${url}/feed`)).events)
  t.same(items.map(item => item.data), ['up', 'high', '{"name":"rex"}', 'ann', '3', '"three"'], 'strings as text only where the schema is a string one')
  for (const item of items) {
    t.ok(checkItem(item), `${item.event} item matches the itemSchema: ${JSON.stringify(checkItem.errors)}`)
    const eventOf = (v: { properties: unknown }): string | undefined =>
      (v.properties as { event: { enum?: string[] } }).event.enum?.[0]
    const variant = feed.itemSchema.oneOf.find(v => eventOf(v) === item.event)!
    const content = variant.properties.data.contentSchema
    if (content !== undefined) t.ok(ajv.validate(rebase(content) as Json, JSON.parse(item.data as string)), `${item.event} data matches its contentSchema`)
  }
})

t.test('an event-map route refuses, with validate, an item without an event (its itemSchema requires one)', async t => {
  const app = Fastify()
  await app.register(ssePlugin, { validate: true })
  app.get('/map', { schema: { response: { 200: sseSchema({ message: Type.Object({ n: Type.Number() }) }) } } }, async function * () {
    yield { event: 'message' as const, data: { n: 1 } }
    yield { data: { n: 2 } } as never
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const { port } = app.server.address() as { port: number }
  t.same(await all((await open(`http://127.0.0.1:${port}/map`)).events), [{ event: 'message', data: '{"n":1}' }],
    'the event-less item is refused: nothing of it is written, the stream ends')
})

t.test('examples/round-trip.ts: event map route, its OpenAPI 3.2 document, a typed client reading it', async t => {
  const root = fileURLToPath(new URL('../..', import.meta.url))
  const run = spawn(process.execPath, ['--import', 'tsx', 'examples/round-trip.ts'], {
    cwd: root, env: { ...process.env, _TAPJS_PROCESSINFO_COVERAGE_: '0' }, stdio: ['ignore', 'pipe', 'inherit'], timeout: 30_000
  })
  const lines: Json[] = []
  for await (const line of createInterface({ input: run.stdout })) lines.push(JSON.parse(line) as Json)
  const [code] = await once(run, 'exit') as [number | null]
  t.equal(code, 0)
  const [first, ...read] = lines
  const doc = (first as { document: Json }).document
  t.same(await new Validator().validate(doc), { valid: true }, 'a valid OpenAPI 3.2 document')
  const job = media(doc, '/job')['text/event-stream'] as { itemSchema: { oneOf: Array<{ properties: { data: Json } }> } }
  t.same(job.itemSchema.oneOf.map(variant => variant.properties.data.type), ['string', undefined, 'string'])
  t.equal(job.itemSchema.oneOf[0]?.properties.data.contentMediaType, 'application/json', 'progress: JSON')
  t.same(job.itemSchema.oneOf[1]?.properties.data, { anyOf: [{ type: 'string', enum: ['running'] }, { type: 'string', enum: ['finished'] }] },
    'state: text')
  t.same(read, [
    { state: 'running' },
    { progress: 1 / 3 },
    { progress: 2 / 3 },
    { progress: 1 },
    { log: 'all\nthree steps' },
    { state: 'finished' }
  ], 'the client read every event, each decoded by its own schema')
})
