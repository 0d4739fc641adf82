// A redis-server of a test's own, on a free loopback port, in a temporary directory: a test can kill it (-9) and
// start it again on the same port with its append-only file, which the shared Redis must never suffer.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, killHard, launchWithRetries, ready, watchdog } from './child-server.js'

export interface RedisServer {
  readonly port: number
  readonly url: string
  /** `kill -9`: no shutdown, no final write. */
  kill: () => Promise<void>
  /** Starts it again on the same port and directory (with what its append-only file kept). */
  restart: () => Promise<void>
  /** SIGSTOP: it holds its connections and answers nothing until `resume()` (a stalled Redis). */
  pause: () => void
  resume: () => void
  /** Stops it and removes its directory. */
  stop: () => Promise<void>
}

/**
 * Starts `redis-server` on a free port. `args` are extra configuration (`['--cluster-enabled', 'yes']`); the
 * append-only file is on and synced on every write, so what Redis acknowledged survives a `kill -9`.
 */
export async function startRedis (args: string[] = []): Promise<RedisServer> {
  const dir = await mkdtemp(join(tmpdir(), 'fastify-typed-sse-redis-'))
  let port = 0
  // a cluster node's bus listens on port + 10000 unless told: none above 55535, and that port may be taken
  let bus: string[] = []
  let proc: ChildProcess | undefined
  const launch = async (): Promise<void> => {
    const config = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '',
      '--pidfile', join(dir, 'pid'), '--appendonly', 'yes', '--appendfsync', 'always', '--logfile', '', ...bus, ...args]
    proc = spawn('redis-server', config, { stdio: ['ignore', 'pipe', 'inherit'] })
    await ready(proc, 'redis-server', 'stdout', 'Ready to accept connections')
  }
  await launchWithRetries(async () => {
    port = await freePort()
    if (args.includes('--cluster-enabled')) bus = ['--cluster-port', String(await freePort())]
    await launch()
  }, dir)
  const kill = (): Promise<void> => killHard(proc)
  const guard = watchdog(dir)
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    kill,
    restart: launch,
    pause: () => { proc?.kill('SIGSTOP') },
    resume: () => { proc?.kill('SIGCONT') },
    stop: async () => {
      await kill()
      await rm(dir, { recursive: true, force: true })
      guard.kill('SIGKILL')
    }
  }
}
