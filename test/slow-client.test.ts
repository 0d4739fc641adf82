import t from 'tap'
import type { FastifyReply } from 'fastify'
import {
  endOrReset, isStuck, overLimits, QUEUE_LIMITS, queueLimit, resetWhenStuck, underHalf
} from '../lib/slow-client.js'

/** An HTTP/1 reply whose socket records being reset and closed. */
function fakeReply (writableNeedDrain?: boolean): { reply: FastifyReply, socket: string[] } {
  const socket: string[] = []
  const raw = { httpVersionMajor: 1, socket: { resetAndDestroy: () => socket.push('reset'), destroy: () => socket.push('destroy') } }
  const reply = { request: { raw }, raw: { writableNeedDrain } }
  return { reply: reply as unknown as FastifyReply, socket }
}

t.test('queue limits: defaults, whole numbers >= 1, the error naming the option, its unit and its owner', async t => {
  t.same(QUEUE_LIMITS, { queueItems: 512, queueBytes: 1024 * 1024 })
  t.ok(Object.isFrozen(QUEUE_LIMITS))
  t.equal(queueLimit('queueItems', undefined), 512)
  t.equal(queueLimit('queueBytes', 7), 7)
  t.throws(() => queueLimit('queueItems', 0, 'pushSource()'), {
    code: 'FST_SSE_INVALID_OPTION', message: 'pushSource() option "queueItems" must be a whole number of items >= 1, got 0'
  })
  t.throws(() => queueLimit('queueBytes', 1.5), { message: /option "queueBytes" must be a whole number of bytes >= 1, got 1.5/ })
  t.throws(() => queueLimit('queueBytes', '10'), /got 10/)
})

t.test('over the limits: items, then bytes, one item alone always fits; under half of both', async t => {
  const limits = { queueItems: 2, queueBytes: 100 }
  t.equal(overLimits(0, 0, 1000, limits), false, 'alone, however big')
  t.equal(overLimits(1, 50, 50, limits), false, 'exactly queueBytes')
  t.equal(overLimits(1, 50, 51, limits), true)
  t.equal(overLimits(2, 0, 0, limits), true, 'queueItems waiting: one more is over')
  t.equal(underHalf(0, 49, limits), true)
  t.equal(underHalf(1, 0, limits), false, 'half the items')
  t.equal(underHalf(0, 50, limits), false, 'half the bytes')
})

t.test('a stuck client (the destination said wait, or the socket is full) is reset; one that reads is not', async t => {
  t.equal(isStuck(fakeReply().reply, true), false)
  t.equal(isStuck(fakeReply().reply, false), true)
  t.equal(isStuck(fakeReply(true).reply, true), true)
  const reading = fakeReply(false)
  t.equal(resetWhenStuck(reading.reply, true), false)
  t.same(reading.socket, [])
  const stuck = fakeReply()
  t.equal(resetWhenStuck(stuck.reply, false), true)
  t.same(stuck.socket, ['reset', 'destroy'])
})

t.test('at close: a stuck client is reset at once; another is ended, and reset only if it has not closed in a second', async t => {
  t.setTimeout(10_000)
  const stuck = fakeReply(true)
  let ended = 0
  endOrReset(stuck.reply, true, () => { ended++ }, new Promise(() => {}))
  t.same(stuck.socket, ['reset', 'destroy'])
  t.equal(ended, 0, 'not ended: its connection is gone')

  const closing = fakeReply()
  endOrReset(closing.reply, true, () => { ended++ }, Promise.resolve())
  t.equal(ended, 1)
  await new Promise(resolve => setTimeout(resolve, 1100))
  t.same(closing.socket, [], 'closed in time: no reset')

  const lingering = fakeReply()
  endOrReset(lingering.reply, true, () => { ended++ }, new Promise(() => {}))
  t.equal(ended, 2)
  const keepAlive = setInterval(() => {}, 100) // the grace timer does not hold the process
  t.teardown(() => clearInterval(keepAlive))
  for (let i = 0; i < 30 && lingering.socket.length === 0; i++) await new Promise(resolve => setTimeout(resolve, 100))
  t.same(lingering.socket, ['reset', 'destroy'], 'still open after the grace: reset')
})
