import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import swagger from '@fastify/swagger'
import { Type } from '@sinclair/typebox'
import { request } from 'undici'
import ssePlugin, { sseSchema, sseSwaggerTransform, type SwaggerTransformInput } from '../../lib/index.js'
import { all, open, runExample } from '../helpers.js'

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
  t.same(media(doc, '/clock')['text/event-stream'], {
    schema: { type: 'object', properties: { data: TICK, event: { type: 'string' }, id: ID, retry: RETRY }, required: ['data'] },
    itemSchema: {
      type: 'object',
      properties: { data: { type: 'string', contentMediaType: 'application/json', contentSchema: TICK }, event: { type: 'string' }, id: ID, retry: RETRY },
      required: ['data']
    }
  })
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
})

t.test('examples/openapi.ts serves the JSON and swagger-ui, and its routes stream', async t => {
  for (const version of ['3.1.0', '3.2.0']) {
    const url = await runExample(t, 'examples/openapi.ts', { OPENAPI: version })

    const json = await request(`${url}/docs/json`)
    t.equal(json.statusCode, 200)
    const doc = await json.body.json() as Json
    t.equal(doc.openapi, version)
    t.same(Object.keys(doc.paths as Json).sort(), ['/chat', '/clock', '/logs'], 'the SSE routes, and not the docs routes')
    const chat = media(doc, '/chat')['text/event-stream'] as { schema: { oneOf: Json[] }, itemSchema?: Json }
    t.same(chat.schema.oneOf.map(v => (v.properties as { event: { enum: string[] } }).event.enum[0]), ['message', 'joined', 'left'])
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
