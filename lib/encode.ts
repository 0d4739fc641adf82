import { invalidItem } from './errors.js'
import type { SseSerializer } from './types.js'

// The only module that knows the wire format. A frame is built whole, as one string, before anything is
// written: a refused item leaves nothing behind, and the stream writer does one write per event.

const LINE_BREAKS = /\r\n|\r|\n/g

/**
 * Where an item carries its frame encoded ahead of time: a channel encodes each published item once and
 * hands every subscriber the same bytes. Internal: the symbol is not exported from the package.
 */
export const kFrame = Symbol('fastify-typed-sse.frame')

/** One complete event on the wire. */
export type Frame = string | Uint8Array

/** The heartbeat frame: a comment with nothing after it, which every client ignores. */
export const HEARTBEAT_FRAME = ':\n\n'

function hasLineBreak (text: string): boolean {
  return text.indexOf('\n') !== -1 || text.indexOf('\r') !== -1
}

/** `prefix` before every line of `text`, so CR, LF and CRLF each start a new field line. */
function prefixLines (prefix: string, text: string): string {
  if (!hasLineBreak(text)) return prefix + text + '\n'
  return prefix + text.replace(LINE_BREAKS, '\n' + prefix) + '\n'
}

function singleLine (field: 'id' | 'event', value: unknown): string {
  if (typeof value !== 'string') throw invalidItem(field, `must be a string, got ${describe(value)}`)
  if (hasLineBreak(value)) throw invalidItem(field, 'must not contain CR or LF')
  if (field === 'id' && value.indexOf('\0') !== -1) throw invalidItem(field, 'must not contain NUL')
  return field + ': ' + value + '\n'
}

function serializeData (data: unknown, serialize: SseSerializer): string {
  let text: unknown
  try {
    text = serialize(data)
  } catch (err) {
    throw invalidItem('data', `could not be serialized: ${(err as Error).message}`, err)
  }
  if (typeof text !== 'string') throw invalidItem('data', `could not be serialized (the serializer returned ${describe(text)})`)
  return text
}

function describe (value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  return typeof value === 'object' ? 'an object' : typeof value
}

/** A retry value the wire can carry: a whole number of milliseconds, >= 0. */
export function isRetry (value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0
}

/** The `retry:` frame sent when a stream opens with the `retry` option. */
export function retryFrame (retry: number): string {
  return 'retry: ' + retry + '\n\n'
}

/**
 * The item, frozen, carrying its frame. The frame is not enumerable: `{ ...item, data: other }` or
 * `Object.assign({}, item)` makes an item without it, which is encoded afresh, not sent as the old bytes.
 */
export function withFrame<T extends object> (item: T, frame: Uint8Array): T & { readonly [kFrame]: Buffer } {
  return Object.freeze(Object.defineProperty({ ...item }, kFrame, { value: frame, enumerable: false })) as T & { readonly [kFrame]: Buffer }
}

/** The frame an item carries when it was encoded ahead of time (a channel's), else undefined. */
export function frameCarried (item: unknown): Frame | undefined {
  return (item as { [kFrame]?: Frame } | null | undefined)?.[kFrame]
}


/**
 * Encodes one item into one complete event frame, ending with the blank line that dispatches it; `''` for an
 * item with no field at all (nothing to send). Throws an `SseError` (a TypeError) naming the field for
 * anything that could let a client see a field or event the item did not contain.
 */
export function encodeItem (item: unknown, serialize: SseSerializer = JSON.stringify): string {
  if (item === null || typeof item !== 'object' || Array.isArray(item)) {
    throw invalidItem('item', `must be an object like { data, event, id, retry, comment }, got ${describe(item)}`)
  }
  const { comment, id, event, retry, data } = item as Record<string, unknown>
  let frame = ''
  if (comment !== undefined) {
    if (typeof comment !== 'string') throw invalidItem('comment', `must be a string, got ${describe(comment)}`)
    frame += prefixLines(': ', comment)
  }
  if (id !== undefined) frame += singleLine('id', id)
  if (event !== undefined) frame += singleLine('event', event)
  if (retry !== undefined) {
    if (!isRetry(retry)) throw invalidItem('retry', `must be a non-negative integer (milliseconds), got ${String(retry)}`)
    frame += 'retry: ' + retry + '\n'
  }
  if (data !== undefined) {
    frame += prefixLines('data: ', typeof data === 'string' ? data : serializeData(data, serialize))
  }
  return frame === '' ? '' : frame + '\n'
}
