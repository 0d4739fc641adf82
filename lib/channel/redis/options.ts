import type { Cluster, Redis } from 'ioredis'
import { invalidOption } from '../../errors.js'
import { refuseNonObject, refuseUnknown } from '../../options.js'

// The options of `redisChannels()`: checked once, when the backend is made, each bad one named in its error.

/** Options of `redisChannels()`. */
export interface RedisChannelsOptions {
  /**
   * Your ioredis client (also what `@fastify/redis` gives you), or an ioredis `Cluster` for a Redis Cluster.
   * Publishes and replays use it; the reader of every channel of this backend is one `redis.duplicate()` (on a
   * cluster: one per slot group), closed once its channels have had no local subscriber for `readerIdleTimeout`, or
   * with the last of them. Your client is never closed by the plugin.
   */
  redis: Redis | Cluster
  /**
   * Prefix of the stream keys, not empty: a channel `chat` lives at `<prefix>chat` (on a Redis Cluster at
   * `{<prefix><n>}chat`, n its slot group; the prefix then holds no `{` or `}`). Default `'sse:'`.
   */
  prefix?: string
  /** Milliseconds after which a publish Redis has not answered rejects. Default 5000. */
  publishTimeout?: number
  /** Milliseconds one `XREAD BLOCK` waits before the reader asks again. Default 5000. */
  blockTimeout?: number
  /**
   * The reader connection's name in `CLIENT LIST`: `<readerName>:<prefix>`. Default `'fastify-typed-sse'`;
   * give each server its own (its host name) to tell them apart.
   */
  readerName?: string
  /**
   * Milliseconds a publish's `idempotencyKey` is remembered: a publish with the same key within that time
   * stores nothing and resolves to the first one's id. Default 300000 (5 minutes).
   */
  idempotencyWindow?: number
  /**
   * On a Redis Cluster: how many hash slots the channels are spread over, by the hash tag in their name if any,
   * else by their name (each slot group has one reader connection in a process that has subscribers in it).
   * Ignored without a cluster. Default 16.
   */
  slotGroups?: number
  /**
   * Milliseconds a reader whose channels have no local subscriber stays open before it closes its connection (the
   * next subscriber opens it again). Default 30000.
   */
  readerIdleTimeout?: number
}

/**
 * Options of exactly that shape: a name `RedisChannelsOptions` does not have fails to compile, also in an object
 * built beforehand (which TypeScript's check of object literals does not see).
 */
export type Exactly<Options, Shape> = Options & Record<Exclude<keyof Options, keyof Shape>, never>

const OPTION_NAMES: ReadonlyArray<keyof RedisChannelsOptions> = [
  'redis', 'prefix', 'publishTimeout', 'blockTimeout', 'readerName', 'idempotencyWindow', 'slotGroups',
  'readerIdleTimeout'
]

/** What a reader reads on: a connection, or on a cluster a cluster client of its own. */
export type Connection = Redis | Cluster

/** The options checked, with their defaults: what every part of a backend reads. */
export interface Settings extends Required<Omit<RedisChannelsOptions, 'redis'>> {
  redis: Connection
  /** Whether `redis` is a Cluster: every key then carries its slot group's hash tag, and each group has its reader. */
  cluster: boolean
}

/** The longest delay a Node.js timer takes (longer ones fire at once). */
const MAX_TIMER = 2 ** 31 - 1

function positive (option: string, value: unknown, max = Number.MAX_SAFE_INTEGER): number {
  if (!(Number.isSafeInteger(value) && (value as number) > 0 && (value as number) <= max)) {
    const most = max === MAX_TIMER ? ` up to ${MAX_TIMER}` : ''
    throw invalidOption(option, `must be a positive whole number of milliseconds${most}, got ${String(value)}`)
  }
  return value as number
}

/** The options with their defaults, checked: a bad one throws `FST_SSE_INVALID_OPTION` naming it. */
export function settingsOf (options: RedisChannelsOptions): Settings {
  refuseNonObject(options, '{ redis, prefix, … }', 'redisChannels()')
  // a misspelt option (`prefx`) would otherwise leave its default in place without a word
  refuseUnknown(options, OPTION_NAMES, 'redisChannels()')
  const {
    redis, prefix = 'sse:', publishTimeout = 5000, blockTimeout = 5000, readerName = 'fastify-typed-sse',
    idempotencyWindow = 300_000, slotGroups = 16, readerIdleTimeout = 30_000
  } = options
  if (typeof (redis as Partial<Redis> | undefined)?.duplicate !== 'function') {
    throw invalidOption('redis', 'must be an ioredis client (new Redis(url), new Cluster(nodes), ' +
      'or fastify.redis from @fastify/redis)')
  }
  if (typeof prefix !== 'string') throw invalidOption('prefix', `must be a string, got ${typeof prefix}`)
  // every channel key starts with it (or on a cluster with `{`); idempotency keys never do
  if (prefix === '') throw invalidOption('prefix', 'must be non-empty: the keys of channels start with it')
  const cluster = (redis as Partial<Cluster>).isCluster === true
  // a channel's own tag is in its name, so the prefix holds none: then no two names can share a key
  if (cluster && /[{}]/.test(prefix)) {
    throw invalidOption('prefix', 'must be without { or } on a Redis Cluster (a channel name "{tag}…" chooses ' +
      `its slot itself), got ${JSON.stringify(prefix)}`)
  }
  // ioredis puts the client's keyPrefix before each key: a hash tag there would be the tag of every key
  if (cluster && /[{}]/.test(String(redis.options.keyPrefix ?? ''))) {
    throw invalidOption('redis', 'must have a keyPrefix without { or } on a Redis Cluster (it comes before the ' +
      `hash tags of the channels' keys), got ${JSON.stringify(String(redis.options.keyPrefix))}`)
  }
  if (!(Number.isSafeInteger(slotGroups) && slotGroups >= 1 && slotGroups <= 16384)) {
    throw invalidOption('slotGroups', `must be a whole number from 1 to 16384, got ${String(slotGroups)}`)
  }
  if (typeof readerName !== 'string' || !/^[\w:.-]+$/.test(readerName)) {
    throw invalidOption('readerName', `must be letters, digits and _:.- only, got ${JSON.stringify(readerName)}`)
  }
  return {
    redis,
    cluster,
    prefix,
    readerName,
    slotGroups,
    publishTimeout: positive('publishTimeout', publishTimeout, MAX_TIMER),
    blockTimeout: positive('blockTimeout', blockTimeout, MAX_TIMER),
    idempotencyWindow: positive('idempotencyWindow', idempotencyWindow),
    readerIdleTimeout: positive('readerIdleTimeout', readerIdleTimeout, MAX_TIMER)
  }
}
