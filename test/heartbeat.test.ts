import t, { type Test } from 'tap'
import net from 'node:net'
import { clock, elapsed, joinHeartbeats, leaveHeartbeats, longSpan, type HeartbeatMember } from '../lib/heartbeat.js'
import { deferred, startApp } from './helpers.js'

/** Records the timers made and cleared while the test runs (the wheel's are unref'd: Node does not list them). */
function watchTimers (t: Test): { made: number[], intervals: number, cleared: number } {
  const seen = { made: [] as number[], intervals: 0, cleared: 0 }
  const { setTimeout: setTimeout0, setInterval: setInterval0, clearInterval: clearInterval0 } = globalThis
  globalThis.setTimeout = Object.assign((fn: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    seen.made.push(ms ?? 0)
    return setTimeout0(fn, ms, ...args)
  }, setTimeout0) as typeof setTimeout
  globalThis.setInterval = ((fn: () => void, ms?: number) => {
    seen.intervals++
    return setInterval0(fn, ms)
  }) as typeof setInterval
  globalThis.clearInterval = ((timer?: NodeJS.Timeout) => {
    if (timer !== undefined) seen.cleared++
    clearInterval0(timer)
  }) as typeof clearInterval
  t.teardown(() => {
    Object.assign(globalThis, { setTimeout: setTimeout0, setInterval: setInterval0, clearInterval: clearInterval0 })
  })
  return seen
}

/** The wheel's timer does not keep the process alive: a test that only waits on it needs something that does. */
function keepAlive (t: Test): void {
  const timer = setInterval(() => {}, 1000)
  t.teardown(() => clearInterval(timer))
}

/** A member that records when it is called and answers what `next` says. */
function member (next: (calls: number[]) => number): HeartbeatMember & { calls: number[] } {
  const calls: number[] = []
  return {
    calls,
    heartbeatSlot: -1,
    heartbeat (now) {
      calls.push(now)
      return next(calls)
    }
  }
}

t.test('clock stamps are 32-bit integers; spans are right across their wrap', async t => {
  const now = clock()
  t.ok(Number.isInteger(now) && now === (now | 0), 'a 32-bit integer')
  const realNow = Date.now
  const shift = 2 ** 31 // 24.9 days later
  Date.now = () => realNow() + shift
  try {
    const later = clock()
    t.ok(later < 0, 'past 2^31 ms it wraps, and stays a 32-bit integer')
    const span = longSpan(now, later, shift)
    t.ok(span >= shift && span < shift + 5000, 'a span across the wrap is whole')
  } finally {
    Date.now = realNow
  }
  const MAX = 2 ** 31 - 1
  const wrapped = (MAX + 10) | 0 // 10 ms past the largest stamp: negative
  t.ok(wrapped < 0)
  t.equal(elapsed(MAX - 5, wrapped), 15, 'a short span across the wrap')
  t.equal(elapsed(100, 150), 50)
  t.equal(longSpan(100, 150, 52), 50, 'a short span: the other clock only confirms it')
  t.equal(longSpan(100, 150, 0), 50, 'another clock that reads less (stopped, or started later) takes nothing away')
  t.equal(longSpan(MAX - 5, wrapped, 17), 15, 'across one wrap')
  const days60 = 60 * 24 * 3600 * 1000
  const stamp = 1000
  const later = (stamp + days60) | 0 // the stamps wrapped once: 60 days is more than 2^32 ms
  t.equal(longSpan(stamp, later, days60 + 250), days60, 'a stream open for 60 days')
  t.equal(longSpan(stamp, later, days60 - 3_600_000), days60, 'even when the other clock is an hour off')
})

t.test('a member is called every interval, never early, until it answers -1; the timer stops with the last', async t => {
  t.setTimeout(10_000)
  keepAlive(t)
  const seen = watchTimers(t)
  const done = deferred()
  const joined = clock()
  const m = member(calls => {
    if (calls.length < 3) return 40
    done.resolve()
    return -1
  })
  joinHeartbeats(m, 40)
  t.equal(seen.intervals, 1, 'one timer for the wheel')
  await done.promise
  t.ok((m.calls[0] as number) - joined >= 40, 'first call a whole interval after joining')
  t.ok((m.calls[1] as number) - (m.calls[0] as number) >= 40, 'and each next one an interval later')
  t.equal(m.heartbeatSlot, -1)
  t.equal(seen.cleared, 1, 'no timer once the wheel is empty')
})

t.test('many members share one timer; one leaving does not stop the others', async t => {
  t.setTimeout(10_000)
  keepAlive(t)
  const seen = watchTimers(t)
  const done = deferred()
  const members = Array.from({ length: 50 }, () => member(() => 30))
  const last = member(calls => {
    if (calls.length === 2) done.resolve()
    return 30
  })
  for (const m of members) joinHeartbeats(m, 30)
  joinHeartbeats(last, 30)
  t.equal(seen.intervals, 1, '51 members, one timer')
  leaveHeartbeats(members[0] as HeartbeatMember, 30)
  leaveHeartbeats(members[0] as HeartbeatMember, 30) // twice: nothing happens
  await done.promise
  t.equal(members[0]?.calls.length, 0, 'a member that left is not called')
  t.ok(members.slice(1).every(m => m.calls.length >= 1), 'the others are')
  for (const m of [...members, last]) leaveHeartbeats(m, 30)
  t.equal(seen.cleared, 1, 'the last one leaving stops the timer')
})

t.test('a member called early (due sooner than the interval) waits only what is left', async t => {
  t.setTimeout(10_000)
  keepAlive(t)
  const done = deferred()
  const m = member(calls => {
    if (calls.length === 1) return 5 // as a stream that wrote meanwhile answers
    done.resolve()
    return -1
  })
  joinHeartbeats(m, 200)
  await done.promise
  const gap = (m.calls[1] as number) - (m.calls[0] as number)
  t.ok(gap >= 5 && gap < 200, `called again after what was left, not a whole interval (${gap} ms)`)
})

t.test('idle streams hold no timer each: one per heartbeat interval, none once they are gone', async t => {
  t.setTimeout(20_000)
  const { app, url } = await startApp(app => {
    app.get('/idle', (request, reply) => reply.sse((async function * () {
      await new Promise(resolve => request.raw.once('close', resolve))
    })(), { heartbeat: 45_000 }))
  })
  t.teardown(() => app.close())
  const { port } = new URL(url)
  const seen = watchTimers(t)
  const sockets = await Promise.all(Array.from({ length: 20 }, () => openStream(Number(port))))
  t.equal(seen.made.filter(ms => ms === 45_000).length, 0, 'no timer per stream')
  t.equal(seen.intervals, 1, 'one for all 20')
  for (const socket of sockets) socket.destroy()
  await app.close()
  t.equal(seen.cleared, 1, 'stopped once they are gone')
})

/** Opens /idle over a raw socket; resolves once the response head is read. */
function openStream (port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' }, () => {
      socket.write('GET /idle HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
    })
    let head = ''
    socket.setEncoding('latin1')
    socket.on('data', chunk => {
      head += chunk
      if (head.includes('\r\n\r\n')) resolve(socket)
    })
    socket.once('error', reject)
  })
}
