import { invalidOption, nearName, shown } from '../errors.js'

// The option names each client function takes (`connect()`, `parseEventStream()`, the test helpers), checked at
// the call as the plugin checks its own. TypeScript already refuses an unknown name in an object literal; this is
// for JavaScript callers and options objects built at run time, where a misspelt name (`retryy`, `lastEventID`)
// would otherwise be ignored without a word. Also the checks of option values that more than one of them share.
// Kept apart from lib/options.ts, which would bring server code into the client entry.

/**
 * Every option name of `T`, as the keys of a record: the compiler fails when an option of `T` is left out or a
 * name is not one of its options, so the record next to an options interface is the one list to edit.
 */
export type OptionNames<T> = { readonly [K in keyof Required<T>]: true }

/**
 * Refuses options that are not an object, or that name an option `owner` (the function, `connect()` say) does not
 * take: an `SseError` `FST_SSE_INVALID_OPTION` naming it and listing the known ones.
 */
export function refuseUnknownOptions (
  options: unknown, known: Readonly<Record<string, true>>, owner: string
): asserts options is object {
  if (typeof options !== 'object' || options === null) {
    throw invalidOption('options', `must be an object, got ${shown(options)}`, owner)
  }
  for (const name of Object.keys(options)) {
    if (!Object.hasOwn(known, name)) {
      throw invalidOption(name, `is unknown (its options: ${Object.keys(known).join(', ')})${nearName(name, Object.keys(known))}`, owner)
    }
  }
}

/** Bytes a header value cannot carry: an id with one could never have come from a stream either. */
const LINE_BREAK_OR_NUL = /[\r\n\0]/

/** Refuses a `lastEventId` (when given) that is not an id a stream can send: a string without CR, LF or NUL. */
export function checkLastEventId (lastEventId: unknown, owner: string): void {
  if (lastEventId !== undefined && (typeof lastEventId !== 'string' || LINE_BREAK_OR_NUL.test(lastEventId))) {
    const problem = `must be a string without line breaks or NUL (an id a stream can send), got ${shown(lastEventId)}`
    throw invalidOption('lastEventId', problem, owner)
  }
}

/** Refuses a value that is not a plain object of string values (`what`: what its keys are, for the message). */
export function checkStringValues (value: unknown, option: string, what: string, owner: string): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalidOption(option, `must be an object of ${what} and values, got ${shown(value)}`, owner)
  }
  for (const [name, item] of Object.entries(value)) {
    if (typeof item !== 'string') {
      throw invalidOption(option, `must have string values, got ${shown(item)} for "${name}"`, owner)
    }
  }
}

/** Refuses `headers` (when given) that are not an object of string values that `fetch` takes as HTTP headers. */
export function checkHeaders (headers: unknown, owner: string): void {
  if (headers === undefined) return
  checkStringValues(headers, 'headers', 'header names', owner)
  try {
    void new Headers(headers as Record<string, string>) // the rules fetch applies to names and values
  } catch (err) {
    throw invalidOption('headers', `are not valid HTTP headers: ${(err as Error).message}`, owner)
  }
}

/** Refuses a count (of retries, of events) that is not a whole number >= 0 or Infinity. */
export function checkCount (value: unknown, option: string, owner: string): void {
  if (value !== Infinity && !(Number.isSafeInteger(value) && (value as number) >= 0)) {
    throw invalidOption(option, `must be a non-negative whole number or Infinity, got ${shown(value)}`, owner)
  }
}

/** Refuses `references` (when given) that are not an array of schemas. */
export function checkReferences (references: unknown, owner: string): void {
  if (references !== undefined && !(Array.isArray(references) && references.every(isObject))) {
    throw invalidOption('references', `must be an array of TypeBox schemas, got ${shown(references)}`, owner)
  }
}

function isObject (value: unknown): boolean {
  return typeof value === 'object' && value !== null
}
