import { typeBoxOf } from '../typed/schema.js'
import type { TypeBoxSchema } from '../typed/static.js'

// The client's check of decoded data against a TypeBox schema, by the TypeBox that made the schema: a schema of
// @sinclair/typebox with its TypeCompiler, one of typebox 1.x with its Compile. Each is loaded on first use, so
// the client needs only the TypeBox its schemas come from (both are optional peer dependencies); a plain JSON
// Schema decides how data is decoded but is not checked.

/** Returns undefined when the data matches, else what is wrong with it (`/path message`, `''` path for the root). */
export type DataCheck = (data: unknown) => { path: string, message: string } | undefined

/**
 * The check of `schema`, its `$ref`s resolved among `references` (schemas with an `$id`); undefined for a schema
 * no TypeBox made.
 */
export async function compileCheck (
  schema: object, references: readonly TypeBoxSchema[]
): Promise<DataCheck | undefined> {
  switch (typeBoxOf(schema)) {
    case 'sinclair': {
      const { TypeCompiler } = await import('@sinclair/typebox/compiler')
      const check = TypeCompiler.Compile(schema as never, references as never[])
      return data => {
        if (check.Check(data)) return undefined
        // TypeBox reports at least one error for a value that fails Check
        const first = check.Errors(data).First()!
        return { path: first.path, message: first.message }
      }
    }
    case 'typebox1': {
      const { Compile } = await import('typebox/compile')
      // typebox 1.x finds a `$ref` by name in a context: the references by their `$id`
      const context = Object.fromEntries(references.map(reference => [(reference as { $id?: unknown }).$id, reference]))
      const check = Compile(context as never, schema as never)
      return data => {
        if (check.Check(data)) return undefined
        const first = check.Errors(data)[0]!
        return { path: first.instancePath, message: first.message }
      }
    }
    default:
      return undefined
  }
}
