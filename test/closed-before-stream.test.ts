// Review: a response that closed before its stream existed (the client left while a hook waited) gets no
// 'close' event after the stream's listener: the stream must still close, and app.close() must not wait for it.
import t from 'tap'
import { connect } from 'node:net'
import { once } from 'node:events'
import { deferred, startApp } from './helpers.js'

t.test('the client left before the stream existed: the stream closes, app.close() does not wait for it', async t => {
  t.setTimeout(15_000)
  const waiting = deferred()
  const { app, url, logs } = await startApp(app => {
    app.get('/slow', {
      preHandler: async (request) => {
        const signal = request.signal
        waiting.resolve()
        await once(signal, 'abort')
      }
    }, async function * () {
      await new Promise(() => {}) // a source that waits for something other than its signal
      yield { data: 'never' }
    })
  })
  const socket = connect(Number(new URL(url).port), '127.0.0.1')
  socket.write('GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  await waiting.promise
  socket.destroy()
  t.match(await logs.waitFor(l => l.msg === 'SSE stream closed'), { reason: 'client closed' })
  t.equal(app.sse.stats().open, 0, 'not left open')
  await app.close()
})
