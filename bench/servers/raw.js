// The ceiling: node:http with hand-written frames, drain-aware, no framework. Broadcast encodes each event
// once and writes the same string to every subscriber.
import http from 'node:http'
import { frame, intParam, now, ready } from './common.js'

const HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  connection: 'keep-alive'
}
const subscribers = new Set()

function stream (req, res) {
  const n = intParam(req.url, 'n', 0)
  let i = 0
  let closed = false
  res.once('close', () => { closed = true })
  res.writeHead(200, HEADERS)
  const pump = () => {
    while (i < n && !closed) {
      const ok = res.write(frame(i, Date.now()))
      i++
      if (!ok) {
        res.once('drain', pump)
        return
      }
    }
    if (!closed) res.end()
  }
  pump()
}

function sub (req, res) {
  res.writeHead(200, HEADERS)
  res.flushHeaders()
  subscribers.add(res)
  res.once('close', () => subscribers.delete(res))
}

function pub (req, res) {
  const n = intParam(req.url, 'n', 1)
  const start = intParam(req.url, 'start', 0)
  for (let k = 0; k < n; k++) {
    const f = frame(start + k, now())
    for (const s of subscribers) s.write(f)
  }
  res.writeHead(200, { 'content-type': 'application/json' })
  res.end(JSON.stringify({ subscribers: subscribers.size }))
}

const server = http.createServer((req, res) => {
  if (req.url.startsWith('/stream')) stream(req, res)
  else if (req.url.startsWith('/sub')) sub(req, res)
  else if (req.url.startsWith('/pub') && req.method === 'POST') {
    req.resume()
    req.once('end', () => pub(req, res))
  } else {
    res.writeHead(404)
    res.end()
  }
})
server.listen(0, '127.0.0.1', 4096, () => ready('raw', server.address().port, () => subscribers.size))
