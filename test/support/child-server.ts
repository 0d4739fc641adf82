// What the test helpers that run a server of their own (redis-server, nats-server) share: a free loopback port,
// waiting for the server's "ready" line, a start that retries on another port, kill -9, and a watchdog that
// stops the server if the test process dies without its teardown.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { rm } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'

/** A TCP port with nothing listening on it (there is a race with other processes; a start that loses it retries). */
export async function freePort (): Promise<number> {
  const s = createServer()
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  const { port } = s.address() as AddressInfo
  await new Promise(resolve => s.close(resolve))
  return port
}

/**
 * Resolves once `name` writes `marker` on `stream`; rejects when it exits first or takes over 10 s (it is then
 * killed).
 */
export async function ready (proc: ChildProcess, name: string, stream: 'stdout' | 'stderr', marker: string): Promise<void> {
  let output = ''
  const started = new Promise<void>((resolve, reject) => {
    proc[stream]?.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      if (output.includes(marker)) resolve()
    })
    proc.once('exit', code => reject(new Error(`${name} exited (${String(code)}): ${output.slice(-500)}`)))
    proc.once('error', err => reject(new Error(`${name} could not be started (is it installed?): ${err.message}`)))
  })
  const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000)
  try {
    await started
  } finally {
    clearTimeout(timer)
  }
}

/** Runs `launch` (which picks its ports) up to three times; after the last failure removes `dir` and throws. */
export async function launchWithRetries (launch: () => Promise<void>, dir: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await launch()
      return
    } catch (err) {
      if (attempt === 2) {
        await rm(dir, { recursive: true, force: true })
        throw err
      }
    }
  }
}

/** `kill -9`, resolved once it exited (at once when it is not running). */
export async function killHard (proc: ChildProcess | undefined): Promise<void> {
  if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return
  const exited = once(proc, 'exit')
  proc.kill('SIGKILL')
  await exited
}

/**
 * A test process that times out or is killed ends without its teardown: a watchdog outside it (its own process
 * group) then kills the server whose pid is in `dir/pid`, whatever pid a restart gave it, and removes `dir`.
 */
export function watchdog (dir: string): ChildProcess {
  const child = spawn('sh', ['-c', 'while kill -0 "$1" 2>/dev/null; do sleep 0.2; done; ' +
    'kill -9 "$(cat "$2/pid")" 2>/dev/null; rm -rf "$2"', 'watchdog', String(process.pid), dir],
  { detached: true, stdio: 'ignore' })
  child.unref()
  return child
}
