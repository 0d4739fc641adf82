// Fastify's `fastify.request.handler` tracing channel: a streaming async handler's span ends (asyncStart,
// asyncEnd) once the handler has handed the stream over, as for a handler that returns a Node stream, on both
// the direct and Fastify's stream path, and without a second answer.
import t from 'tap'
import { tracingChannel } from 'node:diagnostics_channel'
import { setTimeout as sleep } from 'node:timers/promises'
import { pushSource } from '../lib/index.js'
import { all, open, startApp, WARN } from './helpers.js'

interface Store { request: { url: string }, async?: boolean }

for (const path of ['direct', 'send'] as const) {
  t.test(`${path} path: a streaming async handler's span ends, once, and Fastify answers once`, async t => {
    const handler = tracingChannel<unknown, Store>('fastify.request.handler')
    const seen: string[] = []
    const subscribers = {
      start: (store: Store) => { seen.push(`start ${store.request.url}`) },
      end: () => {},
      asyncStart: (store: Store) => { seen.push(`asyncStart ${store.request.url}`) },
      asyncEnd: (store: Store) => { seen.push(`asyncEnd ${store.request.url}`) },
      error: (store: Store) => { seen.push(`error ${store.request.url}`) }
    }
    handler.subscribe(subscribers)
    t.teardown(() => handler.unsubscribe(subscribers))
    const { app, url, logs } = await startApp(app => {
      if (path === 'send') app.addHook('onSend', async (_request, _reply, payload) => payload)
      app.get('/sse', async (_req, reply) => {
        await sleep(1)
        const source = pushSource<string>()
        setTimeout(() => source.end({ data: 'late' }), 150).unref()
        return reply.sse(source)
      })
      app.get('/returned', async () => {
        await sleep(1)
        return (async function * () { yield { data: 'x' } })()
      })
      app.get('/plain', async () => ({ ok: true }))
    })
    t.teardown(() => app.close())
    for (const route of ['/sse', '/returned', '/plain']) {
      const { res, events } = await open(url + route)
      if (route === '/plain') await res.body.text()
      else t.ok((await all(events)).length === 1, `${route} streamed`)
      t.same(seen.splice(0), [`start ${route}`, `asyncStart ${route}`, `asyncEnd ${route}`], `${route}: the span ended`)
    }
    t.same(logs.at(WARN), [], 'no second answer')
  })
}

t.test('a subscriber that arrives while the handler runs gets nothing for that request, and the stream streams', async t => {
  const handler = tracingChannel<unknown, Store>('fastify.request.handler')
  const seen: string[] = []
  const subscribers = {
    start: () => {},
    end: () => {},
    asyncStart: (store: Store) => { seen.push(`asyncStart ${store.request.url}`) },
    asyncEnd: (store: Store) => { seen.push(`asyncEnd ${store.request.url}`) },
    error: () => {}
  }
  t.teardown(() => handler.unsubscribe(subscribers))
  const { app, url, logs } = await startApp(app => {
    app.get('/sse', async (_req, reply) => {
      await sleep(1)
      // Fastify made no store for this request: it had no subscriber when the request came
      handler.subscribe(subscribers)
      const source = pushSource<string>()
      setTimeout(() => source.end({ data: 'late' }), 50).unref()
      return reply.sse(source)
    })
  })
  t.teardown(() => app.close())
  const { events } = await open(url + '/sse')
  t.equal((await all(events)).length, 1, 'streamed')
  t.same(seen, [], 'no span of that request published')
  t.same(logs.at(WARN), [], 'no second answer')
})
