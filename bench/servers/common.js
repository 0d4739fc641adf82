// Shared by every bench server: the event every route sends, the query parsing, and the control channel
// (IPC) through which bench/run.js reads the process's CPU time and memory. Nothing here runs per event
// except `item()` / `frame()`, which build the same event for every server.
import { performance } from 'node:perf_hooks'

/** The message text carried in every event (a constant, so every server sends identical bytes of data). */
export const MSG = 'the quick brown fox jumps over the lazy dog'

/** The `{ event, id, data: { i, ts, msg } }` item of event number `i`, stamped `ts`. */
export function item (i, ts) {
  return { event: 'tick', id: String(i), data: { i, ts, msg: MSG } }
}

/** Hand-written frame of the same item, as the raw server writes it. */
export function frame (i, ts) {
  return 'id: ' + i + '\nevent: tick\ndata: ' + JSON.stringify({ i, ts, msg: MSG }) + '\n\n'
}

/** A wall-clock time with sub-millisecond resolution, comparable across processes on this machine. */
export function now () {
  return performance.timeOrigin + performance.now()
}

/** Reads a non-negative integer query parameter (`n`, `start`) from a raw URL. */
export function intParam (url, name, fallback) {
  const m = new RegExp('[?&]' + name + '=(\\d+)').exec(url)
  return m === null ? fallback : Number(m[1])
}

/**
 * Announces `port` to the parent and answers its control messages:
 * `stats` → CPU time (µs), memory and the number of live subscribers (after a full GC when `gc` is set).
 */
export function ready (name, port, subscribers) {
  process.on('message', (msg) => {
    if (msg?.cmd === 'stats') {
      if (msg.gc === true && typeof globalThis.gc === 'function') {
        globalThis.gc()
        globalThis.gc()
      }
      const cpu = process.cpuUsage()
      process.send({ id: msg.id, cpu: cpu.user + cpu.system, mem: process.memoryUsage(), subscribers: subscribers() })
    }
  })
  // The parent going away (Ctrl-C, crash) must not leave a server behind.
  process.on('disconnect', () => process.exit(0))
  process.send({ ready: true, name, port })
}

/**
 * The plugin options that keep its streams from opening with a `retry:` line, as raw and the other libraries'
 * servers send none: `{ retry: false }`, or nothing for a build from before `retry: false` (BENCH_DIST), whose
 * streams send no `retry:` line by default and which refuses `false`.
 */
export async function noRetry (Fastify, ssePlugin) {
  const probe = Fastify({ logger: false })
  const takesFalse = await probe.register(ssePlugin, { retry: false }).ready().then(() => true, () => false)
  await probe.close().catch(() => {})
  return takesFalse ? { retry: false } : {}
}
