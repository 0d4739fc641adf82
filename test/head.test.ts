import t from 'tap'
import { EventEmitter } from 'node:events'
import type { FastifyReply } from 'fastify'
import {
  answeredBySse, answeredHead, holdsHead, sendHead, STREAM_HEADERS, takeBackHeaders, watchResponse
} from '../lib/head.js'
import { kOpensAtOnce } from '../lib/source.js'

t.test('the head waits for the first item only with a headersDelay, and not for a source that opens at once', async t => {
  t.equal(holdsHead([], 100), true)
  t.equal(holdsHead([], 0), false)
  t.equal(holdsHead({ [kOpensAtOnce]: true }, 100), false)
})

t.test('taking back the headers: only those with the value reply.sse() gave them', async t => {
  const headers: Record<string, string> = { ...STREAM_HEADERS, 'cache-control': 'private' }
  const rawHeaders: Record<string, string> = { ...headers }
  const reply = {
    getHeader: (name: string) => headers[name],
    removeHeader: (name: string) => { delete headers[name] },
    raw: { removeHeader: (name: string) => { delete rawHeaders[name] } }
  }
  takeBackHeaders(reply as unknown as FastifyReply)
  t.same(headers, { 'cache-control': 'private' }, "the user's cache-control stays")
  t.same(rawHeaders, { 'cache-control': 'private' })
})

t.test('sendHead: written by the stream on the direct path; flushed when piped into the response; never twice', async t => {
  const calls: string[] = []
  const raw = { headersSent: false, flushHeaders: () => calls.push('flush'), writeHead: () => calls.push('writeHead') }
  const reply = { raw, statusCode: 200, getHeaders: () => ({}), hijack: () => calls.push('hijack') }
  const r = reply as unknown as FastifyReply
  sendHead(r, false, {})
  t.same(calls, [], "into what an onSend hook put in front of the response: that stream's business")
  sendHead(r, false, raw)
  t.same(calls, ['flush'])
  sendHead(r, true, raw)
  t.same(calls, ['flush', 'hijack', 'writeHead', 'flush'])
  raw.headersSent = true
  sendHead(r, true, raw)
  t.equal(calls.length, 4, 'sent already: nothing')
})

t.test('the responses reply.sse() answered, and one close listener telling each stream', async t => {
  const res = new EventEmitter()
  const head = new EventEmitter()
  t.equal(answeredBySse(res), false)
  let closed = 0
  watchResponse(res as unknown as FastifyReply['raw'], { responseClosed: () => { closed++ } })
  answeredHead(head)
  t.ok(answeredBySse(res))
  t.ok(answeredBySse(head), 'a HEAD request answered with a head alone')
  const other = new EventEmitter()
  watchResponse(other as unknown as FastifyReply['raw'], { responseClosed: () => {} })
  t.equal(res.listeners('close')[0], other.listeners('close')[0], 'the same listener on every response')
  res.emit('close')
  t.equal(closed, 1)
  head.on('close', res.listeners('close')[0] as () => void)
  head.emit('close') // a HEAD response has no stream to tell
  t.equal(closed, 1)
})
