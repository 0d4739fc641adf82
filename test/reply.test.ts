import t from 'tap'
import { once } from 'node:events'
import { connect as netConnect } from 'node:net'
import { startApp } from './helpers.js'

// What reply.sse() answers before any event: the response head, chosen by the request.

/** Writes `text` on a raw connection and returns everything the server sent until it closed the connection. */
async function exchange (url: string, text: string): Promise<string> {
  const socket = netConnect(Number(new URL(url).port), '127.0.0.1')
  socket.setEncoding('latin1')
  let received = ''
  socket.on('data', (chunk: string) => { received += chunk })
  socket.write(text)
  await once(socket, 'end')
  socket.destroy()
  return received
}

t.test('HTTP/1.0: connection: close, no chunking, the body ends with the connection', async t => {
  t.setTimeout(10_000)
  const { app, url } = await startApp(app => {
    app.get('/two', async function * () {
      yield { data: 'a' }
      yield { data: 'b' }
    })
  })
  t.teardown(() => app.close())
  const response = await exchange(url, 'GET /two HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n')
  const [head, body] = response.split('\r\n\r\n') as [string, string]
  t.match(head, /^HTTP\/1\.1 200 OK\r\n/)
  t.match(head, /\r\nconnection: close\r\n/i, 'connection: close')
  t.notMatch(head, /keep-alive|transfer-encoding/i, 'neither keep-alive nor chunking')
  t.equal(body, 'data: a\n\ndata: b\n\n', 'the events, unchunked, then the server closed the connection')
})
