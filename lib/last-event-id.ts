// The `Last-Event-ID` a client sent, as the text it meant. HTML sends the id as UTF-8 bytes; Node reads a header
// one character per byte (latin1), so `✓` arrives as three characters. Channel ids are ASCII and need none of this.

/** What `lastEventId()` reads of a request: a Fastify request and a Node `IncomingMessage` both fit. */
export interface RequestWithHeaders {
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
}

const NOT_ASCII = /[^\x00-\x7f]/ // eslint-disable-line no-control-regex
const NOT_A_BYTE = /[^\x00-\xff]/ // eslint-disable-line no-control-regex
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/**
 * The request's `Last-Event-ID` header decoded as UTF-8, as browsers and `connect()` send it; `undefined` when
 * there is none. An array (headers given twice, where the server keeps them apart) gives its first value. A value
 * that is not UTF-8 (an old client's latin1) is returned as read, one character per byte, and one that holds
 * characters beyond a byte (set as text by `app.inject()`) as it is.
 */
export function lastEventId (request: RequestWithHeaders): string | undefined {
  const header = request.headers['last-event-id']
  const value = Array.isArray(header) ? header[0] : header
  // ASCII reads the same either way: the common case allocates nothing
  if (value === undefined || !NOT_ASCII.test(value) || NOT_A_BYTE.test(value)) return value
  try {
    return utf8.decode(Buffer.from(value, 'latin1'))
  } catch {
    return value
  }
}
