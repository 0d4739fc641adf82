// `npx tsx examples/round-trip.ts`: one schema from end to end. A route streams an event map; its OpenAPI 3.2
// document says what each event carries on the wire; a typed client reads the stream with the route's own
// schema, each event narrowed by its name. It prints the document, then what the client read, one JSON a line.
import Fastify from 'fastify'
import swagger from '@fastify/swagger'
import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import ssePlugin, { sseSchema, sseSwaggerTransform, type SseGenerator } from '../lib/index.js'
import { connect } from '../lib/client/index.js'

// The one schema: the route types its yields with it, the document describes it, the client decodes with it.
export const jobEvents = sseSchema({
  progress: Type.Object({ done: Type.Integer({ minimum: 0 }), total: Type.Integer({ minimum: 1 }) }),
  state: Type.Union([Type.Literal('running'), Type.Literal('finished')]), // text on the wire, not JSON
  log: Type.String()
})

const app = Fastify({ logger: false }).withTypeProvider<TypeBoxTypeProvider>()
await app.register(swagger, {
  openapi: { openapi: '3.2.0', info: { title: 'jobs', version: '1.0.0' } },
  transform: sseSwaggerTransform
})
await app.register(ssePlugin, { validate: true })

app.get('/job', { schema: { response: { 200: jobEvents } } }, async function * (): SseGenerator<typeof jobEvents> {
  yield { event: 'state', data: 'running', id: '0' }
  for (let done = 1; done <= 3; done++) {
    yield { event: 'progress', data: { done, total: 3 }, id: String(done) }
  }
  yield { event: 'log', data: 'all\nthree steps' }
  yield { event: 'state', data: 'finished', id: '4' }
})

const url = await app.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' })
try {
  // the OpenAPI 3.2 document: its itemSchema describes each event of /job as it is on the wire
  console.log(JSON.stringify({ document: app.swagger() }))

  for await (const item of connect(`${url}/job`, { schema: jobEvents, reconnect: false })) {
    // narrowed by `event`: `item.data` has that event's type
    if (item.event === 'progress') console.log(JSON.stringify({ progress: item.data.done / item.data.total }))
    else if (item.event === 'state') console.log(JSON.stringify({ state: item.data }))
    else console.log(JSON.stringify({ log: item.data }))
  }
} finally {
  await app.close()
}
