import { SseClientError, SseParseError } from '../errors.js'
import type { SseItem } from '../types.js'
import { MAX_DELAY, reconnectDelay, retryAfterMs, wait } from './backoff.js'
import type { DecodedItem } from './decode.js'
import { chunksOf, discard, headerValue, mimeEssence, type FetchInit, type FetchLike, type FetchResponseLike } from './http.js'
import { parseEventStream } from './parse.js'

// The reconnecting loop of `connect()`: the rules of the browser's EventSource (WHATWG HTML §9.2) — `Last-Event-ID`
// on every reconnection, the server's `retry:` as the delay, 204 to stop — and what it lacks: any method, headers
// and body (repeated on every attempt), backoff with jitter, answers that only mean "later" (408, 429, 503)
// waited out, an inactivity timeout, and a state for a UI to show.

/** Where a connection stands, for a UI: see `ConnectBaseOptions.onState`. */
export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed'

/** What comes with a state change. */
export interface ConnectionStateInfo {
  /** Attempts in a row that failed (a connection error, an answer that means "later"); 0 once a stream is open. */
  failures: number
  /** `reconnecting`: how long the client waits before the next attempt, in ms. */
  delay?: number
  /**
   * `reconnecting`: why, when it was not the server ending the stream (a connection error, a broken or silent
   * stream, a 408, 429 or 503 answer); `closed`: the error the iteration ends with, when it does not end quietly.
   */
  error?: unknown
}

/** A `connect()` call's options, checked and resolved. */
export interface Session {
  readonly url: string
  readonly fetch: FetchLike
  /** The request but its headers and signal: the same on every attempt. */
  readonly init: Omit<FetchInit, 'headers' | 'signal'>
  /** Lower-case names; `last-event-id` is added per attempt. */
  readonly headers: Readonly<Record<string, string>>
  readonly lastEventId: string
  readonly retry: number
  readonly maxRetries: number
  readonly maxRetryDelay: number
  readonly inactivityTimeout: number | false
  readonly reconnect: boolean
  readonly retryUnavailable: boolean
  readonly maxEventLength: number | undefined
  readonly signal: AbortSignal | undefined
  readonly onState: ((state: ConnectionState, info: ConnectionStateInfo) => void) | undefined
}

/** Answers that mean "not now": retried (with `retryUnavailable`) after their `Retry-After`, as failures. */
const LATER = new Set([408, 429, 503])

/** What changes over a run. */
interface RunState {
  retry: number
  lastEventId: string
  failures: number
  /** The status of the last answer that meant "later", and how many in a row there were. */
  status: number
  sameStatus: number
}

/** Why an attempt ended in a reconnection, and the least the next one waits. */
interface Reconnection {
  floor: number
  why: unknown
}

/**
 * Watches an attempt for silence: no byte for `ms` aborts it. Time the consumer of the events spends between two
 * of them does not count (nothing is read meanwhile). One timer, re-armed only when it fires, and never one that
 * keeps a Node process alive by itself (the connection does that while it is open; an iteration left suspended
 * at an event must not).
 */
class IdleWatch {
  #last = Date.now()
  #paused = false
  #timer: ReturnType<typeof setTimeout> | undefined
  fired = false

  constructor (readonly ms: number, readonly attempt: AbortController) {
    this.#arm(ms)
  }

  #arm (ms: number): void {
    const timer = setTimeout(this.#check, ms)
    ;(timer as { unref?: () => void }).unref?.()
    this.#timer = timer
  }

  #check = (): void => {
    this.#timer = undefined
    if (this.#paused) return // armed again when the consumer asks for the next event
    const idle = Date.now() - this.#last
    if (idle < this.ms) {
      this.#arm(this.ms - idle)
      return
    }
    this.fired = true
    this.attempt.abort()
  }

  /** A byte came. */
  touch = (): void => {
    this.#last = Date.now()
  }

  /** Before an event is handed to the consumer (`true`), and once it asks for the next one. */
  pause (paused: boolean): void {
    this.#paused = paused
    if (paused) return
    this.touch()
    if (this.#timer === undefined) this.#arm(this.ms)
  }

  stop (): void {
    clearTimeout(this.#timer)
  }
}

function silence (url: string, ms: number): SseClientError {
  return new SseClientError('FST_SSE_CLIENT_CONNECT', `${url} sent nothing for ${ms} ms (inactivityTimeout)`)
}

function plural (n: number, what: string): string {
  return `${n} ${what}${n === 1 ? '' : 's'}`
}

/** Counts a failed attempt: the error to end with when no more may fail, else the reconnection. */
function failed (s: Session, st: RunState, error: SseClientError | undefined, why: unknown): Reconnection {
  st.failures++
  if (!s.reconnect || st.failures > s.maxRetries) {
    throw error ?? new SseClientError('FST_SSE_CLIENT_CONNECT', `could not connect to ${s.url} (${plural(st.failures, 'attempt')}): ${(why as Error).message}`, { cause: why })
  }
  return { floor: st.retry, why }
}

/** An answer that means "later" (408, 429, 503): waited out after its `Retry-After`, or the run's end. */
function later (s: Session, st: RunState, response: FetchResponseLike): Reconnection {
  const { status } = response
  st.sameStatus = st.status === status ? st.sameStatus + 1 : 1
  st.status = status
  const others = st.failures + 1 - st.sameStatus
  const message = `${s.url} answered ${status} ${plural(st.sameStatus, 'time')} in a row` +
    (others === 0 ? '' : `, after ${plural(others, 'other failed attempt')}`)
  const error = new SseClientError('FST_SSE_CLIENT_STATUS', message, { status })
  const next = failed(s, st, error, error)
  next.floor = retryAfterMs(response.headers.get('retry-after')) ?? st.retry
  return next
}

/**
 * One attempt: the request, the answer checked, then its events. Returns how to reconnect, or undefined when the
 * run is over (a 204, an abort, the end of a stream with `reconnect: false`); throws what ends the run in error.
 */
async function * attempt (
  s: Session, st: RunState, stop: AbortSignal, decode: (item: SseItem<string>) => DecodedItem,
  parseOptions: { maxEventLength: number | undefined, onRetry: (ms: number) => void, onId: (id: string) => void }
): AsyncGenerator<DecodedItem, Reconnection | undefined, undefined> {
  const { url } = s
  const fetchImpl = s.fetch // called on its own: a browser's fetch called as a method of another object throws
  const control = new AbortController()
  const cancel = (): void => control.abort()
  stop.addEventListener('abort', cancel, { once: true })
  const idle = s.inactivityTimeout === false ? undefined : new IdleWatch(s.inactivityTimeout, control)
  try {
    const headers: Record<string, string> = { ...s.headers }
    if (st.lastEventId !== '') headers['last-event-id'] = headerValue(st.lastEventId)
    let response: FetchResponseLike
    try {
      response = await fetchImpl(url, { ...s.init, headers, signal: control.signal })
    } catch (err) {
      if (stop.aborted) return undefined
      st.status = 0
      return failed(s, st, undefined, idle?.fired === true ? silence(url, idle.ms) : err)
    }
    const { status } = response
    if (status === 204) {
      await discard(response.body) // the server's way to say: do not reconnect
      return undefined
    }
    if (LATER.has(status) && s.reconnect && s.retryUnavailable) {
      await discard(response.body)
      return later(s, st, response)
    }
    if (status !== 200) {
      await discard(response.body)
      throw new SseClientError('FST_SSE_CLIENT_STATUS', `${url} answered ${status} instead of 200`, { status })
    }
    const type = response.headers.get('content-type')
    if (mimeEssence(type) !== 'text/event-stream') {
      await discard(response.body)
      throw new SseClientError('FST_SSE_CLIENT_CONTENT_TYPE', `${url} answered with content-type ${type === null ? '(none)' : `"${type}"`} instead of text/event-stream`, { status: 200 })
    }
    st.failures = 0
    st.status = 0
    s.onState?.('open', { failures: 0 })
    try {
      for await (const item of parseEventStream(chunksOf(response.body, idle?.touch ?? noop), parseOptions)) {
        if (stop.aborted) return undefined // an abort between two events of one chunk ends it too
        idle?.pause(true)
        yield decode(item)
        idle?.pause(false)
      }
    } catch (err) {
      if (stop.aborted) return undefined
      if (err instanceof SseParseError || err instanceof SseClientError) throw err
      // the connection broke in the middle of the stream, or went silent: reconnect, as a browser does
      const why = idle?.fired === true ? silence(url, idle.ms) : err
      if (!s.reconnect) {
        const message = why === err ? `the connection to ${url} broke in the middle of the stream: ${(err as Error).message}` : (why as Error).message
        throw new SseClientError('FST_SSE_CLIENT_CONNECT', message, { cause: why })
      }
      return { floor: st.retry, why }
    }
    return s.reconnect && !stop.aborted ? { floor: st.retry, why: undefined } : undefined
  } finally {
    idle?.stop()
    stop.removeEventListener('abort', cancel)
  }
}

function noop (): void {}

/** Attempts, and the waits between them, until one ends the run. */
async function * attempts (
  s: Session, st: RunState, stop: AbortSignal, decode: (item: SseItem<string>) => DecodedItem
): AsyncGenerator<DecodedItem, void, undefined> {
  const parseOptions = {
    maxEventLength: s.maxEventLength,
    // a timer longer than 2^31-1 ms fires at once in Node: a huge retry would become a reconnect storm
    onRetry: (ms: number) => { st.retry = Math.min(ms, MAX_DELAY) },
    onId: (id: string) => { st.lastEventId = id }
  }
  for (;;) {
    const next = yield * attempt(s, st, stop, decode, parseOptions)
    if (next === undefined) return
    const delay = reconnectDelay(next.floor, st.failures + 1, s.maxRetryDelay)
    s.onState?.('reconnecting', { failures: st.failures, delay, error: next.why })
    if (!await wait(delay, stop)) return
  }
}

/** Runs a session: its events, decoded, over as many connections as it takes. */
export async function * run (
  s: Session, decode: (item: SseItem<string>) => DecodedItem
): AsyncGenerator<DecodedItem, void, undefined> {
  const { signal, onState } = s
  if (signal?.aborted === true) return
  const stop = new AbortController()
  const onAbort = (): void => stop.abort()
  signal?.addEventListener('abort', onAbort, { once: true })
  const st: RunState = { retry: s.retry, lastEventId: s.lastEventId, failures: 0, status: 0, sameStatus: 0 }
  let error: unknown
  try {
    onState?.('connecting', { failures: 0 })
    yield * attempts(s, st, stop.signal, decode)
  } catch (err) {
    error = err
    throw err
  } finally {
    signal?.removeEventListener('abort', onAbort)
    stop.abort()
    onState?.('closed', error === undefined ? { failures: st.failures } : { failures: st.failures, error })
  }
}
