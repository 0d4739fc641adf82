import t from 'tap'
import type { FastifyReply } from 'fastify'
import {
  attach, dropSource, isSource, kAttachStream, kOpensAtOnce, opensAtOnce, openSource, stopIterator, WAIT,
  type StreamLink
} from '../lib/source.js'

/** A reply whose log records what was logged at error. */
function replyWithLog (): { reply: FastifyReply, errors: unknown[] } {
  const errors: unknown[] = []
  const reply = { log: { error: (context: unknown, message: string) => errors.push([context, message]) } }
  return { reply: reply as unknown as FastifyReply, errors }
}

const link: StreamLink = { disconnect: () => false, encode: () => '', deliver: () => {}, stopsWith: () => false }

t.test('attach: a source with the method answers it (called on the source); any other source answers undefined', async t => {
  const sync = { take: () => WAIT }
  let self: unknown
  const source = { [kAttachStream] (stream: StreamLink) { self = this; t.equal(stream, link); return sync } }
  t.equal(attach(source, link), sync)
  t.equal(self, source)
  t.equal(attach([1, 2], link), undefined, 'an array')
  t.equal(attach({ [kAttachStream]: 'not a method' }, link), undefined)
})

t.test('opensAtOnce: only a source that says so', async t => {
  t.equal(opensAtOnce({ [kOpensAtOnce]: true }), true)
  t.equal(opensAtOnce({ [kOpensAtOnce]: 1 }), false)
  t.equal(opensAtOnce([]), false)
})

t.test('openSource: an async iterable is pulled as it is, a sync one through an async generator', async t => {
  const asyncIterator = (async function * () { yield { data: 'a' } })()
  t.equal(openSource(asyncIterator), asyncIterator)
  const fromArray = openSource([{ data: 'x' }, { data: 'y' }])
  t.same(await fromArray.next(), { value: { data: 'x' }, done: false })
  t.same(await fromArray.next(), { value: { data: 'y' }, done: false })
  t.same(await fromArray.next(), { value: undefined, done: true })
})

t.test('isSource: async and sync iterables that are objects or functions; not strings, null or numbers', async t => {
  t.ok(isSource([]))
  t.ok(isSource(new Set()))
  t.ok(isSource((async function * () {})()))
  t.ok(isSource(Object.assign(() => {}, { [Symbol.iterator]: () => [][Symbol.iterator]() })))
  t.notOk(isSource('abc'), 'a string is iterable, but no source of items')
  t.notOk(isSource(null))
  t.notOk(isSource(42))
  t.notOk(isSource({}))
})

t.test('stopIterator and dropSource: return() is called, its failure logged, thrown or rejected', async t => {
  let stopped = 0
  const { reply, errors } = replyWithLog()
  const generator = (function * () {
    try {
      yield { data: 1 }
    } finally {
      stopped++
    }
  })()
  generator.next()
  dropSource(reply, generator)
  t.equal(stopped, 1, 'a generator runs its finally')
  dropSource(reply, 'not a source')
  dropSource(reply, { [Symbol.asyncIterator]: () => ({ next: async () => ({ done: true, value: undefined }) }) })
  t.same(errors, [], 'an iterator without return() has nothing to stop')

  stopIterator({ next: () => ({ done: true, value: undefined }), return: () => { throw new Error('thrown') } }, reply)
  stopIterator({ next: async () => ({ done: true, value: undefined }), return: async () => { throw new Error('rejected') } }, reply)
  await new Promise(resolve => setImmediate(resolve))
  t.match(errors, [
    [{ err: { message: 'thrown' } }, 'SSE source failed while stopping'],
    [{ err: { message: 'rejected' } }, 'SSE source failed while stopping']
  ])
})
