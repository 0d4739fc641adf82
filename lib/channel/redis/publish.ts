import { invalidOption } from '../../errors.js'
import type { Connection } from './options.js'

// One publish on Redis: a plain XADD, or with an idempotency key the script that stores it once.

/** ioredis states in which a command would wait in the offline queue for a connection that was lost. */
export const DISCONNECTED = new Set(['reconnecting', 'close', 'end'])
/** An idempotency key longer than this is refused (it is part of a Redis key). */
const MAX_IDEMPOTENCY_KEY = 256
/**
 * Stores the entry unless its idempotency key was seen within the window: then it answers the id stored with it.
 * KEYS: stream, idempotency key. ARGV: window in ms, MAXLEN, then the entry's fields (their layout is entry.ts's).
 */
const IDEMPOTENT_XADD = `local id = redis.call('GET', KEYS[2])
if id then return id end
id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
redis.call('SET', KEYS[2], id, 'PX', ARGV[1])
return id`

/** Refuses an idempotency key that is not a non-empty string of at most 256 characters, naming the option. */
export function checkIdempotencyKey (key: unknown): void {
  if (typeof key === 'string' && key !== '' && key.length <= MAX_IDEMPOTENCY_KEY) return
  const problem = `must be a non-empty string of at most ${MAX_IDEMPOTENCY_KEY} characters, got ${JSON.stringify(key)}`
  throw invalidOption('idempotencyKey', problem)
}

/**
 * Stores an entry in the stream at `key`, trimmed to about `maxLen` entries; answers its id. With `idempotent`
 * (the Redis key of the publish's idempotency key) it stores nothing when that key was seen within `window` ms,
 * and answers the id stored then.
 */
export function xadd (
  redis: Connection, key: string, maxLen: string, fields: string[], idempotent: string | undefined, window: number
): Promise<unknown> {
  return idempotent === undefined
    ? redis.call('XADD', key, 'MAXLEN', '~', maxLen, '*', ...fields)
    : redis.call('EVAL', IDEMPOTENT_XADD, 2, key, idempotent, window, maxLen, ...fields)
}
