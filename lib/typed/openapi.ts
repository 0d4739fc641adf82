import type { FastifySchema } from 'fastify'
import { EVENT_STREAM, routeStreams, type SseSchema } from './schema.js'

// OpenAPI: @fastify/swagger documents an `sseSchema()` response as text/event-stream from its `content` as is
// (3.0, 3.1); this transform adds the per-event `itemSchema` that OpenAPI 3.2 defines for event streams.

/** The input @fastify/swagger gives a `transform` (the fields this module reads). */
export interface SwaggerTransformInput {
  schema: FastifySchema
  url: string
  /** The document being built (absent for Swagger 2.0 documents, which this transform leaves alone). */
  openapiObject?: { openapi?: string }
}

function supportsItemSchema (version: string | undefined): boolean {
  const match = /^3\.(\d+)\./.exec(version ?? '')
  return match !== null && Number(match[1]) >= 2
}

/**
 * A `transform` for @fastify/swagger: in an OpenAPI 3.2 document, every `sseSchema()` response also gets the
 * `itemSchema` of the 3.2 spec for `text/event-stream` (each event as the client sees it: `data` the string on the
 * wire, described with `contentMediaType` and `contentSchema` when it is JSON). Other versions are unchanged.
 * Compose with another transform: `transform: (input) => sseSwaggerTransform({ ...input, ...other(input) })`.
 */
export function sseSwaggerTransform (input: SwaggerTransformInput): { schema: FastifySchema, url: string } {
  const { schema, url, openapiObject } = input
  const streams = supportsItemSchema(openapiObject?.openapi) ? routeStreams(schema) : undefined
  if (streams === undefined) return { schema, url }
  const response = { ...(schema.response as Record<string, unknown>) }
  for (const [status, info] of streams) {
    const original = response[status] as SseSchema<unknown>
    const media = original.content[EVENT_STREAM]
    const content = { ...original.content, [EVENT_STREAM]: { ...media, itemSchema: info.itemSchema } }
    response[status] = { ...original, content }
  }
  return { schema: { ...schema, response }, url }
}
