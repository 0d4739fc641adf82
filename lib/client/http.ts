// What the client needs of fetch and HTTP, on the web platform alone (no Node built-in), so that one client runs in
// browsers and in Node: the request's headers, the answer's content type, its body read chunk by chunk.

/** What `connect` reads a response body through: a web `ReadableStream` (browsers, Node's fetch) has it. */
export interface ByteReaderLike {
  read (): Promise<{ done: boolean, value?: Uint8Array | undefined }>
  cancel (reason?: unknown): Promise<void>
}

/** A response body as `connect` takes it: a web `ReadableStream`, or any async iterable of bytes. */
export type FetchBody = AsyncIterable<Uint8Array> | ReadableLike

/** What `connect` uses of a web `ReadableStream`. */
export interface ReadableLike {
  getReader (): ByteReaderLike
  cancel (reason?: unknown): Promise<void>
}

/** The body `connect` sends: one that can be sent again on every reconnection (not a stream, which is read once). */
export type ConnectBody = string | Uint8Array<ArrayBuffer> | ArrayBuffer | Blob | URLSearchParams

/** What `connect` passes to `fetch` (a subset of `RequestInit`: the global `fetch` and undici's both take it). */
export interface FetchInit {
  method: string
  headers: Record<string, string>
  signal: AbortSignal
  body?: ConnectBody
  credentials?: 'omit' | 'same-origin' | 'include'
  mode?: 'cors' | 'same-origin'
}

/** What `connect` needs of a fetch response: the global `fetch`'s (browsers, Node) and undici's both fit. */
export interface FetchResponseLike {
  readonly status: number
  readonly headers: { get (name: string): string | null }
  readonly body: FetchBody | null
}

/** What `connect` needs of `fetch`. */
export type FetchLike = (url: string, init: FetchInit) => Promise<FetchResponseLike>

const ASCII = /^[\x00-\x7f]*$/ // eslint-disable-line no-control-regex

/**
 * A `Last-Event-ID` header value as `fetch` takes it: the id's UTF-8 bytes, one character per byte (a header is
 * bytes, and fetch sends a string of characters up to U+00FF as those bytes); HTML sends the id as UTF-8.
 */
export function headerValue (text: string): string {
  if (ASCII.test(text)) return text
  let out = ''
  for (const byte of new TextEncoder().encode(text)) out += String.fromCharCode(byte)
  return out
}

/** Internal: the same headers with lower-case names. */
export function lowerCaseKeys (headers: Record<string, string> = {}): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers)) out[name.toLowerCase()] = value
  return out
}

/** Internal: `text/event-stream` of `Text/Event-Stream; charset=utf-8`. */
export function mimeEssence (contentType: string | null | undefined): string {
  return (contentType ?? '').split(';', 1)[0]!.trim().toLowerCase()
}

function isReadable (body: FetchBody): body is ReadableLike {
  return typeof (body as { getReader?: unknown }).getReader === 'function'
}

/**
 * The chunks of a body, `touch()` called as each arrives. A web stream is read through its reader, which every
 * browser has (not all of them iterate a stream with `for await`); leaving early cancels it, freeing the connection.
 */
export async function * chunksOf (
  body: FetchBody | null, touch: () => void
): AsyncGenerator<Uint8Array, void, undefined> {
  if (body === null) return // a 200 without a body: an empty stream
  if (!isReadable(body)) {
    for await (const chunk of body) {
      touch()
      yield chunk
    }
    return
  }
  const reader = body.getReader()
  let ended = false
  try {
    for (;;) {
      const step = await reader.read()
      if (step.done) {
        ended = true
        return
      }
      touch()
      yield step.value as Uint8Array
    }
  } finally {
    // a body that failed, or one cancelled already, has nothing more to tell
    if (!ended) reader.cancel().catch(() => {})
  }
}

/** Lets go of a body we will not read, so its connection is freed. */
export async function discard (body: FetchBody | null): Promise<void> {
  try {
    if (body === null) return
    if (isReadable(body)) await body.cancel()
    else await body[Symbol.asyncIterator]().return?.()
  } catch {
    // a body that fails while being cancelled has nothing more to tell
  }
}
