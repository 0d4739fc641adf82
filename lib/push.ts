import { EncodedFrame, encodeItem } from './encode.js'
import { invalidOption, pushOverflow } from './errors.js'
import { refuseNonObject, refuseUnknown } from './options.js'
import { WAIT, kAttachStream, type AttachableSource, type StreamLink, type SyncSource } from './source.js'
import type { SseSchema } from './typed/schema.js'
import type { SseItem } from './types.js'

// Push-style writing: a bounded queue that callbacks and EventEmitters push items into, and that one stream
// reads as its source. The producer learns that the client is behind (push() returns false, drained() waits),
// that it left (signal), and a producer that pushes regardless cannot grow the queue past its bounds. Items are
// encoded when pushed, by the rules of the stream that writes them, so a bad one throws at the push call. The
// stream reads it synchronously (lib/stream's SyncSource): an item pushed while the stream waits is written
// within the push() call.

/** Options of `pushSource()`. */
export interface PushSourceOptions {
  /** Items that may wait for the client; one more ends the stream as too slow. Default 512. */
  queueItems?: number
  /** Bytes (of encoded frames) that may wait for the client; more ends the stream as too slow. Default 1 MiB. */
  queueBytes?: number
}

/** The items of `pushSource<T>()`: a route's items when `T` is `typeof` an `sseSchema()`, else `SseItem<T>`. */
export type PushItemOf<T> = [T] extends [SseSchema<infer Item>] ? Item : SseItem<T>

/**
 * A source that items are pushed into (from callbacks, EventEmitters, timers), for `reply.sse()` or to return
 * from a handler. One source feeds one stream.
 */
export interface PushSource<Item = SseItem> extends AsyncIterable<Item> {
  /**
   * Queues the item for the client; encoded (and on a typed route checked) now, so a bad item throws its
   * `SseError` here and the stream goes on. Returns false once half of `queueItems` or `queueBytes` waits (wait
   * for `drained()`), and when the source is closed (the item is then dropped). Past the bounds the stream ends
   * as too slow.
   */
  push(item: Item): boolean
  /** Resolves once nothing waits for the client any more (or the source closed: check `closed`). */
  drained(): Promise<void>
  /** Pushes `last` (when given), then ends the stream once everything queued was written. */
  end(last?: Item): void
  /**
   * Fails the stream once everything queued was written, as a generator that throws: before the first item the
   * route's ordinary error (its status, the error handler), after it a logged error and the `onError` last item.
   */
  fail(error: unknown): void
  /**
   * Aborts when the source takes no more items: the client left, the server closed, the stream failed or was cut
   * off as too slow, or `end()`/`fail()` was called. Remove your listeners on it (`events.on(emitter, name,
   * { signal })`, `signal.addEventListener('abort', ...)`).
   */
  readonly signal: AbortSignal
  /** Whether the source takes no more items (see `signal`). */
  readonly closed: boolean
  /** Items waiting for the client. */
  readonly queued: number
}

const DEFAULTS = { queueItems: 512, queueBytes: 1024 * 1024 }
const OPTION_NAMES: readonly string[] = Object.keys(DEFAULTS)

const DONE: IteratorReturnResult<undefined> = Object.freeze({ value: undefined, done: true })

type Step = IteratorResult<SseItem<unknown>, undefined>

/** Once streamed, the frames the stream's own rules encoded; before that, items as pushed. */
type Queued = EncodedFrame | SseItem<unknown>

/** Before the source is streamed only the fields are checked: the data is encoded by the stream's serializer. */
function noData (): string {
  return ''
}

function bytesOf (item: Queued): number {
  return item instanceof EncodedFrame ? item.bytes : 0
}

function checkBound (name: keyof typeof DEFAULTS, value: number | undefined): number {
  if (value === undefined) return DEFAULTS[name]
  if (!(Number.isSafeInteger(value) && value >= 1)) {
    throw invalidOption(name, `must be a whole number >= 1, got ${String(value)}`, 'pushSource()')
  }
  return value
}

class Push implements
  PushSource<SseItem<unknown>>, AsyncIterator<SseItem<unknown>, undefined>, AttachableSource, SyncSource {
  readonly #queueItems: number
  readonly #queueBytes: number
  /** Frames once streamed; before that, items as pushed (encoded when the stream takes the source). */
  #queue: Array<Queued | undefined> = []
  #head = 0
  #bytes = 0
  #link: StreamLink | undefined
  /** The stream took everything and waits for `deliver()`. */
  #linkWaits = false
  /** Takes no more items: ended, failed, cut off or stopped. What is queued is still handed out. */
  #closed = false
  /** Handed out, once the queue is, instead of the end: a rejection, as a generator's throw. */
  #failure: { error: unknown } | undefined
  #wake: ((step: Step | Promise<Step>) => void) | undefined
  /** The pending `next()`, so that a second call made before it settles queues behind it. */
  #waiting: Promise<unknown> | undefined
  /** Made when `signal` is first read. */
  #controller: AbortController | undefined
  #drained: { promise: Promise<void>, resolve: () => void } | undefined

  /** Whether a stream took this source: its items are that stream's (see `feedsAStream`). */
  static taken (source: Push): boolean {
    return source.#link !== undefined
  }

  constructor (options: PushSourceOptions) {
    refuseNonObject(options, '{ queueItems, queueBytes }', 'pushSource()')
    refuseUnknown(options, OPTION_NAMES, 'pushSource()')
    this.#queueItems = checkBound('queueItems', options.queueItems)
    this.#queueBytes = checkBound('queueBytes', options.queueBytes)
  }

  get queued (): number {
    return this.#queue.length - this.#head
  }

  get closed (): boolean {
    return this.#closed
  }

  get signal (): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController()
      if (this.#closed) this.#controller.abort()
    }
    return this.#controller.signal
  }

  push (item: SseItem<unknown>): boolean {
    if (this.#closed) return false
    const queued = this.#encode(item)
    if (this.#linkWaits) {
      // the stream writes it within this call
      this.#linkWaits = false
      ;(this.#link as StreamLink).deliver(queued as SseItem<unknown>)
      return true
    }
    if (this.#wake !== undefined) {
      // the stream is waiting for an item: straight to it
      this.#settle({ value: queued as SseItem<unknown>, done: false })
      return true
    }
    const size = bytesOf(queued)
    const count = this.queued
    if (count >= this.#queueItems || (count > 0 && this.#bytes + size > this.#queueBytes)) {
      this.#overflow(count)
      return false
    }
    this.#queue.push(queued)
    this.#bytes += size
    return 2 * (count + 1) < this.#queueItems && 2 * this.#bytes < this.#queueBytes
  }

  drained (): Promise<void> {
    if (this.#closed || this.queued === 0) return Promise.resolve()
    if (this.#drained === undefined) {
      let resolve!: () => void
      const promise = new Promise<void>(_resolve => { resolve = _resolve })
      this.#drained = { promise, resolve }
    }
    return this.#drained.promise
  }

  end (last?: SseItem<unknown>): void {
    if (this.#closed) return
    try {
      if (last !== undefined) this.push(last)
    } finally {
      this.#close()
    }
  }

  fail (error: unknown): void {
    if (this.#closed) return
    this.#failure = { error }
    this.#close()
  }

  [Symbol.asyncIterator] (): this {
    return this
  }

  next (): Promise<Step> {
    const item = this.#shift()
    if (item !== undefined) return Promise.resolve({ value: item, done: false })
    if (this.#closed) return this.#last()
    // after the pending one, however it settles: a failure is handed out once
    if (this.#waiting !== undefined) return this.#waiting.then(() => this.next(), () => this.next())
    const waiting = new Promise<Step>(resolve => { this.#wake = resolve })
    this.#waiting = waiting
    return waiting
  }

  /** The consumer stops (the client left, the server closes, the stream failed): the queue is dropped. */
  return (): Promise<Step> {
    this.#failure = undefined
    this.#queue = []
    this.#head = 0
    this.#bytes = 0
    this.#close()
    return Promise.resolve(DONE)
  }

  [kAttachStream] (link: StreamLink): SyncSource {
    this.#link = link
    // what was pushed before the source was streamed is encoded now, by the stream's rules
    for (let i = this.#head; i < this.#queue.length; i++) {
      try {
        const encoded = new EncodedFrame(link.encode(this.#queue[i]))
        this.#queue[i] = encoded
        this.#bytes += encoded.bytes
      } catch (err) {
        // as a generator that yields a bad item: what came before it is written, then the stream fails, even
        // when end() or fail() was called already (what came after the bad item is never written)
        this.#queue.length = i
        this.#failure = { error: err }
        this.#close()
        break
      }
    }
    return this
  }

  /** @internal `SyncSource`: the stream takes the next frame; the end or the failure once the queue is written. */
  take (): SseItem<unknown> | typeof WAIT | undefined {
    const item = this.#shift()
    if (item !== undefined) return item
    if (!this.#closed) {
      this.#linkWaits = true
      return WAIT
    }
    const failure = this.#failure
    this.#failure = undefined
    if (failure !== undefined) throw failure.error
    return undefined
  }

  /** Encoded by the stream's rules once it is streamed; before that, its fields are checked. Throws for a bad item. */
  #encode (item: SseItem<unknown>): Queued {
    if (this.#link !== undefined) return new EncodedFrame(this.#link.encode(item))
    encodeItem(item, noData)
    return item
  }

  /** Over a bound: the client is too slow. */
  #overflow (count: number): void {
    // A stream whose client is stuck (its socket full) resets the connection now, and the queue is dropped;
    // otherwise what is queued is still written, then the stream fails with the error (logged; onError maps it).
    if (this.#link?.disconnect() === true) this.return()
    else this.fail(pushOverflow(count, this.#bytes, this.#queueItems, this.#queueBytes))
  }

  /** The next queued item; a frame is handed to the stream as an item it writes as it is (see `frameOf`). */
  #shift (): SseItem<unknown> | undefined {
    if (this.#head === this.#queue.length) return undefined
    const item = this.#queue[this.#head] as SseItem<unknown>
    this.#queue[this.#head++] = undefined
    this.#bytes -= bytesOf(item)
    if (this.#head === this.#queue.length) {
      this.#queue = []
      this.#head = 0
      this.#resolveDrained()
    }
    return item
  }

  /** What follows the queue of a closed source: its failure once, then the end. */
  #last (): Promise<Step> {
    const failure = this.#failure
    if (failure === undefined) return Promise.resolve(DONE)
    this.#failure = undefined
    return Promise.reject(failure.error)
  }

  #close (): void {
    if (this.#closed) return
    this.#closed = true
    this.#controller?.abort()
    this.#resolveDrained()
    // a waiting consumer has an empty queue (items go straight to it): it gets the end, or the failure
    if (this.#wake !== undefined) this.#settle(this.#last())
    if (this.#linkWaits) {
      this.#linkWaits = false
      ;(this.#link as StreamLink).deliver()
    }
  }

  #settle (step: Step | Promise<Step>): void {
    const wake = this.#wake as (step: Step | Promise<Step>) => void
    this.#wake = undefined
    this.#waiting = undefined
    wake(step)
  }

  #resolveDrained (): void {
    const drained = this.#drained
    this.#drained = undefined
    drained?.resolve()
  }
}

/** A push source a stream takes its items from already: another would split them (and their accounting). */
export function feedsAStream (source: unknown): boolean {
  return source instanceof Push && Push.taken(source)
}

/**
 * A source to push items into, for `reply.sse(source)` or to return from a handler: `push(item)` (false when
 * the client is behind: await `drained()`), `end()`, `fail(error)`, and a `signal` that aborts when the client
 * leaves. `T` is the data type, or `typeof schema` for a route's `sseSchema()` items.
 */
export function pushSource<T = unknown> (options: PushSourceOptions = {}): PushSource<PushItemOf<T>> {
  return new Push(options) as PushSource<SseItem<unknown>> as PushSource<PushItemOf<T>>
}
