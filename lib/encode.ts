import { invalidItem, nearName, shown } from './errors.js'
import type { SseItem, SseSerializer } from './types.js'

// The only module that knows the wire format. A frame is built whole, as one string, before anything is
// written: a refused item leaves nothing behind, and the stream writer does one write per event.

const LINE_BREAKS = /\r\n|\r|\n/g

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
    // the cause carries the serializer's reason; loggers print it after this message (pino: "…: <cause>")
    throw invalidItem('data', 'could not be serialized', err)
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

/** The `retry:` frame a stream opens with (unless its `retry` option is false). */
export function retryFrame (retry: number): string {
  return 'retry: ' + retry + '\n\n'
}

/**
 * The delay of one stream's `retry:` line: `retry` moved by up to `retryJitter` of it either way, evenly, in
 * whole milliseconds (>= 0, as `retryJitter` is at most 1).
 */
export function jitteredRetry (retry: number, retryJitter: number): number {
  return Math.round(retry * (1 + retryJitter * (2 * Math.random() - 1)))
}

/**
 * Where an encoded item carries its frame. Internal (not exported from the package's entry points); the
 * property is not enumerable, so `{ ...item, data: other }` is a plain item again, encoded afresh when written.
 */
export const kFrame = Symbol('fastify-typed-sse.frame')

/**
 * An item encoded ahead of time: its fields, frozen, and the frame they encode to. A channel encodes each
 * published item once and hands every subscriber the same object; the stream writes the frame as it is.
 */
export type EncodedItem<T extends SseItem<unknown> = SseItem<unknown>> = Readonly<T> & { readonly [kFrame]: Buffer }

/** The item, frozen, carrying `frame` (which must be what the item encodes to). */
export function withFrame<T extends SseItem<unknown>> (item: T, frame: Buffer): EncodedItem<T> {
  const encoded = Object.defineProperty({ ...item }, kFrame, { value: frame, enumerable: false })
  return Object.freeze(encoded) as EncodedItem<T>
}

/** Encodes the item once: the object every subscriber of a channel receives. Throws like `encodeItem`. */
export function encodeAhead<T extends SseItem<unknown>> (item: T, serialize?: SseSerializer): EncodedItem<T> {
  return withFrame(item, Buffer.from(encodeItem(item, serialize)))
}

/**
 * A frame on its own, with its size in bytes: what a push source hands the stream that encoded it (through
 * `StreamLink.encode`, by that stream's rules). A string frame is gathered with the stream's other string frames
 * into one write, as the stream's own are; no item fields are copied or frozen.
 */
export class EncodedFrame {
  readonly [kFrame]: Frame
  readonly bytes: number

  constructor (frame: Frame) {
    this[kFrame] = frame
    this.bytes = typeof frame === 'string' ? Buffer.byteLength(frame) : frame.byteLength
  }
}

/** The frame an item carries when it was encoded ahead of time (bytes, or a push source's string), else undefined. */
export function frameOf (item: unknown): Frame | undefined {
  return (item as { [kFrame]?: Frame } | null | undefined)?.[kFrame]
}

/** The size in bytes of an encoded item's frame. */
export function frameSize (item: EncodedItem): number {
  return item[kFrame].length
}

/** An item's frame without its `id:` line, for a store that gives the id (a Redis stream): see `joinFrame`. */
export interface FrameParts {
  /** What comes before the id line (the comment lines). */
  readonly head: string
  /** What comes after it, blank line included. */
  readonly tail: string
}

function checkObject (item: unknown): Record<string, unknown> {
  if (item === null || typeof item !== 'object' || Array.isArray(item)) {
    throw invalidItem('item', `must be an object like { data, event, id, retry, comment }, got ${describe(item)}`)
  }
  return item as Record<string, unknown>
}

const ITEM_FIELDS: readonly string[] = ['data', 'event', 'id', 'retry', 'comment']

/**
 * An item that encodes to nothing: fine when it has no field at all (`{}`), refused when it has fields the wire
 * does not know (`{ dat: 'x' }`), which would otherwise be dropped without a word. Only reached by an item with none
 * of the known fields, so an item that writes something is never looked at twice.
 */
function checkEmpty (item: Record<string, unknown>): void {
  for (const name of Object.keys(item)) {
    if (!ITEM_FIELDS.includes(name)) {
      throw invalidItem(name, `is not an item field (its fields: ${ITEM_FIELDS.join(', ')})${nearName(name, ITEM_FIELDS)}`)
    }
  }
}

/**
 * Refuses an item with none of the item fields that has others (`{ dat: 'x' }`): for a channel, which gives such an
 * item an id, so the encoder alone would send an event of nothing but that id.
 */
export function refuseFieldless (item: SseItem<unknown>): void {
  if (item.data === undefined && item.event === undefined && item.id === undefined && item.retry === undefined &&
    item.comment === undefined) checkEmpty(item as Record<string, unknown>)
}

/** The comment lines: what comes before the id line. */
function commentLines (comment: unknown): string {
  if (comment === undefined) return ''
  if (typeof comment !== 'string') throw invalidItem('comment', `must be a string, got ${describe(comment)}`)
  return prefixLines(': ', comment)
}

/** The event, retry and data lines: what comes after the id line. `text`: a string `data` is written as is. */
function bodyLines (event: unknown, retry: unknown, data: unknown, serialize: SseSerializer, text: boolean): string {
  let lines = ''
  if (event !== undefined) lines += singleLine('event', event)
  if (retry !== undefined) {
    if (!isRetry(retry)) throw invalidItem('retry', `must be a non-negative integer (milliseconds), got ${shown(retry)}`)
    lines += 'retry: ' + retry + '\n'
  }
  if (data !== undefined) {
    lines += prefixLines('data: ', text && typeof data === 'string' ? data : serializeData(data, serialize))
  } else if (event !== undefined) {
    // clients dispatch no event without a data line (WHATWG: an empty data buffer): this one arrives with data ''
    lines += 'data:\n'
  }
  return lines
}

/**
 * Encodes one item into one complete event frame, ending with the blank line that dispatches it; `''` for an
 * item with no field at all (nothing to send); one with fields but none of the item's is refused, naming one.
 * String data is written as the text itself unless `text` is false (a typed route whose data schema admits more
 * than strings: there a string is JSON like any value, so a client decodes every event alike). Throws an `SseError`
 * (a TypeError) naming the field for anything that could let a client see a field or event the item did not contain.
 * Fields are written in one order: comment, id, event, retry, data.
 */
export function encodeItem (item: unknown, serialize: SseSerializer = JSON.stringify, text = true): string {
  const fields = checkObject(item)
  const { comment, id, event, retry, data } = fields
  let frame = commentLines(comment)
  if (id !== undefined) frame += singleLine('id', id)
  frame += bodyLines(event, retry, data, serialize, text)
  if (frame !== '') return frame + '\n'
  checkEmpty(fields)
  return ''
}

/** Encodes an item that has no id yet (checked and refused like `encodeItem`) around the place of its id line. */
export function encodeParts (item: SseItem<unknown>, serialize: SseSerializer = JSON.stringify): FrameParts {
  const { comment, id, event, retry, data } = checkObject(item)
  if (id !== undefined) throw invalidItem('id', 'is given by the store; encode the item without one')
  const head = commentLines(comment)
  return { head, tail: bodyLines(event, retry, data, serialize, true) + '\n' }
}

/** The frame of `parts` with `id` (a valid id: no CR, LF or NUL) on its line. */
export function joinFrame (parts: FrameParts, id: string): string {
  return parts.head + 'id: ' + id + '\n' + parts.tail
}
