import { SseClientError } from '../errors.js'
import {
  isTextSchema, refResolver, sseSchemaInfo, type JsonSchema, type RefResolver, type SseControlItem, type SseSchema
} from '../typed/schema.js'
import type { StaticOf, TypeBoxSchema } from '../typed/static.js'
import type { SseItem } from '../types.js'
import { compileCheck, type DataCheck } from './check.js'

// What the client (and the test helpers) make of a parsed event: its data decoded as the route encoded it and,
// with a schema, checked; and the types that a schema gives the events read with it.

/**
 * What `connect` decodes and validates `data` with: the route's own response schema (`sseSchema(data)` or an
 * `sseSchema({ event: data, … })` event map), or a TypeBox schema of the data (of either TypeBox).
 */
export type ClientSchema = TypeBoxSchema | SseSchema<unknown, unknown>

/** The type of `data` a TypeBox schema describes. */
export type DataOf<S extends TypeBoxSchema> = StaticOf<S>

/** An event as the client yields it: always with `data`, decoded. */
export type ReceivedItem<T> = SseItem<T> & { data: T }

/** An event of an event map as the client yields it: `event` names it (absent on the wire: `message`). */
export interface ReceivedEvent<E extends string, D> {
  event: E
  data: D
  id?: string
  retry?: number
}

/** What the client yields for one item type a route may send (items without data are never yielded). */
export type ReceivedOf<Item> = Item extends SseControlItem
  ? never
  : Item extends { event: infer E extends string, data?: infer D }
    ? ReceivedEvent<E, Exclude<D, undefined>>
    : Item extends SseItem<infer T> ? ReceivedItem<T> : never

/**
 * The events a client reads given a schema: for an event map, a union discriminated on `event` (narrow it with
 * `if (item.event === 'tick')`); for one data schema, items whose `data` has its type.
 */
export type ItemsOf<S extends ClientSchema> = S extends SseSchema<infer Item, unknown>
  ? ReceivedOf<Item>
  : S extends TypeBoxSchema ? ReceivedItem<StaticOf<S>> : never

function describeEvent (item: SseItem<string>): string {
  return (item.event === undefined ? 'message event' : `"${item.event}" event`) + (item.id === undefined ? '' : ` (id "${item.id}")`)
}

/** How one event's data is decoded and checked. */
interface DataRule {
  /** The data is the text as sent (its schema admits only strings); else it is JSON. */
  readonly text: boolean
  readonly check: DataCheck | undefined
}

async function ruleFor (schema: object, references: readonly TypeBoxSchema[], resolve: RefResolver): Promise<DataRule> {
  return { text: isTextSchema(schema, resolve), check: await compileCheck(schema, references) }
}

function parseJson (item: SseItem<string>): unknown {
  try {
    return JSON.parse(item.data as string)
  } catch (err) {
    throw new SseClientError('FST_SSE_CLIENT_DATA', `${describeEvent(item)} data is not JSON: ${(err as Error).message}`, { cause: err })
  }
}

function checked (item: SseItem<string>, data: unknown, check: DataCheck | undefined): unknown {
  const problem = check?.(data)
  if (problem !== undefined) {
    const where = problem.path === '' ? 'data' : `data${problem.path}`
    throw new SseClientError('FST_SSE_CLIENT_DATA', `${describeEvent(item)} does not match the schema: ${where} ${problem.message}`)
  }
  return data
}

/** What decodes events: the schema's rule, else the `json` option's. */
export interface DecodeOptions {
  schema?: ClientSchema | undefined
  references?: readonly TypeBoxSchema[] | undefined
  json?: boolean | undefined
}

/** Decodes and checks one parsed event. */
export type Decoder = (item: SseItem<string>) => SseItem<unknown> & { data: unknown }

/**
 * Internal (the client and lib/testing): the decoder of the events of a stream, its schema's checks compiled by
 * the TypeBox that made it (loaded on first use, hence async).
 */
export async function decoder (options: DecodeOptions): Promise<Decoder> {
  const { schema, references = [], json } = options
  if (schema === undefined) {
    if (json === false) return item => item as SseItem<unknown> & { data: unknown }
    if (json === true) return item => ({ ...item, data: parseJson(item) })
    return item => {
      try {
        return { ...item, data: JSON.parse(item.data as string) }
      } catch {
        return item as SseItem<unknown> & { data: unknown }
      }
    }
  }
  const resolve = refResolver(id => references.find(reference => (reference as { $id?: unknown }).$id === id))
  const info = sseSchemaInfo(schema)
  const decode = (item: SseItem<string>, rule: DataRule): unknown =>
    checked(item, rule.text ? item.data : parseJson(item), rule.check)
  if (info?.events === undefined) {
    const rule = await ruleFor(info === undefined ? schema : info.data as JsonSchema, references, resolve)
    return item => ({ ...item, data: decode(item, rule) })
  }
  const entries = Object.entries(info.events)
  const rules = new Map(await Promise.all(
    entries.map(async ([name, data]) => [name, await ruleFor(data, references, resolve)] as const)
  ))
  return item => {
    const event = item.event ?? 'message' // what a browser dispatches an event without a name as
    const rule = rules.get(event)
    if (rule === undefined) {
      throw new SseClientError('FST_SSE_CLIENT_DATA', `${describeEvent(item)} is not an event of the schema (expected one of ${[...rules.keys()].map(name => JSON.stringify(name)).join(', ')})`)
    }
    return { ...item, event, data: decode(item, rule) }
  }
}
