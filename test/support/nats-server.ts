// A nats-server of a test's own (JetStream, its store in a temporary directory), on a free loopback port: a test can
// kill it (-9), stall it (SIGSTOP) and start it again on the same port, with its store or a new empty one — what the
// shared server at NATS_URL must never suffer.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, killHard, launchWithRetries, ready, watchdog } from './child-server.js'

const BINARY = existsSync('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : 'nats-server'

export interface NatsServer {
  readonly url: string
  /** SIGSTOP, resolved once the server is stopped: it holds its connections and answers nothing until `resume()`. */
  pause: () => Promise<void>
  /** `kill -9`. */
  kill: () => Promise<void>
  /** Starts it again on the same port: with its store, or (`fresh`) an empty one (a server that lost its data). */
  restart: (fresh?: boolean) => Promise<void>
  resume: () => void
  stop: () => Promise<void>
}

export async function startNats (): Promise<NatsServer> {
  const root = await mkdtemp(join(tmpdir(), 'fastify-typed-sse-nats-'))
  let store = 0
  let port = 0
  let proc: ChildProcess | undefined
  const launch = async (): Promise<void> => {
    proc = spawn(BINARY, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', join(root, String(store)),
      '-P', join(root, 'pid')],
    { stdio: ['ignore', 'ignore', 'pipe'] })
    await ready(proc, 'nats-server', 'stderr', 'Server is ready')
    proc.stderr?.resume()
  }
  await launchWithRetries(async () => {
    port = await freePort()
    await launch()
  }, root)
  const kill = (): Promise<void> => killHard(proc)
  const guard = watchdog(root)
  return {
    url: `nats://127.0.0.1:${port}`,
    kill,
    restart: async (fresh = false) => {
      if (fresh) store++
      await launch()
    },
    pause: async () => {
      proc?.kill('SIGSTOP')
      // a signal is delivered asynchronously: wait (at most 2 s) until the kernel says the process is stopped
      for (let i = 0; i < 200 && !/^\d+ \(.*\) T/.test(await readFile(`/proc/${String(proc?.pid)}/stat`, 'utf8')); i++) {
        await sleep(10)
      }
    },
    resume: () => { proc?.kill('SIGCONT') },
    stop: async () => {
      proc?.kill('SIGCONT')
      await kill()
      await rm(root, { recursive: true, force: true })
      guard.kill('SIGKILL')
    }
  }
}
