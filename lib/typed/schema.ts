import { Type, type Static, type TSchema, type TUnsafe } from '@sinclair/typebox'
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchema, RouteHandlerMethod, RouteOptions } from 'fastify'
import { invalidItem, SseError } from '../errors.js'
import { isSource, streamController, type ItemHook } from '../stream.js'
import type { SseItem, SseSerializer } from '../types.js'

// Typed streams: `sseSchema()` builds a response schema that documents a route as text/event-stream, types what
// its handler may yield, and tells the plugin which serializer (and, with `validate`, which check) fits each item.

/** Marks the response schemas built by `sseSchema()`; `Symbol.for` so two copies of the package agree. */
export const kSseSchema: unique symbol = Symbol.for('fastify-typed-sse.schema') as never

/** The media type of every SSE response. */
export const EVENT_STREAM = 'text/event-stream'

/**
 * What a route with an SSE response schema may produce: an async iterable (an async generator) of its items,
 * or the reply that `reply.sse()` returns. It is the `Static` of the schema, and the `Reply` of a route generic.
 */
export type SseStream<Item> = AsyncIterable<Item> | FastifyReply

/** An item with no event and no data (a comment, an id or a retry on its own): allowed on every typed stream. */
export interface SseControlItem {
  comment?: string
  id?: string
  retry?: number
  event?: undefined
  data?: undefined
}

/** A map of event names to data schemas, for `sseSchema({ tick: Type.Object(...), ... })`. */
export type SseEventSchemas = Record<string, TSchema>

/** The item type of an event map: a union discriminated on `event`. */
export type SseEventItem<M extends SseEventSchemas> = {
  [K in keyof M & string]: Omit<SseItem<Static<M[K]>>, 'event'> & { event: K }
}[keyof M & string]

/** The item type of a route whose response schema is `S` (built by `sseSchema`). */
export type SseItemOf<S> = S extends SseSchema<infer Item> ? Item : never

/** The item type `reply.sse()` accepts given a reply type: the route's items when it is a typed SSE route. */
export type SseItemOfReply<R> = R extends AsyncIterable<infer Item> ? Item : never

/** The `text/event-stream` response schema built by `sseSchema()`. */
export interface SseSchema<Item> {
  description: string
  content: { 'text/event-stream': { schema: TUnsafe<SseStream<Item>> } }
  readonly [kSseSchema]: SseSchemaInfo
}

export interface SseSchemaOptions {
  /** The response's description in the OpenAPI document. Default: "A stream of Server-Sent Events". */
  description?: string
}

/** A JSON Schema object (a TypeBox schema is one). */
export type JsonSchema = Record<string, unknown>

/** What the plugin and the OpenAPI transform read from an SSE response schema. */
export interface SseSchemaInfo {
  /** One data schema for every item (`sseSchema(data)`), or undefined for an event map. */
  readonly data: JsonSchema | undefined
  /** The event map (`sseSchema({ name: data })`), or undefined. */
  readonly events: Readonly<Record<string, JsonSchema>> | undefined
  /** The OpenAPI 3.2 `itemSchema`: data as the string it is on the wire, with its JSON described as content. */
  readonly itemSchema: Record<string, unknown>
}

// The names of JSON Schema keywords: an object with one of them is a data schema, not an event map (unless all
// its values are TypeBox schemas: then it is a map, and an event may be called `type` or `title`).
const KEYWORDS = new Set([
  '$id', '$ref', '$schema', '$defs', 'definitions', 'type', 'properties', 'items', 'enum', 'const', 'anyOf', 'oneOf',
  'allOf', 'not', 'if', 'then', 'else', 'additionalProperties', 'patternProperties', 'required', 'format', 'pattern',
  'minimum', 'maximum', 'minLength', 'maxLength', 'title', 'description', 'default', 'examples', 'nullable'
])
const TYPEBOX_KIND = Symbol.for('TypeBox.Kind')

function isTypeBox (value: unknown): boolean {
  return typeof value === 'object' && value !== null && TYPEBOX_KIND in value
}

function isDataSchema (value: object): boolean {
  if (isTypeBox(value)) return true
  const keys = Object.keys(value)
  if (keys.length === 0) return true
  if (Object.values(value).every(isTypeBox)) return false
  return keys.some(key => KEYWORDS.has(key))
}

function checkSchema (schema: unknown, what: string): JsonSchema {
  if (schema === null || typeof schema !== 'object' || Array.isArray(schema)) {
    throw new SseError('FST_SSE_INVALID_SCHEMA', 'schema', `sseSchema(): ${what} must be a JSON Schema object, got ${schema === null ? 'null' : Array.isArray(schema) ? 'an array' : typeof schema}`)
  }
  return schema as JsonSchema
}

const RETRY = { type: 'integer', minimum: 0 }
const ID = { type: 'string' }

/** The 3.2 `data` field: strings as they are; anything else is JSON text whose parsed value has the schema. */
function wireData (schema: JsonSchema): JsonSchema {
  return schema.type === 'string' ? schema : { type: 'string', contentMediaType: 'application/json', contentSchema: schema }
}

function itemShape (data: JsonSchema, event: string | undefined): Record<string, unknown> {
  return {
    type: 'object',
    properties: { data, event: event === undefined ? { type: 'string' } : { type: 'string', const: event }, id: ID, retry: RETRY },
    required: event === undefined ? ['data'] : ['event', 'data']
  }
}

function describeItems (data: JsonSchema | undefined, events: Record<string, JsonSchema> | undefined, field: (s: JsonSchema) => JsonSchema): Record<string, unknown> {
  if (events === undefined) return itemShape(field(data as JsonSchema), undefined)
  return { oneOf: Object.entries(events).map(([name, schema]) => itemShape(field(schema), name)) }
}

/** The event names a client can tell apart: no CR or LF (they would end the `event:` line), not empty. */
function checkEventName (name: string): void {
  if (name === '' || /[\r\n]/.test(name)) {
    throw new SseError('FST_SSE_INVALID_SCHEMA', 'event', `sseSchema(): event name ${JSON.stringify(name)} is not a valid SSE event name (it must be non-empty, without CR or LF)`)
  }
}

/**
 * A `schema.response[200]` for a route that streams Server-Sent Events whose `data` has the given schema, or,
 * given a map of event names to data schemas, a union of events discriminated on `event`. It documents the route
 * as `text/event-stream` in OpenAPI, types what the handler yields or passes to `reply.sse()`, and gives the
 * plugin the data schemas it compiles serializers (and, with `validate: true`, checks) from.
 */
export function sseSchema<D extends TSchema> (data: D, options?: SseSchemaOptions): SseSchema<SseItem<Static<D>>>
export function sseSchema<M extends SseEventSchemas> (events: M, options?: SseSchemaOptions): SseSchema<SseEventItem<M> | SseControlItem>
export function sseSchema (schema: JsonSchema, options?: SseSchemaOptions): SseSchema<SseItem>
export function sseSchema (schema: unknown, options: SseSchemaOptions = {}): SseSchema<unknown> {
  const checked = checkSchema(schema, 'the data schema or event map')
  let data: JsonSchema | undefined
  let events: Record<string, JsonSchema> | undefined
  if (isDataSchema(checked)) {
    data = checked
  } else {
    events = {}
    for (const [name, eventSchema] of Object.entries(checked)) {
      checkEventName(name)
      events[name] = checkSchema(eventSchema, `the data schema of event ${JSON.stringify(name)}`)
    }
  }
  const info: SseSchemaInfo = { data, events, itemSchema: describeItems(data, events, wireData) }
  return {
    description: options.description ?? 'A stream of Server-Sent Events',
    content: { [EVENT_STREAM]: { schema: Type.Unsafe<SseStream<unknown>>(describeItems(data, events, s => s)) } },
    [kSseSchema]: info
  }
}

/** The SSE schema info of a response schema built by `sseSchema()`, or undefined for any other value. */
export function sseSchemaInfo (schema: unknown): SseSchemaInfo | undefined {
  return typeof schema === 'object' && schema !== null ? (schema as { [kSseSchema]?: SseSchemaInfo })[kSseSchema] : undefined
}

/** The SSE responses of a route, by status code (as written in `schema.response`). */
export type RouteStreams = ReadonlyMap<string, SseSchemaInfo>

/** The route's SSE response schemas, or undefined when it has none. */
export function routeStreams (schema: FastifySchema | undefined): RouteStreams | undefined {
  const response = schema?.response
  if (response === null || typeof response !== 'object') return undefined
  const found = new Map<string, SseSchemaInfo>()
  for (const [status, responseSchema] of Object.entries(response)) {
    const info = sseSchemaInfo(responseSchema)
    if (info !== undefined) found.set(status, info)
  }
  return found.size === 0 ? undefined : found
}

/**
 * The response schema Fastify applies to a status code: the code's, else its class's (`2xx`), else `default`;
 * whether it is an SSE one, and which.
 */
export function streamAt (streams: RouteStreams, schema: FastifySchema | undefined, statusCode: number): SseSchemaInfo | undefined {
  const code = String(statusCode)
  const response = schema?.response as Record<string, unknown>
  const key = [code, code[0] + 'xx', 'default'].find(candidate => Object.hasOwn(response, candidate))
  return key === undefined ? undefined : streams.get(key)
}

// A route's SSE response schemas, found once per route schema object.
const streamsOfSchema = new WeakMap<FastifySchema, RouteStreams | null>()

function streamsOf (schema: FastifySchema | undefined): RouteStreams | undefined {
  if (schema === undefined) return undefined
  let streams = streamsOfSchema.get(schema)
  if (streams === undefined) {
    streams = routeStreams(schema) ?? null
    streamsOfSchema.set(schema, streams)
  }
  return streams ?? undefined
}

/**
 * The item hook of a stream started on `reply`: on a route with an `sseSchema()` response, the serializers
 * compiled from its data schemas and, with `validate`, the checks; undefined on any other route.
 */
export function typedItemHook (reply: FastifyReply, options: { validate: boolean, compileSerializers: boolean }): ItemHook | undefined {
  const { schema, method, url } = reply.routeOptions
  const streams = streamsOf(schema)
  if (streams === undefined) return undefined
  const info = streamAt(streams, schema, reply.statusCode) ?? streams.values().next().value as SseSchemaInfo
  // a route with a schema has a url (only the 404 handler has none, and no schema)
  return itemHook(info, reply, routeName({ method, url: url as string }), options)
}

/** What Fastify sends as a body as it is (a handler may return pre-encoded SSE text), not a source of items. */
function isBody (value: unknown): boolean {
  return typeof value === 'string' || ArrayBuffer.isView(value) || typeof (value as { pipe?: unknown } | null)?.pipe === 'function'
}

/**
 * What a non-generator handler of a route with an `sseSchema()` response returned: an iterable is streamed; any
 * other value for a status documented as SSE means the handler neither streamed nor called `reply.sse()`: an
 * error naming the route, rather than a JSON body served as text/event-stream.
 */
function settle (result: unknown, reply: FastifyReply, streams: RouteStreams, route: string): unknown {
  if (reply.sent || result === undefined || result === reply || isBody(result)) return result
  if (isSource(result)) return reply.sse(result)
  if (streamAt(streams, reply.routeOptions.schema, reply.statusCode) === undefined) return result
  throw new SseError('FST_SSE_NOT_A_STREAM', route, `route ${route} has an sseSchema() response but its handler neither yields nor calls reply.sse(): it returned ${result === null ? 'null' : typeof result}`)
}

/** The handler that wraps a non-generator handler of a route with an `sseSchema()` response; undefined for other routes. */
export function streamingHandler (route: RouteOptions): RouteHandlerMethod | undefined {
  const streams = streamsOf(route.schema)
  if (streams === undefined) return undefined
  const name = routeName(route)
  const original = route.handler
  const handler = function sseRouteHandler (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply): unknown {
    // Before the handler reads request.signal (for a subscription, say): on an SSE route it is the stream's.
    streamController(request, reply)
    const result: unknown = original.call(this, request, reply)
    // a thenable is awaited as Fastify awaits it; a plain value is settled at once
    return typeof (result as PromiseLike<unknown> | null)?.then === 'function'
      ? Promise.resolve(result).then(value => settle(value, reply, streams, name))
      : settle(result, reply, streams, name)
  }
  return handler as RouteHandlerMethod
}

/** `GET /path`, as errors name a route. */
export function routeName (route: Pick<RouteOptions, 'method' | 'url'>): string {
  return `${Array.isArray(route.method) ? route.method.join(',') : route.method} ${route.url}`
}

interface Compiled {
  serialize: SseSerializer
  validate: ((data: unknown) => string | undefined) | undefined
}

type Validator = ((data: unknown) => boolean) & { errors?: Array<{ instancePath?: string, message?: string }> | null }

function compile (schema: JsonSchema, reply: FastifyReply, route: string, validate: boolean): Compiled {
  const serializer = reply.compileSerializationSchema(schema as Record<string, unknown>) as SseSerializer
  if (!validate) return { serialize: serializer, validate: undefined }
  const validator = (reply.request as FastifyRequest).compileValidationSchema(schema as Record<string, unknown>) as Validator
  return {
    serialize: serializer,
    validate: (data) => {
      // Fastify's ajv may coerce, fill defaults and strip properties: it works on a copy, never on the caller's data.
      let copy: unknown
      try {
        copy = structuredClone(data)
      } catch (err) {
        throw invalidItem('data', `could not be checked against the schema of route ${route}: ${(err as Error).message}`, err)
      }
      if (validator(copy)) return undefined
      // ajv's errors; another validator compiler's may have other fields, or none
      const problems = (validator.errors ?? []).map(error => [error.instancePath, error.message].filter(Boolean).join(' '))
      return problems.length === 0 ? 'rejected by the validator' : problems.join(', ')
    }
  }
}

/**
 * The per-item hook of a stream on a typed route: data serialized by the serializer compiled from its schema
 * (Fastify's serializer compiler, fast-json-stringify by default) and, with `validate`, checked first by the
 * route's validator compiler (Fastify's ajv by default). Compiled once per schema and route: Fastify caches them.
 */
export function itemHook (info: SseSchemaInfo, reply: FastifyReply, route: string, options: { validate: boolean, compileSerializers: boolean }): ItemHook | undefined {
  const { validate, compileSerializers } = options
  if (!validate && !compileSerializers) return undefined
  const cache = new Map<string | undefined, Compiled>()
  const compiledFor = (key: string | undefined, schema: JsonSchema): Compiled => {
    let compiled = cache.get(key)
    if (compiled === undefined) {
      compiled = compile(schema, reply, route, validate)
      cache.set(key, compiled)
    }
    return compiled
  }
  const pick = (item: Record<string, unknown>): Compiled | undefined => {
    if (info.events === undefined) return compiledFor(undefined, info.data as JsonSchema)
    const event = item.event === undefined ? 'message' : item.event
    if (typeof event === 'string' && Object.hasOwn(info.events, event)) return compiledFor(event, info.events[event] as JsonSchema)
    if (validate && (item.data !== undefined || item.event !== undefined)) {
      throw invalidItem('event', `${JSON.stringify(item.event)} is not an event of route ${route} (expected one of ${Object.keys(info.events).map(name => JSON.stringify(name)).join(', ')})`)
    }
    return undefined
  }
  return (item) => {
    if (item === null || typeof item !== 'object') return undefined // the encoder refuses it, naming the field
    const compiled = pick(item as Record<string, unknown>)
    if (compiled === undefined) return undefined
    const data = (item as { data?: unknown }).data
    if (compiled.validate !== undefined && data !== undefined) {
      const problem = compiled.validate(data)
      if (problem !== undefined) throw invalidItem('data', `does not match the schema of route ${route}: ${problem}`)
    }
    return compileSerializers ? compiled.serialize : undefined
  }
}

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
    response[status] = { ...original, content: { ...original.content, [EVENT_STREAM]: { ...media, itemSchema: info.itemSchema } } }
  }
  return { schema: { ...schema, response }, url }
}
