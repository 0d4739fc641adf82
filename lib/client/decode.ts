import { SseClientError } from '../errors.js'
import type { SseItem } from '../types.js'
import { isTextSchema, refResolver, sseSchemaInfo } from '../typed/schema.js'

// An event's data as the route encoded it: the server's rule (lib/typed/schema's isTextSchema) says which data is
// the text itself and which is JSON, so both ends agree. Checking the data is a separate, optional step: a
// `DataValidator` (lib/client/validate builds one from TypeBox schemas), kept out of this module so that a
// browser bundle of the client does not carry a schema compiler it does not use.

/**
 * Checks one event's decoded data: returns `undefined` when it is valid, else what is wrong with it (a message,
 * such as `data/n Expected integer`). `event` is the event's name (`message` when the stream gave none).
 */
export type DataValidator = (data: unknown, event: string) => string | undefined

/** What decodes events: the schema's rule, else the `json` option's. */
export interface DecodeOptions {
  /** The route's `sseSchema(…)`, or a schema of the data (TypeBox or plain JSON Schema). */
  schema?: object | undefined
  /** The schemas with an `$id` that `$ref`s in `schema` name. */
  references?: readonly object[] | undefined
  json?: boolean | undefined
}

/** An event as the client yields it, before its type is known. */
export type DecodedItem = SseItem<unknown> & { data: unknown }

export function describeEvent (item: SseItem<string>): string {
  return (item.event === undefined ? 'message event' : `"${item.event}" event`) + (item.id === undefined ? '' : ` (id "${item.id}")`)
}

function parseJson (item: SseItem<string>): unknown {
  try {
    return JSON.parse(item.data as string)
  } catch (err) {
    throw new SseClientError('FST_SSE_CLIENT_DATA', `${describeEvent(item)} data is not JSON: ${(err as Error).message}`, { cause: err })
  }
}

function checked (item: SseItem<string>, data: unknown, validate: DataValidator | undefined): unknown {
  if (validate === undefined) return data
  let problem: string | undefined
  try {
    problem = validate(data, item.event ?? 'message') // what a browser dispatches an event without a name as
  } catch (err) {
    throw new SseClientError('FST_SSE_CLIENT_DATA', `${describeEvent(item)} could not be validated: ${(err as Error).message}`, { cause: err })
  }
  if (problem !== undefined) {
    throw new SseClientError('FST_SSE_CLIENT_DATA', `${describeEvent(item)} does not match the schema: ${problem}`)
  }
  return data
}

/** Internal (lib/testing uses it too): decodes, and with `validate` checks, one parsed event. */
export function decoder (options: DecodeOptions, validate?: DataValidator): (item: SseItem<string>) => DecodedItem {
  const { schema, references = [], json } = options
  if (schema === undefined) {
    if (json === false) {
      return item => {
        checked(item, item.data, validate)
        return item as DecodedItem
      }
    }
    if (json === true) return item => ({ ...item, data: checked(item, parseJson(item), validate) })
    return item => {
      let data: unknown
      try {
        data = JSON.parse(item.data as string)
      } catch {
        data = item.data
      }
      return { ...item, data: checked(item, data, validate) }
    }
  }
  const resolve = refResolver(id => references.find(reference => (reference as { $id?: unknown }).$id === id))
  const info = sseSchemaInfo(schema)
  if (info?.events === undefined) {
    const text = isTextSchema(info === undefined ? schema : info.data, resolve)
    return item => ({ ...item, data: checked(item, text ? item.data : parseJson(item), validate) })
  }
  const rules = new Map(Object.entries(info.events).map(([name, data]) => [name, isTextSchema(data, resolve)]))
  return item => {
    const event = item.event ?? 'message' // what a browser dispatches an event without a name as
    const text = rules.get(event)
    if (text === undefined) {
      throw new SseClientError('FST_SSE_CLIENT_DATA', `${describeEvent(item)} is not an event of the schema (expected one of ${[...rules.keys()].map(name => JSON.stringify(name)).join(', ')})`)
    }
    return { ...item, event, data: checked(item, text ? item.data : parseJson(item), validate) }
  }
}
