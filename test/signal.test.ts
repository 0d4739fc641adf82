import t, { type Test } from 'tap'
import { once } from 'node:events'
import { all, deferred, open, startApp, take } from './helpers.js'

/** Counts the AbortControllers made while the test runs (the plugin makes its own only for a `request.signal` read). */
function countControllers (t: Test): { made: number } {
  const seen = { made: 0 }
  const Original = globalThis.AbortController
  globalThis.AbortController = class extends Original {
    constructor () {
      super()
      seen.made++
    }
  }
  t.teardown(() => { globalThis.AbortController = Original })
  return seen
}

t.test('request.signal is made only when read, and is the stream\'s however late it is read', async t => {
  t.setTimeout(10_000)
  const gone = deferred<boolean>()
  const ended = deferred<boolean>()
  const waited = deferred<boolean>()
  const { app, url } = await startApp(app => {
    const chat = app.sse.channel('lazy-signal', { history: 0 })
    app.get('/sub', (request, reply) => reply.sse(chat.subscribe()))
    app.get('/gen', async function * () {
      yield { data: 'one' }
    })
    // read while the stream is open: aborts when the client leaves
    app.get('/waits', async function * (request) {
      const signal = request.signal
      yield { data: 'first' }
      await once(signal, 'abort')
      waited.resolve(signal.aborted)
    })
    // read only once the client has left: already aborted
    app.get('/late', async function * (request) {
      yield { data: 'first' }
      await once(request.raw.socket, 'close')
      gone.resolve(request.signal.aborted)
    })
    // a source that ends by itself: its signal does not abort when the response then closes
    app.get('/ends', async function * (request, reply) {
      const signal = request.signal
      reply.raw.once('close', () => { ended.resolve(signal.aborted) })
      yield { data: 'done' }
    })
  })
  t.teardown(() => app.close())
  const seen = countControllers(t)
  const sub = await open(url + '/sub')
  t.same(await all((await open(url + '/gen')).events), [{ data: 'one' }])
  t.equal(seen.made, 0, 'no controller for streams that never read request.signal')
  sub.res.body.destroy()

  const waits = await open(url + '/waits')
  await take(waits.events, 1)
  waits.res.body.destroy()
  t.equal(await waited.promise, true, 'read while open: aborted when the client leaves')
  t.equal(seen.made, 1, 'one controller, for the one stream that read its signal')

  const late = await open(url + '/late')
  await take(late.events, 1)
  late.res.body.destroy()
  t.equal(await gone.promise, true, 'read after the client left: aborted')
  t.same(await all((await open(url + '/ends')).events), [{ data: 'done' }])
  t.equal(await ended.promise, false, 'a source that ended by itself: not aborted')
})
