import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance, FastifyRequest, onRequestAsyncHookHandler } from 'fastify'
import { deferred, open, startApp, take, WARN } from './helpers.js'

const POST = { method: 'POST' as const, body: JSON.stringify({ a: 1 }), headers: { 'content-type': 'application/json' } }

/**
 * A route that yields, waits past the moment Fastify's own signal would abort, yields whether it did, then waits
 * for the client to leave.
 */
function twoTicks (
  app: FastifyInstance, path: string, early: () => AbortSignal | undefined, ended: (aborted: boolean) => void,
  onRequest?: onRequestAsyncHookHandler | onRequestAsyncHookHandler[]
): void {
  app.post(path, { onRequest }, async function * (request) {
    const signal = early() ?? request.signal
    try {
      yield { data: String(signal === request.signal) }
      await sleep(30, undefined, { signal })
      yield { data: String(signal.aborted) }
      await sleep(60_000, undefined, { signal })
    } finally {
      ended(signal.aborted)
    }
  })
}

t.test('POST: request.signal read in an onRequest hook, a preHandler or with handlerTimeout is the stream\'s life', async t => {
  t.setTimeout(15_000)
  for (const where of ['onRequest', 'preHandler', 'handlerTimeout', 'route onRequest', 'route onRequest[]'] as const) {
    const ended = deferred<boolean>()
    let early: AbortSignal | undefined
    const read = async (request: FastifyRequest): Promise<void> => { early = request.signal }
    const { app, url } = await startApp(app => {
      if (where === 'onRequest' || where === 'preHandler') app.addHook(where, read)
      const onRequest = where === 'route onRequest' ? read : where === 'route onRequest[]' ? [read] : undefined
      twoTicks(app, '/s', () => early, ended.resolve, onRequest)
    }, {}, where === 'handlerTimeout' ? { handlerTimeout: 60_000 } : {})
    t.teardown(() => app.close())
    const ac = new AbortController()
    const { events } = await open(url + '/s', { ...POST, signal: ac.signal })
    t.same(await take(events, 2), [{ data: 'true' }, { data: 'false' }], `${where}: the same signal, not aborted once the body was read`)
    ac.abort()
    t.equal(await ended.promise, true, `${where}: aborted when the client left`)
  }
})

t.test('POST: a plain handler that reads request.signal, then starts the stream', async t => {
  t.setTimeout(15_000)
  const ended = deferred<boolean>()
  const { app, url, logs } = await startApp(app => {
    app.post('/plain', (request, reply) => {
      const signal = request.signal
      reply.sse((async function * () {
        try {
          yield { data: 'one' }
          await sleep(30, undefined, { signal })
          yield { data: String(signal.aborted) }
          await sleep(60_000, undefined, { signal })
        } finally {
          ended.resolve(signal.aborted)
        }
      })())
    })
    app.post('/late', async (request, reply) => {
      const signal = request.signal
      await new Promise(resolve => request.raw.once('close', resolve)) // Fastify's signal has fired
      return reply.sse((function * () {
        yield { data: String(signal.aborted) }
        yield { data: String(request.signal.aborted) }
      })())
    })
  })
  t.teardown(() => app.close())
  const ac = new AbortController()
  const { events } = await open(url + '/plain', { ...POST, signal: ac.signal })
  t.same(await take(events, 2), [{ data: 'one' }, { data: 'false' }])
  ac.abort()
  t.equal(await ended.promise, true)

  const late = await open(url + '/late', POST)
  t.same(await take(late.events, 2), [{ data: 'true' }, { data: 'false' }], 'too late to save the early one: the stream gets a new signal')
  const warning = await logs.waitFor(l => l.level === WARN && /request\.signal was read before the stream started/.test(l.msg))
  t.match(warning.msg, /POST \/late/)
})
