import type { TSchema } from '@sinclair/typebox'
import { TypeCompiler, type TypeCheck, type ValueError } from '@sinclair/typebox/compiler'
import { SseError, shown } from '../errors.js'
import { sseSchemaInfo, type JsonSchema } from '../typed/schema.js'
import type { ClientSchema } from './connect.js'
import type { DataValidator } from './decode.js'
import { checkReferences, refuseUnknownOptions, type OptionNames } from './options.js'

// `fastify-typed-sse/client/validate`: a `DataValidator` compiled from the route's own TypeBox schemas, for
// `connect(url, { schema, validate: validator(schema) })`. Apart from the client because the TypeBox compiler
// it needs weighs three times the rest of the client in a browser bundle: validation there is opt-in.

export interface ValidatorOptions {
  /** The TypeBox schemas (with an `$id`) that `Type.Ref`s in the schema name, as the route's shared schemas. */
  references?: TSchema[]
}

const VALIDATOR_OPTIONS: OptionNames<ValidatorOptions> = { references: true }
const TYPEBOX_KIND = Symbol.for('TypeBox.Kind')

function isObject (value: unknown): boolean {
  return typeof value === 'object' && value !== null
}

function compile (schema: object, references: TSchema[]): TypeCheck<TSchema> | undefined {
  // a plain JSON Schema (no TypeBox kind) decides the decoding but is not compiled: TypeBox checks its own schemas
  return TYPEBOX_KIND in schema ? TypeCompiler.Compile(schema as unknown as TSchema, references) : undefined
}

function problemOf (check: TypeCheck<TSchema>, data: unknown): string | undefined {
  if (check.Check(data)) return undefined
  // TypeBox reports at least one error for a value that fails Check
  const first = check.Errors(data).First() as ValueError
  return `${first.path === '' ? 'data' : `data${first.path}`} ${first.message}`
}

/**
 * Internal: the check of each event whose data schema is a TypeBox one (plain JSON Schemas are not checked), or
 * undefined when there is none to make. An event of a map checks its own data; one the map does not name fails.
 */
export function schemaValidator (schema: ClientSchema, references: TSchema[] = []): DataValidator | undefined {
  const info = sseSchemaInfo(schema)
  if (info?.events === undefined) {
    const check = compile(info === undefined ? schema : info.data as JsonSchema, references)
    return check === undefined ? undefined : data => problemOf(check, data)
  }
  const checks = new Map(Object.entries(info.events).map(([name, data]) => [name, compile(data, references)]))
  if ([...checks.values()].every(check => check === undefined)) return undefined
  return (data, event) => {
    if (!checks.has(event)) return `"${event}" is not an event of the schema`
    const check = checks.get(event)
    return check === undefined ? undefined : problemOf(check, data)
  }
}

/**
 * A validator for `connect()`'s `validate` option, compiled from a route's `sseSchema(…)` (each event's TypeBox data
 * schema) or from a TypeBox schema of the data. A schema with no TypeBox schema in it (plain JSON Schema) is
 * refused: TypeBox cannot compile it. A bad option, or a name it does not take, throws `FST_SSE_INVALID_OPTION`.
 */
export function validator (schema: ClientSchema, options: ValidatorOptions = {}): DataValidator {
  refuseUnknownOptions(options, VALIDATOR_OPTIONS, 'validator()')
  checkReferences(options.references, 'validator()')
  if (!isObject(schema)) {
    throw new SseError('FST_SSE_INVALID_OPTION', 'schema', `validator() needs an sseSchema() or a TypeBox schema, got ${shown(schema)}`)
  }
  const validate = schemaValidator(schema, options.references)
  if (validate === undefined) {
    throw new SseError('FST_SSE_INVALID_OPTION', 'schema', 'validator() needs a TypeBox schema to compile: this one has none (a plain JSON Schema is not checked)')
  }
  return validate
}

export type { DataValidator } from './decode.js'
