import type { ResetReason } from '../backend.js'
import { invalidOption, shown } from '../../errors.js'
import type { StoredItem } from '../store/items.js'

// The pure pieces of NATS channels: a channel's subject, the tag of a stream's ids, what a message holds, and when
// a client cannot resume. Ids are `<tag>-<stream sequence>`: the sequence is the stream's, shared by all its
// channels (monotonic, sparse per channel); the tag tells a stream from one made again under the same name, whose
// sequence starts over.

const TOKEN = /^[A-Za-z0-9_-]$/
const PREFIX = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/
const STREAM = /^[A-Za-z0-9_-]{1,64}$/

/** Throws unless `prefix` is subject tokens (letters, digits, `_`, `-`) joined by dots. */
export function checkSubjectPrefix (prefix: unknown, owner: string): string {
  if (typeof prefix !== 'string' || !PREFIX.test(prefix) || prefix.length > 64) {
    throw invalidOption('prefix', 'must be subject tokens of letters, digits, _ and - joined by dots, at most 64 ' +
      `characters, got ${shown(prefix)}`, owner)
  }
  return prefix
}

/** Throws unless `stream` is a stream name (letters, digits, `_`, `-`, at most 64). */
export function checkStreamName (stream: unknown, owner: string): string {
  if (typeof stream !== 'string' || !STREAM.test(stream)) {
    throw invalidOption('stream', `must be 1 to 64 letters, digits, _ and -, got ${shown(stream)}`, owner)
  }
  return stream
}

/**
 * A channel name as one subject token: letters, digits, `_` and `-` as they are, every other UTF-8 byte as `~`
 * and two hex digits (`~` itself too), so that two names never share a token and none holds `.`, `*`, `>` or space.
 */
export function subjectToken (name: string): string {
  let token = ''
  for (const char of name) {
    if (TOKEN.test(char)) {
      token += char
      continue
    }
    for (const byte of Buffer.from(char)) token += '~' + byte.toString(16).padStart(2, '0')
  }
  return token
}

/** The tag of a stream's ids, from its creation time: a stream made again under the same name gets another. */
export function streamTag (created: string): string {
  let hash = 0x811c9dc5
  for (let i = 0; i < created.length; i++) hash = Math.imul(hash ^ created.charCodeAt(i), 0x01000193)
  return (hash >>> 0).toString(36)
}

/** A message's body: `<head length>:<tail length>:<head><tail><fields>` (lengths in UTF-16 code units). */
export function pack (stored: StoredItem): string {
  return `${stored.head.length}:${stored.tail.length}:${stored.head}${stored.tail}${stored.fields}`
}

/** What stands for the body of a message no channel wrote: its item is skipped. */
export const NOT_OURS: StoredItem = { head: '', tail: '', fields: '' }

const LENGTHS = /^(0|[1-9][0-9]{0,8}):(0|[1-9][0-9]{0,8}):/

/** The stored item of a message's body; undefined for a body no channel wrote. */
export function unpack (body: string): StoredItem | undefined {
  const match = LENGTHS.exec(body)
  if (match === null) return undefined
  const start = match[0].length
  const tailStart = start + Number(match[1])
  const fieldsStart = tailStart + Number(match[2])
  if (fieldsStart > body.length) return undefined
  const fields = body.slice(fieldsStart)
  return { head: body.slice(start, tailStart), tail: body.slice(tailStart, fieldsStart), fields }
}

/** What a replay knows of the stream, read after its items. */
export interface StreamState {
  readonly tag: string
  /** The oldest message kept (the next one to come when there is none). */
  readonly first: number
  /** The newest message the stream ever stored (0: none). */
  readonly last: number
}

/**
 * Whether a replay reads the `pending` messages of the channel after the id: not when they are more than the channel
 * replays (`history`), nor as many as the stream keeps of it (`perChannel`, 0 or less: no such limit), since the
 * oldest of them may then be gone.
 */
export function worthReading (pending: number, history: number, perChannel: number): boolean {
  return pending > 0 && pending <= history && !(perChannel > 0 && pending >= perChannel)
}

/**
 * Why a client at `id` cannot resume, or undefined when it can. `pending`: the channel's messages after the id
 * that the replay meant to read (all of them, or a page and one more); `read`: those it read (fewer when it did not
 * read them: see `worthReading`); `firstAt`: when the first of them was stored (ms), if there is one.
 */
export function replayReset (
  stream: StreamState, id: { tag: string, seq: number } | undefined, pending: number,
  read: { count: number, firstAt: number | undefined, now: number, maxAge: number }
): ResetReason | undefined {
  if (id === undefined || id.tag !== stream.tag || id.seq > stream.last) return 'unknown'
  // something after the id was removed (by age, or the stream's own limits): perhaps of this channel
  if (id.seq + 1 < stream.first) return 'expired'
  if (read.count < pending) return 'expired'
  if (read.firstAt !== undefined && read.firstAt <= read.now - read.maxAge) return 'expired'
  return undefined
}
