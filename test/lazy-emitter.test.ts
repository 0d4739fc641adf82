import t from 'tap'
import { EventEmitter } from 'node:events'
import { finished } from 'node:stream'
import { LazyEmitter } from '../lib/lazy-emitter.js'

t.test('no emitter until something listens; then an EventEmitter to whoever listens', async t => {
  const e = new LazyEmitter()
  t.ok(e instanceof EventEmitter, 'an EventEmitter')
  t.same(Object.keys(e), [], 'holding nothing of one')
  t.equal(e.emit('x', 1), false, 'nobody listens: nothing happens, no table is made')
  t.same(Object.keys(e), [])
  t.throws(() => e.emit('error', new Error('unheard')), /unheard/, 'an unheard error throws, as from any emitter')
  t.equal(e.listenerCount('x'), 0)
  t.same(e.listeners('x'), [])
  t.equal(e.removeListener('x', () => {}), e, 'removing from nothing is fine')
  t.equal(e.removeAllListeners(), e)

  const calls: string[] = []
  const a = (v: unknown): void => { calls.push(`a${String(v)}`) }
  const b = (v: unknown): void => { calls.push(`b${String(v)}`) }
  const c = (v: unknown): void => { calls.push(`c${String(v)}`) }
  const d = (v: unknown): void => { calls.push(`d${String(v)}`) }
  t.equal(e.on('x', a), e, 'chainable')
  e.addListener('x', b)
  e.once('x', c)
  e.prependListener('x', d)
  e.prependOnceListener('x', c)
  t.equal(e.listenerCount('x'), 5)
  t.equal(e.listeners('x').length, 5)
  t.equal(e.emit('x', 1), true)
  t.same(calls, ['c1', 'd1', 'a1', 'b1', 'c1'], 'in the order an EventEmitter keeps')
  calls.length = 0
  e.off('x', a)
  e.emit('x', 2)
  t.same(calls, ['d2', 'b2'], 'once listeners gone, off removed one')
  e.removeAllListeners('x')
  t.equal(e.emit('x', 3), false)
  e.once('y', a)
  e.removeListener('y', a)
  t.equal(e.listenerCount('y'), 0, 'the last listener removed')
  e.on('y', a)
  t.equal(e.emit('y', 4), true, 'and a new one heard')
})

t.test('instances are independent', async t => {
  const a = new LazyEmitter()
  const b = new LazyEmitter()
  a.on('x', () => {})
  t.equal(b.listenerCount('x'), 0)
  t.equal(Object.getPrototypeOf(a)._events, undefined, 'no table on the shared prototype')
})

t.test("node:stream's finished() watches it as it watches a readable body", async t => {
  const e = Object.assign(new LazyEmitter(), { pipe () {} })
  let cleanup!: () => void
  const done = new Promise<unknown>(resolve => {
    cleanup = finished(e as never, { readable: true, writable: false }, resolve)
  })
  t.ok(e.listenerCount('end') > 0, 'it listens')
  e.emit('end')
  t.equal(await done, undefined, 'end: finished without error')
  cleanup()
  t.equal(e.listenerCount('end'), 0, 'and lets go')
})
