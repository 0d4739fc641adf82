import { EncodedFrame, encodeItem } from './encode.js'
import { pushOverflow } from './errors.js'
import { refuseNonObject, refuseUnknown } from './options.js'
import { BoundedQueue, type QueueKind } from './queue.js'
import { queueLimit, type QueueLimits } from './slow-client.js'
import type { StreamLink } from './source.js'
import type { SseSchema } from './typed/schema.js'
import type { SseItem } from './types.js'

// Push-style writing: a bounded queue that callbacks and EventEmitters push items into, and that one stream
// reads as its source. The producer learns that the client is behind (push() returns false, drained() waits),
// that it left (signal), and a producer that pushes regardless cannot grow the queue past its bounds. Items are
// encoded when pushed, by the rules of the stream that writes them, so a bad one throws at the push call. Its
// queue is lib/queue's, as a channel subscriber's: an item pushed while the stream waits is written within the
// push() call, and a client past the limits is cut off as lib/slow-client decides.

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

const OPTION_NAMES: readonly string[] = ['queueItems', 'queueBytes']

/** Once streamed, the frames the stream's own rules encoded; before that, items as pushed. */
type Queued = EncodedFrame | SseItem<unknown>

/** Before the source is streamed only the fields are checked: the data is encoded by the stream's serializer. */
function noData (): string {
  return ''
}

class Push extends BoundedQueue<Queued> implements PushSource<SseItem<unknown>> {
  readonly #limits: QueueLimits
  /** Set once the stream took the source: it encodes what is pushed. */
  #link: StreamLink | undefined
  /** Made when `signal` is first read. */
  #controller: AbortController | undefined
  #drained: { promise: Promise<void>, resolve: () => void } | undefined

  constructor (options: PushSourceOptions) {
    super()
    refuseNonObject(options, '{ queueItems, queueBytes }', 'pushSource()')
    refuseUnknown(options, OPTION_NAMES, 'pushSource()')
    this.#limits = {
      queueItems: queueLimit('queueItems', options.queueItems, 'pushSource()'),
      queueBytes: queueLimit('queueBytes', options.queueBytes, 'pushSource()')
    }
  }

  protected get kind (): QueueKind {
    return 'push source'
  }

  protected limits (): QueueLimits {
    return this.#limits
  }

  protected sizeOf (item: Queued): number {
    return item instanceof EncodedFrame ? item.bytes : 0
  }

  get signal (): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController()
      if (this.closed) this.#controller.abort()
    }
    return this.#controller.signal
  }

  push (item: SseItem<unknown>): boolean {
    if (this.closed) return false
    // encoded by the stream's rules once it is streamed; before that, its fields are checked. Throws for a bad item.
    let queued: Queued = item
    if (this.#link !== undefined) queued = new EncodedFrame(this.#link.encode(item))
    else encodeItem(item, noData)
    // false at half the limits: room is left for a producer that pushes a little more before it waits
    return this.offer(queued) && this.roomy()
  }

  drained (): Promise<void> {
    if (this.closed || this.queued === 0) return Promise.resolve()
    if (this.#drained === undefined) {
      let resolve!: () => void
      const promise = new Promise<void>(_resolve => { resolve = _resolve })
      this.#drained = { promise, resolve }
    }
    return this.#drained.promise
  }

  end (last?: SseItem<unknown>): void {
    if (this.closed) return
    try {
      if (last !== undefined) this.push(last)
    } finally {
      this.close()
    }
  }

  fail (error: unknown): void {
    if (this.closed) return
    this.close({ error })
  }

  protected override attached (link: StreamLink): void {
    this.#link = link
    // what was pushed before the source was streamed is encoded now, by the stream's rules: a bad item fails the
    // stream as a generator that yields one does, even when end() or fail() was called already
    this.convert(item => new EncodedFrame(link.encode(item)))
  }

  /** Too slow: the stream fails with this once what is queued was written (logged; `onError` maps it). */
  protected overflowed (queued: number, bytes: number): { error: unknown } {
    const { queueItems, queueBytes } = this.#limits
    return { error: pushOverflow(queued, bytes, queueItems, queueBytes) }
  }

  protected onClose (): void {
    this.#controller?.abort()
    this.#resolveDrained()
  }

  protected override emptied (): void {
    this.#resolveDrained()
  }

  #resolveDrained (): void {
    const drained = this.#drained
    this.#drained = undefined
    drained?.resolve()
  }
}

/**
 * A source to push items into, for `reply.sse(source)` or to return from a handler: `push(item)` (false when
 * the client is behind: await `drained()`), `end()`, `fail(error)`, and a `signal` that aborts when the client
 * leaves. `T` is the data type, or `typeof schema` for a route's `sseSchema()` items.
 */
export function pushSource<T = unknown> (options: PushSourceOptions = {}): PushSource<PushItemOf<T>> {
  return new Push(options) as PushSource<SseItem<unknown>> as PushSource<PushItemOf<T>>
}
