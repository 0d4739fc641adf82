import { EventEmitter } from 'node:events'

// An EventEmitter's listener table is a dictionary-mode object of ~200 bytes, made in its constructor. A body
// piped by the plugin itself has no listener all its life, and an idle server holds one per open stream: this
// base class makes the emitter on the first listener, and is an EventEmitter to whoever listens (Fastify's
// stream path and its end-of-stream watchers use on/once/removeListener/emit/listenerCount).

type Listener = Parameters<EventEmitter['on']>[1]
type EventName = string | symbol

/** The listener side of an EventEmitter, its emitter made on first use. */
export class LazyEmitter {
  #emitter: EventEmitter | undefined

  #events (): EventEmitter {
    this.#emitter ??= new EventEmitter()
    return this.#emitter
  }

  on (event: EventName, listener: Listener): this {
    this.#events().on(event, listener)
    return this
  }

  addListener (event: EventName, listener: Listener): this {
    return this.on(event, listener)
  }

  once (event: EventName, listener: Listener): this {
    this.#events().once(event, listener)
    return this
  }

  prependListener (event: EventName, listener: Listener): this {
    this.#events().prependListener(event, listener)
    return this
  }

  prependOnceListener (event: EventName, listener: Listener): this {
    this.#events().prependOnceListener(event, listener)
    return this
  }

  removeListener (event: EventName, listener: Listener): this {
    this.#emitter?.removeListener(event, listener)
    return this
  }

  off (event: EventName, listener: Listener): this {
    return this.removeListener(event, listener)
  }

  removeAllListeners (event?: EventName): this {
    this.#emitter?.removeAllListeners(event)
    return this
  }

  /** Like EventEmitter's, except that an `error` nobody listens for is dropped, not thrown: check first. */
  emit (event: EventName, ...args: unknown[]): boolean {
    return this.#emitter?.emit(event, ...args) ?? false
  }

  listenerCount (event: EventName): number {
    return this.#emitter?.listenerCount(event) ?? 0
  }

  listeners (event: EventName): Function[] {
    return this.#emitter?.listeners(event) ?? []
  }
}
