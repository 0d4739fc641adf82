import { isRetry } from './encode.js'
import { invalidOption, nearName, shown } from './errors.js'
import type {
  SseAdmissionOptions, SseErrorMapper, SseJsonAnswer, SsePluginOptions, SseRouteOptions, SseSerializer, SseStreamOptions
} from './types.js'

// The plugin's and each stream's options, checked once when they are given: a bad one is refused by name
// at registration (or at `reply.sse()`), never discovered later on a live stream.

const MAX_TIMER = 2 ** 31 - 1

/** Stream options with the plugin's defaults filled in and validated. */
export interface ResolvedStreamOptions {
  heartbeat: number | false
  /** The `retry:` line each stream opens with, before its jitter; false: none. */
  retry: number | false
  /** The share of `retry` each stream's `retry:` line may differ by, either way (0: exactly `retry`). */
  retryJitter: number
  /** Longest a full destination may go without draining before the connection is reset; false: no limit. */
  writeTimeout: number | false
  serialize: SseSerializer
  /** Longest wait for the first item before the headers go out without one; 0: at once. */
  headersDelay: number
  /** Maps a failure after the stream opened to a last item for the client. */
  onError: SseErrorMapper | undefined
}

/** Stream options resolved, with what only typed routes use. */
export interface ResolvedOptions extends ResolvedStreamOptions {
  validate: boolean
}

export const DEFAULTS: ResolvedOptions = {
  heartbeat: 15_000,
  // EventSource's own delay in Chromium and Safari (Firefox's is 5 s): 3 s on average in every browser; the
  // jitter spreads clients out after a restart
  retry: 3000,
  retryJitter: 0.5,
  writeTimeout: 30_000,
  serialize: JSON.stringify,
  validate: false,
  headersDelay: 100,
  onError: undefined
}

const STREAM_OPTIONS: readonly string[] = [
  'heartbeat', 'retry', 'retryJitter', 'writeTimeout', 'serialize', 'validate', 'headersDelay', 'onError'
]
const PLUGIN_OPTIONS: readonly string[] = [
  ...STREAM_OPTIONS, 'maxConnections', 'retryAfter', 'maxStreamsPerConnection', 'admission'
]
const ADMISSION_OPTIONS: readonly string[] = ['rate', 'burst', 'spread']
const ROUTE_OPTIONS: readonly string[] = [...STREAM_OPTIONS, 'json']
// What Fastify passes a plugin along with its own options (`app.register(plugin, { prefix })`).
const REGISTER_OPTIONS: readonly string[] = ['prefix', 'logLevel', 'logSerializers']

const PLUGIN = 'the plugin'

/** A misspelt option would otherwise be ignored without a word. */
export function refuseUnknown (options: object, known: readonly string[], where: string): void {
  for (const name of Object.keys(options)) {
    if (!known.includes(name) && !(known === PLUGIN_OPTIONS && REGISTER_OPTIONS.includes(name))) {
      throw invalidOption(name, `is not an option of ${where} (its options: ${known.join(', ')})${nearName(name, known)}`)
    }
  }
}

/** An options argument that is not an object (a tag given as `publish(item, 'user:1')`, say). */
export function refuseNonObject (options: unknown, shape: string, where: string): asserts options is object {
  if (typeof options !== 'object' || options === null) {
    throw invalidOption('options', `must be an object (${shape}), got ${shown(options)}`, where)
  }
}

/** `options` checked, with `base` filling what they leave out. */
export function resolveOptions (options: SseStreamOptions, base: ResolvedOptions, where = 'reply.sse()'): ResolvedOptions {
  if (where !== PLUGIN) refuseUnknown(options, STREAM_OPTIONS, where)
  const {
    heartbeat = base.heartbeat, retry = base.retry, retryJitter = base.retryJitter, writeTimeout = base.writeTimeout,
    serialize = base.serialize, validate = base.validate, headersDelay = base.headersDelay, onError = base.onError
  } = options
  if (!isTimerOrOff(heartbeat)) {
    throw invalidOption('heartbeat', `must be a positive whole number of milliseconds or false, got ${shown(heartbeat)}`)
  }
  if (retry !== false && !isRetry(retry)) {
    throw invalidOption('retry', `must be a non-negative whole number of milliseconds or false, got ${shown(retry)}`)
  }
  if (!(typeof retryJitter === 'number' && retryJitter >= 0 && retryJitter <= 1)) {
    throw invalidOption('retryJitter', `must be a number from 0 to 1 (a share of retry), got ${shown(retryJitter)}`)
  }
  if (!isTimerOrOff(writeTimeout)) {
    throw invalidOption('writeTimeout', `must be a positive whole number of milliseconds or false, got ${shown(writeTimeout)}`)
  }
  if (typeof serialize !== 'function') throw invalidOption('serialize', `must be a function, got ${shown(serialize)}`)
  if (typeof validate !== 'boolean') throw invalidOption('validate', `must be a boolean, got ${shown(validate)}`)
  if (!(Number.isSafeInteger(headersDelay) && headersDelay >= 0 && headersDelay <= MAX_TIMER)) {
    throw invalidOption('headersDelay', `must be a whole number of milliseconds >= 0, got ${shown(headersDelay)}`)
  }
  if (onError !== undefined && typeof onError !== 'function') {
    throw invalidOption('onError', `must be a function (error, request) => item, got ${shown(onError)}`)
  }
  const mapper = onError as SseErrorMapper | undefined
  return { heartbeat, retry, retryJitter, writeTimeout, serialize, validate, headersDelay, onError: mapper }
}

/** A positive whole number of milliseconds that a timer can wait, or false (none). */
function isTimerOrOff (value: number | false): boolean {
  return value === false || (Number.isSafeInteger(value) && value > 0 && value <= MAX_TIMER)
}

/** Each route's `config.sse`, resolved when the route is declared (Fastify copies the config, not this object). */
const routeOptions = new WeakMap<SseStreamOptions, ResolvedOptions>()

/**
 * Checks a route's `config.sse`, naming the route: its stream options apply to every stream of the route; its
 * `json` answer, returned, makes the route dual.
 */
export function resolveRouteOptions (
  config: { sse?: SseRouteOptions } | undefined, defaults: ResolvedOptions, route: string
): SseJsonAnswer | undefined {
  const own = config?.sse
  if (own === undefined) return undefined
  const where = `route ${route} (config.sse)`
  refuseNonObject(own, 'the options of its streams', where)
  refuseUnknown(own, ROUTE_OPTIONS, where)
  const { json, ...stream } = own
  routeOptions.set(own, resolveOptions(stream, defaults, where))
  if (json !== undefined && typeof json !== 'function') {
    throw invalidOption('json', `must be a function (request, reply) => the JSON answer, got ${shown(json)}`, where)
  }
  return json
}

/** The stream options of a route with a `config.sse`, else undefined (the plugin's apply). */
export function routeStreamOptions (config: { sse?: SseStreamOptions }): ResolvedOptions | undefined {
  return config.sse === undefined ? undefined : routeOptions.get(config.sse)
}

/** The plugin's own options, checked: the stream defaults, and the limits. */
export function resolvePluginOptions (options: SsePluginOptions): { defaults: ResolvedOptions, limits: Limits } {
  refuseUnknown(options, PLUGIN_OPTIONS, PLUGIN)
  return { defaults: resolveOptions(options, DEFAULTS, PLUGIN), limits: resolveLimits(options) }
}

/** The plugin-wide stream limit and the `Retry-After` of the 503 answers beyond it. */
export interface Limits {
  maxConnections: number
  retryAfter: number
  /** Streams on one HTTP/1.1 connection (the one answered and those pipelined behind it) or HTTP/2 session. */
  maxStreamsPerConnection: number
  /** The rate new streams are admitted at; undefined: no limit. */
  admission: AdmissionLimits | undefined
}

/** `admission`, resolved: a token bucket of new streams, and the spread of the refused ones' `Retry-After`. */
export interface AdmissionLimits {
  /** New streams per second, sustained. */
  rate: number
  /** New streams admitted at once after a quiet time: the bucket's size. */
  burst: number
  /** Seconds: a refused request's `Retry-After` is `retryAfter` plus a whole number drawn from 0 to this. */
  spread: number
}

/** The streams one connection may hold, open or waiting: as HTTP/2's common SETTINGS_MAX_CONCURRENT_STREAMS. */
export const MAX_STREAMS_PER_CONNECTION = 100

function resolveAdmission (
  admission: SseAdmissionOptions | undefined, retryAfter: number
): AdmissionLimits | undefined {
  if (admission === undefined) return undefined
  if (typeof admission !== 'object' || admission === null) {
    throw invalidOption('admission', `must be an object { rate, burst?, spread? }, got ${shown(admission)}`)
  }
  refuseUnknown(admission, ADMISSION_OPTIONS, 'the plugin\'s admission')
  const { rate } = admission
  if (!(typeof rate === 'number' && Number.isFinite(rate) && rate > 0)) {
    throw invalidOption('admission.rate', `must be a number of new streams per second > 0, got ${shown(rate)}`)
  }
  const { burst = Math.max(1, Math.ceil(rate)), spread = Math.max(1, retryAfter) } = admission
  if (!(Number.isSafeInteger(burst) && burst >= 1)) {
    throw invalidOption('admission.burst', `must be a whole number of streams >= 1, got ${shown(burst)}`)
  }
  if (!(Number.isSafeInteger(spread) && spread >= 0)) {
    throw invalidOption('admission.spread', `must be a whole number of seconds >= 0, got ${shown(spread)}`)
  }
  return { rate, burst, spread }
}

function resolveLimits (options: SsePluginOptions): Limits {
  const { maxConnections = Infinity, retryAfter = 5, maxStreamsPerConnection = MAX_STREAMS_PER_CONNECTION } = options
  // 0 would refuse every stream: a limit that turns the plugin off is a mistake, not a setting
  if (maxConnections !== Infinity && !(Number.isSafeInteger(maxConnections) && maxConnections >= 1)) {
    throw invalidOption('maxConnections', `must be a whole number of streams >= 1 (or Infinity), got ${shown(maxConnections)}`)
  }
  if (!(Number.isSafeInteger(retryAfter) && retryAfter >= 0)) {
    throw invalidOption('retryAfter', `must be a whole number of seconds >= 0, got ${shown(retryAfter)}`)
  }
  const perConnection = maxStreamsPerConnection
  if (perConnection !== Infinity && !(Number.isSafeInteger(perConnection) && perConnection >= 1)) {
    throw invalidOption('maxStreamsPerConnection',
      `must be a whole number of streams >= 1 (or Infinity), got ${shown(maxStreamsPerConnection)}`)
  }
  const admission = resolveAdmission(options.admission, retryAfter)
  return { maxConnections, retryAfter, maxStreamsPerConnection, admission }
}
