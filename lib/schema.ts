// `fastify-typed-sse/schema`: `sseSchema()` and its types without the server, for a module of schemas that a route
// and a browser page share (the main entry would bring Fastify's plugin code into a page's bundle).
export { sseSchema } from './typed/schema.js'
export type {
  JsonSchema, SseControlItem, SseEventItem, SseEventSchemas, SseGenerator, SseItemOf, SseSchema, SseSchemaOptions
} from './typed/schema.js'
