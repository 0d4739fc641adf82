import type { Pool } from 'pg'
import { invalidOption, shown } from '../../errors.js'
import { refuseNonObject, refuseUnknown } from '../../options.js'

// The tables and functions of PostgreSQL channels, made by `ensureSchema(pool)` (or from `schemaSql()` by your own
// migrations). Every name starts with the prefix, so several apps can share a database.
//
// Ids follow commit order: an append locks its channel's row (`FOR NO KEY UPDATE`) and takes the next number from
// it in the same transaction, so appends to one channel commit one after the other, in the order of their numbers,
// and a reader that has seen number n has seen every number before it. (A sequence or an identity column gives
// numbers in the order transactions ask for them, not the order they commit in: a reader could pass a smaller
// number that commits later.) Numbers are dense per channel, so a reader or a replay knows exactly what it missed:
// the channel's row keeps the last number given and the last one removed by retention.

/** The prefix of every table and function when none is given. */
export const DEFAULT_PREFIX = 'sse_'
const PREFIX = /^[a-z_][a-z0-9_]{0,30}$/

/** Throws unless `prefix` is a lowercase SQL identifier start (letters, digits, `_`; at most 31 characters). */
export function checkPrefix (prefix: unknown, owner: string): string {
  if (typeof prefix !== 'string' || !PREFIX.test(prefix)) {
    throw invalidOption('prefix', 'must be lowercase letters, digits and _ (not first a digit), at most 31 ' +
      `characters, got ${shown(prefix)}`, owner)
  }
  return prefix
}

/** The names the schema of `prefix` uses. */
export function schemaNames (prefix: string): {
  channels: string, items: string, keys: string, append: string, channel: string, notify: string
} {
  return {
    channels: prefix + 'channels',
    items: prefix + 'items',
    keys: prefix + 'keys',
    append: prefix + 'append',
    channel: prefix + 'channel',
    // the LISTEN/NOTIFY channel: one per prefix
    notify: prefix + 'items'
  }
}

/** The statements that make (or bring up to date) the schema of PostgreSQL channels with `prefix`. */
export function schemaSql (prefix: string = DEFAULT_PREFIX): string {
  const { channels, items, keys, append, channel, notify } = schemaNames(checkPrefix(prefix, 'schemaSql()'))
  const epoch = 'substr(md5(random()::text || clock_timestamp()::text), 1, 10)'
  return `CREATE TABLE IF NOT EXISTS ${channels} (
  name text PRIMARY KEY,
  epoch text NOT NULL,
  last_seq bigint NOT NULL DEFAULT 0,
  trimmed_seq bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS ${items} (
  channel text NOT NULL REFERENCES ${channels} (name) ON DELETE CASCADE,
  seq bigint NOT NULL,
  at timestamptz NOT NULL,
  head text NOT NULL,
  tail text NOT NULL,
  fields text NOT NULL,
  PRIMARY KEY (channel, seq)
);
CREATE TABLE IF NOT EXISTS ${keys} (
  channel text NOT NULL REFERENCES ${channels} (name) ON DELETE CASCADE,
  key text NOT NULL,
  seq bigint NOT NULL,
  expires timestamptz NOT NULL,
  PRIMARY KEY (channel, key)
);
CREATE INDEX IF NOT EXISTS ${keys}_expires ON ${keys} (channel, expires);

-- The row of a channel, made on first use with a new epoch (the first part of its ids).
CREATE OR REPLACE FUNCTION ${channel} (p_name text, OUT epoch text, OUT last_seq bigint, OUT trimmed_seq bigint)
LANGUAGE plpgsql AS $$
BEGIN
  LOOP
    SELECT c.epoch, c.last_seq, c.trimmed_seq INTO epoch, last_seq, trimmed_seq FROM ${channels} c WHERE c.name = p_name;
    IF FOUND THEN RETURN; END IF;
    INSERT INTO ${channels} (name, epoch) VALUES (p_name, ${epoch}) ON CONFLICT (name) DO NOTHING;
  END LOOP;
END $$;

-- Stores an item under the lock of its channel's row, trims by count (p_keep) and age (p_max_age ms, NULL: none),
-- remembers its idempotency key (p_key, NULL: none) for p_window ms, and notifies '<seq>:<epoch>:<channel>' at commit.
-- A key seen within its window stores nothing and answers the id stored with it.
CREATE OR REPLACE FUNCTION ${append} (p_name text, p_head text, p_tail text, p_fields text, p_key text,
  p_keep bigint, p_max_age double precision, p_window double precision) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  v_epoch text; v_seq bigint; v_trimmed bigint; v_cut bigint; v_old bigint; v_now timestamptz;
BEGIN
  LOOP
    SELECT epoch, last_seq, trimmed_seq INTO v_epoch, v_seq, v_trimmed FROM ${channels} WHERE name = p_name
      FOR NO KEY UPDATE;
    EXIT WHEN FOUND;
    INSERT INTO ${channels} (name, epoch) VALUES (p_name, ${epoch}) ON CONFLICT (name) DO NOTHING;
  END LOOP;
  v_now := clock_timestamp();
  IF p_key IS NOT NULL THEN
    SELECT seq INTO v_old FROM ${keys} WHERE channel = p_name AND key = p_key AND expires > v_now;
    IF FOUND THEN RETURN v_epoch || '-' || v_old; END IF;
  END IF;
  v_seq := v_seq + 1;
  INSERT INTO ${items} (channel, seq, at, head, tail, fields) VALUES (p_name, v_seq, v_now, p_head, p_tail, p_fields);
  v_cut := GREATEST(v_trimmed, v_seq - p_keep);
  IF p_max_age IS NOT NULL THEN
    SELECT max(o.seq) INTO v_old FROM (SELECT seq, at FROM ${items} WHERE channel = p_name AND seq > v_cut
      ORDER BY seq LIMIT 64) o WHERE o.at <= v_now - make_interval(secs => p_max_age / 1000);
    v_cut := GREATEST(v_cut, v_old);
  END IF;
  IF v_cut > v_trimmed THEN
    DELETE FROM ${items} WHERE channel = p_name AND seq > v_trimmed AND seq <= v_cut;
  END IF;
  UPDATE ${channels} SET last_seq = v_seq, trimmed_seq = v_cut WHERE name = p_name;
  IF p_key IS NOT NULL THEN
    INSERT INTO ${keys} (channel, key, seq, expires)
      VALUES (p_name, p_key, v_seq, v_now + make_interval(secs => p_window / 1000))
      ON CONFLICT (channel, key) DO UPDATE SET seq = excluded.seq, expires = excluded.expires;
    DELETE FROM ${keys} WHERE (channel, key) IN
      (SELECT channel, key FROM ${keys} WHERE channel = p_name AND expires <= v_now LIMIT 64);
  END IF;
  PERFORM pg_notify('${notify}', v_seq || ':' || v_epoch || ':' || p_name);
  RETURN v_epoch || '-' || v_seq;
END $$;
`
}

/** Options of `ensureSchema()`. */
export interface EnsureSchemaOptions {
  /** The prefix of the tables and functions: the same as `postgresChannels({ prefix })`. Default `'sse_'`. */
  prefix?: string
}

/**
 * Creates the tables and functions of PostgreSQL channels if they are missing (and replaces the functions with
 * this version's): run it once at startup, before the first publish. Safe from several servers at once (they take
 * turns on an advisory lock). Your pool is not closed.
 */
export async function ensureSchema (pool: Pool, options: EnsureSchemaOptions = {}): Promise<void> {
  refuseNonObject(options, '{ prefix }', 'ensureSchema()')
  refuseUnknown(options, ['prefix'], 'ensureSchema()')
  const { prefix = DEFAULT_PREFIX } = options
  const sql = schemaSql(checkPrefix(prefix, 'ensureSchema()'))
  const client = await pool.connect()
  try {
    await client.query('BEGIN')
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', ['fastify-typed-sse:schema'])
    await client.query(sql)
    await client.query('COMMIT')
  } catch (err) {
    // the connection is closed rather than given back: that ends the transaction, whatever state it is in
    client.release(err as Error)
    throw err
  }
  client.release()
}
