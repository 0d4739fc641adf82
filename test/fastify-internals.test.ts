import t from 'tap'
import { once } from 'node:events'
import type { FastifyInstance, FastifyReply } from 'fastify'
import { request } from 'undici'
import { omitKeepAliveHint, sendPathIdle } from '../lib/fastify-internals.js'
import { all, DEBUG, deferred, open, startApp, take } from './helpers.js'

t.test('no onSend hook and no trailer: the head is written directly, with every header set before it', async t => {
  t.setTimeout(10_000)
  const responded = deferred<number>()
  const { app, url, logs } = await startApp(app => {
    app.addHook('onRequest', async (_request, reply) => { reply.header('x-from-hook', 'early') })
    app.addHook('onResponse', async (_request, reply) => { responded.resolve(reply.statusCode) })
    app.get('/direct', (_request, reply) => {
      reply.code(201).header('x-route', 'set')
      return reply.sse([{ data: 'one' }, { data: 'two' }])
    })
  })
  t.teardown(() => app.close())
  const { res, events } = await open(url + '/direct')
  t.equal(res.statusCode, 201, 'the status set before reply.sse()')
  t.equal(res.headers['content-type'], 'text/event-stream; charset=utf-8')
  t.equal(res.headers['cache-control'], 'no-cache, no-transform')
  t.equal(res.headers['x-accel-buffering'], 'no')
  t.equal(res.headers['x-from-hook'], 'early', 'a header set by a hook')
  t.equal(res.headers['x-route'], 'set', 'a header set by the handler')
  t.same(await all(events), [{ data: 'one' }, { data: 'two' }])
  t.equal(await responded.promise, 201, 'onResponse hooks run')
  const opened = await logs.waitFor(line => line.msg === 'SSE stream opened')
  t.equal(opened.level, DEBUG)
  t.equal(opened.direct, true, 'Fastify\'s stream path was skipped')
})

t.test('an onSend hook or a trailer keeps Fastify\'s stream path', async t => {
  t.setTimeout(10_000)
  const { app, url, logs } = await startApp(app => {
    app.get('/hooked', {
      onSend: async (_request, reply) => { reply.header('x-on-send', 'yes') }
    }, (_request, reply) => reply.sse([{ data: 'hooked' }]))
    app.get('/trailer', (_request, reply) => {
      reply.trailer('x-items', async () => '1')
      return reply.sse([{ data: 'trailed' }])
    })
  })
  t.teardown(() => app.close())
  const hooked = await open(url + '/hooked')
  t.equal(hooked.res.headers['x-on-send'], 'yes')
  t.same(await all(hooked.events), [{ data: 'hooked' }])
  const trailed = await request(url + '/trailer')
  t.match(await trailed.body.text(), 'data: trailed\n\n')
  t.same(trailed.trailers, { 'x-items': '1' })
  const paths = logs.lines.filter(line => line.msg === 'SSE stream opened').map(line => line.direct)
  t.same(paths, [false, false])
})

t.test('another Fastify version, without the internals looked for: Fastify\'s path', async t => {
  const reply = { request: {} } as unknown as FastifyReply
  t.equal(sendPathIdle(reply), false)
})

// The same stream on both paths: heartbeats, the client leaving and the server closing behave alike.
for (const path of ['direct', 'send'] as const) {
  t.test(`${path} path: heartbeats, the client leaving, the server closing`, async t => {
    t.setTimeout(15_000)
    const stopped: Array<{ aborted: boolean }> = []
    const allStopped = deferred()
    const setup = (app: FastifyInstance): void => {
      if (path === 'send') app.addHook('onSend', async (_request, _reply, payload) => payload)
      app.get('/quiet', async function * (request) {
        try {
          yield { data: 'open' }
          await once(request.signal, 'abort')
        } finally {
          stopped.push({ aborted: request.signal.aborted })
          if (stopped.length === 2) allStopped.resolve()
        }
      })
    }
    const { app, url, logs } = await startApp(setup, { heartbeat: 20 })
    t.teardown(() => app.close())

    const leaving = await request(url + '/quiet')
    let text = ''
    for await (const chunk of leaving.body) {
      text += String(chunk)
      if (text.split(':\n\n').length > 2) break // two heartbeats after the first event
    }
    t.ok(text.startsWith('data: open\n\n:\n\n:\n\n'), 'the event, then heartbeats')

    const staying = await open(url + '/quiet')
    await take(staying.events, 1)
    await app.close()
    t.same(await all(staying.events), [], 'the server closing ends the stream cleanly')
    await allStopped.promise
    t.same(stopped, [{ aborted: true }, { aborted: true }], 'both sources stopped, their signal aborted')
    const opened = logs.lines.filter(line => line.msg === 'SSE stream opened').map(line => line.direct)
    t.same(opened, [path === 'direct', path === 'direct'])
  })
}

t.test('a Node without the keep-alive hint field: nothing is added to the response', async t => {
  const res = {} as FastifyReply['raw']
  omitKeepAliveHint(res)
  t.same(Object.keys(res), [], 'no field made up')
  const node = { _keepAliveTimeout: 72_000 } as unknown as FastifyReply['raw']
  omitKeepAliveHint(node)
  t.same(node, { _keepAliveTimeout: 0 }, 'the advertised timeout cleared where it exists')
})
