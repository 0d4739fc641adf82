import t, { type Test } from 'tap'
import type { FastifyReply } from 'fastify'
import { jitteredRetry, type Frame } from '../lib/encode.js'
import { clock } from '../lib/heartbeat.js'
import { StreamRegistry } from '../lib/metrics.js'
import { DEFAULTS } from '../lib/options.js'
import { ResponseWriter, type BodyEvents, type Destination } from '../lib/writer.js'

/** A destination that records its writes and answers as `full` says. */
type TestDestination = Destination & {
  writes: string[], full: boolean, drain: (() => void) | undefined, ended: boolean
}

function destination (): TestDestination {
  const d = {
    writes: [] as string[],
    full: false,
    ended: false,
    drain: undefined as (() => void) | undefined,
    write (chunk: Frame) { d.writes.push(typeof chunk === 'string' ? chunk : `<${Buffer.from(chunk).toString()}>`); return !d.full },
    end () { d.ended = true },
    once (_: 'drain', listener: () => void) { d.drain = listener }
  }
  return d
}

/** A response that records its head, and a log that records what was logged. */
function fakeReply (): { reply: FastifyReply, calls: string[], raw: TestDestination } {
  const calls: string[] = []
  const raw = Object.assign(destination(), {
    headersSent: false,
    flushHeaders () { calls.push('flushHeaders'); raw.headersSent = true },
    writeHead () { calls.push('writeHead') },
    destroy () { calls.push('raw.destroy') },
    removeHeader () {}
  })
  const reply = {
    raw,
    statusCode: 200,
    getHeaders: () => ({}),
    getHeader: () => undefined,
    removeHeader: () => {},
    hijack () { calls.push('hijack') },
    send (err: Error) { calls.push(`send ${err.message}`) },
    log: { error: (_: unknown, msg: string) => calls.push(`error ${msg}`), debug: () => {} }
  }
  return { reply: reply as unknown as FastifyReply, calls, raw }
}

class TestWriter extends ResponseWriter {
  readonly events: string[] = []
  protected piped (): void { this.events.push('piped'); this.openOrHold() }
  protected drained (): void { this.events.push('drained') }
  protected destroyed (): void { this.events.push('destroyed') }
  protected writeTimedOut (): void { this.events.push('timed out') }
  frame (frame: Frame): void { this.writeFrame(frame) }
  last (frame: string): void { this.addLast(frame) }
  end (): void { this.endBody() }
  answers (): boolean { return this.canAnswerEarly() }
  answer (err: Error): void { this.answerEarly(err) }
  get state (): { piping: boolean, takesMore: boolean, closed: boolean } {
    return { piping: this.piping, takesMore: this.takesMore, closed: this.closed }
  }
}

const tick = (): Promise<void> => new Promise(resolve => process.nextTick(resolve))

function writer (options: Partial<typeof DEFAULTS> = {}, held = false): {
  w: TestWriter, calls: string[], registry: StreamRegistry, raw: TestDestination
} {
  const { reply, calls, raw } = fakeReply()
  const registry = new StreamRegistry()
  // no retry line unless a test asks for one: the writes are compared whole
  const resolved: typeof DEFAULTS = { ...DEFAULTS, heartbeat: false, writeTimeout: false, retry: false, ...options }
  const w = new TestWriter(reply, resolved, registry, held)
  return { w, calls, registry, raw }
}

t.test('a burst of string frames is one write, at the end of the tick; bytes are counted; a buffer flushes the burst first', async t => {
  const { w, registry } = writer({ retry: 1000, retryJitter: 0 })
  const d = destination()
  t.equal(w.pipe(d), d)
  t.same(w.state, { piping: true, takesMore: true, closed: false })
  t.same(d.writes, ['retry: 1000\n\n'], 'the retry line goes out with the head')
  w.frame('a\n\n')
  w.frame('b\n\n')
  t.same(d.writes.length, 1, 'gathered')
  await tick()
  t.same(d.writes, ['retry: 1000\n\n', 'a\n\nb\n\n'])
  w.frame('c\n\n')
  w.frame(Buffer.from('d\n\n'))
  t.same(d.writes.slice(2), ['c\n\n', '<d\n\n>'], 'the string frames before a buffer first, in order')
  t.equal(w.bytes, 25)
  t.equal(registry.bytes, 25)
  w.frame('x'.repeat(16 * 1024))
  t.equal(d.writes.length, 5, 'a batch of 16 KiB goes at once')
})

t.test('a full destination stops the pulling until it drains', async t => {
  const { w } = writer()
  const d = destination()
  w.pipe(d)
  d.full = true
  w.frame(Buffer.from('a'))
  t.equal(w.state.takesMore, false)
  w.frame(Buffer.from('b'))
  t.ok(d.drain)
  d.drain?.()
  t.equal(w.state.takesMore, true)
  t.same(w.events, ['piped', 'drained'])
})

t.test('the head waits for the first frame or headersDelay; a heartbeat only once it went and the socket takes more', async t => {
  t.setTimeout(5000)
  const { w, calls, registry, raw: d } = writer({ heartbeat: 1000, headersDelay: 30 }, true)
  t.teardown(() => w.destroy())
  const rest = w.heartbeat(clock() + 500)
  t.ok(rest > 400 && rest <= 500, 'not due: the rest of the interval')
  w.pipe(d)
  t.same(calls, [], 'held')
  t.equal(w.heartbeat(clock() + 5000), 1000, 'held: no heartbeat')
  t.same(d.writes, [])
  for (let i = 0; i < 50 && calls.length === 0; i++) await new Promise(resolve => setTimeout(resolve, 10))
  t.same(calls, ['flushHeaders'], 'the head went after headersDelay without an item')
  t.equal(w.heartbeat(clock() + 5000), 1000)
  t.same(d.writes, [':\n\n'])
  t.equal(registry.heartbeats, 1)
  d.full = true
  w.frame(Buffer.from('x'))
  w.heartbeat(clock() + 5000)
  t.equal(registry.heartbeats, 1, 'a full socket is waiting, not idle')
})

t.test('on the direct path the first frame writes the head; the end ends the destination and tells the body', async t => {
  const { w, calls, raw } = writer({}, true)
  const body: string[] = []
  w.reportTo({ ended: () => body.push('ended'), closed: () => body.push('closed'), takesErrors: () => true, failed: () => {} })
  w.pipeDirect()
  t.same(calls, [])
  w.frame('a\n\n')
  t.same(calls, ['hijack', 'writeHead', 'flushHeaders'])
  w.last('last\n\n')
  w.end()
  t.same(w.events, ['piped', 'destroyed'])
  t.ok(raw.ended)
  t.same(raw.writes, ['a\n\nlast\n\n'], 'the last word with the end')
  t.same(body, ['ended', 'closed'])
  t.ok(w.state.closed)
  w.destroy()
  t.same(w.events, ['piped', 'destroyed'], 'destroyed once')
  w.flushBurst() // the burst's tick after the end: nothing more is written
})

t.test('an end before any frame sends the head with it; with end: false the destination stays open', async t => {
  const { w, calls } = writer({}, true)
  const d = destination()
  w.pipe(d, { end: false })
  w.end()
  t.same(calls, [], 'not the response itself: its head is Fastify\'s')
  t.equal(d.ended, false)
})

t.test('a failure before the head went: answered by Fastify on the direct path, or through the body that listens', async t => {
  const direct = writer({}, true)
  direct.w.pipeDirect()
  t.ok(direct.w.answers())
  direct.w.answer(new Error('early'))
  t.same(direct.calls, ['send early'])
  t.same(direct.w.events, ['piped', 'destroyed'])

  const piped = writer({}, true)
  const failures: unknown[] = []
  let listens = false
  const body: BodyEvents = {
    ended: () => {}, closed: () => {}, takesErrors: () => listens, failed: err => failures.push(err)
  }
  piped.w.reportTo(body)
  t.equal(piped.w.answers(), false, 'nobody listens yet')
  listens = true
  t.ok(piped.w.answers())
  const err = new Error('early')
  piped.w.answer(err)
  t.same(failures, [err])

  const open = writer({}, false)
  open.w.pipeDirect()
  t.equal(open.w.answers(), false, 'the head went: too late')
})

t.test('a destination that throws on write: logged, the connection closed, the writer destroyed', async t => {
  const { w, calls } = writer()
  w.pipe({ write () { throw new Error('hook broke') }, end () {}, once () {} })
  w.frame(Buffer.from('x'))
  t.same(calls, ['error SSE stream write failed; connection closed', 'raw.destroy'])
  t.same(w.events, ['piped', 'destroyed'])
})

/** One timer of `fakeTimers`: what was done to it, and a way to fire it. */
interface FakeTimer { fire: () => void, cleared: boolean }

/**
 * Replaces setTimeout / clearTimeout until the test ends: every timer is recorded, never runs by itself, and
 * `log` tells what was done to timers (`create <ms>`, `refresh`, `unref`, `clear`), in order.
 */
function fakeTimers (t: Test): { log: string[], timers: FakeTimer[] } {
  const log: string[] = []
  const timers: FakeTimer[] = []
  const real = { setTimeout: globalThis.setTimeout, clearTimeout: globalThis.clearTimeout }
  const fakes = new Set<unknown>()
  const fakeSet = (callback: (...args: unknown[]) => void, ms: number, ...args: unknown[]): unknown => {
    log.push(`create ${ms}`)
    const timer: FakeTimer & { refresh: () => unknown, unref: () => unknown } = {
      cleared: false,
      fire () { callback(...args) },
      refresh () { log.push('refresh'); return timer },
      unref () { log.push('unref'); return timer }
    }
    fakes.add(timer)
    timers.push(timer)
    return timer
  }
  const fakeClear = (timer: unknown): void => {
    if (!fakes.has(timer)) return real.clearTimeout(timer as NodeJS.Timeout)
    log.push('clear')
    ;(timer as FakeTimer).cleared = true
  }
  globalThis.setTimeout = fakeSet as unknown as typeof setTimeout
  globalThis.clearTimeout = fakeClear as typeof clearTimeout
  t.teardown(() => { Object.assign(globalThis, real) })
  return { log, timers }
}

t.test('the write timeout: made when a write must wait, refreshed at the next wait, void after a drain', async t => {
  const { log, timers } = fakeTimers(t)
  const { w } = writer({ writeTimeout: 40 })
  const d = destination()
  w.pipe(d)
  w.frame(Buffer.from('a'))
  t.same(log, [], 'a write the destination took: no timer')
  d.full = true
  w.frame(Buffer.from('b'))
  t.same(log, ['create 40', 'unref'], 'the destination said wait: one timer, unref\'d')
  d.full = false
  d.drain?.()
  w.frame(Buffer.from('c'))
  t.same(log, ['create 40', 'unref'], 'drained, then taken: the timer is left as it is')
  timers[0]?.fire()
  t.same(w.events, ['piped', 'drained'], 'firing after a drain does nothing')
  t.same(w.state, { piping: true, takesMore: true, closed: false })

  d.full = true
  w.frame(Buffer.from('d'))
  t.same(log, ['create 40', 'unref', 'create 40', 'unref'], 'fired: the next wait makes a new one')
  d.full = false
  d.drain?.()
  d.full = true
  w.frame(Buffer.from('e'))
  t.same(log, ['create 40', 'unref', 'create 40', 'unref', 'refresh'], 'waiting again: refreshed, not made again')
  t.equal(timers.length, 2)
  timers[1]?.fire()
  t.same(w.events, ['piped', 'drained', 'drained', 'timed out'], 'fired while waiting: timed out')

  w.destroy()
  t.same(log.slice(5), [], 'fired already: nothing to clear')
})

t.test('the write timeout outlives a body ended while its last bytes wait; the close clears it', async t => {
  const { log, timers } = fakeTimers(t)
  const stuck = writer({ writeTimeout: 30 }).w
  const d = destination()
  stuck.pipe(d)
  d.full = true
  stuck.frame(Buffer.from('a'))
  stuck.end()
  t.equal(d.ended, true)
  t.same(log, ['create 30', 'unref'], 'kept past the end')
  timers[0]?.fire()
  t.same(stuck.events, ['piped', 'destroyed', 'timed out'], 'ended, still not taken: timed out')
  stuck.destroy() // the response's close, after the reset

  log.length = 0
  const taken = writer({ writeTimeout: 30 }).w
  const e = destination()
  taken.pipe(e)
  e.full = true
  taken.frame(Buffer.from('a'))
  taken.end()
  taken.destroy() // the client took the rest: the response closed
  t.same(log, ['create 30', 'unref', 'clear'], 'the close cleared it')
  t.same(taken.events, ['piped', 'destroyed'])

  log.length = 0
  const ended = writer({ writeTimeout: 30 }).w
  const f = destination()
  ended.pipe(f)
  ended.frame(Buffer.from('a'))
  ended.end() // nothing waiting
  f.full = true
  t.same(log, [], 'nothing waited: no timer at all')
  t.same(ended.events, ['piped', 'destroyed'])
})

t.test('writeTimeout: false makes no timer', async t => {
  const { log } = fakeTimers(t)
  const { w } = writer({ writeTimeout: false })
  t.teardown(() => w.destroy())
  const d = destination()
  w.pipe(d)
  d.full = true
  w.frame(Buffer.from('a'))
  w.frame(Buffer.from('b'))
  t.same(log, [])
  t.same(w.events, ['piped'])
})

t.test('the retry line is jittered per stream: whole milliseconds within retry × (1 ± retryJitter)', async t => {
  const random = Math.random
  t.teardown(() => { Math.random = random })
  Math.random = () => 0
  t.equal(jitteredRetry(3000, 0.5), 1500, 'the lowest')
  t.equal(jitteredRetry(3000, 1), 0, 'never below 0')
  Math.random = () => 0.5
  t.equal(jitteredRetry(3000, 0.5), 3000, 'the middle')
  Math.random = () => 0.9999999
  t.equal(jitteredRetry(3000, 0.5), 4500, 'the highest, rounded')
  t.equal(jitteredRetry(3000, 0), 3000, 'no jitter')
  Math.random = random
  const values: number[] = []
  for (let i = 0; i < 200; i++) {
    const { raw: d, w } = writer({ retry: 2000, retryJitter: 0.25 })
    w.pipe(d)
    values.push(Number(/^retry: (\d+)\n\n$/.exec(d.writes[0] as string)?.[1]))
    w.destroy()
  }
  t.same(values.filter(v => !(Number.isSafeInteger(v) && v >= 1500 && v <= 2500)), [], 'every one within 2000 ± 500')
  const seen = new Set(values).size
  t.ok(seen > 50, `the values vary (${seen} different of 200)`)
})
