import type { Socket } from 'node:net'

// The fan-out benches' client side: each published frame is `data: {"t":<publish stamp>,"n":<publish number>}`.
// A raw-socket reader of those frames, shared so the three benches measure latency the same way.

const FRAME = /data: \{"t":([0-9.]+),"n":([0-9]+)\}/g

/**
 * A socket `data` listener that calls `onFrame(n, latency)` for every whole frame, latency measured from the
 * publisher's stamp to the read (`now()` on the same machine's clock). Partial frames wait for the next chunk.
 */
export function stampedFrameReader (
  now: () => number, onFrame: (n: number, latency: number) => void
): (this: Socket & { tail?: string }, chunk: Buffer) => void {
  return function onData (chunk) {
    const at = now()
    let text = (this.tail ?? '') + chunk.toString('latin1')
    const end = text.lastIndexOf('\n\n')
    if (end === -1) { this.tail = text; return }
    this.tail = text.slice(end + 2)
    text = text.slice(0, end)
    for (const m of text.matchAll(FRAME)) onFrame(Number(m[2]), at - Number(m[1]))
  }
}
