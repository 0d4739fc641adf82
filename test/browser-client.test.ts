import t, { type Test } from 'tap'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import Fastify, { type FastifyInstance } from 'fastify'
import { build } from 'esbuild'
import type { Browser, Page } from 'playwright-core'
import ssePlugin from '../lib/index.js'
import { chromiumForFile, Reports } from './chromium.js'
import { deferred, runExample, startApp, within } from './helpers.js'
import { selfSignedCertificate } from './tls.js'

// connect() as a page runs it: the browser build of the client (the `browser` export condition), bundled with
// esbuild, in Debian's Chromium. A POST with a header and a body, typed events, a reconnection with Last-Event-ID
// after the server drops the connection, the spread of many clients' reconnections, the inactivity timeout, the
// online event; and the ask example, driven through its page.

const WAIT = 5000
const root = fileURLToPath(new URL('..', import.meta.url))

/** What the page reports: an event, a state change, the error an iteration ended with, its end. */
interface Report {
  name: string
  type: 'event' | 'state' | 'error' | 'end'
  at: number
  event?: string
  id?: string
  data?: unknown
  dataType?: string
  state?: string
  delay?: number
  failures?: number
  error?: string
  code?: string
  status?: number
}

// The client and a shared schema, as a page's bundle has them; `run(name, path, options)` reads a stream and
// reports all of it (options.schema names a schema of window.sse).
const CLIENT = `
import { connect } from './lib/client/browser.ts'
import { sseSchema } from './lib/schema.ts'
import { Integer, Object as O, String as S } from '@sinclair/typebox'
const job = sseSchema({ progress: O({ done: Integer(), total: Integer() }), state: S() })
window.run = (name, path, options = {}) => {
  const controller = new AbortController()
  window.controllers = { ...window.controllers, [name]: controller }
  const opts = { ...options, signal: controller.signal }
  if (options.schema !== undefined) opts.schema = { job }[options.schema]
  opts.onState = (state, info) => window.report({ name, type: 'state', state, delay: info.delay, failures: info.failures, error: info.error === undefined ? undefined : String(info.error.message), at: Date.now() })
  ;(async () => {
    try {
      for await (const e of connect(path, opts)) window.report({ name, type: 'event', event: e.event, id: e.id, data: e.data, dataType: typeof e.data, at: Date.now() })
    } catch (err) {
      window.report({ name, type: 'error', code: err.code, status: err.status, error: err.message, at: Date.now() })
    }
    window.report({ name, type: 'end', at: Date.now() })
  })()
}
`
const PAGE = '<!doctype html><meta charset="utf-8"><title>connect()</title><script type="module" src="/client.js"></script>'

let bundle = ''
t.before(async () => {
  const result = await build({
    stdin: { contents: CLIENT, resolveDir: root, loader: 'ts' }, bundle: true, format: 'esm', platform: 'browser', target: 'es2022', write: false
  })
  bundle = result.outputFiles[0]!.text
})

function pageRoutes (app: FastifyInstance): void {
  app.get('/', async (_request, reply) => reply.type('text/html; charset=utf-8').send(PAGE))
  app.get('/client.js', async (_request, reply) => reply.type('text/javascript; charset=utf-8').send(bundle))
}

/** A fresh context and page on `origin`, the client loaded, its reports collected; closed at teardown. */
async function openPage (
  t: Test, browser: Browser, origin: string, https = false
): Promise<{ page: Page, reports: Reports<Report> }> {
  const context = await browser.newContext({ ignoreHTTPSErrors: https })
  t.teardown(() => context.close())
  const page = await context.newPage()
  const reports = new Reports<Report>()
  await page.exposeFunction('report', (r: Report) => reports.push(r))
  await page.goto(origin + '/', { timeout: WAIT })
  await page.waitForFunction('typeof window.run === "function"', undefined, { timeout: WAIT })
  return { page, reports }
}

function run (page: Page, name: string, path: string, options: object = {}): Promise<unknown> {
  return page.evaluate(`run(${JSON.stringify(name)}, ${JSON.stringify(path)}, ${JSON.stringify(options)})`)
}

const chromium = chromiumForFile()
if (chromium !== undefined) {
  const { browser } = chromium

  t.test('POST with an auth header and a body; typed events; a dropped connection resumed with Last-Event-ID', async t => {
    t.setTimeout(20_000)
    const requests: Array<{ method: string, auth: unknown, body: unknown, lastEventId: unknown }> = []
    const seen = deferred() // the page has the first two events: only then does the network fail
    const { app, url } = await startApp(app => {
      pageRoutes(app)
      app.post('/job', async function * (request) {
        requests.push({ method: request.method, auth: request.headers.authorization, body: request.body, lastEventId: request.headers['last-event-id'] })
        if (requests.length === 1) {
          yield { retry: 200, id: '1', event: 'state', data: 'running' }
          yield { id: '2', event: 'progress', data: { done: 1, total: 2 } }
          await seen.promise
          request.raw.socket.destroy() // the network fails: no clean end of the body
          await once(request.signal, 'abort')
          return
        }
        yield { id: '3', event: 'progress', data: { done: 2, total: 2 } }
        yield { id: '4', event: 'state', data: 'finished' }
        await once(request.signal, 'abort')
      })
    })
    t.teardown(() => app.close())
    const { page, reports } = await openPage(t, browser(), url)
    await run(page, 'job', '/job', {
      method: 'POST', headers: { authorization: 'Bearer xyz', 'content-type': 'application/json' }, body: JSON.stringify({ job: 7 }), schema: 'job'
    })
    await reports.until(2, r => r.type === 'event', WAIT)
    seen.resolve()
    const list = await reports.until(4, r => r.type === 'event', WAIT)
    t.same(list.filter(r => r.type === 'event').map(r => [r.event, r.id, r.data, r.dataType]), [
      ['state', '1', 'running', 'string'],
      ['progress', '2', { done: 1, total: 2 }, 'object'],
      ['progress', '3', { done: 2, total: 2 }, 'object'],
      ['state', '4', 'finished', 'string']
    ], 'each event once, in order; decoded by the schema (text stays text, JSON is parsed)')
    t.same(requests, [
      { method: 'POST', auth: 'Bearer xyz', body: { job: 7 }, lastEventId: undefined },
      { method: 'POST', auth: 'Bearer xyz', body: { job: 7 }, lastEventId: '2' }
    ], 'the same request again, with the last id')
    const states = list.filter(r => r.type === 'state')
    t.same(states.map(r => r.state), ['connecting', 'open', 'reconnecting', 'open'])
    t.ok(states[2]!.delay! >= 200 && states[2]!.delay! <= 400, `reconnecting after the server's retry and up to twice it: ${states[2]!.delay} ms`)
  })

  t.test('50 clients dropped at once come back spread over the backoff window; 50 EventSources come back together', async t => {
    t.setTimeout(40_000)
    const CLIENTS = 50
    const RETRY = 1000
    // HTTP/2 (so over TLS): a page keeps at most 6 HTTP/1.1 connections per host
    const { key, cert } = selfSignedCertificate()
    const app = Fastify({ http2: true, https: { key, cert } })
    await app.register(ssePlugin)
    pageRoutes(app as unknown as FastifyInstance) // the routes do not care which HTTP version serves them
    // one round per kind of client: who came in, who came back (and with which id), and the moment of the drop
    const newRound = () => ({
      first: new Set<string>(),
      again: new Map<string, { at: number, lastEventId: unknown }>(),
      allIn: deferred(),
      allBack: deferred(),
      drop: deferred()
    })
    let round = newRound()
    app.get('/herd', async function * (request) {
      const { client } = request.query as { client: string }
      const now = round
      if (now.first.has(client)) {
        now.again.set(client, { at: Date.now(), lastEventId: request.headers['last-event-id'] })
        if (now.again.size === CLIENTS) now.allBack.resolve()
        await once(request.signal, 'abort') // held open (not ended: that would be one more reconnection)
        return
      }
      now.first.add(client)
      yield { retry: RETRY, id: `${client}-1`, data: 'hello' }
      if (now.first.size === CLIENTS) now.allIn.resolve()
      await now.drop.promise // then every stream ends at the same moment, as on a restart
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    t.teardown(() => app.close())
    const { port } = app.server.address() as { port: number }
    const origin = `https://127.0.0.1:${port}`

    const measure = async (kind: 'connect' | 'eventsource'): Promise<number[]> => {
      round = newRound()
      const { again, allIn, allBack, drop } = round
      const { page } = await openPage(t, browser(), origin, true)
      await page.evaluate(`for (let n = 0; n < ${CLIENTS}; n++) {
        const path = '/herd?client=${kind}-' + n
        if (${JSON.stringify(kind)} === 'eventsource') { const es = new EventSource(path); es.onopen = () => {}; window.sources = [...(window.sources ?? []), es] }
        else run('${kind}-' + n, path, { json: false })
      }`)
      await within(allIn.promise, 10_000, `all ${CLIENTS} ${kind} clients in`)
      const dropped = Date.now()
      drop.resolve()
      await within(allBack.promise, 10_000, `all ${CLIENTS} ${kind} clients back`)
      for (const { lastEventId } of again.values()) if (typeof lastEventId !== 'string' || !lastEventId.endsWith('-1')) t.fail(`resumed with ${String(lastEventId)}`)
      await page.evaluate('for (const c of Object.values(window.controllers ?? {})) c.abort(); for (const es of window.sources ?? []) es.close()')
      return [...again.values()].map(({ at }) => at - dropped).sort((a, b) => a - b)
    }
    const ours = await measure('connect')
    const theirs = await measure('eventsource')
    const spread = (gaps: number[]): number => gaps.at(-1)! - gaps[0]!
    t.comment(`connect(): reconnections ${ours[0]}..${ours.at(-1)} ms after the drop (spread ${spread(ours)} ms, median ${ours[CLIENTS / 2]} ms)`)
    t.comment(`EventSource: reconnections ${theirs[0]}..${theirs.at(-1)} ms after the drop (spread ${spread(theirs)} ms)`)
    t.ok(ours[0]! >= RETRY - 50, `none sooner than the server's retry (${RETRY} ms): first after ${ours[0]} ms`)
    t.ok(ours.at(-1)! <= 2 * RETRY + 1000, `none much later than twice it: last after ${ours.at(-1)} ms`)
    t.ok(spread(ours) >= RETRY / 2, `spread over the window: ${spread(ours)} ms`)
    t.ok(spread(ours) > spread(theirs), `wider than EventSource's lockstep (${spread(theirs)} ms)`)
  })

  t.test('a connection that goes silent is replaced after inactivityTimeout, resuming with Last-Event-ID', async t => {
    t.setTimeout(20_000)
    const seen: Array<{ at: number, lastEventId: unknown }> = []
    const { app, url } = await startApp(app => {
      pageRoutes(app)
      app.get('/quiet', async function * (request) {
        seen.push({ at: Date.now(), lastEventId: request.headers['last-event-id'] })
        if (seen.length === 2) return
        yield { id: 'q1', data: 'then nothing' }
        await once(request.signal, 'abort')
      })
    }, { heartbeat: false })
    t.teardown(() => app.close())
    const { page, reports } = await openPage(t, browser(), url)
    await run(page, 'quiet', '/quiet', { inactivityTimeout: 400, retry: 10, json: false })
    const list = await reports.until(1, r => r.type === 'state' && r.state === 'reconnecting', WAIT)
    const event = list.find(r => r.type === 'event')!
    t.same([event.id, event.data], ['q1', 'then nothing'])
    t.match(list.find(r => r.state === 'reconnecting'), { error: /sent nothing for 400 ms \(inactivityTimeout\)$/ })
    await reports.until(2, () => seen.length === 2, WAIT)
    t.equal(seen[1]!.lastEventId, 'q1', 'resumed from the last id')
    const silence = seen[1]!.at - event.at
    t.ok(silence >= 400 && silence < 3000, `replaced after ${silence} ms of silence`)
    await page.evaluate('controllers.quiet.abort()')
  })

  t.test('the online event ends a backoff wait at once', async t => {
    t.setTimeout(20_000)
    let attempts = 0
    const { app, url } = await startApp(app => {
      pageRoutes(app)
      app.get('/busy', async (_request, reply) => {
        attempts++
        return reply.code(503).header('retry-after', '3600').send()
      })
    })
    t.teardown(() => app.close())
    const { page, reports } = await openPage(t, browser(), url)
    await run(page, 'busy', '/busy')
    await reports.until(1, r => r.state === 'reconnecting', WAIT)
    t.equal(attempts, 1, 'told to come back in an hour')
    await page.evaluate("window.dispatchEvent(new Event('online'))")
    await reports.until(2, r => r.state === 'reconnecting', WAIT)
    t.equal(attempts, 2, 'back online: tried again at once')
    await page.evaluate('controllers.busy.abort()')
    await reports.until(1, r => r.type === 'end', WAIT)
  })

  t.test('the ask example: a question by POST with a bearer token, the answer streamed, resumed after an interruption', async t => {
    t.setTimeout(30_000)
    const url = await runExample(t, 'examples/ask/server.ts', { TOKEN_MS: '80' })
    const context = await browser().newContext()
    t.teardown(() => context.close())
    const page = await context.newPage()
    await page.goto(url + '/', { timeout: WAIT })
    await page.fill('#prompt', 'why streams')
    await page.click('button:text("Ask")')
    await page.waitForSelector('body[data-done="8"]', { timeout: WAIT })
    t.equal(await page.textContent('#answer'), 'You asked: “why”. “streams”. Here is the answer.')
    t.equal(await page.getAttribute('body', 'data-state'), 'closed')

    await page.fill('#prompt', 'one two three four five six')
    await page.click('button:text("Ask")')
    await page.waitForFunction("document.getElementById('answer').textContent.split(' ').length >= 3", undefined, { timeout: WAIT })
    await page.click('#interrupt')
    await page.waitForSelector('body[data-done="12"]', { timeout: WAIT })
    t.equal(await page.textContent('#answer'), 'You asked: “one”. “two”. “three”. “four”. “five”. “six”. Here is the answer.', 'every token once')
    t.match(await page.textContent('#notes'), /resumed after token \d+/, 'the route resumed from Last-Event-ID')

    await page.fill('#token', 'wrong')
    await page.click('button:text("Ask")')
    await page.waitForFunction("document.getElementById('notes').textContent.includes('failed')", undefined, { timeout: WAIT })
    t.match(await page.textContent('#notes'), /failed \(FST_SSE_CLIENT_STATUS, 401\)/, 'a refused token: the status, no retry')
  })
}
