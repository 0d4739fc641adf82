// What the PostgreSQL channel tests share: the database at PG_URL, a prefix of each test's own (its tables and
// functions made with ensureSchema() and dropped at teardown), pools ended at teardown, and one "server": an app
// with the channel `room` on a backend of its own and the route GET /room.
import type { Test } from 'tap'
import pg from 'pg'
import type { FastifyInstance } from 'fastify'
import {
  ensureSchema, postgresChannels, type PostgresChannels, type PostgresChannelsOptions
} from '../../../lib/channel/postgres/index.js'
import type { Channel } from '../../../lib/index.js'
import { startApp, type LogCapture } from '../../helpers.js'

export const PG_URL = process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
let tests = 0

export interface PgContext {
  prefix: string
  /** A pool of its own (ended at teardown, after the apps closed). */
  pool: (max?: number) => pg.Pool
  /** The test's own admin pool: to look at and break things. */
  admin: pg.Pool
  /** The pids of the listening connections of this prefix. */
  listeners: () => Promise<number[]>
  /** Terminates the connections of the context's pools (the listeners taken from them included). */
  terminate: () => Promise<number>
}

export interface PgServer {
  app: FastifyInstance
  url: string
  logs: LogCapture
  room: Channel<number, Promise<string>>
  backend: PostgresChannels
}

export async function pgContext (t: Test, options: { schema?: boolean } = {}): Promise<PgContext> {
  const prefix = `t${process.pid}_${++tests}_`
  const pools: pg.Pool[] = []
  const admin = new pg.Pool({ connectionString: PG_URL, max: 2 })
  if (options.schema !== false) await ensureSchema(admin, { prefix })
  t.teardown(async () => {
    await Promise.all(pools.map(pool => pool.end()))
    await admin.query(`DROP TABLE IF EXISTS ${prefix}items, ${prefix}keys, ${prefix}channels;
      DROP FUNCTION IF EXISTS ${prefix}append, ${prefix}channel`)
    await admin.end()
  })
  return {
    prefix,
    admin,
    pool: (max = 4) => {
      const pool = new pg.Pool({ connectionString: PG_URL, max, application_name: `test:${prefix}` })
      pool.on('error', () => {}) // connections terminated on purpose
      pools.push(pool)
      return pool
    },
    terminate: async () => (await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE application_name IN ($1, $2)`, [`test:${prefix}`, `fastify-typed-sse:${prefix}`])).rowCount ?? 0,
    listeners: async () => (await admin.query<{ pid: number }>(
      'SELECT pid FROM pg_stat_activity WHERE application_name = $1', [`fastify-typed-sse:${prefix}`])).rows.map(r => r.pid)
  }
}

/** One server on the context's database; closed at teardown. */
export async function pgServer (
  t: Test, ctx: PgContext, options: Partial<PostgresChannelsOptions> = {},
  channel: { history?: number, historyMaxAge?: number, queueItems?: number, queueBytes?: number } = {}
): Promise<PgServer> {
  const backend = postgresChannels({ pool: ctx.pool(), prefix: ctx.prefix, ...options })
  let room!: PgServer['room']
  const started = await startApp(app => {
    room = app.sse.channel<number>('room', { backend, history: 100, ...channel })
    app.get('/room', (req, reply) =>
      reply.sse(room.subscribe({ lastEventId: req.headers['last-event-id'], signal: req.signal })))
  })
  t.teardown(() => started.app.close())
  return { ...started, room, backend }
}

/** Resolves once the room's reader knows where the channel is (a subscriber gets items from then on). */
export async function located (room: Channel<number, Promise<string>>, app: FastifyInstance): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const stats = app.sse.stats({ channels: Infinity }).channels.find(c => c.name === room.name)
    if (stats?.position !== '' && stats?.connected === true) return
    await new Promise(resolve => setTimeout(resolve, 10))
  }
  throw new Error('timed out: the reader located the channel')
}

type Query = (text: string, values?: unknown[]) => Promise<unknown>

/** A pool whose starts can be held, and the order in which its queries were asked (see `watchedPool()`). */
export interface WatchedPool {
  pool: pg.Pool
  /** `held`, `located` (a start asked and held, or answered), `replay` and `append` (asked), in order. */
  order: string[]
  /** Whether the starts asked from now on wait until released. */
  hold: (on: boolean) => void
  /** Resolves once the `n`th start (from 1) is held, with what lets it go on. */
  held: (n: number) => Promise<() => void>
  /** Resolves once `order` holds `n` of `what`. */
  seen: (what: string, n: number) => Promise<void>
}

/**
 * A pool of the context for a backend, whose starts (the query that finds where a channel is) can be held one by
 * one, noting the order of starts, replays and appends.
 */
export function watchedPool (ctx: PgContext): WatchedPool {
  const pool = ctx.pool()
  const query = pool.query.bind(pool) as Query
  const order: string[] = []
  const released: Array<() => void> = []
  let waiting: Array<() => void> = []
  let holding = false
  const note = (what: string): void => {
    order.push(what)
    const woken = waiting
    waiting = []
    for (const wake of woken) wake()
  }
  const seen = async (what: string, n: number): Promise<void> => {
    while (order.filter(w => w === what).length < n) await new Promise<void>(resolve => { waiting.push(resolve) })
  }
  ;(pool as unknown as { query: Query }).query = async (text, values) => {
    const locate = text.includes(`${ctx.prefix}channel(`)
    if (text.includes('clock_timestamp()')) note('replay')
    if (text.includes(`${ctx.prefix}append(`)) note('append')
    if (holding && locate) {
      const gate = new Promise<void>(resolve => { released.push(resolve) })
      note('held')
      await gate
    }
    const result = await query(text, values)
    if (locate) note('located')
    return result
  }
  const held = async (n: number): Promise<() => void> => {
    await seen('held', n)
    return released[n - 1] as () => void
  }
  return { pool, order, hold: on => { holding = on }, held, seen }
}
