import { invalidOption, shown } from './errors.js'
import { refuseNonObject, refuseUnknown } from './options.js'

// The `Last-Event-ID` a client sent, as the text it meant. HTML sends the id as UTF-8 bytes; Node reads a header
// one character per byte (latin1), so `✓` arrives as three characters. Channel ids are ASCII and need none of this.
// A client that cannot send headers (a first EventSource that resumes from a cursor it kept) names the id in the
// query string instead: read when the header is absent, so a reconnection's header wins over the URL it repeats.

/** What `lastEventId()` reads of a request: a Fastify request and a Node `IncomingMessage` both fit. */
export interface RequestWithHeaders {
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  /** The request target (path and query string) as received: where the query parameter is read. */
  readonly url?: string | undefined
}

export interface LastEventIdOptions {
  /**
   * The query parameter read when the request has no `Last-Event-ID` header; `false`: the header only.
   * Default `lastEventId` (`/feed?lastEventId=41`).
   */
  query?: string | false
}

/** The query parameter `lastEventId()` reads by default. */
export const LAST_EVENT_ID_QUERY = 'lastEventId'

const NOT_ASCII = /[^\x00-\x7f]/ // eslint-disable-line no-control-regex
const NOT_A_BYTE = /[^\x00-\xff]/ // eslint-disable-line no-control-regex
const NOT_AN_ID = /[\r\n\0]/
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

function fromQuery (url: string | undefined, name: string): string | undefined {
  const start = url?.indexOf('?') ?? -1
  if (start === -1) return undefined // the common case: no query string to parse
  const value = new URLSearchParams((url as string).slice(start + 1)).get(name)
  // percent-decoded as UTF-8; a value with CR, LF or NUL is no id a stream can have sent
  return value === null || NOT_AN_ID.test(value) ? undefined : value
}

const OPTIONS = ['query']

function checkOptions (options: LastEventIdOptions): void {
  refuseNonObject(options, '{ query }', 'lastEventId()')
  refuseUnknown(options, OPTIONS, 'lastEventId()')
  const { query } = options
  if (query !== undefined && query !== false && (typeof query !== 'string' || query === '')) {
    throw invalidOption('query', `must be a query parameter name or false, got ${shown(query)}`, 'lastEventId()')
  }
}

/**
 * The request's `Last-Event-ID` header decoded as UTF-8, as browsers and `connect()` send it; without the header,
 * the `lastEventId` query parameter (see `options.query`); `undefined` when there is neither. An array (headers
 * given twice, where the server keeps them apart) gives its first value. A header value that is not UTF-8 (an old
 * client's latin1) is returned as read, one character per byte, and one that holds characters beyond a byte (set
 * as text by `app.inject()`) as it is. A query value with CR, LF or NUL is ignored (no stream sends such an id).
 */
export function lastEventId (request: RequestWithHeaders, options?: LastEventIdOptions): string | undefined {
  if (options !== undefined) checkOptions(options)
  const header = request.headers['last-event-id']
  const value = Array.isArray(header) ? header[0] : header
  if (value === undefined) {
    const query = options?.query ?? LAST_EVENT_ID_QUERY
    return query === false ? undefined : fromQuery(request.url, query)
  }
  // ASCII reads the same either way: the common case allocates nothing
  if (!NOT_ASCII.test(value) || NOT_A_BYTE.test(value)) return value
  try {
    return utf8.decode(Buffer.from(value, 'latin1'))
  } catch {
    return value
  }
}
