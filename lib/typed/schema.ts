import type { FastifyReply, FastifySchema } from 'fastify'
import type { SseResetData } from '../channel/subscription.js'
import { invalidSchema } from '../errors.js'
import { refuseUnknownOptions, type OptionNames } from '../client/options.js'
import type { SseItem } from '../types.js'
import type { ProvidedAs, StaticOf, TypeBoxSchema } from './static.js'

// Typed streams: `sseSchema()` builds a response schema that documents a route as text/event-stream, types what
// its handler may yield, and tells the plugin which serializer (and, with `validate`, which check) fits each item.

/** Marks the response schemas built by `sseSchema()`; `Symbol.for` so two copies of the package agree. */
export const kSseSchema: unique symbol = Symbol.for('fastify-typed-sse.schema') as never

/** The media type of every SSE response. */
export const EVENT_STREAM = 'text/event-stream'
/** The media type of a dual route's other answer. */
const JSON_MEDIA = 'application/json'

/**
 * What a route with an SSE response schema may produce: what streams at run time — an async iterable (an async
 * generator) or a sync one (a generator, an array) of its items, a channel subscription of their data (whose
 * first item may be an `sse-reset` one) — or the reply that `reply.sse()` returns. It is the `Static` of the
 * schema, and the `Reply` of a route generic.
 */
export type SseStream<Item> =
  AsyncIterable<Item> | Iterable<Item> | AsyncIterableIterator<WithResetData<Item>> | FastifyReply

/**
 * The items of a channel subscription that fits a route of these items: theirs, `data` widened by the `sse-reset`
 * item's `SseResetData` (written by the channel, not by the route's serializer). A subscription's items name no
 * particular event, so on an event map (items with `event` names) none fits.
 */
export type WithResetData<Item> = { [K in keyof Item]: K extends 'data' ? Item[K] | SseResetData : Item[K] }

/** An item with no event and no data (a comment, an id or a retry on its own): allowed on every typed stream. */
export interface SseControlItem {
  comment?: string
  id?: string
  retry?: number
  event?: undefined
  data?: undefined
}

/** A map of event names to data schemas (of either TypeBox), for `sseSchema({ tick: Type.Object(...), ... })`. */
export type SseEventSchemas = Record<string, TypeBoxSchema>

/** The item type of an event map: a union discriminated on `event`. */
export type SseEventItem<M extends SseEventSchemas> = {
  [K in keyof M & string]: Omit<SseItem<StaticOf<M[K]>>, 'event'> & { event: K }
}[keyof M & string]

/** The item type of a route whose response schema is `S` (built by `sseSchema`). */
export type SseItemOf<S> = S extends SseSchema<infer Item, unknown> ? Item : never

/**
 * The return type to annotate an `async function *` handler with: `SseGenerator<typeof schema>` on a typed route,
 * plain `SseGenerator` on an untyped one (any `SseItem`). Each `yield` is then checked on its own line (a misspelt
 * field included), and an event name needs no `as const`.
 */
export type SseGenerator<S extends SseSchema<unknown, unknown> = SseSchema<SseItem>> =
  AsyncGenerator<SseItemOf<S>, void, undefined>

/**
 * The item type `reply.sse()` accepts given a reply type: the route's items when it is a typed SSE route (not
 * those of the channel subscription an `SseStream` admits: an `sse-reset` item is the channel's alone).
 */
export type SseItemOfReply<R> = R extends AsyncIterable<infer Item>
  ? R extends AsyncIterator<unknown> & AsyncIterable<SseItem<infer D>> ? SseResetData extends D ? never : Item : Item
  : never

/**
 * The `text/event-stream` response schema built by `sseSchema()`, of items `Item`; `From` is the TypeBox schema
 * (or the event map's schemas) it was built from, whose TypeBox it speaks to the route's type provider.
 */
export interface SseSchema<Item, From = unknown> {
  description: string
  content: { 'text/event-stream': { schema: ProvidedAs<SseStream<Item>, From> } }
  readonly [kSseSchema]: SseSchemaInfo
}

export interface SseSchemaOptions {
  /** The response's description in the OpenAPI document. Default: "A stream of Server-Sent Events". */
  description?: string
  /**
   * The schema of the JSON answer of a dual route (`config.sse.json`), documented as a second media type,
   * `application/json`, beside `text/event-stream`; Fastify serializes that answer with it. Default: none.
   */
  json?: TypeBoxSchema | JsonSchema
}

const SCHEMA_OPTIONS: OptionNames<SseSchemaOptions> = { description: true, json: true }

/** A JSON Schema object (a TypeBox schema is one at run time). */
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

// The one rule for what `data` is on the wire, read by the encoder, the OpenAPI document and the client alike:
// data whose schema only admits strings is the text itself; any other data is JSON.

/** Finds the schema a `$ref` names (a shared schema's `$id`, with an optional `#/json/pointer`), or undefined. */
export type RefResolver = (ref: string) => unknown

/** Follows a `$ref` this deep at most: a cycle of references admits no string and ends as JSON. */
const MAX_DEPTH = 32

/**
 * Whether data with this schema is written as the text itself (the schema admits only strings: `type: 'string'`,
 * a string `const`, an `enum` of strings, a union of such, an `allOf` with one, or a `$ref` to one); any other
 * schema's data is JSON text, a string value included (`"a"`), so a client can tell which it got.
 */
export function isTextSchema (schema: unknown, resolve?: RefResolver, depth = 0): boolean {
  if (schema === null || typeof schema !== 'object' || depth > MAX_DEPTH) return false
  const s = schema as Record<string, unknown>
  if (s.nullable === true) return false // OpenAPI 3.0: null admitted too
  if (typeof s.$ref === 'string') return resolve !== undefined && isTextSchema(resolve(s.$ref), resolve, depth + 1)
  const type = s.type
  if (type !== undefined) return type === 'string' || (Array.isArray(type) && type.length > 0 && type.every(t => t === 'string'))
  if ('const' in s) return typeof s.const === 'string'
  if (Array.isArray(s.enum)) return s.enum.length > 0 && s.enum.every(value => typeof value === 'string')
  const union = s.anyOf ?? s.oneOf
  if (Array.isArray(union)) return union.length > 0 && union.every(branch => isTextSchema(branch, resolve, depth + 1))
  if (Array.isArray(s.allOf)) return s.allOf.some(branch => isTextSchema(branch, resolve, depth + 1))
  return false
}

/**
 * A resolver over schemas that carry an `$id` (TypeBox references, Fastify shared schemas): `Pet`, `Pet#` and
 * `Pet#/properties/name` resolve; anything else is undefined.
 */
export function refResolver (find: (id: string) => unknown): RefResolver {
  return ref => {
    const hash = ref.indexOf('#')
    const target = find(hash === -1 ? ref : ref.slice(0, hash))
    if (hash === -1 || hash === ref.length - 1) return target
    if (ref[hash + 1] !== '/') return undefined // a named anchor: not followed
    let at: unknown = target
    for (const token of ref.slice(hash + 2).split('/')) {
      if (at === null || typeof at !== 'object') return undefined
      at = (at as Record<string, unknown>)[decodeURIComponent(token).replace(/~1/g, '/').replace(/~0/g, '~')]
    }
    return at
  }
}

// The names of JSON Schema keywords: an object with one of them is a data schema, not an event map (unless all
// its values are TypeBox schemas: then it is a map, and an event may be called `type` or `title`).
const KEYWORDS = new Set([
  '$id', '$ref', '$schema', '$defs', 'definitions', 'type', 'properties', 'items', 'enum', 'const', 'anyOf', 'oneOf',
  'allOf', 'not', 'if', 'then', 'else', 'additionalProperties', 'patternProperties', 'required', 'format', 'pattern',
  'minimum', 'maximum', 'minLength', 'maxLength', 'title', 'description', 'default', 'examples', 'nullable'
])

/** Which TypeBox made a schema, told by the marks each leaves on its schemas (none shows in their JSON). */
export type TypeBoxFlavour = 'sinclair' | 'typebox1'

const SINCLAIR_KIND = Symbol.for('TypeBox.Kind')

/** `sinclair` for a schema of @sinclair/typebox, `typebox1` for one of typebox 1.x, undefined for plain JSON. */
export function typeBoxOf (value: unknown): TypeBoxFlavour | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  if (SINCLAIR_KIND in value) return 'sinclair'
  return '~kind' in value || '~unsafe' in value ? 'typebox1' : undefined
}

function isTypeBox (value: unknown): boolean {
  return typeBoxOf(value) !== undefined
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
    const got = schema === null ? 'null' : Array.isArray(schema) ? 'an array' : typeof schema
    throw invalidSchema('schema', `${what} must be a JSON Schema object, got ${got}`)
  }
  return schema as JsonSchema
}

const RETRY = { type: 'integer', minimum: 0 }
const ID = { type: 'string' }

/** The 3.2 `data` field: text data as it is; anything else is JSON text whose parsed value has the schema. */
export function wireData (schema: JsonSchema, resolve?: RefResolver): JsonSchema {
  return isTextSchema(schema, resolve) ? schema : { type: 'string', contentMediaType: 'application/json', contentSchema: schema }
}

export function itemShape (data: JsonSchema, event: string | undefined): Record<string, unknown> {
  return {
    type: 'object',
    properties: { data, event: event === undefined ? { type: 'string' } : { type: 'string', const: event }, id: ID, retry: RETRY },
    required: event === undefined ? ['data'] : ['event', 'data']
  }
}

export function describeItems (
  data: JsonSchema | undefined, events: Record<string, JsonSchema> | undefined, field: (s: JsonSchema) => JsonSchema
): Record<string, unknown> {
  if (events === undefined) return itemShape(field(data as JsonSchema), undefined)
  return { oneOf: Object.entries(events).map(([name, schema]) => itemShape(field(schema), name)) }
}

/** The event names a client can tell apart: no CR or LF (they would end the `event:` line), not empty. */
function checkEventName (name: string): void {
  if (name === '' || /[\r\n]/.test(name)) {
    const problem = 'is not a valid SSE event name (it must be non-empty, without CR or LF)'
    throw invalidSchema('event', `event name ${JSON.stringify(name)} ${problem}`)
  }
}

/**
 * A `schema.response[200]` for a route that streams Server-Sent Events whose `data` has the given schema, or,
 * given a map of event names to data schemas, a union of events discriminated on `event`. It documents the route
 * as `text/event-stream` in OpenAPI, types what the handler yields or passes to `reply.sse()`, and gives the
 * plugin the data schemas it compiles serializers (and, with `validate: true`, checks) from.
 */
export function sseSchema<D extends TypeBoxSchema> (
  data: D, options?: SseSchemaOptions
): SseSchema<SseItem<StaticOf<D>>, D>
export function sseSchema<M extends SseEventSchemas> (
  events: M, options?: SseSchemaOptions
): SseSchema<SseEventItem<M> | SseControlItem, M[keyof M]>
export function sseSchema (schema: JsonSchema, options?: SseSchemaOptions): SseSchema<SseItem>
export function sseSchema (schema: unknown, options: SseSchemaOptions = {}): SseSchema<unknown> {
  // the client's check: this module is bundled with the client, without the plugin
  refuseUnknownOptions(options, SCHEMA_OPTIONS, 'sseSchema()')
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
  const content: Record<string, { schema: unknown }> = {
    // plain JSON Schema: the TypeBox fields the type says it has are phantom ones, for the type providers
    [EVENT_STREAM]: { schema: describeItems(data, events, s => s) as ProvidedAs<SseStream<unknown>, unknown> }
  }
  // not in the static type: a route's reply type stays the stream's (the JSON answer is config.sse.json's)
  if (options.json !== undefined) content[JSON_MEDIA] = { schema: checkSchema(options.json, 'the json option') }
  return {
    description: options.description ?? 'A stream of Server-Sent Events',
    content: content as SseSchema<unknown>['content'],
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
export function streamAt (
  streams: RouteStreams, schema: FastifySchema | undefined, statusCode: number
): SseSchemaInfo | undefined {
  const code = String(statusCode)
  const response = schema?.response as Record<string, unknown>
  const key = [code, code[0] + 'xx', 'default'].find(candidate => Object.hasOwn(response, candidate))
  return key === undefined ? undefined : streams.get(key)
}

// A route's SSE response schemas, found once per route schema object.
const streamsOfSchema = new WeakMap<FastifySchema, RouteStreams | null>()

export function streamsOf (schema: FastifySchema | undefined): RouteStreams | undefined {
  if (schema === undefined) return undefined
  let streams = streamsOfSchema.get(schema)
  if (streams === undefined) {
    streams = routeStreams(schema) ?? null
    streamsOfSchema.set(schema, streams)
  }
  return streams ?? undefined
}
