// `fastify-typed-sse/client` in Node (and wherever the `browser` export condition is not chosen): `connect()` that,
// given a TypeBox `schema`, checks each event against it unless told otherwise (`validate`). Bundlers building for
// a browser get lib/client/browser instead: the same client, validation opt-in, without the TypeBox compiler.
import { connectWith, type Connect } from './connect.js'
import { schemaValidator } from './validate.js'

/** @inheritDoc Connect */
export const connect: Connect = connectWith(schemaValidator)

export * from './exports.js'
