import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify'
import type { Browser, BrowserContext } from 'playwright-core'
import ssePlugin from '../lib/index.js'
import type { SseItem } from '../lib/index.js'
import { chromiumForFile, Reports } from './chromium.js'
import { deferred, startApp, settles } from './helpers.js'
import { selfSignedCertificate } from './tls.js'

// The plugin as its users use it: a real browser's EventSource, in Debian's Chromium driven by playwright-core.
// One browser for the file, a fresh context (profile) per test. Chromium missing is a failure, not a skip:
// npm test installs it, and a suite that silently skips its browser tests tests nothing.

const WAIT = 5000 // the longest any single browser event may take to arrive

/** What the page reports for each EventSource event (see PAGE). */
interface Report {
  type: string
  readyState: number
  data?: string
  lastEventId?: string
  at: number
}

// The test page: `openStream(path, names)` opens an EventSource and reports every event to the test.
const PAGE = `<!doctype html><meta charset="utf-8"><title>fastify-typed-sse</title><script>
window.openStream = (path, names) => {
  const es = new EventSource(path)
  window.es = es
  const send = (type, e) => window.report({ type, readyState: es.readyState, data: e.data, lastEventId: e.lastEventId, at: Date.now() })
  es.onopen = () => window.report({ type: 'open', readyState: es.readyState, at: Date.now() })
  es.onerror = () => window.report({ type: 'error', readyState: es.readyState, at: Date.now() })
  es.onmessage = e => send('message', e)
  for (const name of names) es.addEventListener(name, e => send(name, e))
}
</script>`

const OPEN = 1
const CLOSED = 2
const CONNECTING = 0

/** The reports of one page, and waits on them bounded by WAIT unless told. */
class PageReports extends Reports<Report> {
  override until (count: number, match: (r: Report) => boolean = () => true, timeout = WAIT): Promise<Report[]> {
    return super.until(count, match, timeout)
  }
}

function pageRoute (app: FastifyInstance): void {
  app.get('/', async (_req, reply) => reply.type('text/html; charset=utf-8').send(PAGE))
}

/** A fresh browser context and page on `origin`, its EventSource opened on `path`; closed at teardown. */
async function openPage (t: Test, browser: Browser, origin: string, path: string, names: string[] = [], https = false) {
  const context: BrowserContext = await browser.newContext({ ignoreHTTPSErrors: https })
  t.teardown(() => context.close())
  const page = await context.newPage()
  const reports = new PageReports()
  await page.exposeFunction('report', (r: Report) => reports.push(r))
  await page.goto(origin + '/', { timeout: WAIT })
  await page.evaluate(`openStream(${JSON.stringify(path)}, ${JSON.stringify(names)})`)
  return { page, reports }
}

function waitForAbort (signal: AbortSignal): Promise<void> {
  return new Promise(resolve => signal.addEventListener('abort', () => resolve(), { once: true }))
}

const chromium = chromiumForFile()
if (chromium !== undefined) {
  let browser!: Browser
  t.before(() => { browser = chromium.browser() })

  t.test('onopen, JSON data on onmessage, named events, lastEventId, beside async hooks; leaving stops the generator', async t => {
    t.setTimeout(15_000)
    const stopped = deferred()
    const { app, url } = await startApp(app => {
      pageRoute(app)
      // what cors, helmet or auth plugins add: the headers must still reach the browser before the first event
      app.addHook('preHandler', async () => { await new Promise(resolve => setImmediate(resolve)) }) // an auth lookup
      app.addHook('onSend', async (_request, reply, payload) => {
        reply.header('x-frame-options', 'DENY')
        return payload
      })
      app.get('/basic', async function * (request) {
        try {
          yield { id: '1', data: { n: 1, text: 'é✓😀' } }
          yield { id: '2', event: 'tick', data: { n: 2 } }
          yield { data: 'no id: the last one stays' }
          yield { id: '', data: 'id reset' }
          await waitForAbort(request.signal)
        } finally {
          stopped.resolve()
        }
      })
    })
    t.teardown(() => app.close())
    const { page, reports } = await openPage(t, browser, url, '/basic', ['tick'])
    const list = await reports.until(5)
    t.same(list.map(r => [r.type, r.readyState]), [['open', OPEN], ['message', OPEN], ['tick', OPEN], ['message', OPEN], ['message', OPEN]])
    t.same(JSON.parse(list[1]!.data!), { n: 1, text: 'é✓😀' }, 'JSON data, unicode intact')
    t.equal(list[1]!.lastEventId, '1')
    t.same(JSON.parse(list[2]!.data!), { n: 2 }, 'a named event reaches its addEventListener listener')
    t.equal(list[2]!.lastEventId, '2')
    t.equal(list[3]!.data, 'no id: the last one stays')
    t.equal(list[3]!.lastEventId, '2', 'an event without id keeps the last id')
    t.equal(list[4]!.lastEventId, '', "id '' resets it")
    await page.evaluate('es.close()')
    t.ok(await settles(stopped.promise, WAIT), 'es.close() in the page stopped the generator (its finally ran)')
  })

  t.test('heartbeats and comments never reach a listener', async t => {
    t.setTimeout(15_000)
    const beats = deferred()
    const { app, url } = await startApp(app => {
      pageRoute(app)
      app.get('/quiet', (request, reply) => {
        countHeartbeats(reply, 3, beats.resolve)
        return reply.sse(quiet(request.signal, beats.promise), { heartbeat: 20 })
      })
    })
    t.teardown(() => app.close())
    const { reports } = await openPage(t, browser, url, '/quiet', ['message'])
    const list = await reports.until(2, r => r.data === 'last')
    t.same(list.filter(r => r.type !== 'open').map(r => [r.type, r.data]), [
      ['message', 'first'], ['message', 'first'], ['message', 'last'], ['message', 'last']
    ], 'only the two data events, each seen by onmessage and by addEventListener("message")')
  })

  t.test('reconnects after the server ends the stream: retry honoured, Last-Event-ID sent, nothing lost; 204 stops it', async t => {
    // A route that resumes from Last-Event-ID itself (channels replay for you: test/channel/http.test.ts).
    t.setTimeout(20_000)
    const RETRY = 700
    const seen: Array<{ lastEventId: string | undefined, at: number }> = []
    const ended: number[] = []
    const { app, url } = await startApp(app => {
      pageRoute(app)
      app.get('/resume', (request, reply) => {
        const lastEventId = request.headers['last-event-id'] as string | undefined
        seen.push({ lastEventId, at: Date.now() })
        if (seen.length === 3) return reply.code(204).send()
        const from = Number(lastEventId ?? 0)
        return reply.sse(resume(from, RETRY, () => { ended.push(Date.now()) }))
      })
    })
    t.teardown(() => app.close())
    const { page, reports } = await openPage(t, browser, url, '/resume')
    const list = await reports.until(1, r => r.type === 'error' && r.readyState === CLOSED, 3 * WAIT)
    t.same(list.map(r => [r.type, r.data ?? null, r.readyState]), [
      ['open', null, OPEN], ['message', '1', OPEN], ['message', '2', OPEN], ['error', null, CONNECTING],
      ['open', null, OPEN], ['message', '3', OPEN], ['message', '4', OPEN], ['error', null, CONNECTING],
      ['error', null, CLOSED]
    ], 'every event once, in order; the 204 closes the EventSource')
    t.same(list.filter(r => r.type === 'message').map(r => r.lastEventId), ['1', '2', '3', '4'])
    t.same(seen.map(s => s.lastEventId), [undefined, '2', '4'], 'each reconnection sent the last id it saw')
    for (const [n, end] of ended.entries()) {
      const gap = seen[n + 1]!.at - end
      t.ok(gap >= RETRY - 50, `reconnection ${n + 1} waited the server's retry (${RETRY} ms): ${gap} ms`)
      t.ok(gap < 2500, `and not the browser's default 3 s: ${gap} ms`)
    }
    t.equal(ended.length, 2)
    t.equal(await page.evaluate('es.readyState'), CLOSED)
  })

  t.test('a 204 answer to the first request: no reconnection, readyState CLOSED', async t => {
    t.setTimeout(15_000)
    let requests = 0
    const { app, url } = await startApp(app => {
      pageRoute(app)
      app.get('/gone', async (_request, reply) => {
        requests++
        return reply.code(204).send()
      })
    })
    t.teardown(() => app.close())
    const { page, reports } = await openPage(t, browser, url, '/gone')
    const list = await reports.until(1, r => r.type === 'error')
    t.same(list.map(r => [r.type, r.readyState]), [['error', CLOSED]], 'never opened, failed for good')
    t.equal(await page.evaluate('es.readyState'), CLOSED)
    t.equal(requests, 1)
  })

  t.test('over HTTP/2 with TLS', async t => {
    t.setTimeout(20_000)
    const { key, cert } = selfSignedCertificate()
    const versions: string[] = []
    const app = Fastify({ http2: true, https: { key, cert } })
    await app.register(ssePlugin)
    app.get('/', async (_req, reply) => reply.type('text/html; charset=utf-8').send(PAGE))
    app.get('/h2', async function * (request) {
      versions.push(request.raw.httpVersion)
      yield { id: 'a', data: { over: 'h2' } }
      yield { id: 'b', event: 'tick', data: { n: 2 } }
      await waitForAbort(request.signal)
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    t.teardown(() => app.close())
    const address = app.server.address()
    if (address === null || typeof address === 'string') throw new Error('not listening on TCP')
    const { page, reports } = await openPage(t, browser, `https://127.0.0.1:${address.port}`, '/h2', ['tick'], true)
    const list = await reports.until(3)
    t.same(list.map(r => [r.type, r.data ?? null, r.lastEventId ?? null]), [
      ['open', null, null], ['message', '{"over":"h2"}', 'a'], ['tick', '{"n":2}', 'b']
    ])
    t.same(versions, ['2.0'], 'the stream went over HTTP/2')
    t.equal(await page.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol"), 'h2', 'and so did the page')
  })
}

async function * quiet (signal: AbortSignal, beats: Promise<void>): AsyncGenerator<SseItem<string>> {
  yield { data: 'first' }
  yield { comment: 'a comment' }
  yield { comment: '' }
  yield { comment: 'two\nlines' }
  await beats // three heartbeats went out meanwhile
  yield { data: 'last' }
  await waitForAbort(signal)
}

async function * resume (from: number, retry: number, onEnd: () => void): AsyncGenerator<SseItem<string>> {
  try {
    yield { retry, id: String(from + 1), data: String(from + 1) }
    yield { id: String(from + 2), data: String(from + 2) }
  } finally {
    onEnd()
  }
}

/** Calls `done` once `count` heartbeat frames were written to the response. */
function countHeartbeats (reply: FastifyReply, count: number, done: () => void): void {
  const raw = reply.raw
  const write = raw.write
  let beats = 0
  raw.write = function (this: typeof raw, chunk: unknown, ...rest: unknown[]) {
    if (chunk === ':\n\n' && ++beats === count) done()
    return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest)
  } as typeof raw.write
}
