import { EventEmitter } from 'node:events'
import type { PipedBody } from './fastify-internals.js'
import type { EventStream } from './stream.js'
import type { BodyEvents, Destination } from './writer.js'

// The body handed to Fastify's `reply.send()` when its stream-send path has work to do (an onSend hook, a
// trailer). That path pipes the body and watches it with `finished()`, so the body must be an EventEmitter that
// emits `end`, `close` and, for a failure before the head went, `error`. This is that emitter, in front of the
// writer, which emits nothing itself: a stream written directly (lib/reply's choice when the path has nothing to
// do, most streams) makes none.

/** A writer as a body for Fastify's stream-send path (see `PipedBody`). */
export class FastifyBody extends EventEmitter implements PipedBody, BodyEvents {
  readonly #writer: EventStream

  constructor (writer: EventStream) {
    super()
    this.#writer = writer
    writer.reportTo(this)
  }

  /** Called by Fastify once every onSend hook has run (or by a hook that wraps the body). */
  pipe<T extends Destination> (dest: T, options?: { end?: boolean }): T {
    this.#writer.pipe(dest, options)
    return dest
  }

  /** Called by Fastify when the response closed before the body ended. */
  destroy (): void {
    this.#writer.destroy()
  }

  /** @internal `BodyEvents` */
  ended (): void {
    this.emit('end')
  }

  /** @internal `BodyEvents` */
  closed (): void {
    this.emit('close')
  }

  /** @internal `BodyEvents`: Fastify listens for the body's errors once it pipes it. */
  takesErrors (): boolean {
    return this.listenerCount('error') > 0
  }

  /** @internal `BodyEvents` */
  failed (err: unknown): void {
    this.emit('error', err)
  }
}
