import type { FastifyReply, FastifyRequest } from 'fastify'
import { invalidItem, routeName } from '../errors.js'
import type { ItemHook } from '../stream.js'
import type { SseSerializer } from '../types.js'
import { streamAt, streamsOf, type JsonSchema, type SseSchemaInfo } from './schema.js'

// The per-item side of a typed route: each item's data serialized by the serializer compiled from its schema
// and, with `validate`, checked first, so a typed route never writes data its schema does not describe.

/**
 * The item hook of a stream started on `reply`: on a route with an `sseSchema()` response, the serializers
 * compiled from its data schemas and, with `validate`, the checks; undefined on any other route.
 */
export function typedItemHook (
  reply: FastifyReply, options: { validate: boolean, compileSerializers: boolean }
): ItemHook | undefined {
  const { schema, method, url } = reply.routeOptions
  const streams = streamsOf(schema)
  if (streams === undefined) return undefined
  const info = streamAt(streams, schema, reply.statusCode) ?? streams.values().next().value as SseSchemaInfo
  // a route with a schema has a url (only the 404 handler has none, and no schema)
  return itemHook(info, reply, routeName({ method, url: url as string }), options)
}

interface Compiled {
  serialize: SseSerializer
  validate: ((data: unknown) => string | undefined) | undefined
}

type Validator = ((data: unknown) => boolean) & { errors?: Array<{ instancePath?: string, message?: string }> | null }

function compile (schema: JsonSchema, reply: FastifyReply, route: string, validate: boolean): Compiled {
  const serializer = reply.compileSerializationSchema(schema as Record<string, unknown>) as SseSerializer
  if (!validate) return { serialize: serializer, validate: undefined }
  const request = reply.request as FastifyRequest
  const validator = request.compileValidationSchema(schema as Record<string, unknown>) as Validator
  return {
    serialize: serializer,
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
 * The per-item hook of a stream on a typed route: data serialized by the serializer compiled from its schema
 * (Fastify's serializer compiler, fast-json-stringify by default) and, with `validate`, checked first by the
 * route's validator compiler (Fastify's ajv by default). Compiled once per schema and route: Fastify caches them.
 */
export function itemHook (
  info: SseSchemaInfo, reply: FastifyReply, route: string, options: { validate: boolean, compileSerializers: boolean }
): ItemHook | undefined {
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
