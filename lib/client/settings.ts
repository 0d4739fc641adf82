import { invalidOption, SseError, shown } from '../errors.js'
import { MAX_DELAY } from './backoff.js'
import type { ConnectOptions } from './connect-types.js'
import { lowerCaseKeys } from './http.js'
import {
  checkCount, checkHeaders, checkLastEventId, checkReferences, refuseUnknownOptions, type OptionNames
} from './options.js'
import { checkParseOptions } from './parse.js'
import type { Session } from './session.js'

// `connect()`'s options: their names, their checks and their defaults, resolved once at the call into the session
// the loop runs. Every bad one is refused there, by name: each would otherwise fail inside the loop, most as a fetch
// error that looks like a network failure and is retried without end (a URL fetch cannot parse, a header or a
// method it refuses, a body with GET); an unknown option name would be ignored.

/** The names `connect()` takes: any other (a misspelt `retryy`, say) is refused at the call. */
const CONNECT_OPTIONS: OptionNames<ConnectOptions> = {
  signal: true,
  lastEventId: true,
  headers: true,
  retry: true,
  reconnect: true,
  maxRetries: true,
  json: true,
  maxEventLength: true,
  retryUnavailable: true,
  fetch: true,
  schema: true,
  references: true,
  method: true,
  body: true,
  credentials: true,
  mode: true,
  maxRetryDelay: true,
  inactivityTimeout: true,
  validate: true,
  onState: true
}

const CONNECT = 'connect()'
const DEFAULT_RETRY = 3000
const DEFAULT_MAX_RETRY_DELAY = 30_000
/** 2.5 × the plugin's default heartbeat (15 s): one late heartbeat is not taken for a dead connection. */
const DEFAULT_INACTIVITY_TIMEOUT = 37_500
const FLAGS = ['reconnect', 'json', 'retryUnavailable'] as const
const FUNCTIONS = ['validate', 'onState'] as const
/** A method token (RFC 9110 §9.1); fetch refuses the three of FORBIDDEN, and a HEAD answer has no body to read. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
const FORBIDDEN = new Set(['CONNECT', 'TRACE', 'TRACK', 'HEAD'])
const CREDENTIALS = new Set(['omit', 'same-origin', 'include'])
const MODES = new Set(['cors', 'same-origin'])

function isDelay (value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0
}

function isObject (value: unknown): boolean {
  return typeof value === 'object' && value !== null
}

/** A body fetch can send again and again: not a stream, which is read once. */
function isReplayable (body: unknown): boolean {
  return typeof body === 'string' || body instanceof Uint8Array || body instanceof ArrayBuffer ||
    body instanceof Blob || body instanceof URLSearchParams
}

function checkRequest (options: ConnectOptions): string {
  const { method = 'GET', body, credentials, mode } = options
  if (typeof method !== 'string' || !TOKEN.test(method) || FORBIDDEN.has(method.toUpperCase())) {
    const problem = `must be an HTTP method fetch can send and that answers with a body (not HEAD, CONNECT, TRACE or TRACK), got ${shown(method)}`
    throw invalidOption('method', problem, CONNECT)
  }
  if (body !== undefined) {
    if (!isReplayable(body)) {
      const problem = `must be a string, a Uint8Array, an ArrayBuffer, a Blob or URLSearchParams (sent again on every reconnection: not a stream), got ${shown(body)}`
      throw invalidOption('body', problem, CONNECT)
    }
    if (method.toUpperCase() === 'GET') throw invalidOption('body', 'needs a method other than GET (a GET request has no body)', CONNECT)
  }
  if (credentials !== undefined && !CREDENTIALS.has(credentials)) {
    throw invalidOption('credentials', `must be "omit", "same-origin" or "include", got ${shown(credentials)}`, CONNECT)
  }
  if (mode !== undefined && !MODES.has(mode)) {
    throw invalidOption('mode', `must be "cors" or "same-origin" (a no-cors answer cannot be read), got ${shown(mode)}`, CONNECT)
  }
  return method
}

function checkDelays (options: ConnectOptions): void {
  const { retry, maxRetryDelay, inactivityTimeout } = options
  if (retry !== undefined && !isDelay(retry)) {
    throw invalidOption('retry', `must be a non-negative whole number of milliseconds, got ${shown(retry)}`, CONNECT)
  }
  if (maxRetryDelay !== undefined && !(isDelay(maxRetryDelay) && maxRetryDelay <= MAX_DELAY)) {
    throw invalidOption('maxRetryDelay', `must be a whole number of milliseconds from 0 to ${MAX_DELAY}, got ${shown(maxRetryDelay)}`, CONNECT)
  }
  if (inactivityTimeout !== undefined && inactivityTimeout !== false &&
    !(isDelay(inactivityTimeout) && inactivityTimeout >= 1 && inactivityTimeout <= MAX_DELAY)) {
    throw invalidOption('inactivityTimeout', `must be a whole number of milliseconds from 1 to ${MAX_DELAY}, or false, got ${shown(inactivityTimeout)}`, CONNECT)
  }
}

/**
 * The URL to fetch: absolute, or in a page (or a worker) relative to its location, as `fetch` and `EventSource`
 * take it there. Errors name the stream by it.
 */
function resolveUrl (url: unknown): string {
  const base = (globalThis as { location?: { href?: string } }).location?.href
  try {
    return new URL(String(url), base).href
  } catch {
    const what = base === undefined ? 'an absolute URL' : 'a URL'
    throw new SseError('FST_SSE_INVALID_OPTION', 'url', `connect() needs ${what}, got ${shown(url)}`)
  }
}

/** Checks `connect()`'s arguments, naming the first bad one, and resolves them with their defaults. */
export function resolveSession (url: unknown, options: ConnectOptions): Session {
  const href = resolveUrl(url)
  refuseUnknownOptions(options, CONNECT_OPTIONS, CONNECT)
  const { maxRetries = Infinity, signal, lastEventId, headers, schema, references } = options
  checkDelays(options)
  checkCount(maxRetries, 'maxRetries', CONNECT)
  for (const name of FLAGS) {
    const flag: unknown = options[name]
    if (flag !== undefined && typeof flag !== 'boolean') {
      throw invalidOption(name, `must be a boolean, got ${shown(flag)}`, CONNECT)
    }
  }
  checkParseOptions({ maxEventLength: options.maxEventLength }, CONNECT)
  // what the loop uses of it: a polyfilled AbortSignal does as well
  if (signal !== undefined && !(isObject(signal) && typeof signal.aborted === 'boolean' &&
    typeof signal.addEventListener === 'function')) {
    throw invalidOption('signal', `must be an AbortSignal, got ${shown(signal)}`, CONNECT)
  }
  checkLastEventId(lastEventId, CONNECT)
  checkHeaders(headers, CONNECT)
  const method = checkRequest(options)
  if (options.fetch !== undefined && typeof options.fetch !== 'function') {
    throw invalidOption('fetch', `must be a function (url, init) => Promise<Response>, got ${shown(options.fetch)}`, CONNECT)
  }
  for (const name of FUNCTIONS) {
    const callback: unknown = options[name]
    if (callback !== undefined && typeof callback !== 'function' && !(name === 'validate' && callback === false)) {
      throw invalidOption(name, `must be a function${name === 'validate' ? ' (data, event) => problem | undefined, or false' : ''}, got ${shown(callback)}`, CONNECT)
    }
  }
  if (schema !== undefined && !isObject(schema)) {
    throw invalidOption('schema', `must be an sseSchema() or a TypeBox schema, got ${shown(schema)}`, CONNECT)
  }
  checkReferences(references, CONNECT)
  const { body, credentials, mode } = options
  return {
    url: href,
    fetch: options.fetch ?? globalThis.fetch,
    init: {
      method,
      ...(body === undefined ? {} : { body }),
      ...(credentials === undefined ? {} : { credentials }),
      ...(mode === undefined ? {} : { mode })
    },
    // lower-cased, so that a caller's `Accept` replaces ours instead of joining it, and `Last-Event-ID` is ours
    headers: { accept: 'text/event-stream', 'cache-control': 'no-cache', ...lowerCaseKeys(headers) },
    lastEventId: lastEventId ?? '',
    retry: options.retry ?? DEFAULT_RETRY,
    maxRetries,
    maxRetryDelay: options.maxRetryDelay ?? DEFAULT_MAX_RETRY_DELAY,
    inactivityTimeout: options.inactivityTimeout ?? DEFAULT_INACTIVITY_TIMEOUT,
    reconnect: options.reconnect ?? true,
    retryUnavailable: options.retryUnavailable ?? true,
    maxEventLength: options.maxEventLength,
    signal,
    onState: options.onState
  }
}
