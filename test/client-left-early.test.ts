// Review: a client that left before reply.sse() (its request.signal, read in a hook, aborted already) and a
// SyncSource that ended or failed on that signal: the stream closes as the client's, not as the source's end.
import t from 'tap'
import { connect } from 'node:net'
import { once } from 'node:events'
import type { Channel } from '../lib/index.js'
import { Type } from '@sinclair/typebox'
import { pushSource, sseSchema } from '../lib/index.js'
import { deferred, ERROR, startApp } from './helpers.js'

t.test('client gone before the stream: a subscription or push source ended by request.signal closes as "client closed"', async t => {
  t.setTimeout(15_000)
  let chat!: Channel<string>
  const waiting: Record<string, ReturnType<typeof deferred<void>>> = {
    sub: deferred(), end: deferred(), fail: deferred()
  }
  const { app, url, logs } = await startApp(app => {
    chat = app.sse.channel<string>('early-leave', { history: 0 })
    const preHandler = async (request: { signal: AbortSignal }): Promise<void> => { void request.signal }
    // an sseSchema() response: a route known to stream, whose request.signal is the stream's from its first hook
    const schema = { response: { 200: sseSchema(Type.String()) } }
    app.get('/sub', { preHandler, schema }, async (request, reply) => {
      const { signal } = request
      waiting.sub?.resolve()
      await once(signal, 'abort')
      return reply.sse(chat.subscribe({ signal: request.signal }))
    })
    app.get('/push/:how', { preHandler, schema }, async (request, reply) => {
      const how = (request.params as { how: string }).how
      const { signal } = request
      const source = pushSource<string>()
      signal.addEventListener('abort', () => { if (how === 'fail') source.fail(new Error('left')); else source.end() })
      waiting[how]?.resolve()
      await once(signal, 'abort')
      return reply.sse(source)
    })
  })
  t.teardown(() => app.close())
  const port = Number(new URL(url).port)
  for (const [path, key] of [['/sub', 'sub'], ['/push/end', 'end'], ['/push/fail', 'fail']] as const) {
    const before = logs.lines.length
    const closed = logs.waitFor(l => l.msg === 'SSE stream closed' && logs.lines.indexOf(l) >= before)
    const socket = connect(port, '127.0.0.1')
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
    await waiting[key]?.promise
    socket.destroy()
    t.match(await closed, { reason: 'client closed' }, path)
  }
  t.match(app.sse.stats().closed, { 'client closed': 3, 'source ended': 0, 'source failed': 0 })
  t.same(logs.at(ERROR), [], 'no failure logged')
})
