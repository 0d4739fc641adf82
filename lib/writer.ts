import type { FastifyReply } from 'fastify'
import { HEARTBEAT_FRAME, jitteredRetry, retryFrame, type Frame } from './encode.js'
import { sendHead, takeBackHeaders } from './head.js'
import { clock, joinHeartbeats, leaveHeartbeats, type HeartbeatMember } from './heartbeat.js'
import type { StreamRegistry } from './metrics.js'
import type { ResolvedStreamOptions } from './options.js'

// Writes one SSE response: whole frames into its destination, string frames of one burst gathered into one
// write, no more once the destination is full (until it drains, or `writeTimeout` passes without a drain: the
// stream then cuts the client off), a heartbeat comment when idle, the head when the stream opens (lib/head
// decides when), and the end of the body. What to write, and when the stream ends, is
// lib/stream's (`EventStream` extends this: one object per stream).

/** Where the frames go: the response itself, or whatever an onSend hook put in front of it. */
export interface Destination {
  write: (chunk: Frame) => boolean
  end: () => unknown
  once: (event: 'drain', listener: () => void) => unknown
}

/** Who is told of the writer's end: Fastify's send path, through the body it pipes (lib/fastify-body). */
export interface BodyEvents {
  /** The body is complete (`close` follows). */
  ended: () => void
  closed: () => void
  /** Whether a failure before the head went can be handed to Fastify (it listens once it piped the body). */
  takesErrors: () => boolean
  /** That failure, for Fastify's error handling. */
  failed: (err: unknown) => void
}

/**
 * String frames that a source yields in one burst (without waiting on I/O in between) are gathered and
 * pushed as one chunk when the burst ends, or at this many characters: one socket write instead of many,
 * and no later than the frames would have left anyway (the response corks the socket until next tick).
 */
const BATCH_CHARS = 16 * 1024

/** `process.nextTick` calls it with the writer as argument: no closure per burst or per stream. */
function flushBurst (writer: ResponseWriter): void {
  writer.flushBurst()
}

/**
 * Not a `Readable`: `pipe()` writes whole frames straight to the destination, and the stream pulls its next item
 * only when the destination takes more. That skips the Readable buffer, the pipe's closures and one copy of every
 * chunk (the cost of an idle stream was mostly that machinery). Written directly (`pipeDirect()`) it tells nobody
 * of its end; on Fastify's send path the body Fastify watches is told (`reportTo`).
 */
export abstract class ResponseWriter implements HeartbeatMember {
  protected readonly reply: FastifyReply
  /** Shared by the streams of a route (or of the plugin): serializer, `onError`, heartbeat interval. */
  protected readonly options: ResolvedStreamOptions
  protected readonly registry: StreamRegistry
  #dest: Destination | undefined
  /** The destination is ended with the body (`pipe()`'s `end` option). */
  #endDest = true
  /** The destination takes more (it has not answered a write with false since its last `drain`). */
  #takesMore = true
  /** A burst's frames are batched, to be flushed on the next tick. */
  #flushQueued = false
  #batch = ''
  /** Destroyed: out of the registry, the heartbeats and the response's close watch. */
  #closed = false
  /** Piped by `pipeDirect()`: the writer writes the head itself when the stream opens. */
  #direct = false
  /** The head waits for the first item, or `headersDelay` ms (see `#openHeld`); cleared once it may go. */
  #held: boolean
  /**
   * Before the stream opens, the head's wait (`headersDelay`); after, the write timeout, set when the destination
   * first says wait and kept (refreshed) while it keeps saying so (see `#timeOut`). One field for both: an idle
   * stream holds no timer, and a stream cannot wait on both at once (nothing is written before it opens).
   */
  #timer: NodeJS.Timeout | undefined
  /** Set on Fastify's send path: the body Fastify watches. */
  #body: BodyEvents | undefined
  /** @internal Where the heartbeat wheel keeps this stream. */
  heartbeatSlot = -1
  #lastWrite = clock()
  #bytes = 0

  constructor (reply: FastifyReply, options: ResolvedStreamOptions, registry: StreamRegistry, holdsHead: boolean) {
    this.reply = reply
    this.options = options
    this.registry = registry
    this.#held = holdsHead
    if (options.retry !== false) this.#batch = retryFrame(jitteredRetry(options.retry, options.retryJitter))
  }

  /**
   * Joins the heartbeat wheel. Called last by the stream's constructor, not by this one: the wheel would hold for
   * good a writer whose stream then failed to construct (a source whose iterator cannot be made).
   */
  protected startHeartbeats (): void {
    const { heartbeat } = this.options
    if (heartbeat !== false) joinHeartbeats(this, heartbeat)
  }

  /** The destination was piped: the stream starts (or, ended already, ends the body now). */
  protected abstract piped (): void
  /** The destination drained: the stream may pull again. */
  protected abstract drained (): void
  /** Destroyed (see `destroy`): the stream lets go of what it holds. */
  protected abstract destroyed (): void
  /** Output waited `writeTimeout` ms without the destination draining: the stream cuts its client off. */
  protected abstract writeTimedOut (): void

  /**
   * Called through the body by Fastify once every onSend hook has run and the headers are set (or by a hook that
   * wraps the body), or by `pipeDirect()`.
   */
  pipe<T extends Destination> (dest: T, options?: { end?: boolean }): T {
    this.#dest = dest
    this.#endDest = options?.end !== false
    this.piped()
    return dest
  }

  /** Fastify's send path will pipe the writer through `body`, and watch it. */
  reportTo (body: BodyEvents): void {
    this.#body = body
  }

  /**
   * Pipes into the response itself, bypassing Fastify's stream path (lib/reply takes it when that path has
   * nothing to do): the writer writes the head when the stream opens, and takes the reply over
   * (`reply.hijack()`) only then, so a failure before that is still answered by Fastify's error handler.
   */
  pipeDirect (): void {
    this.#direct = true
    this.pipe(this.reply.raw)
  }

  /**
   * The head goes out now, or once the first item or `headersDelay` ms of silence came, never earlier than the
   * pipe: that would send it without what an async onSend hook adds.
   */
  protected openOrHold (): void {
    if (!this.#held) this.#open()
    else this.#timer = setTimeout(ResponseWriter.#openHeld, this.options.headersDelay, this).unref()
  }

  /** Static, so that a writer holds no closure for its wait. */
  static #openHeld (writer: ResponseWriter): void {
    if (!writer.#closed) writer.#open()
  }

  #release (): void {
    this.#held = false
    clearTimeout(this.#timer)
    this.#timer = undefined
  }

  /** The head, and what was batched before it (a `retry:` line), go out now. */
  #open (): void {
    this.#release()
    sendHead(this.reply, this.#direct, this.#dest)
    this.#flush()
  }

  /** A frame of the stream (the first opens it): gathered with its burst when a string, else written now. */
  protected writeFrame (frame: Frame): void {
    // the first item opens the stream: headers first, on their own, as a stream opened by the wait sends them
    if (this.#held) this.#open()
    if (typeof frame === 'string') {
      this.#batch += frame
      if (this.#batch.length >= BATCH_CHARS) this.#flush()
      else if (!this.#flushQueued) {
        this.#flushQueued = true
        process.nextTick(flushBurst, this)
      }
    } else {
      this.#flush()
      this.#write(frame)
    }
  }

  /** A last frame that is not an item (`onError`'s last word), written with the end. */
  protected addLast (frame: string): void {
    this.#batch += frame
  }

  /** @internal The end of a burst of string frames (see `flushBurst`). */
  flushBurst (): void {
    this.#flushQueued = false
    if (!this.#closed) this.#flush()
  }

  #flush (): void {
    if (this.#batch === '' || this.#dest === undefined) return
    const batch = this.#batch
    this.#batch = ''
    this.#write(batch)
  }

  /** Writes whole frames; a full destination stops the pulling until it drains. */
  #write (frame: Frame): void {
    this.#lastWrite = clock()
    const bytes = typeof frame === 'string' ? Buffer.byteLength(frame) : frame.byteLength
    this.#bytes += bytes
    this.registry.bytes += bytes
    let taken: boolean
    try {
      taken = (this.#dest as Destination).write(frame)
    } catch (err) {
      this.#writeFailed(err)
      return
    }
    if (!taken && this.#takesMore) {
      this.#takesMore = false
      // a closure made only when the socket is full, not one held by every stream
      ;(this.#dest as Destination).once('drain', () => { this.#onDrain() })
      this.#armWriteTimeout()
    }
  }

  /**
   * The destination said wait: the client has `writeTimeout` ms to take enough for it to drain. A drain does not
   * clear the timer (a busy stream fills and drains its socket all the time): the timer, refreshed at each wait,
   * finds on firing whether the stream is still waiting, so a stream makes at most one per `writeTimeout`.
   */
  #armWriteTimeout (): void {
    const { writeTimeout } = this.options
    if (writeTimeout === false) return
    if (this.#timer === undefined) this.#timer = setTimeout(ResponseWriter.#timeOut, writeTimeout, this).unref()
    else this.#timer.refresh()
  }

  /** Static, so that a writer holds no closure for its write timeout. */
  static #timeOut (writer: ResponseWriter): void {
    writer.#timer = undefined
    // drained since the last wait began (and not waiting again, which would have refreshed the timer)
    if (writer.#takesMore) return
    writer.writeTimedOut()
  }

  /**
   * What an `onSend` hook put in front of the response threw on a write. Caught here, not left to the caller: the
   * caller may be a channel's fan-out loop, whose other subscribers must still get the item. The connection is
   * closed; the client reconnects as from any dropped stream.
   */
  #writeFailed (err: unknown): void {
    this.reply.log.error({ err }, 'SSE stream write failed; connection closed')
    this.#takesMore = false
    this.reply.raw.destroy()
    this.destroy()
  }

  #onDrain (): void {
    this.#takesMore = true
    this.drained()
  }

  /** @internal Called by the heartbeat wheel when the stream is due: ms until it is due again. */
  heartbeat (now: number): number {
    const hb = this.options.heartbeat as number
    const idle = now - this.#lastWrite
    if (idle < hb) return hb - idle
    // a stream not yet piped or opened, or whose destination is full, is not idle: it is waiting
    if (this.#dest !== undefined && this.#takesMore && !this.#held) {
      this.#write(HEARTBEAT_FRAME)
      this.registry.heartbeats++
    }
    return hb
  }

  /**
   * Whether a failure now can still be the route's ordinary error (answered by `answerEarly`): the head waits
   * and nothing was sent, and Fastify can take the error (on its path, once it listens for the body's errors).
   */
  protected canAnswerEarly (): boolean {
    return this.#held && !this.reply.raw.headersSent && (this.#direct || this.#body?.takesErrors() === true)
  }

  /**
   * The SSE headers are taken back and the error handed to Fastify (as a file stream's missing file is, see
   * lib/fastify-body), which runs the error handler and onError hooks and answers with the error's status.
   */
  protected answerEarly (err: unknown): void {
    this.#release()
    takeBackHeaders(this.reply)
    this.reply.log.debug('SSE stream failed before its first item; answered by the error handler')
    // Fastify's path listens for the body's error; on the direct path the reply is not taken over yet
    if (this.#direct) this.reply.send(err as Error)
    else (this.#body as BodyEvents).failed(err)
    this.destroy()
  }

  /** Whether piped (the body can end now) */
  protected get piping (): boolean {
    return this.#dest !== undefined
  }

  /** Whether the destination takes more (see `#takesMore`). */
  protected get takesMore (): boolean {
    return this.#takesMore
  }

  protected get closed (): boolean {
    return this.#closed
  }

  /**
   * Ends the body, once piped: the head first if it still waits, then what was batched. A client still not taking
   * what waits for it keeps the write timeout (the response's close clears it).
   */
  protected endBody (): void {
    // a source that ended before its first item: the head goes out with the end
    if (this.#held) this.#open()
    this.#flush() // the whole frames that came before the end
    if (this.#endDest) (this.#dest as Destination).end()
    this.#body?.ended()
    this.#close(!this.#takesMore)
  }

  /** Bytes of frames written so far. */
  get bytes (): number {
    return this.#bytes
  }

  /** Stops everything at once (Fastify calls it when the response closes before the body ended). */
  destroy (): void {
    this.#close(false)
  }

  /** `keepTimer`: a body ended while its client held back its last bytes keeps its write timeout. */
  #close (keepTimer: boolean): void {
    if (!keepTimer) {
      clearTimeout(this.#timer)
      this.#timer = undefined
    }
    if (this.#closed) return
    this.#closed = true
    const { heartbeat } = this.options
    if (heartbeat !== false) leaveHeartbeats(this, heartbeat)
    this.destroyed()
    this.#body?.closed()
  }
}
