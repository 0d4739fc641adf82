// `fastify-typed-sse/client` in a browser bundle (the `browser` export condition): `connect()` with run-time
// validation opt-in (`validate: validator(schema)` from `fastify-typed-sse/client/validate`), so the bundle does not
// carry the TypeBox compiler. Otherwise the same client as lib/client/index, with the same exports.
import { connectWith, type Connect } from './connect.js'

/** @inheritDoc Connect */
export const connect: Connect = connectWith(undefined)

export * from './exports.js'
