import type { StaticOfTypeBox1 } from './typebox1.js'

// Schemas of either TypeBox: @sinclair/typebox (0.34, the one @fastify/type-provider-typebox 5 reads) and typebox
// (1.x, read by provider 6). Both are JSON Schema at run time, so nothing here runs: these types tell a schema's
// TypeBox by its shape and take the static type of its data from that TypeBox, without depending on either.

/** A schema of @sinclair/typebox: the type of its data rides in the phantom `static` field (its `Static`). */
export interface SinclairTypeBoxSchema {
  params: unknown[]
  static: unknown
}

/** A schema of typebox 1.x: `Type.*()` schemas have a `~kind`, `Type.Unsafe()` ones an `~unsafe` (phantom). */
export type TypeBox1Schema = { '~kind': string } | { '~unsafe': unknown }

/** A TypeBox schema, of either TypeBox. */
export type TypeBoxSchema = SinclairTypeBoxSchema | TypeBox1Schema

/** The type of the data a TypeBox schema (of either TypeBox) describes: its TypeBox's `Static`. */
export type StaticOf<S> = S extends SinclairTypeBoxSchema
  ? (S & { params: [] })['static']
  : S extends TypeBox1Schema ? StaticOfTypeBox1<S> : unknown

/**
 * A schema whose data is `T` to both type providers, for a response schema that is no TypeBox type: provider 6
 * reads `~unsafe` (as `Type.Unsafe<T>()` has it), provider 5 reads `static` of a schema with @sinclair/typebox's
 * `Kind` symbol, copied from the schema(s) `From` the response was built from. Phantom fields: nothing of them
 * exists at run time.
 */
export type ProvidedAs<T, From> = { '~unsafe': T, static: T, params: [] } & SymbolKeysOf<From>

/** The symbol-keyed fields of a type (@sinclair/typebox's `Kind` and hints): none for a typebox 1.x schema. */
type SymbolKeysOf<T> = { [K in keyof T as K extends symbol ? K : never]: T[K] }
