import t, { type Test } from 'tap'
import net from 'node:net'
import { clock, joinHeartbeats, leaveHeartbeats, type HeartbeatMember } from '../lib/heartbeat.js'
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

t.test('clock: whole milliseconds that only go forward, whatever the wall clock does', async t => {
  const realNow = Date.now
  const before = clock()
  t.ok(Number.isSafeInteger(before) && before >= 0, 'a whole number of ms')
  Date.now = () => realNow() - 3_600_000 // the wall clock set back an hour
  try {
    const after = clock()
    t.ok(after >= before && after - before < 5000, 'not moved by the wall clock')
  } finally {
    Date.now = realNow
  }
  const start = clock()
  await new Promise(resolve => setTimeout(resolve, 20))
  t.ok(clock() - start >= 15, 'and it counts the time that passes') // a timer may fire a little early
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
