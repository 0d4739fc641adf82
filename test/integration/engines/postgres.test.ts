// The engines' contract (./contract) on PostgreSQL at PG_URL: each server has its own pool; the tables of this run
// have a prefix of their own and are dropped at the end.
import t from 'tap'
import pg from 'pg'
import { ensureSchema, postgresChannels } from '../../../lib/channel/postgres/index.js'
import { freePort } from '../../support/child-server.js'
import { contract } from './contract.js'

const PG_URL = process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const prefix = `t${process.pid}_contract_`
const pools: pg.Pool[] = []
const admin = new pg.Pool({ connectionString: PG_URL, max: 2 })
await ensureSchema(admin, { prefix })
t.teardown(async () => {
  await Promise.all(pools.map(pool => pool.end()))
  await admin.query(`DROP TABLE ${prefix}items, ${prefix}keys, ${prefix}channels;
    DROP FUNCTION ${prefix}append, ${prefix}channel`)
  await admin.end()
})

function pool (url = PG_URL): pg.Pool {
  const made = new pg.Pool({ connectionString: url, max: 4 })
  made.on('error', () => {}) // a test that kills connections expects them to fail
  pools.push(made)
  return made
}

contract(t, {
  name: 'PostgreSQL',
  shared: true,
  backend: async () => postgresChannels({ pool: pool(), prefix }),
  unreachable: async () => postgresChannels({
    pool: pool(`postgres://postgres@127.0.0.1:${await freePort()}/test`), prefix
  }),
  held: async () => Number((await admin.query('SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1',
    [`fastify-typed-sse:${prefix}`])).rows[0].n)
})
