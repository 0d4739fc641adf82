// The engines' contract (./contract) on the Redis at REDIS_URL: each server has its own client; the keys of this
// run have a prefix of their own and are deleted at the end.
import t from 'tap'
import { Redis } from 'ioredis'
import { redisChannels } from '../../../lib/channel/redis/index.js'
import { freePort } from '../../support/child-server.js'
import { contract } from './contract.js'

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const prefix = `test:fastify-typed-sse:${process.pid}:contract:`
const clients: Redis[] = []
const admin = new Redis(REDIS_URL)
t.teardown(async () => {
  for (const c of clients) c.disconnect()
  const keys = await admin.keys(prefix + '*')
  if (keys.length > 0) await admin.del(...keys)
  await admin.quit()
})

function client (redis: Redis): Redis {
  redis.on('error', () => {}) // the unreachable one fails on purpose
  clients.push(redis)
  return redis
}

contract(t, {
  name: 'Redis',
  shared: true,
  // MAXLEN ~ trims whole nodes (100 entries): a history of 3 loses its oldest items a node later
  gapItems: 250,
  backend: async () => redisChannels({ redis: client(new Redis(REDIS_URL)), prefix }),
  unreachable: async () => {
    const redis = client(new Redis(await freePort(), '127.0.0.1', { retryStrategy: () => 1000 }))
    // reconnecting: a publish is refused at once
    await new Promise(resolve => redis.once('reconnecting', resolve))
    return redisChannels({ redis, prefix })
  },
  held: async () => String(await admin.call('CLIENT', 'LIST')).split('\n')
    .filter(line => line.includes(`name=fastify-typed-sse:${prefix}`)).length
})
