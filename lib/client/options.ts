import { invalidOption, shown } from '../errors.js'

// The option names each client function takes (`connect()`, `parseEventStream()`, the test helpers), checked at
// the call as the plugin checks its own. TypeScript already refuses an unknown name in an object literal; this is
// for JavaScript callers and options objects built at run time, where a misspelt name (`retryy`, `lastEventID`)
// would otherwise be ignored without a word. Kept apart from lib/options.ts, which would bring server code into
// the client entry.

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
      throw invalidOption(name, `is unknown (its options: ${Object.keys(known).join(', ')})`, owner)
    }
  }
}
