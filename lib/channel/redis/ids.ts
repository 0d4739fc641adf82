import type { ResetReason } from '../backend.js'
import type { Entry } from './entry.js'

// Stream ids as numbers, and where an id stands in a stream: whether a client there missed something. Pure
// functions over what Redis answered.

const MAX_ID_PART = 2n ** 64n - 1n
const STREAM_ID = /^(0|[1-9][0-9]{0,19})-(0|[1-9][0-9]{0,19})$/

/** A stream id as one comparable number; undefined when it is not a stream id Redis could have issued. */
export function idKey (id: string): bigint | undefined {
  const match = STREAM_ID.exec(id)
  if (match === null) return undefined
  const ms = BigInt(match[1] as string)
  const seq = BigInt(match[2] as string)
  return ms > MAX_ID_PART || seq >= MAX_ID_PART ? undefined : (ms << 64n) + seq
}

/** The key of an id Redis gave us (always well formed). */
export function keyOf (id: string): bigint {
  return idKey(id) as bigint
}

export interface StreamInfo {
  /** The newest id the stream ever issued ('0-0' when there is no stream). */
  lastGenerated: string
  /**
   * An id before which something was removed: a client behind it has missed something. Trimming (MAXLEN) leaves
   * no record of the ids it removed, only that it removed some, so when it did this is the oldest kept entry: a
   * client exactly at the last trimmed entry gets a reset it could have done without, never a silent gap.
   */
  removedBefore: string
  /** The newest id deleted by XDEL ('0-0' when none): an id that is no entry but may have been one. */
  deleted: string
  /** The newest entry still kept. */
  lastEntry: string | undefined
}

export const NO_STREAM: StreamInfo = { lastGenerated: '0-0', removedBefore: '0-0', deleted: '0-0', lastEntry: undefined }

/** The reply of `XINFO STREAM` (a flat list of names and values), from Redis 7 or later. */
export function streamInfo (reply: unknown): StreamInfo {
  const fields = reply as unknown[]
  const info = new Map<unknown, unknown>()
  for (let i = 0; i + 1 < fields.length; i += 2) info.set(fields[i], fields[i + 1])
  const lastGenerated = info.get('last-generated-id') as string
  const firstEntry = (info.get('first-entry') as Entry | null)?.[0]
  const lastEntry = (info.get('last-entry') as Entry | null)?.[0]
  // XDEL says what it deleted; trimming only shows in the count of entries ever added
  const deleted = info.get('max-deleted-entry-id') as string
  const trimmed = Number(info.get('entries-added')) > Number(info.get('length'))
  const removedBefore = trimmed && firstEntry !== undefined && keyOf(firstEntry) > keyOf(deleted) ? firstEntry : deleted
  return { lastGenerated, removedBefore, deleted, lastEntry }
}

/**
 * Why a client (or a reader) at `id` cannot go on from there without a gap, or undefined when it can; `found`:
 * the stream holds `id`. The age of what follows is the caller's concern.
 */
export function gap (stream: StreamInfo, id: string, at: bigint, found: boolean): ResetReason | undefined {
  if (at > keyOf(stream.lastGenerated)) return 'unknown'
  if (at < keyOf(stream.removedBefore)) return 'expired'
  // Not in the stream, not deleted from it, neither its origin nor its newest id: the stream the id came from is
  // gone (a Redis that lost its data started it again, with newer ids and nothing trimmed).
  if (!found && at > keyOf(stream.deleted) && at !== 0n && id !== stream.lastGenerated) return 'unknown'
  return undefined
}

/** Milliseconds since the epoch on Redis's clock, from the reply of `TIME`. */
export function redisNow (reply: unknown): number {
  const [seconds, micros] = reply as [string, string]
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)
}
