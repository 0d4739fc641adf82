import { joinFrame, withFrame, type FrameParts } from '../../encode.js'
import { invalidItem, invalidOption } from '../../errors.js'
import type { SseItem } from '../../types.js'
import type { ChannelItem } from '../backend.js'

// What the PostgreSQL and NATS channels store of an item, and the ids they give: pure functions, shared by both.
// An item is stored as its frame around the place of its id line (`head`, `tail`: every process rebuilds the same
// bytes by concatenation, never serializing the data again) and its fields as JSON (what in-process subscribers get).

/** An idempotency key longer than this is refused. */
export const MAX_IDEMPOTENCY_KEY = 256
/** A channel name longer than this (in UTF-8 bytes) is refused by a store that keys or addresses by it. */
export const MAX_NAME_BYTES = 1024

/** What is stored of one item. */
export interface StoredItem extends FrameParts {
  /** The item's event, retry, comment and data, as JSON. */
  readonly fields: string
}

/** A stored item read back, with its position in the store. */
export interface ReadItem extends StoredItem {
  readonly seq: number
}

/**
 * The item's parts (encoded by the channel) and its fields as JSON; refuses data JSON cannot carry. `engine` names
 * the store in the refusal.
 */
export function storedItem (item: SseItem<unknown>, parts: FrameParts, engine: string): StoredItem {
  let fields: string
  try {
    fields = JSON.stringify({ event: item.event, retry: item.retry, comment: item.comment, data: item.data })
  } catch (err) {
    throw invalidItem('data', `must be JSON-serializable on a ${engine} channel`, err)
  }
  return { head: parts.head, tail: parts.tail, fields }
}

/** The item a subscriber gets, its frame rebuilt around `id`; undefined for fields no channel wrote. */
export function rebuild (stored: StoredItem, id: string): ChannelItem | undefined {
  let fields: unknown
  try {
    fields = JSON.parse(stored.fields)
  } catch {
    return undefined
  }
  if (fields === null || typeof fields !== 'object' || Array.isArray(fields)) return undefined
  const frame = joinFrame(stored, id)
  return withFrame({ ...fields as SseItem<unknown>, id }, Buffer.from(frame))
}

/** Throws for an idempotency key that is not a non-empty string of at most `MAX_IDEMPOTENCY_KEY` characters. */
export function checkIdempotencyKey (key: unknown): void {
  if (typeof key === 'string' && key !== '' && key.length <= MAX_IDEMPOTENCY_KEY) return
  const problem = `must be a non-empty string of at most ${MAX_IDEMPOTENCY_KEY} characters, got ${JSON.stringify(key)}`
  throw invalidOption('idempotencyKey', problem)
}

/** Throws for a channel name over `MAX_NAME_BYTES` bytes, or one that holds NUL (a store of text cannot keep it). */
export function checkName (name: string, engine: string): void {
  if (Buffer.byteLength(name) > MAX_NAME_BYTES || name.includes('\0')) {
    throw invalidOption('name', `of a ${engine} channel must be at most ${MAX_NAME_BYTES} bytes in UTF-8, without ` +
      `NUL, got ${JSON.stringify(name.slice(0, 40))}${name.length > 40 ? '…' : ''}`)
  }
}

/**
 * Adds the channel `create()` makes under `name` to a backend's `channels`, refusing a second one of that name: its
 * reader hands each channel's items to one channel only. `factory` names the backend's function in the error.
 */
export function addChannel<C> (channels: Map<string, C>, name: string, factory: string, create: () => C): C {
  if (channels.has(name)) {
    throw invalidOption('backend', `of channel "${name}" already serves a channel of that name ` +
      `(another app of this process?): give each app its own ${factory}`)
  }
  const created = create()
  channels.set(name, created)
  return created
}

const ID = /^([0-9a-z]{1,16})-(0|[1-9][0-9]{0,15})$/

/** An id of these stores: `<tag>-<seq>`, the tag telling one history from another that reused its numbers. */
export function formatId (tag: string, seq: number): string {
  return tag + '-' + seq
}

/** The tag and sequence number of an id, or undefined when it is not an id these stores issue. */
export function parseId (id: string): { tag: string, seq: number } | undefined {
  const match = ID.exec(id)
  if (match === null) return undefined
  const seq = Number(match[2])
  return Number.isSafeInteger(seq) ? { tag: match[1] as string, seq } : undefined
}

/** A positive whole number of milliseconds (a timeout, a window), or a refusal naming the option. */
export function positiveMs (option: string, value: unknown, owner: string): number {
  if (!(Number.isSafeInteger(value) && (value as number) > 0)) {
    throw invalidOption(option, `must be a positive whole number of milliseconds, got ${String(value)}`, owner)
  }
  return value as number
}
