// The options of redisChannels() (lib/channel/redis/options.ts): defaults, and each refusal naming its option.
// Checked before any connection is used, so stand-ins for the clients do: no Redis needed.
import t from 'tap'
import type { Redis } from 'ioredis'
import { settingsOf, type RedisChannelsOptions } from '../../../lib/channel/redis/options.js'

/** Stands in for an ioredis client: what the checks read of one (`duplicate`, `isCluster`, `options`). */
function client (options: { cluster?: boolean, keyPrefix?: string } = {}): Redis {
  const keyPrefix = options.keyPrefix === undefined ? {} : { keyPrefix: options.keyPrefix }
  return { duplicate () {}, isCluster: options.cluster === true, options: keyPrefix } as unknown as Redis
}

t.test('the defaults, and what is given kept as given', async t => {
  const redis = client()
  t.same(settingsOf({ redis }), {
    redis,
    cluster: false,
    prefix: 'sse:',
    readerName: 'fastify-typed-sse',
    slotGroups: 16,
    publishTimeout: 5000,
    blockTimeout: 5000,
    idempotencyWindow: 300_000,
    readerIdleTimeout: 30_000
  })
  const given = {
    redis: client({ cluster: true }),
    prefix: 'app:',
    readerName: 'host-1.example',
    slotGroups: 1,
    publishTimeout: 1,
    blockTimeout: 100,
    idempotencyWindow: 60_000,
    readerIdleTimeout: 1
  }
  t.same(settingsOf(given), { ...given, cluster: true })
  t.equal(settingsOf({ redis, prefix: '{x}' }).prefix, '{x}', 'without a cluster, the prefix may hold a tag')
})

t.test('each bad option is refused, naming it', async t => {
  const redis = client()
  const cluster = client({ cluster: true })
  const refusals: Array<[Partial<RedisChannelsOptions>, string, RegExp]> = [
    [{ redis: undefined }, 'redis', /must be an ioredis client/],
    [{ redis: {} as Redis }, 'redis', /must be an ioredis client/],
    [{ prefix: 5 as unknown as string }, 'prefix', /must be a string, got number/],
    [{ prefix: '' }, 'prefix', /must be non-empty/],
    [{ redis: cluster, prefix: 'a{b' }, 'prefix', /without \{ or \} on a Redis Cluster/],
    [{ redis: client({ cluster: true, keyPrefix: 'app{1}:' }) }, 'redis', /keyPrefix without \{ or \}/],
    [{ slotGroups: 0 }, 'slotGroups', /from 1 to 16384, got 0/],
    [{ slotGroups: 16385 }, 'slotGroups', /from 1 to 16384/],
    [{ slotGroups: 1.5 }, 'slotGroups', /from 1 to 16384/],
    [{ readerName: 'a b' }, 'readerName', /letters, digits and _:.- only/],
    [{ readerName: 5 as unknown as string }, 'readerName', /letters, digits/],
    [{ publishTimeout: 0 }, 'publishTimeout', /positive whole number of milliseconds up to 2147483647, got 0/],
    [{ blockTimeout: Infinity }, 'blockTimeout', /positive whole number/],
    [{ idempotencyWindow: 1.5 }, 'idempotencyWindow', /positive whole number/],
    [{ readerIdleTimeout: -1 }, 'readerIdleTimeout', /positive whole number of milliseconds up to 2147483647, got -1/],
    // a timer longer than Node.js takes would fire at once
    [{ publishTimeout: 2 ** 31 }, 'publishTimeout', /up to 2147483647, got 2147483648/],
    [{ blockTimeout: 2 ** 31 }, 'blockTimeout', /up to 2147483647/]
  ]
  for (const [options, field, message] of refusals) {
    t.throws(() => settingsOf({ redis, ...options } as RedisChannelsOptions), { code: 'FST_SSE_INVALID_OPTION', field, message }, field)
  }
  t.ok(settingsOf({ redis: client({ keyPrefix: 'app{1}:' }) }), 'without a cluster, a keyPrefix may hold a tag')
})

t.test('an option redisChannels() does not have is refused by name, listing those it has; so is no object', async t => {
  const redis = client()
  for (const typo of ['prefx', 'publishTimout', 'slotGroup', 'keyPrefix']) {
    t.throws(() => settingsOf({ redis, [typo]: 1 } as unknown as RedisChannelsOptions), {
      code: 'FST_SSE_INVALID_OPTION',
      field: typo,
      message: new RegExp(`^fastify-typed-sse option "${typo}" is not an option of redisChannels\\(\\) \\(its options: redis, ` +
        'prefix, publishTimeout, blockTimeout, readerName, idempotencyWindow, slotGroups, readerIdleTimeout\\)' +
        (typo === 'slotGroup' ? '; did you mean "slotGroups"\\?$' : typo === 'keyPrefix' ? '$' : '; did you mean'))
    }, typo)
  }
  for (const options of [undefined, null, 'redis://127.0.0.1']) {
    t.throws(() => settingsOf(options as unknown as RedisChannelsOptions), {
      code: 'FST_SSE_INVALID_OPTION', field: 'options', message: /redisChannels\(\) option "options" must be an object/
    }, String(options))
  }
})
