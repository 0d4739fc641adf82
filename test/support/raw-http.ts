// HTTP/1.1 over raw sockets, for tests that must pipeline, stop reading or see the status line before anything else.
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'

/** The text of a GET for a stream at `path`. */
export const GET = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`

/** The port a listening app is on. */
export const portOf = (app: { server: { address: () => unknown } }): number =>
  (app.server.address() as { port: number }).port

/** A socket to 127.0.0.1:`port` that has written `text`; its errors are the test's to see by other means. */
export function rawClient (port: number, text: string): Socket {
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  socket.write(text)
  return socket
}

/** The status code of a fresh stream's response; the connection is closed once it is known. */
export async function statusOf (port: number, path = '/events'): Promise<number> {
  const socket = rawClient(port, GET(path))
  try {
    const [chunk] = await once(socket, 'data') as [Buffer]
    return Number(chunk.toString('latin1').split(' ')[1])
  } finally {
    socket.destroy()
  }
}
