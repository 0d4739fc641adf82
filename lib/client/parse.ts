import { invalidOption, SseParseError, shown } from '../errors.js'
import type { SseItem } from '../types.js'
import { refuseUnknownOptions, type OptionNames } from './options.js'

// The WHATWG "event stream interpretation" (HTML §9.2.6), as a pull parser over a response body.

export interface ParseOptions {
  /**
   * Longest line, and longest event (its data buffer), in characters, before the parser gives up with an
   * error instead of buffering on: a guard against a peer that never sends a line break. Default 4 MiB.
   */
  maxEventLength?: number
  /** Called with each `retry:` value (the spec applies it to the connection even when no event follows). */
  onRetry?: (retry: number) => void
  /** Called with the text of each `:` comment line (heartbeats included). */
  onComment?: (comment: string) => void
  /**
   * Called when a block that carried an `id:` line ends, whether or not it dispatches an event: the spec sets
   * the connection's last event ID then, so an `id:` with no `data:` still counts for a reconnection.
   */
  onId?: (id: string) => void
}

/** The names `parseEventStream()` takes: any other is refused at the call. */
const PARSE_OPTIONS: OptionNames<ParseOptions> = { maxEventLength: true, onRetry: true, onComment: true, onId: true }

const DEFAULT_MAX_EVENT_LENGTH = 4 * 1024 * 1024
const DIGITS = /^[0-9]+$/
const CALLBACKS = ['onRetry', 'onComment', 'onId'] as const

/**
 * Refuses bad parse option values where they are given, not at the first chunk (`owner` names the function that
 * took them): `maxEventLength` a whole number >= 1 or Infinity, each callback a function.
 */
export function checkParseOptions (options: ParseOptions, owner = 'parseEventStream()'): void {
  const { maxEventLength } = options
  if (maxEventLength !== undefined && maxEventLength !== Infinity &&
    !(Number.isSafeInteger(maxEventLength) && maxEventLength >= 1)) {
    const problem = `must be a whole number of characters >= 1 (or Infinity), got ${shown(maxEventLength)}`
    throw invalidOption('maxEventLength', problem, owner)
  }
  for (const name of CALLBACKS) {
    const callback: unknown = options[name]
    if (callback !== undefined && typeof callback !== 'function') {
      throw invalidOption(name, `must be a function, got ${shown(callback)}`, owner)
    }
  }
}

/**
 * Turns an event-stream body into the events it dispatches. Each yielded item has `data` (lines joined with
 * `\n`), `event` when the block named one, `id` when the block carried an `id:` line and `retry` when it
 * carried a valid `retry:` line. An event without data is not dispatched; an unterminated last event is dropped.
 * Bytes are decoded as UTF-8 (a leading BOM is skipped, invalid sequences become U+FFFD, as the spec says).
 * A bad or unknown option throws an `SseError` (`FST_SSE_INVALID_OPTION`) at the call.
 */
export function parseEventStream (
  body: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>,
  options: ParseOptions = {}
): AsyncGenerator<SseItem<string>, void, undefined> {
  refuseUnknownOptions(options, PARSE_OPTIONS, 'parseEventStream()')
  checkParseOptions(options)
  return parse(body, options)
}

async function * parse (
  body: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>,
  options: ParseOptions
): AsyncGenerator<SseItem<string>, void, undefined> {
  const max = options.maxEventLength ?? DEFAULT_MAX_EVENT_LENGTH
  const decoder = new TextDecoder('utf-8') // strips a leading BOM, replaces invalid sequences with U+FFFD
  // one per parser: a global regex keeps its position in lastIndex, which parsers resumed in turn would share
  const lineEnd = /\r\n|\r|\n/g
  // The start of a line that has no end yet, in pieces: joined once, when its end arrives, so a long line
  // delivered in many small chunks costs linear time, and bounded by `max` so it cannot grow without end.
  let pending: string[] = []
  let pendingLength = 0
  let first = true
  let skipLF = false // the previous chunk ended in CR: a LF starting this one belongs to it
  let data = ''
  let hasData = false
  let event = ''
  let id: string | undefined
  let retry: number | undefined

  for await (const chunk of body) {
    let text: string
    if (typeof chunk === 'string') {
      // the decoder strips the BOM of a byte stream; a string stream's own BOM is stripped here
      text = first && chunk.charCodeAt(0) === 0xfeff ? chunk.slice(1) : chunk
    } else {
      text = decoder.decode(chunk, { stream: true })
    }
    if (chunk.length > 0) first = false
    let start = 0
    if (skipLF && text.charCodeAt(0) === 10) start = 1
    if (text.length > 0) skipLF = false
    lineEnd.lastIndex = start
    let match: RegExpExecArray | null
    while ((match = lineEnd.exec(text)) !== null) {
      let line = text.slice(start, match.index)
      if (pendingLength > 0) {
        pending.push(line)
        line = pending.join('')
        pending = []
        pendingLength = 0
      }
      start = match.index + match[0].length
      if (match[0] === '\r' && start === text.length) skipLF = true
      if (line.length > max) throw new SseParseError(`line longer than ${max} characters`)

      if (line === '') {
        if (id !== undefined) options.onId?.(id)
        if (hasData) {
          const item: SseItem<string> = { data }
          if (event !== '') item.event = event
          if (id !== undefined) item.id = id
          if (retry !== undefined) item.retry = retry
          yield item
        }
        data = ''
        hasData = false
        event = ''
        id = undefined
        retry = undefined
        continue
      }
      const colon = line.indexOf(':')
      if (colon === 0) {
        options.onComment?.(line.charCodeAt(1) === 32 ? line.slice(2) : line.slice(1))
        continue
      }
      const field = colon === -1 ? line : line.slice(0, colon)
      let value = colon === -1 ? '' : line.slice(colon + 1)
      if (value.charCodeAt(0) === 32) value = value.slice(1)
      switch (field) {
        case 'data':
          data = hasData ? data + '\n' + value : value
          hasData = true
          if (data.length > max) throw new SseParseError(`event data longer than ${max} characters`)
          break
        case 'event':
          event = value
          break
        case 'id':
          if (value.indexOf('\0') === -1) id = value
          break
        case 'retry':
          if (DIGITS.test(value)) {
            retry = Number(value)
            options.onRetry?.(retry)
          }
          break
        // any other field is ignored, as the spec says
      }
    }
    if (start < text.length) {
      pending.push(start === 0 ? text : text.slice(start))
      pendingLength += text.length - start
      if (pendingLength > max) throw new SseParseError(`line longer than ${max} characters`)
    }
  }
  // whatever is left (an unterminated line or event) is discarded, as the spec says
}
