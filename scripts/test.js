#!/usr/bin/env node
// `npm test`: prepares what the tests need, then build, typecheck (TypeScript 5.9, then 7), lint, deps (no import
// circle, no module over 450 lines), samples, the package checks (publint, attw, links) and tap, each step that
// package.json defines, stopping at the first failure. Arguments go to tap (`npm test -- test/encode.test.ts`).
// The tests themselves run on TypeScript 5.9: tap loads .ts files through the TypeScript compiler API, which
// TypeScript 7 (a native binary) does not offer.
//
// - The browser tests drive Chromium (CHROMIUM_PATH, default /usr/bin/chromium) and make their TLS certificate
//   with the openssl CLI. When either is missing on Debian and we are root, they are installed with apt-get.
// - The Redis channel tests use the Redis at REDIS_URL (default redis://127.0.0.1:6379). When none answers on a
//   loopback address and redis-server exists, one is started for the run on that port and stopped afterwards.
// - The Redis fault and Redis Cluster tests start redis-servers of their own and join a cluster with redis-cli:
//   when either is missing on Debian and we are root, they are installed with apt-get (redis-server brings both).
//
// Quiet when all is well: anything that is missing is said in one line, with how to provide it.
import { spawn } from 'node:child_process'
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const windows = process.platform === 'win32'

/** Set once a redis-server of our own runs; stopped on every way out. */
let redis = null
/** The step running now, so that a signal can stop it. */
let current = null
/** Set once we are on the way out: the first exit code wins, later failures are consequences. */
let finishing = null

function fail (message, code = 1) {
  if (finishing === null) process.stderr.write(`npm test: ${message}\n`)
  return finish(code)
}

function finish (code) {
  finishing ??= stopRedis().then(() => process.exit(code))
  return finishing
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, async () => {
    if (finishing !== null) return
    finishing = new Promise(() => {}) // nothing else speaks or exits meanwhile
    const step = current
    if (step !== null && step.exitCode === null) {
      // the step ends first (it may be using the Redis), within 5 s
      const ended = new Promise(resolve => step.once('close', resolve))
      stop(step, signal)
      await Promise.race([ended, sleep(5000)])
    }
    await stopRedis()
    process.exit(128 + ({ SIGHUP: 1, SIGINT: 2, SIGTERM: 15 })[signal])
  })
}

function executable (file) {
  try {
    accessSync(file, constants.X_OK)
    return true
  } catch {
    return false
  }
}

function which (name) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir !== '' && executable(join(dir, name))) return join(dir, name)
  }
  return null
}

/** Signals a step and everything it started (`npm run` does not pass a signal on through its shell). */
function stop (child, signal) {
  try {
    if (windows) child.kill(signal)
    else process.kill(-child.pid, signal)
  } catch {}
}

/** Runs a command to its end, in a process group of its own; resolves with its exit code (a signal is a failure). */
function run (command, args, options = {}) {
  if (finishing !== null) return finishing
  return new Promise(resolve => {
    const child = spawn(command, args, {
      cwd: root, stdio: ['ignore', 'inherit', 'inherit'], shell: windows, detached: !windows, ...options
    })
    current = child
    let output = ''
    child.stdout?.on('data', chunk => { output += chunk })
    child.stderr?.on('data', chunk => { output += chunk })
    child.on('error', err => { output += String(err.message) + '\n' })
    child.on('close', code => {
      current = null
      resolve({ code: code ?? 1, output })
    })
  })
}

// ---- Chromium, openssl, redis-server and redis-cli -------------------------------------------------------------
async function checkTools () {
  const chromium = process.env.CHROMIUM_PATH || '/usr/bin/chromium'
  const missing = () => [
    ...(executable(chromium) ? [] : ['chromium']),
    ...(which('openssl') === null ? ['openssl'] : []),
    ...(which('redis-server') === null || which('redis-cli') === null ? ['redis-server'] : [])
  ]
  let lacking = missing()
  if (lacking.length === 0) return
  const apt = existsSync('/etc/debian_version') && process.getuid?.() === 0 && which('apt-get') !== null
  if (apt) {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
    const quiet = { stdio: ['ignore', 'pipe', 'pipe'], env }
    for (const args of [['update'], ['install', '-y', '--no-install-recommends', ...lacking]]) {
      const { code, output } = await run('apt-get', ['-q', ...args], quiet)
      if (code !== 0) {
        process.stderr.write(output)
        return fail(`apt-get ${args[0]} failed (above); install ${lacking.join(' and ')} yourself`)
      }
    }
    lacking = missing()
    if (lacking.length === 0) return
  }
  const how = [
    ...(lacking.includes('chromium')
      ? [`Chromium at ${chromium} (apt-get install chromium, or set CHROMIUM_PATH)`]
      : []),
    ...(lacking.includes('openssl') ? ['the openssl CLI (apt-get install openssl)'] : []),
    ...(lacking.includes('redis-server')
      ? ['redis-server and redis-cli for the Redis fault and cluster tests (apt-get install redis-server)']
      : [])
  ]
  return fail(`the tests need ${how.join(' and ')}`)
}

// ---- Redis -----------------------------------------------------------------------------------------------------
/** True when something answers PING like a Redis (NOAUTH counts: it is there, the tests bring the password). */
function ping (host, port, timeout = 2000) {
  return new Promise(resolve => {
    const socket = new Socket()
    const done = ok => { socket.destroy(); resolve(ok) }
    socket.setTimeout(timeout, () => done(false))
    socket.on('error', () => done(false))
    socket.on('data', data => done(/^\+PONG|^-NOAUTH/.test(String(data))))
    socket.connect(port, host, () => socket.write('PING\r\n'))
  })
}

async function checkRedis () {
  const url = new URL(process.env.REDIS_URL || 'redis://127.0.0.1:6379')
  const host = url.hostname.replace(/^\[|\]$/g, '')
  const port = Number(url.port || 6379)
  if (await ping(host, port)) return
  const server = which('redis-server')
  const loopback = ['127.0.0.1', 'localhost', '::1'].includes(host)
  if (server === null || !loopback) {
    const why = server === null ? 'redis-server is not installed' : `${host} is not local, so none is started`
    return fail(`the Redis channel tests need a Redis at ${url.href}, none answers and ${why}: ` +
      'start one (redis-server, or docker run -p 6379:6379 redis:7) or set REDIS_URL')
  }
  const dir = mkdtempSync(join(tmpdir(), 'fastify-typed-sse-redis-'))
  const child = spawn(server, [
    '--port', String(port), '--bind', host === 'localhost' ? '127.0.0.1' : host,
    '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no'
  ], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', chunk => { output += chunk })
  child.stderr.on('data', chunk => { output += chunk })
  const exited = new Promise(resolve => child.once('close', resolve))
  child.once('error', err => { output += err.message })
  redis = { child, dir, exited }
  // up to 5 s for it to answer
  for (let i = 0; i < 50 && child.exitCode === null && !(await ping(host, port, 500)); i++) await sleep(100)
  if (child.exitCode !== null || !(await ping(host, port, 500))) {
    process.stderr.write(output)
    return fail(`redis-server could not be started on ${host}:${port} for the Redis channel tests (above)`)
  }
  // it runs for the tests only: its output is of no interest unless it dies
  child.stdout.resume()
  child.stderr.resume()
}

async function stopRedis () {
  if (redis === null) return
  const { child, dir, exited } = redis
  redis = null
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(timer)
  }
  rmSync(dir, { recursive: true, force: true })
}

// ---- the steps -------------------------------------------------------------------------------------------------
function npmRun (script) {
  // the npm that runs us, when there is one (`npm test`); otherwise the one on PATH
  const npm = process.env.npm_execpath
  return npm && !windows
    ? run(process.execPath, [npm, 'run', '--silent', script])
    : run('npm', ['run', '--silent', script])
}

async function main () {
  await checkTools()
  await checkRedis()
  for (const script of ['build', 'typecheck', 'typecheck:ts7', 'lint', 'deps', 'samples', 'check:package']) {
    if (pkg.scripts?.[script] === undefined) continue
    const { code } = await npmRun(script)
    if (code !== 0) await fail(`npm run ${script} failed`, code)
  }
  const tap = join(root, 'node_modules', '.bin', windows ? 'tap.cmd' : 'tap')
  const { code } = await run(tap, process.argv.slice(2))
  await finish(code)
}

// a Redis started here is stopped whatever happens
main().catch(err => fail(err?.stack ?? String(err)))
