import type { FastifyReply, FastifyRequest } from 'fastify'
import { invalidItem, routeName } from '../errors.js'
import type { ItemEncoding, ItemHook } from '../stream.js'
import type { SseSerializer } from '../types.js'
import { isTextSchema, refResolver, streamAt, streamsOf, type JsonSchema, type SseSchemaInfo } from './schema.js'

// The per-item side of a typed route: each item's data written as its schema says (a string schema's data as the
// text, any other as JSON), by the serializer compiled from the schema and, with `validate`, checked first, so a
// typed route never writes data its schema does not describe.

/**
 * The item hook of a stream started on `reply`: on a route with an `sseSchema()` response, the serializers
 * compiled from its data schemas and, with `validate`, the checks; undefined on any other route.
 */
export function typedItemHook (reply: FastifyReply, options: HookOptions): ItemHook | undefined {
  const { schema, method, url } = reply.routeOptions
  const streams = streamsOf(schema)
  if (streams === undefined) return undefined
  const info = streamAt(streams, schema, reply.statusCode) ?? streams.values().next().value as SseSchemaInfo
  // a route with a schema has a url (only the 404 handler has none, and no schema)
  return itemHook(info, reply, routeName({ method, url: url as string }), options)
}

/** How a typed route encodes, and with `validate` checks, the data of one of its events. */
interface Compiled extends ItemEncoding {
  readonly validate: ((data: unknown) => string | undefined) | undefined
}

type Validator = ((data: unknown) => boolean) & { errors?: Array<{ instancePath?: string, message?: string }> | null }

interface HookOptions { validate: boolean, compileSerializers: boolean }

function compile (schema: JsonSchema, reply: FastifyReply, route: string, options: HookOptions): Compiled {
  // the one rule, with the route's shared schemas (app.addSchema) behind its $refs, as its OpenAPI document says
  const text = isTextSchema(schema, refResolver(id => reply.server.getSchema(id)))
  const serialize = options.compileSerializers
    ? reply.compileSerializationSchema(schema as Record<string, unknown>) as SseSerializer
    : undefined
  if (!options.validate) return { serialize, text, validate: undefined }
  const request = reply.request as FastifyRequest
  const validator = request.compileValidationSchema(schema as Record<string, unknown>) as Validator
  return {
    serialize,
    text,
    validate: (data) => {
      // Fastify's ajv may coerce, fill defaults and strip properties: it works on a copy, never on the caller's data.
      let copy: unknown
      try {
        copy = structuredClone(data)
      } catch (err) {
        throw invalidItem('data', `could not be checked against the schema of route ${route}`, err)
      }
      if (validator(copy)) return undefined
      // ajv's errors; another validator compiler's may have other fields, or none
      const problems = (validator.errors ?? []).map(error => [error.instancePath, error.message].filter(Boolean).join(' '))
      return problems.length === 0 ? 'rejected by the validator' : problems.join(', ')
    }
  }
}

/**
 * The per-item hook of a stream on a typed route: whether string data is text or JSON (its schema says), the
 * serializer compiled from the schema (Fastify's serializer compiler, fast-json-stringify by default) and, with
 * `validate`, a check first by the route's validator compiler (Fastify's ajv by default). Compiled once per
 * schema and stream (Fastify caches the compiled functions per route).
 */
export function itemHook (info: SseSchemaInfo, reply: FastifyReply, route: string, options: HookOptions): ItemHook {
  const { validate } = options
  const cache = new Map<string | undefined, Compiled>()
  const compiledFor = (key: string | undefined, schema: JsonSchema): Compiled => {
    let compiled = cache.get(key)
    if (compiled === undefined) {
      compiled = compile(schema, reply, route, options)
      cache.set(key, compiled)
    }
    return compiled
  }
  const pick = (item: Record<string, unknown>, events: Readonly<Record<string, JsonSchema>>): Compiled | undefined => {
    if (validate && item.event === undefined && item.data !== undefined) {
      // the route's items are the events of its map: one without a name is none of them (its itemSchema says so)
      throw invalidItem('event', `is required on route ${route}, whose items are the events of a map (one of ${namesOf(events)})`)
    }
    const event = item.event === undefined ? 'message' : item.event
    if (typeof event === 'string' && Object.hasOwn(events, event)) return compiledFor(event, events[event] as JsonSchema)
    if (validate && (item.data !== undefined || item.event !== undefined)) {
      throw invalidItem('event', `${JSON.stringify(item.event)} is not an event of route ${route} (expected one of ${namesOf(events)})`)
    }
    return undefined
  }
  return (item) => {
    if (item === null || typeof item !== 'object') return undefined // the encoder refuses it, naming the field
    const compiled = info.events === undefined
      ? compiledFor(undefined, info.data as JsonSchema)
      : pick(item as Record<string, unknown>, info.events)
    if (compiled === undefined) return undefined
    const data = (item as { data?: unknown }).data
    if (compiled.validate !== undefined && data !== undefined) {
      const problem = compiled.validate(data)
      if (problem !== undefined) throw invalidItem('data', `does not match the schema of route ${route}: ${problem}`)
    }
    return compiled
  }
}

function namesOf (events: Readonly<Record<string, JsonSchema>>): string {
  return Object.keys(events).map(name => JSON.stringify(name)).join(', ')
}
