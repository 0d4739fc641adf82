import type { FastifyInstance, FastifySchema } from 'fastify'
import {
  describeItems, EVENT_STREAM, itemShape, refResolver, routeStreams, wireData, type RefResolver, type SseSchema
} from './schema.js'

// OpenAPI: @fastify/swagger documents an `sseSchema()` response as text/event-stream from its `content` as is
// (3.0, 3.1); this transform adds what OpenAPI 3.2 defines for event streams (a per-event `itemSchema`, and
// `schema` as the whole stream), and documents generator routes without a schema as streams, not JSON.

/** The input @fastify/swagger gives a `transform` (the fields this module reads). */
export interface SwaggerTransformInput {
  schema: FastifySchema
  url: string
  /** The route as it was added: the plugin noted how its `$ref`s resolve and whether its handler is a generator. */
  route?: object
  /** The document being built (absent for Swagger 2.0 documents, which this transform leaves alone). */
  openapiObject?: { openapi?: string }
}

/** What the plugin learns of a route as it is added, for its document. */
interface RouteFacts {
  /** Its instance's shared schemas (`app.addSchema`), behind `$ref`s. */
  readonly resolve: RefResolver
  /** An `async function *` handler: it streams, schema or not. */
  readonly generator: boolean
}

const routeFacts = new WeakMap<object, RouteFacts>()

/** Notes, as a route is added, what its OpenAPI document needs to know of it (read by `sseSwaggerTransform`). */
export function noteRoute (route: object, instance: FastifyInstance, generator: boolean): void {
  routeFacts.set(route, { resolve: refResolver(id => instance.getSchema(id)), generator })
}

/** The minor version of an OpenAPI 3.x document, or undefined for any other document. */
function openapiMinor (version: string | undefined): number | undefined {
  const match = /^3\.(\d+)\./.exec(version ?? '')
  return match === null ? undefined : Number(match[1])
}

/** The response of a generator route with no response schema: untyped events, `data` any text. */
function untypedResponse (minor: number): Record<string, unknown> {
  const item = itemShape({ type: 'string' }, undefined)
  const media = minor >= 2 ? { schema: { type: 'array', items: item }, itemSchema: item } : { schema: item }
  return { 200: { description: 'A stream of Server-Sent Events', content: { [EVENT_STREAM]: media } } }
}

/**
 * A `transform` for @fastify/swagger. In an OpenAPI 3.2 document every `sseSchema()` response gets the 3.2
 * `itemSchema` for `text/event-stream` (each event as the client sees it: `data` the text on the wire, described
 * with `contentMediaType` and `contentSchema` when it is JSON), and its `schema` describes the whole stream: an
 * array of such items. In any 3.x document a generator route without a response schema is documented as a stream
 * of untyped events, not as JSON. Swagger 2.0 documents are left alone. Compose with another transform:
 * `transform: (input) => sseSwaggerTransform({ ...input, ...other(input) })`.
 */
export function sseSwaggerTransform (input: SwaggerTransformInput): { schema: FastifySchema, url: string } {
  const { schema, url, openapiObject, route } = input
  const minor = openapiMinor(openapiObject?.openapi)
  if (minor === undefined) return { schema, url }
  const facts = route === undefined ? undefined : routeFacts.get(route)
  if (facts?.generator === true && (schema?.response === undefined || schema.response === null)) {
    return { schema: { ...schema, response: untypedResponse(minor) }, url }
  }
  const streams = minor >= 2 ? routeStreams(schema) : undefined
  if (streams === undefined) return { schema, url }
  const response = { ...(schema.response as Record<string, unknown>) }
  for (const [status, info] of streams) {
    const original = response[status] as SseSchema<unknown>
    const itemSchema = facts === undefined
      ? info.itemSchema
      : describeItems(info.data, info.events, data => wireData(data, facts.resolve))
    const media = { ...original.content[EVENT_STREAM], schema: { type: 'array', items: itemSchema }, itemSchema }
    response[status] = { ...original, content: { ...original.content, [EVENT_STREAM]: media } }
  }
  return { schema: { ...schema, response }, url }
}
