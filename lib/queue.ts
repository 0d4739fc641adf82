import { overLimits, underHalf, type QueueLimits } from './slow-client.js'
import { kAttachStream, WAIT, type AttachableSource, type StreamLink, type SyncSource } from './source.js'
import type { SseItem } from './types.js'

// The bounded queue between a producer that never waits (a channel's fan-out, a push source's callbacks) and the
// one stream that reads it, written once for both. An item goes straight to a reader that waits for one (the
// stream, within the producer's call, or a pending `next()`); otherwise it is queued, up to the limits, past
// which the client is cut off as lib/slow-client decides. The stream reads it synchronously (lib/source's
// `SyncSource`: `take()`, and `deliver()` when it waits); iterated by hand, it is an async iterator. One queue
// feeds one stream: a second stream would split its items (and their accounting), and is refused (`feeding`).

type Step = IteratorResult<SseItem<unknown>, undefined>

const DONE: IteratorReturnResult<undefined> = Object.freeze({ value: undefined, done: true })

/** The empty queue, shared: a queue whose stream takes every item as it comes never makes one. */
const EMPTY: never[] = Object.freeze([]) as unknown as never[]

/** A `next()` not answered yet: a second call made before it settles queues behind it instead of replacing it. */
interface PendingNext {
  readonly promise: Promise<Step>
  wake: (step: Step | Promise<Step>) => void
}

/**
 * `open`: takes items. `closed`: takes no more; hands out what it has, then its end (or its failure, once).
 * `ended`: has nothing more to hand out.
 */
type QueueState = 'open' | 'closed' | 'ended'

/** What a stream reads from a queue, as named to whoever tries to give it to a second stream. */
export type QueueKind = 'push source' | 'channel subscription'

/**
 * A bounded queue of `Item`s (what the producer offers: frames or encoded items), handed out as the items the
 * stream writes. A kind of source extends it with what is its own: its limits, the size of an item, what it does
 * on overflow, on closing and at its end, and what it holds back (a subscriber's replay).
 */
export abstract class BoundedQueue<Item extends object>
implements AsyncIterator<SseItem<unknown>, undefined>, AttachableSource, SyncSource {
  #items: Array<Item | undefined> = EMPTY
  /** Where the next item is in `#items`: taken items are cleared, not shifted out one by one. */
  #head = 0
  /** Bytes of the items waiting. */
  #bytes = 0
  #state: QueueState = 'open'
  /** Handed out once, after the queue, instead of the end: a rejection, as a generator's throw. */
  #failure: { error: unknown } | undefined
  /** The stream that reads this queue, once it attached. */
  #stream: StreamLink | undefined
  /** The stream took everything and waits for `deliver()`: it holds no promise meanwhile. */
  #streamWaits = false
  /** The pending `next()`, when iterated by hand rather than read by a stream. */
  #pending: PendingNext | undefined

  /** What it is, for the error that refuses it to a second stream. */
  protected abstract get kind (): QueueKind
  protected abstract limits (): QueueLimits
  /** The bytes an item counts for. */
  protected abstract sizeOf (item: Item): number
  /**
   * Over its limits (`queued` items of `bytes` wait, the next does not fit): told before the client is cut off.
   * Answers what the queue fails with after what is queued, when its client still reads (undefined: it just ends).
   */
  protected abstract overflowed (queued: number, bytes: number): { error: unknown } | undefined
  /** It stopped taking items (`close()`, a cut-off, `stop()`). */
  protected abstract onClose (): void

  /** Whether the queue holds its items back for now (a subscriber's replay on its way): a reader waits. */
  protected held (): boolean {
    return false
  }

  /** A stream attached (before its first read). */
  protected attached (_stream: StreamLink): void {}

  /** It has nothing more to hand out (read to its end, or stopped). */
  protected onEnd (): void {}

  /** The last waiting item was taken. */
  protected emptied (): void {}

  /** Items waiting for the client. */
  get queued (): number {
    return this.#items.length - this.#head
  }

  /** Whether it takes no more items. */
  get closed (): boolean {
    return this.#state !== 'open'
  }

  /** Whether it has nothing more to hand out. */
  protected get ended (): boolean {
    return this.#state === 'ended'
  }

  /** What the queue is, when a stream reads it already (one more would take its items from that one). */
  static feeding (queue: BoundedQueue<object>): QueueKind | undefined {
    return queue.#stream === undefined ? undefined : queue.kind
  }

  /**
   * Hands the item on: to a reader that waits for one (a waiting stream writes it within this call), else into
   * the queue. False when it was not taken: the queue is closed, or the item took it past its limits (and the
   * client was cut off).
   */
  protected offer (item: Item): boolean {
    if (this.#state !== 'open') return false
    if (!this.held() && this.#handOver(item as SseItem<unknown>)) return true
    const size = this.sizeOf(item)
    const queued = this.queued
    if (overLimits(queued, this.#bytes, size, this.limits())) {
      this.#overflow(queued)
      return false
    }
    if (this.#items === EMPTY) this.#items = [item]
    else this.#items.push(item)
    this.#bytes += size
    return true
  }

  /** Whether it is under half of both its limits (see lib/slow-client's `underHalf`). */
  protected roomy (): boolean {
    return underHalf(this.queued, this.#bytes, this.limits())
  }

  /** Past its limits: the client is cut off (lib/slow-client decides whether its connection is reset now). */
  #overflow (queued: number): void {
    const failure = this.overflowed(queued, this.#bytes)
    // a stuck client's connection is reset: nothing queued can reach it. Otherwise what is queued is still handed
    // out, then the end (or the failure): the client resumes from there.
    if (this.#stream?.disconnect() === true) this.stop()
    else this.close(failure)
  }

  /**
   * Takes no more items; what is queued is still handed out, then the end, or `failure` (thrown once, as a
   * generator's throw). A failure given when it is closed already replaces the one it had.
   */
  protected close (failure?: { error: unknown }): void {
    if (failure !== undefined) this.#failure = failure
    if (this.#state !== 'open') return
    this.#state = 'closed'
    this.onClose()
    // a waiting reader has had everything (items go straight to it): it gets the end now
    if (!this.held()) this.#wakeAtEnd()
  }

  /** Stops now (its reader left, or its producer or channel ended it): what is queued is dropped. */
  stop (): void {
    if (this.#state === 'ended') return
    this.#failure = undefined
    this.#items = EMPTY
    this.#head = 0
    this.#bytes = 0
    this.close()
    this.#end()
    this.#wakeAtEnd()
  }

  /**
   * No longer held (see `held`): a reader that waits gets the next item now, or, closed meanwhile with nothing left
   * (cut off while held, and what was queued was held back already), the end.
   */
  protected release (): void {
    if (!this.#streamWaits && this.#pending === undefined) return
    const item = this.shift()
    if (item !== undefined) this.#handOver(item)
    else if (this.#atEnd()) this.#wakeAtEnd()
  }

  /** To a reader that waits for one: a waiting stream writes it within this call, a pending `next()` resolves. */
  #handOver (item: SseItem<unknown>): boolean {
    if (this.#streamWaits) {
      this.#streamWaits = false
      ;(this.#stream as StreamLink).deliver(item)
      return true
    }
    if (this.#pending === undefined) return false
    this.#settle({ value: item, done: false })
    return true
  }

  /** The waiting item `index` places from the next. */
  protected itemAt (index: number): Item {
    return this.#items[this.#head + index] as Item
  }

  /** Drops the next `count` waiting items. */
  protected dropFirst (count: number): void {
    if (count === 0) return
    const items = this.#items
    for (let i = this.#head; i < this.#head + count; i++) this.#bytes -= this.sizeOf(items[i] as Item)
    this.#items = items.slice(this.#head + count)
    this.#head = 0
  }

  /** Replaces each waiting item with what `convert` makes of it; the first that throws fails the queue there. */
  protected convert (convert: (item: Item) => Item): void {
    const items = this.#items
    for (let i = this.#head; i < items.length; i++) {
      const item = items[i] as Item
      let converted: Item
      try {
        converted = convert(item)
      } catch (error) {
        // what came before it is handed out, then the failure; what came after it, never
        for (let j = i; j < items.length; j++) this.#bytes -= this.sizeOf(items[j] as Item)
        items.length = i
        this.close({ error })
        return
      }
      items[i] = converted
      this.#bytes += this.sizeOf(converted) - this.sizeOf(item)
    }
  }

  [Symbol.asyncIterator] (): this {
    return this
  }

  next (): Promise<Step> {
    const item = this.held() ? undefined : this.shift()
    if (item !== undefined) return Promise.resolve({ value: item, done: false })
    if (this.#atEnd()) return this.#last()
    // after the pending one, however it settles: a failure is handed out once
    if (this.#pending !== undefined) return this.#pending.promise.then(() => this.next(), () => this.next())
    let wake!: PendingNext['wake']
    const promise = new Promise<Step>(resolve => { wake = resolve })
    this.#pending = { promise, wake }
    return promise
  }

  /** The consumer stops (the client left, the server closes, the stream failed): the queue is dropped. */
  return (): Promise<Step> {
    this.stop()
    return Promise.resolve(DONE)
  }

  /** `AttachableSource`: the stream that writes this queue; it reads it synchronously. */
  [kAttachStream] (stream: StreamLink): SyncSource {
    this.#stream = stream
    this.attached(stream)
    return this
  }

  /** @internal `SyncSource`: the stream takes the next item; the end or the failure once the queue is handed out. */
  take (): SseItem<unknown> | typeof WAIT | undefined {
    const item = this.held() ? undefined : this.shift()
    if (item !== undefined) return item
    if (!this.#atEnd()) {
      this.#streamWaits = true
      return WAIT
    }
    this.#end()
    const failure = this.#failure
    this.#failure = undefined
    if (failure !== undefined) throw failure.error
    return undefined
  }

  /** The next waiting item, handed out as the item the stream writes (a frame is written as it is). */
  protected shift (): SseItem<unknown> | undefined {
    if (this.#head === this.#items.length) return undefined
    const item = this.#items[this.#head] as Item
    this.#items[this.#head++] = undefined
    this.#bytes -= this.sizeOf(item)
    if (this.#head === this.#items.length) {
      this.#items = EMPTY
      this.#head = 0
      this.emptied()
    }
    return item as SseItem<unknown>
  }

  /** Whether the end comes next: nothing more will be queued, nor is anything held back. */
  #atEnd (): boolean {
    return this.#state === 'ended' || (this.#state === 'closed' && !this.held())
  }

  /** What follows the queue of a closed source: its failure once, then the end. */
  #last (): Promise<Step> {
    this.#end()
    const failure = this.#failure
    if (failure === undefined) return Promise.resolve(DONE)
    this.#failure = undefined
    return Promise.reject(failure.error)
  }

  #end (): void {
    if (this.#state === 'ended') return
    this.#state = 'ended'
    this.onEnd()
  }

  /** A closed queue with nothing left: a waiting `next()` gets the end, a waiting stream learns it (by `take()`). */
  #wakeAtEnd (): void {
    if (this.#pending !== undefined) this.#settle(this.#last())
    if (this.#streamWaits) {
      this.#streamWaits = false
      ;(this.#stream as StreamLink).deliver()
    }
  }

  #settle (step: Step | Promise<Step>): void {
    const pending = this.#pending as PendingNext
    this.#pending = undefined
    pending.wake(step)
  }
}

/** What a stream reads already, as named in the error refusing it to another (`reply.sse()`); else undefined. */
export function feeding (source: unknown): QueueKind | undefined {
  return source instanceof BoundedQueue ? BoundedQueue.feeding(source) : undefined
}
