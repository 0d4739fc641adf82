import type { FastifyReply } from 'fastify'
import { invalidOption } from './errors.js'
import { closeHttp2Session, resetConnection } from './fastify-internals.js'

// How a client that reads too slowly is cut off, decided here and nowhere else. What a stream reads from a bounded
// queue (a channel subscription, a push source: lib/queue) may wait for its client up to the queue's limits; an
// item past them cuts the client off. A client that is stuck (its socket full) has its connection reset at once,
// so that it holds nothing on the server, in the kernel neither; one that still reads gets what is queued, then
// its stream ends (it resumes with Last-Event-ID when it comes back). The same test decides at `app.close()`: a
// stuck client is reset rather than waited for. The reset itself is lib/fastify-internals' `resetConnection`.

/** How much may wait for one client: items, and bytes of encoded frames. */
export interface QueueLimits {
  readonly queueItems: number
  readonly queueBytes: number
}

/** The limits of a channel subscriber and of a push source unless their options say otherwise. */
export const QUEUE_LIMITS: QueueLimits = Object.freeze({ queueItems: 512, queueBytes: 1024 * 1024 })

const UNITS = { queueItems: 'items', queueBytes: 'bytes' } as const

/** A limit option, checked (a whole number >= 1), or its default; `where` names the owner in the error. */
export function queueLimit (name: keyof QueueLimits, value: unknown, where?: string): number {
  if (value === undefined) return QUEUE_LIMITS[name]
  if (!(Number.isSafeInteger(value) && (value as number) >= 1)) {
    throw invalidOption(name, `must be a whole number of ${UNITS[name]} >= 1, got ${String(value)}`, where)
  }
  return value as number
}

/**
 * Whether one more item of `size` bytes takes a queue that holds `queued` items of `bytes` past its limits. An
 * item alone always fits, however big: a queue that refused it could never deliver it.
 */
export function overLimits (queued: number, bytes: number, size: number, limits: QueueLimits): boolean {
  return queued >= limits.queueItems || (queued > 0 && bytes + size > limits.queueBytes)
}

/** Whether a queue is under half of both its limits: the room a producer that cannot wait is told to keep. */
export function underHalf (queued: number, bytes: number, limits: QueueLimits): boolean {
  return 2 * queued < limits.queueItems && 2 * bytes < limits.queueBytes
}

/**
 * Whether the client is not taking what was written: the stream's destination said wait (`takesMore` false until
 * it drains), or the response's socket is full (HTTP/2 responses have no `writableNeedDrain`).
 */
export function isStuck (reply: FastifyReply, takesMore: boolean): boolean {
  return !takesMore || reply.raw.writableNeedDrain === true
}

/**
 * A client fell past its queue's limits: a stuck one has its connection reset now (true); one that still reads is
 * left to read what is queued (false), after which its source ends.
 */
export function resetWhenStuck (reply: FastifyReply, takesMore: boolean): boolean {
  if (!isStuck(reply, takesMore)) return false
  resetConnection(reply, false)
  return true
}

/** How long a stream ended by `app.close()` may take to flush cleanly before its connection is reset. */
const CLOSE_GRACE_MS = 1000

/**
 * The server is closing: a stuck client has its connection reset now; otherwise `end()` ends the stream cleanly,
 * and the connection is reset if `responseClosed` has not settled within `CLOSE_GRACE_MS` (a client can stop
 * reading with less in flight than fills the socket: it does not hold the close either).
 */
export function endOrReset (
  reply: FastifyReply, takesMore: boolean, end: () => void, responseClosed: Promise<void>
): void {
  if (isStuck(reply, takesMore)) resetConnection(reply, true)
  else {
    end()
    const grace = setTimeout(() => resetConnection(reply, true), CLOSE_GRACE_MS).unref()
    void responseClosed.then(() => clearTimeout(grace))
  }
  closeHttp2Session(reply.raw)
}
