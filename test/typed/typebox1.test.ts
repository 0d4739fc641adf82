import t from 'tap'
import Fastify from 'fastify'
import swagger from '@fastify/swagger'
import { Type } from 'typebox'
import { Type as SinclairType } from '@sinclair/typebox'
import { type TypeBoxTypeProvider } from 'type-provider-typebox-6'
import ssePlugin, { sseSchema, sseSwaggerTransform } from '../../lib/index.js'
import { connect } from '../../lib/client/index.js'
import { collect } from '../../lib/testing.js'
import { sseSchemaInfo, typeBoxOf } from '../../lib/typed/schema.js'
import { all, ERROR, open, startApp } from '../helpers.js'

// The schemas of typebox 1.x (what `npm i typebox` and @fastify/type-provider-typebox 6 give today) do at run
// time all that those of @sinclair/typebox 0.34 do: the other tests use 0.34, these the same paths with 1.x.

const Tick = Type.Object({ n: Type.Number() })
const TICK = { type: 'object', required: ['n'], properties: { n: { type: 'number' } } }
const ITEM = { type: 'object', properties: { data: TICK, event: { type: 'string' }, id: { type: 'string' }, retry: { type: 'integer', minimum: 0 } }, required: ['data'] }

t.test('typeBoxOf tells the TypeBox of a schema by the marks it leaves, none of them in its JSON', async t => {
  t.equal(typeBoxOf(Tick), 'typebox1')
  t.equal(typeBoxOf(Type.Unsafe<number>({ type: 'number' })), 'typebox1', 'Type.Unsafe has no ~kind, but ~unsafe')
  t.equal(typeBoxOf(SinclairType.Object({})), 'sinclair')
  t.equal(typeBoxOf({ type: 'object' }), undefined)
  t.equal(typeBoxOf(null), undefined)
  t.equal(JSON.stringify(Tick), JSON.stringify(TICK), 'no ~kind in the JSON')
})

t.test('sseSchema() with typebox 1.x schemas: data schema or event map, plain JSON Schema in the response', async t => {
  const schema = sseSchema(Tick)
  t.same(JSON.parse(JSON.stringify(schema.content['text/event-stream'].schema)), ITEM)
  t.same(Object.keys(schema.content['text/event-stream'].schema), ['type', 'properties', 'required'],
    'the TypeBox fields of its type are phantom: none exists')
  t.equal(sseSchemaInfo(schema)?.data, Tick)
  const map = sseSchema({ type: Type.Number(), title: Type.String(), raw: Type.Unsafe<string>({ type: 'string' }) })
  t.same(Object.keys(sseSchemaInfo(map)?.events ?? {}), ['type', 'title', 'raw'],
    'a map of typebox 1.x schemas is a map, even with events named like keywords')
})

t.test('a route typed with provider 6 streams through the compiled serializer; validate checks with 1.x', async t => {
  const { app, url, logs } = await startApp(async app => {
    const typed = app.withTypeProvider<TypeBoxTypeProvider>()
    typed.get('/ticks', { schema: { response: { 200: sseSchema(Tick) } } }, async function * () {
      yield { id: '1', data: { n: 1, secret: 'x' } as { n: number } } // the compiled serializer drops `secret`
    })
    typed.get('/text', { schema: { response: { 200: sseSchema(Type.String()) } } }, function * () {
      yield { data: '"as is"' }
    })
    typed.get('/moves', { schema: { response: { 200: sseSchema({ move: Type.Object({ x: Type.Number() }) }) } } }, () => [
      { event: 'move' as const, data: { x: 1, y: 2 } as { x: number } }
    ])
    typed.get('/checked', {
      schema: { response: { 200: sseSchema(Tick) } },
      config: { sse: { validate: true } }
    }, (request, reply) => reply.sse([{ data: { n: 1 } }, { data: { n: 'two' } as never }]))
  })
  t.teardown(() => app.close())
  t.same(await all((await open(`${url}/ticks`)).events), [{ id: '1', data: '{"n":1}' }])
  t.same(await all((await open(`${url}/text`)).events), [{ data: '"as is"' }], 'a string schema: the text itself')
  t.same(await all((await open(`${url}/moves`)).events), [{ event: 'move', data: '{"x":1}' }], 'an array of a map route')
  t.same(await all((await open(`${url}/checked`)).events), [{ data: '{"n":1}' }], 'nothing of the bad item')
  const line = await logs.waitFor(l => l.level === ERROR)
  t.match(line.err?.message, /SSE item field "data" does not match the schema of route GET \/checked: \/n must be number/)
})

t.test('OpenAPI 3.0, 3.1 and 3.2 of typebox 1.x schemas: the same documents, nothing of TypeBox in them', async t => {
  for (const version of ['3.0.3', '3.1.0', '3.2.0']) {
    const app = Fastify()
    await app.register(swagger, { openapi: { openapi: version, info: { title: 't', version: '1' } }, transform: sseSwaggerTransform })
    await app.register(ssePlugin)
    app.get('/clock', { schema: { response: { 200: sseSchema(Tick) } } }, async function * () {})
    await app.ready()
    type Responses = Record<string, { content: Record<string, unknown> }>
    const doc = app.swagger() as unknown as { paths: Record<string, { get: { responses: Responses } }> }
    const media = doc.paths['/clock']?.get.responses['200']?.content['text/event-stream']
    const item = { ...ITEM, properties: { ...ITEM.properties, data: { type: 'string', contentMediaType: 'application/json', contentSchema: TICK } } }
    t.same(media, version === '3.2.0' ? { schema: { type: 'array', items: item }, itemSchema: item } : { schema: ITEM }, version)
    t.notMatch(JSON.stringify(doc), /~kind|~unsafe|static|params/, `${version}: no TypeBox field`)
    await app.close()
  }
})

t.test('the client checks data with typebox 1.x, $refs among the references by their $id', async t => {
  const Pet = Type.Object({ name: Type.String() }, { $id: 'Pet' })
  const feed = sseSchema({ tick: Tick, pet: Type.Ref('Pet') })
  const app = Fastify()
  await app.register(ssePlugin, { heartbeat: false })
  app.addSchema(Pet)
  app.get('/feed', { schema: { response: { 200: feed } } }, () => [
    { event: 'tick' as const, data: { n: 1 } },
    { event: 'pet' as const, data: { name: 'rex' } }
  ])
  app.get('/bad', async function * () { yield { event: 'tick', data: { n: 'one' } } })
  t.teardown(() => app.close())
  t.same(await collect(app, { url: '/feed', schema: feed, references: [Pet] }), [
    { event: 'tick', data: { n: 1 } },
    { event: 'pet', data: { name: 'rex' } }
  ])
  await t.rejects(collect(app, { url: '/bad', schema: feed, references: [Pet] }),
    { code: 'FST_SSE_CLIENT_DATA', message: /^"tick" event does not match the schema: data\/n must be number$/ })
  await t.rejects(collect(app, { url: '/bad', schema: Type.Object({ n: Type.Number() }) }),
    { code: 'FST_SSE_CLIENT_DATA', message: /does not match the schema: data\/n must be number$/ }, 'a data schema')
  await t.rejects(collect(app, { url: '/bad', schema: Type.Number() }),
    { message: /does not match the schema: data must be number$/ }, 'the root: "data"')

  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const events = connect(`${url}/feed`, { schema: feed, references: [Pet], reconnect: false })
  t.same((await events.next()).value, { event: 'tick', data: { n: 1 } }, 'connect() too')
  await events.return()
})
