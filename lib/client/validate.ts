import { SseError, shown } from '../errors.js'
import { sseSchemaInfo, typeBoxOf, type JsonSchema } from '../typed/schema.js'
import type { TypeBoxSchema } from '../typed/static.js'
import { compileCheck, type DataCheck } from './check.js'
import type { ClientSchema } from './connect-types.js'
import type { DataValidator } from './decode.js'
import { checkReferences, refuseUnknownOptions, type OptionNames } from './options.js'

// `fastify-typed-sse/client/validate`: a `DataValidator` compiled from the route's own TypeBox schemas, for
// `connect(url, { schema, validate: await validator(schema) })`. Apart from the client because the TypeBox
// compiler it needs weighs three times the rest of the client in a browser bundle: validation there is opt-in.
// Each schema is compiled by the TypeBox that made it (lib/client/check), loaded when first needed.

export interface ValidatorOptions {
  /** The TypeBox schemas (with an `$id`) that `Type.Ref`s in the schema name, as the route's shared schemas. */
  references?: TypeBoxSchema[]
}

const VALIDATOR_OPTIONS: OptionNames<ValidatorOptions> = { references: true }
function isObject (value: unknown): boolean {
  return typeof value === 'object' && value !== null
}

function problemOf (check: DataCheck, data: unknown): string | undefined {
  const problem = check(data)
  return problem === undefined ? undefined : `${problem.path === '' ? 'data' : `data${problem.path}`} ${problem.message}`
}

/**
 * Internal: the check of each event whose data schema is a TypeBox one (plain JSON Schemas are not checked), or
 * undefined when there is none to make. An event of a map checks its own data; one the map does not name fails.
 */
export async function schemaValidator (
  schema: ClientSchema, references: readonly TypeBoxSchema[] = []
): Promise<DataValidator | undefined> {
  const info = sseSchemaInfo(schema)
  if (info?.events === undefined) {
    const check = await compileCheck(info === undefined ? schema : info.data as JsonSchema, references)
    return check === undefined ? undefined : data => problemOf(check, data)
  }
  const checks = new Map(await Promise.all(Object.entries(info.events).map(
    async ([name, data]) => [name, await compileCheck(data, references)] as const)))
  if ([...checks.values()].every(check => check === undefined)) return undefined
  return (data, event) => {
    if (!checks.has(event)) return `"${event}" is not an event of the schema`
    const check = checks.get(event)
    return check === undefined ? undefined : problemOf(check, data)
  }
}

function hasTypeBox (schema: object): boolean {
  const info = sseSchemaInfo(schema)
  if (info === undefined) return typeBoxOf(schema) !== undefined
  const parts = info.events === undefined ? [info.data as object] : Object.values(info.events)
  return parts.some(part => typeBoxOf(part) !== undefined)
}

/**
 * A validator for `connect()`'s `validate` option, compiled from a route's `sseSchema(…)` (each event's TypeBox data
 * schema) or from a TypeBox schema of the data, by the TypeBox (0.34 or 1.x) that made it: a promise, as that
 * TypeBox's compiler is loaded on first use. A schema with no TypeBox schema in it (plain JSON Schema) is refused:
 * TypeBox cannot compile it. A bad option, or a name it does not take, throws `FST_SSE_INVALID_OPTION` at the call.
 */
export function validator (schema: ClientSchema, options: ValidatorOptions = {}): Promise<DataValidator> {
  refuseUnknownOptions(options, VALIDATOR_OPTIONS, 'validator()')
  checkReferences(options.references, 'validator()')
  if (!isObject(schema)) {
    throw new SseError('FST_SSE_INVALID_OPTION', 'schema', `validator() needs an sseSchema() or a TypeBox schema, got ${shown(schema)}`)
  }
  if (!hasTypeBox(schema)) {
    throw new SseError('FST_SSE_INVALID_OPTION', 'schema', 'validator() needs a TypeBox schema to compile: this one has none (a plain JSON Schema is not checked)')
  }
  return schemaValidator(schema, options.references) as Promise<DataValidator>
}

export type { DataValidator } from './decode.js'
