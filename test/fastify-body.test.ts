import t from 'tap'
import { EventEmitter } from 'node:events'
import { finished } from 'node:stream'
import { FastifyBody } from '../lib/fastify-body.js'
import type { EventStream } from '../lib/stream.js'
import type { BodyEvents, Destination } from '../lib/writer.js'
import { startApp } from './helpers.js'

/** Stands in for a writer: records what the body asks of it. */
function fakeWriter (): { writer: EventStream, calls: unknown[][], reported: BodyEvents[] } {
  const calls: unknown[][] = []
  const reported: BodyEvents[] = []
  const writer = {
    reportTo (body: BodyEvents) { reported.push(body) },
    pipe (dest: Destination, options?: { end?: boolean }) { calls.push(['pipe', dest, options]) },
    destroy () { calls.push(['destroy']) }
  }
  return { writer: writer as unknown as EventStream, calls, reported }
}

t.test('a real EventEmitter in front of the writer: pipe and destroy go to it, its end, close and error come out', async t => {
  const { writer, calls, reported } = fakeWriter()
  const body = new FastifyBody(writer)
  t.ok(body instanceof EventEmitter, 'a Node EventEmitter')
  t.same(reported, [body], 'the writer is told to report to it')
  const dest = { write: () => true, end: () => {}, once: () => {} }
  t.equal(body.pipe(dest, { end: false }), dest, 'pipe() answers the destination, as a Readable does')
  body.destroy()
  t.same(calls, [['pipe', dest, { end: false }], ['destroy']])

  const seen: string[] = []
  body.on('end', () => seen.push('end'))
  body.on('close', () => seen.push('close'))
  t.equal(body.takesErrors(), false, 'nobody listens for errors yet: a failure cannot be handed over')
  body.on('error', (err: Error) => seen.push(`error ${err.message}`))
  t.equal(body.takesErrors(), true)
  body.failed(new Error('early'))
  body.ended()
  body.closed()
  t.same(seen, ['error early', 'end', 'close'])
})

t.test("node:stream's finished() watches it as it watches a readable body", async t => {
  const body = new FastifyBody(fakeWriter().writer)
  let cleanup!: () => void
  const done = new Promise<unknown>(resolve => {
    cleanup = finished(body as never, { readable: true, writable: false }, resolve)
  })
  t.ok(body.listenerCount('end') > 0, 'it listens')
  body.ended()
  t.equal(await done, undefined, 'end: finished without error')
  cleanup()
  t.equal(body.listenerCount('end'), 0, 'and lets go')
})

t.test("only a stream on Fastify's send path gets one: an onSend hook sees it, and its end and close", async t => {
  t.setTimeout(10_000)
  const bodies: unknown[] = []
  const events: string[] = []
  const { app, url } = await startApp(app => {
    app.get('/direct', (_req, reply) => reply.sse([{ data: 'a' }]))
    app.register(async scope => {
      scope.addHook('onSend', async (_req, _reply, payload) => {
        bodies.push(payload)
        ;(payload as EventEmitter).on('end', () => events.push('end')).on('close', () => events.push('close'))
        return payload
      })
      scope.get('/hooked', (_req, reply) => reply.sse([{ data: 'b' }]))
    })
  })
  t.teardown(() => app.close())
  t.equal(await (await fetch(url + '/direct')).text(), 'data: a\n\n')
  t.equal(bodies.length, 0, 'a route without an onSend hook: Fastify never sees a body')
  t.equal(await (await fetch(url + '/hooked')).text(), 'data: b\n\n')
  t.equal(bodies.length, 1)
  t.ok(bodies[0] instanceof FastifyBody, 'the hook is handed the body')
  t.same(events, ['end', 'close'], 'which ends, then closes')
})
