// A redis-server of a test's own, on a free loopback port, in a temporary directory: a test can kill it (-9) and
// start it again on the same port with its append-only file, which the shared Redis must never suffer.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

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

/** A TCP port with nothing listening on it (there is a race with other processes; a start that loses it retries). */
export async function freePort (): Promise<number> {
  const s = createServer()
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  const { port } = s.address() as AddressInfo
  await new Promise(resolve => s.close(resolve))
  return port
}

/** Resolves once the server says it accepts connections; rejects when it exits first or takes over 10 s. */
async function ready (proc: ChildProcess): Promise<void> {
  let output = ''
  const started = new Promise<void>((resolve, reject) => {
    proc.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      if (output.includes('Ready to accept connections')) resolve()
    })
    proc.once('exit', code => reject(new Error(`redis-server exited (${String(code)}): ${output.slice(-500)}`)))
    proc.once('error', err => reject(new Error(`redis-server could not be started (is it installed?): ${err.message}`)))
  })
  const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000)
  try {
    await started
  } finally {
    clearTimeout(timer)
  }
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
    await ready(proc)
  }
  for (let attempt = 0; ; attempt++) {
    port = await freePort()
    if (args.includes('--cluster-enabled')) bus = ['--cluster-port', String(await freePort())]
    try {
      await launch()
      break
    } catch (err) {
      if (attempt === 2) {
        await rm(dir, { recursive: true, force: true })
        throw err
      }
    }
  }
  const kill = async (): Promise<void> => {
    const running = proc
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return
    const exited = once(running, 'exit')
    running.kill('SIGKILL')
    await exited
  }
  // A test process that times out or is killed ends without its teardown: a watchdog outside it (its own process
  // group) then kills the server, whatever pid a restart gave it, and removes the directory.
  const watchdog = spawn('sh', ['-c', 'while kill -0 "$1" 2>/dev/null; do sleep 0.2; done; ' +
    'kill -9 "$(cat "$2/pid")" 2>/dev/null; rm -rf "$2"', 'watchdog', String(process.pid), dir],
  { detached: true, stdio: 'ignore' })
  watchdog.unref()
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
      watchdog.kill('SIGKILL')
    }
  }
}
