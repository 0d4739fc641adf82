// `npx tsx examples/job-progress.ts`: start a (simulated) load test and watch its output lines arrive as events,
// instead of waiting for it to finish. http://127.0.0.1:3000 (PORT to change).
// Each job is a child process; its stdout lines are published on the job's own channel, so several tabs can
// watch one job, and a tab that reconnects (or opens late) gets every line it has not seen, from the start.
import Fastify from 'fastify'
import { spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import ssePlugin, { type Channel, type SseItem } from '../lib/index.js'

type JobEvent =
  | { event: 'start', data: { job: number, command: string } }
  | { event: 'line', data: string }
  | { event: 'done', data: { code: number | null, signal: string | null } }

interface Job {
  channel: Channel<JobEvent['data']>
  start: SseItem<JobEvent['data']> & { id: string }
  running: boolean
}

const MAX_RUNNING = 4 // bound the child processes
const JOB_TIMEOUT = 30_000 // a job that runs longer is killed
const KEEP_FINISHED = 60_000 // a finished job's output stays readable this long

const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info' } })
await app.register(ssePlugin, { retry: 1_000 })

const page = await readFile(new URL('./public/job-progress.html', import.meta.url), 'utf8')
app.get('/', (_request, reply) => reply.type('text/html; charset=utf-8').send(page))

// Stands in for a long-running job (a load test, a build): prints a progress line every 200 ms, then a summary.
const TOOL = `
const total = Number(process.argv[1]) || 20
let i = 0
const timer = setInterval(() => {
  i++
  const p50 = (20 + Math.random() * 10).toFixed(1)
  console.log('batch ' + i + '/' + total + ': ' + (i * 500) + ' requests, p50 ' + p50 + ' ms')
  if (i === total) { clearInterval(timer); console.log('summary: ' + (total * 500) + ' requests, 0 errors') }
}, 200)
`

const jobs = new Map<number, Job>()
let nextJob = 1

app.post<{ Querystring: { batches?: number } }>('/jobs', {
  schema: { querystring: { type: 'object', properties: { batches: { type: 'integer', minimum: 1, maximum: 100 } } } }
}, async (request, reply) => {
  if ([...jobs.values()].filter(j => j.running).length >= MAX_RUNNING) {
    return reply.code(429).send({ error: 'too many running jobs' })
  }
  const id = nextJob++
  const batches = request.query.batches ?? 20
  const channel = app.sse.channel<JobEvent['data']>(`job-${id}`, { history: 1000 })
  const start = { event: 'start', data: { job: id, command: `load-test --batches ${batches}` } }
  const job: Job = { channel, start: { ...start, id: channel.publish(start) }, running: true }
  jobs.set(id, job)
  const child = spawn(process.execPath, ['-e', TOOL, String(batches)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: JOB_TIMEOUT
  })
  const lines = createInterface({ input: child.stdout })
  lines.on('line', line => channel.publish({ event: 'line', data: line }))
  const errors = createInterface({ input: child.stderr })
  errors.on('line', line => channel.publish({ event: 'line', data: `[stderr] ${line}` }))
  child.on('close', (code, signal) => {
    job.running = false
    channel.publish({ event: 'done', data: { code, signal } })
    setTimeout(() => {
      jobs.delete(id)
      channel.close() // watchers' streams end
    }, KEEP_FINISHED).unref()
  })
  return { id, events: `/jobs/${id}/events` }
})

app.get<{ Params: { id: number } }>('/jobs/:id/events', {
  schema: { params: { type: 'object', properties: { id: { type: 'integer' } } } }
}, (request, reply) => {
  const job = jobs.get(request.params.id)
  // 204: the spec's "stop reconnecting" — the job is gone, an EventSource must not retry forever
  if (job === undefined) return reply.code(204).send()
  const lastEventId = request.headers['last-event-id']
  if (lastEventId !== undefined) return reply.sse(job.channel.subscribe({ lastEventId, signal: request.signal }))
  // a new watcher gets the job's first event, then everything after it: every line from the start
  return reply.sse(fromStart(job.start, job.channel.subscribe({ lastEventId: job.start.id, signal: request.signal })))
})

async function * fromStart<T> (first: SseItem<T>, rest: AsyncIterable<SseItem<T>>): AsyncGenerator<SseItem<T>> {
  yield first
  yield * rest // return() reaches the subscription when the client leaves
}

const port = Number(process.env.PORT ?? 3000)
await app.listen({ port, host: '127.0.0.1' })
app.log.info(`job progress: open http://127.0.0.1:${port}/ (Ctrl-C to stop)`)
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => { void app.close() })
}
