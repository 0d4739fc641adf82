import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'
import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { request, type Dispatcher } from 'undici'
import { parseEventStream } from '../lib/index.js'
import type { SseItem } from '../lib/index.js'
import ssePlugin from '../lib/index.js'
import type { SsePluginOptions } from '../lib/types.js'

/** A log line as pino writes it. */
export interface LogLine {
  level: number
  msg: string
  reason?: string
  items?: number
  err?: { message: string, type: string, code?: string, field?: string }
  [key: string]: unknown
}

/** Collects pino output so tests can assert what was logged, and wait for a line to appear. */
export class LogCapture extends Writable {
  readonly lines: LogLine[] = []
  #waiters: Array<{ match: (line: LogLine) => boolean, resolve: (line: LogLine) => void }> = []

  override _write (chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    for (const text of chunk.toString().split('\n')) {
      if (text === '') continue
      const line = JSON.parse(text) as LogLine
      this.lines.push(line)
      this.#waiters = this.#waiters.filter(w => {
        if (!w.match(line)) return true
        w.resolve(line)
        return false
      })
    }
    cb()
  }

  /** Resolves with the first line (already logged or to come) that matches. */
  waitFor (match: (line: LogLine) => boolean): Promise<LogLine> {
    const found = this.lines.find(match)
    if (found !== undefined) return Promise.resolve(found)
    return new Promise(resolve => this.#waiters.push({ match, resolve }))
  }

  at (level: number): LogLine[] {
    return this.lines.filter(l => l.level === level)
  }
}

export const ERROR = 50
export const WARN = 40
export const INFO = 30
export const DEBUG = 20

export interface TestApp {
  app: FastifyInstance
  logs: LogCapture
  url: string
}

/**
 * A Fastify app with the plugin, a debug-level captured logger, listening on loopback. Its streams send no
 * `retry:` line unless `pluginOptions` give one: the default's random line would stand in every body compared
 * whole, and would make our client wait 1.5 to 4.5 s before each reconnection. The default is tested where it
 * is the subject (test/stream.test.ts).
 */
export async function startApp (
  setup: (app: FastifyInstance) => void | Promise<void>,
  pluginOptions: SsePluginOptions = {},
  serverOptions: FastifyServerOptions = {}
): Promise<TestApp> {
  const logs = new LogCapture()
  const app = Fastify({ logger: { level: 'debug', stream: logs }, ...serverOptions })
  await app.register(ssePlugin, { retry: false, ...pluginOptions })
  await setup(app)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('not listening on TCP')
  return { app, logs, url: `http://127.0.0.1:${address.port}` }
}

/** Opens a stream with undici and returns the response with its parsed events. */
export async function open (url: string, options: Partial<Dispatcher.RequestOptions> = {}) {
  const res = await request(url, options as Dispatcher.RequestOptions)
  return { res, events: parseEventStream(res.body)[Symbol.asyncIterator]() }
}

/** Reads `n` events (or items of a subscription), failing instead of hanging when the stream ends first. */
export async function take<T = SseItem<string>> (events: AsyncIterator<T>, n: number): Promise<T[]> {
  const out: T[] = []
  while (out.length < n) {
    const step = await events.next()
    if (step.done === true) throw new Error(`stream ended after ${out.length} of ${n} events`)
    out.push(step.value)
  }
  return out
}

/** Rejects (instead of hanging) when `promise` takes longer than `ms`. */
export function within<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  const late = sleep(ms, undefined, { ref: false }).then(() => { throw new Error(`timed out: ${what}`) })
  return Promise.race([promise, late])
}

/** Every event until the stream ends. */
export async function all (events: AsyncIterator<SseItem<string>>): Promise<Array<SseItem<string>>> {
  const out: Array<SseItem<string>> = []
  for (let step = await events.next(); step.done !== true; step = await events.next()) out.push(step.value)
  return out
}

/** A promise with its resolve function, for a test to await what another part of it signals. */
export function deferred<T = void> (): { promise: Promise<T>, resolve: (value: T) => void } {
  let resolve!: (value: T) => void
  const promise = new Promise<T>(_resolve => { resolve = _resolve })
  return { promise, resolve }
}

/**
 * Whether `promise` settles within `ms`: a test asserts it (`t.ok(await settles(stopped.promise), '…')`) and fails
 * then and there, naming what did not happen, instead of waiting for the test's own timeout.
 */
export async function settles (promise: Promise<unknown>, ms = 5000): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<false>(resolve => { timer = setTimeout(resolve, ms, false) })
  try {
    return await Promise.race([promise.then(() => true, () => true), late])
  } finally {
    clearTimeout(timer)
  }
}

/** Runs `tsx <example>` as a user would, on a free port; resolves with its URL once it listens. */
export async function runExample (t: Test, example: string, env: Record<string, string> = {}): Promise<string> {
  const root = fileURLToPath(new URL('..', import.meta.url))
  // tap follows child processes for coverage: this one runs lib/ through tsx, whose line maps differ from
  // ts-node's, so its coverage is turned off (the example is checked by what it serves)
  const child = spawn(process.execPath, ['--import', 'tsx', example], {
    cwd: root,
    env: { ...process.env, _TAPJS_PROCESSINFO_COVERAGE_: '0', PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  t.teardown(async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM')
      await once(child, 'exit')
    }
  })
  for await (const line of createInterface({ input: child.stdout })) {
    const match = /"msg":"Server listening at (http:\/\/127\.0\.0\.1:\d+)"/.exec(line)
    if (match?.[1] !== undefined) {
      child.stdout.resume() // its later log lines are drained, so a full pipe never blocks it
      return match[1]
    }
  }
  throw new Error(`${example} exited before listening`)
}
