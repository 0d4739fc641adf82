import t from 'tap'
import Fastify from 'fastify'
import swagger from '@fastify/swagger'
import { Type } from '@sinclair/typebox'
import { request } from 'undici'
import { Validator } from '@seriousme/openapi-schema-validator'
import ssePlugin, { sseSchema, sseSwaggerTransform } from '../lib/index.js'
import { connect } from '../lib/client/index.js'
import { acceptsJson } from '../lib/reply.js'
import { startApp, take, within } from './helpers.js'

// Dual routes: `config.sse.json` answers JSON to a client whose Accept rules out text/event-stream (instead of a
// 406), before the handler runs; `sseSchema(data, { json })` documents and serializes that second media type.

const Price = Type.Object({ symbol: Type.String(), cents: Type.Integer() })
const prices = sseSchema(Price, { json: Type.Array(Price) })

t.test('one route, two answers: a stream for an event-stream client, JSON for one that takes only JSON', async t => {
  t.setTimeout(10_000)
  let streams = 0
  let answers = 0
  const { app, url } = await startApp(app => {
    app.get('/prices', {
      schema: { response: { 200: prices } },
      config: {
        sse: {
          heartbeat: 1000,
          json: async () => {
            answers++
            return [{ symbol: 'ACME', cents: 1250, internal: 'stripped by the schema' }]
          }
        }
      }
    }, async function * (request) {
      streams++
      yield { id: '1', data: { symbol: 'ACME', cents: 1250 } }
      await new Promise(resolve => request.signal.addEventListener('abort', resolve))
    })
    app.get('/streams-only', async function * () { yield { data: 1 } })
  }, {}, { forceCloseConnections: true })
  t.teardown(() => app.close())

  const json = await request(`${url}/prices`, { headers: { accept: 'application/json' } })
  t.equal(json.statusCode, 200)
  t.equal(json.headers['content-type'], 'application/json; charset=utf-8')
  t.same(await json.body.json(), [{ symbol: 'ACME', cents: 1250 }], 'serialized by the json schema: no extra field')
  t.equal(streams, 0, 'the handler did not run: no stream was started for it')

  for (const accept of ['application/json, text/event-stream;q=0', 'application/*', 'text/html, */*;q=0.1, text/event-stream;q=0']) {
    const res = await request(`${url}/prices`, { headers: { accept } })
    t.equal(res.headers['content-type'], 'application/json; charset=utf-8', accept)
    await res.body.dump()
  }
  const html = await request(`${url}/prices`, { headers: { accept: 'text/html' } })
  t.equal(html.statusCode, 406, 'neither: 406, as before')
  await html.body.dump()
  t.equal(answers, 4)

  const controller = new AbortController()
  const events = connect(`${url}/prices`, { schema: Price, signal: controller.signal })
  t.same(await within(take(events, 1), 5000, 'the stream'), [{ id: '1', data: { symbol: 'ACME', cents: 1250 } }], 'connect() still streams')
  controller.abort()
  t.equal(streams, 1)

  const other = await request(`${url}/streams-only`, { headers: { accept: 'application/json' } })
  t.equal(other.statusCode, 406, 'a route without json: 406')
  await other.body.dump()
})

t.test('the answer may set its own status or send itself; a failure is the route\'s error; route hooks run first', async t => {
  t.setTimeout(10_000)
  const { app, url } = await startApp(app => {
    app.get('/missing', { config: { sse: { json: (_request, reply) => reply.code(404).send({ error: 'no such feed' }) } } }, async function * () {})
    app.get('/created', { config: { sse: { json: (_request, reply) => { reply.code(202); return { queued: true } } } } }, async function * () {})
    app.get('/broken', { config: { sse: { json: () => { throw new Error('snapshot failed') } } } }, async function * () {})
    app.get('/guarded', {
      preHandler: async (request, reply) => { if (request.headers.authorization === undefined) await reply.code(401).send({ error: 'who?' }) },
      config: { sse: { json: () => ({ secret: 42 }) } }
    }, async function * () {})
    app.get('/hooked', {
      preHandler: [async (request) => { request.headers['x-seen'] = 'yes' }],
      config: { sse: { json: (request) => ({ seen: request.headers['x-seen'] }) } }
    }, async function * () {})
  })
  t.teardown(() => app.close())
  const get = async (path: string, headers: Record<string, string> = {}) => {
    const res = await request(`${url}${path}`, { headers: { accept: 'application/json', ...headers } })
    return [res.statusCode, await res.body.json()]
  }
  t.same(await get('/missing'), [404, { error: 'no such feed' }])
  t.same(await get('/created'), [202, { queued: true }])
  t.match(await get('/broken'), [500, { message: 'snapshot failed' }])
  t.same(await get('/guarded'), [401, { error: 'who?' }], "the route's own preHandler (its auth) runs before the answer")
  t.same(await get('/guarded', { authorization: 'yes' }), [200, { secret: 42 }])
  t.same(await get('/hooked'), [200, { seen: 'yes' }], 'after a list of preHandler hooks too')
})

t.test('config.sse is checked when the route is declared, json included', async t => {
  const app = Fastify()
  await app.register(ssePlugin)
  t.teardown(() => app.close())
  t.throws(() => app.get('/a', { config: { sse: { json: 'snapshot' as never } } }, async function * () {}), {
    code: 'FST_SSE_INVALID_OPTION',
    field: 'json',
    message: 'route GET /a (config.sse) option "json" must be a function (request, reply) => the JSON answer, got "snapshot" (string)'
  })
  t.throws(() => app.get('/b', { config: { sse: { jsn: () => 1 } as never } }, async function * () {}), {
    field: 'jsn',
    message: /is not an option of route GET \/b \(config.sse\) \(its options: heartbeat, retry, retryJitter, writeTimeout, serialize, validate, headersDelay, onError, json\); did you mean "json"\?$/
  })
  t.throws(() => app.get('/c', { config: { sse: null as never } }, async function * () {}), { field: 'options', message: /^route GET \/c \(config.sse\) option "options" must be an object/ })
  t.throws(() => sseSchema(Price, { json: 'array' as never }), { code: 'FST_SSE_INVALID_SCHEMA', message: /the json option must be a JSON Schema object, got string/ })
})

t.test('acceptsJson: the same rule as for the stream', async t => {
  for (const [accept, takes] of [
    [undefined, true], ['', true], ['application/json', true], ['application/*', true], ['*/*', true],
    ['text/html', false], ['application/json;q=0', false], ['application/json;q=0, */*', false], ['*/*;q=0, application/json;q=0.5', true]
  ] as const) {
    t.equal(acceptsJson(accept), takes, String(accept))
  }
})

t.test('OpenAPI: a dual route is documented with both media types, in 3.1 and in 3.2', async t => {
  for (const version of ['3.1.0', '3.2.0']) {
    const app = Fastify()
    await app.register(swagger, { openapi: { openapi: version, info: { title: 't', version: '1' } }, transform: sseSwaggerTransform })
    await app.register(ssePlugin)
    app.get('/prices', { schema: { response: { 200: prices } }, config: { sse: { json: () => [] } } }, async function * () {})
    await app.ready()
    type Responses = Record<string, { content: Record<string, { schema: unknown }> }>
    const doc = app.swagger() as unknown as { paths: Record<string, { get: { responses: Responses } }> }
    const content = doc.paths['/prices']!.get.responses['200']!.content
    t.same(Object.keys(content).sort(), ['application/json', 'text/event-stream'], version)
    t.same(content['application/json']!.schema, {
      type: 'array',
      items: { type: 'object', required: ['symbol', 'cents'], properties: { symbol: { type: 'string' }, cents: { type: 'integer' } } }
    })
    if (version === '3.1.0') {
      const result = await new Validator().validate(doc as never)
      t.equal(result.valid, true, `a valid ${version} document`)
    }
    await app.close()
  }
})
