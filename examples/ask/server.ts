// `npx tsx examples/ask/server.ts`: a page that asks a question by POST, with an Authorization header, and reads
// the answer as it streams, token by token: what the browser's EventSource cannot do (no method, no body, no
// headers). http://127.0.0.1:3000 (PORT to change).
// The page's script (examples/ask/page.ts) is bundled with esbuild when the server starts: in an app, the page
// imports `connect` from 'fastify-typed-sse/client' and the app's bundler picks the browser build by itself.
// "Interrupt" drops every open stream on the server side: the page reconnects with the same request and the last
// id it saw (Last-Event-ID), and the route goes on from there.
import Fastify from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { build } from 'esbuild'
import { readFile } from 'node:fs/promises'
import type { Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import ssePlugin, { lastEventId, type SseGenerator } from '../../lib/index.js'
import { answerEvents, Question, Refusal } from './events.js'

const TOKEN = 'demo-token' // what the page sends as `Authorization: Bearer …`; a real app checks a session
const TOKEN_MS = Number(process.env.TOKEN_MS ?? 150) // the pace of the answer, as a model would write it

const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info' } }).withTypeProvider<TypeBoxTypeProvider>()
await app.register(ssePlugin, { retry: 1000 })

const page = await readFile(new URL('./page.html', import.meta.url), 'utf8')
const script = await build({
  entryPoints: [fileURLToPath(new URL('./page.ts', import.meta.url))],
  bundle: true,
  minify: true,
  format: 'esm',
  platform: 'browser', // the `browser` build of the client: no TypeBox compiler
  target: 'es2022',
  write: false
})
const bundle = script.outputFiles[0]!.text
app.get('/', (_request, reply) => reply.type('text/html; charset=utf-8').send(page))
app.get('/page.js', (_request, reply) => reply.type('text/javascript; charset=utf-8').send(bundle))

/** The answer to a prompt, as the tokens a model would stream. */
function answer (prompt: string): string[] {
  return ['You', 'asked:', ...prompt.split(/\s+/).filter(Boolean).map(word => `“${word}”.`), 'Here', 'is', 'the', 'answer.']
}

// the sockets of the streams now open, for "Interrupt"
const open = new Set<Socket>()

app.post('/ask', {
  schema: { body: Question, response: { 200: answerEvents, 401: Refusal } },
  preHandler: async (request, reply) => {
    if (request.headers.authorization !== `Bearer ${TOKEN}`) await reply.code(401).send({ error: 'a bearer token is needed' })
  }
}, async function * (request): SseGenerator<typeof answerEvents> {
  const socket = request.raw.socket
  open.add(socket)
  try {
    const tokens = answer(request.body.prompt)
    const last = lastEventId(request) // the index of the last token the page got, on a reconnection
    const from = last === undefined ? 0 : Number(last) + 1
    if (from > 0) yield { event: 'note', data: `resumed after token ${last}` }
    for (let index = from; index < tokens.length; index++) {
      await sleep(TOKEN_MS, undefined, { signal: request.signal })
      yield { event: 'token', id: String(index), data: { index, text: tokens[index]! } }
    }
    yield { event: 'done', data: { tokens: tokens.length } }
    // then the stream ends; the page stops reading at `done` (a 204 on a later request would stop it too)
  } finally {
    open.delete(socket)
  }
})

app.post('/interrupt', async () => {
  const dropped = open.size
  for (const socket of open) socket.destroy() // the network fails: no clean end of the response
  return { dropped }
})

const port = Number(process.env.PORT ?? 3000)
await app.listen({ port, host: '127.0.0.1' })
app.log.info(`demo: open http://127.0.0.1:${port}/ in a browser (Ctrl-C to stop)`)
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => { void app.close() })
}
