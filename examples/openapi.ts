// `npx tsx examples/openapi.ts`: typed SSE routes documented with @fastify/swagger and browsable in swagger-ui,
// on http://127.0.0.1:3000/docs (PORT to change it). OPENAPI=3.2.0 documents each event as an OpenAPI 3.2
// `itemSchema` too (swagger-ui may not render 3.2 documents yet; /docs/json shows the document either way).
import Fastify from 'fastify'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { setTimeout as sleep } from 'node:timers/promises'
import ssePlugin, { sseSchema, sseSwaggerTransform } from '../lib/index.js'

const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info' } })
await app.register(swagger, {
  openapi: {
    openapi: process.env.OPENAPI ?? '3.1.0',
    info: { title: 'fastify-typed-sse example', version: '1.0.0', description: 'Typed Server-Sent Events routes' }
  },
  // adds the OpenAPI 3.2 itemSchema to SSE responses when the document is 3.2; a no-op for 3.0 and 3.1
  transform: sseSwaggerTransform
})
await app.register(swaggerUi, { routePrefix: '/docs' })
await app.register(ssePlugin, { heartbeat: 15_000 })

// A shared schema: referenced by $ref from the event map below, documented once under components.
app.addSchema(Type.Object({ user: Type.String(), text: Type.String({ maxLength: 500 }) }, { $id: 'ChatMessage' }))

const typed = app.withTypeProvider<TypeBoxTypeProvider>()

const Tick = Type.Object({ now: Type.String({ format: 'date-time' }), seq: Type.Integer({ minimum: 0 }) })
typed.get('/clock', {
  schema: {
    summary: 'One tick a second',
    tags: ['streams'],
    response: { 200: sseSchema(Tick, { description: 'A tick every second' }) }
  }
}, async function * (request) {
  for (let seq = 0; ; seq++) {
    yield { id: String(seq), event: 'tick', data: { now: new Date().toISOString(), seq } }
    await sleep(1000, undefined, { signal: request.signal })
  }
})

const chatEvents = sseSchema({
  message: Type.Ref('ChatMessage'),
  joined: Type.Object({ user: Type.String() }),
  left: Type.Object({ user: Type.String(), reason: Type.Optional(Type.String()) })
}, { description: 'Chat events: a message, someone joining or leaving' })
typed.get('/chat', {
  schema: { summary: 'Chat room events', tags: ['streams'], response: { 200: chatEvents } }
}, (request, reply) => reply.sse((async function * () {
  yield { event: 'joined', data: { user: 'ann' } }
  yield { event: 'message', data: { user: 'ann', text: 'hello' } }
  yield { event: 'left', data: { user: 'ann', reason: 'done' } }
})()))

typed.get('/logs', {
  schema: { summary: 'Log lines as plain text data', tags: ['streams'], response: { 200: sseSchema(Type.String()) } }
}, async function * () {
  yield { data: 'first line\nsecond line' }
})

const address = await app.listen({ port: Number(process.env.PORT ?? 3000), host: '127.0.0.1' })
app.log.info(`docs: ${address}/docs (Ctrl-C to stop)`)
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => { void app.close() })
}
