import type { TypeBoxSchema } from '../typed/static.js'
import type { ClientSchema, Connect, ConnectOptions } from './connect-types.js'
import { decoder, type DataValidator } from './decode.js'
import { run } from './session.js'
import { resolveSession } from './settings.js'

// A typed, reconnecting event-stream client on `fetch` and web streams alone, so the same client runs in browsers
// and in Node (whose fetch is undici: it adds no dependency). Give it undici's `fetch` (with a dispatcher for
// HTTP/2, proxies or test certificates) by the `fetch` option. The loop is lib/client/session's; the checks of
// the options lib/client/settings'.

export type { FetchBody, FetchInit, FetchLike, FetchResponseLike } from './http.js'
export { retryAfterMs } from './backoff.js'
export type * from './connect-types.js'

/**
 * What tells one entry's `connect()` from another's: the check of a `schema` when `validate` is not given (a
 * promise: the schema's TypeBox compiler is loaded on first use).
 */
export type DefaultValidator =
  (schema: ClientSchema, references: TypeBoxSchema[] | undefined) => Promise<DataValidator | undefined>

/** Internal: the `connect()` of an entry (the Node one validates with TypeBox by default; the browser one does not). */
export function connectWith (defaultValidator: DefaultValidator | undefined): Connect {
  return function connect (url: string | URL, options: ConnectOptions = {}) {
    const session = resolveSession(url, options)
    const { schema, references, validate } = options
    if (validate !== undefined || schema === undefined || defaultValidator === undefined) {
      return run(session, decoder(options, validate === false ? undefined : validate))
    }
    // lazy as the client is: the default check is compiled when the iteration starts, before the first request
    return (async function * () {
      yield * run(session, decoder(options, await defaultValidator(schema, references)))
    })()
  } as Connect
}
