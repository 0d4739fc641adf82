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
// - The PostgreSQL channel tests use the PostgreSQL at PG_URL (default postgres://postgres@127.0.0.1:5432/test).
//   When none answers on a loopback address and pg_ctlcluster exists (Debian), its clusters are started.
// - The NATS channel tests use the NATS server at NATS_URL (default nats://127.0.0.1:4222), with JetStream. When
//   none answers on a loopback address and nats-server exists, one is started for the run and stopped afterwards;
//   the NATS fault tests start nats-servers of their own (installed with apt-get on Debian as root when missing).
//
// Quiet when all is well: anything that is missing is said in one line, with how to provide it.
import { spawn } from 'node:child_process'
import { accessSync, constants, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const windows = process.platform === 'win32'

/** The servers started for the run (redis-server, nats-server); stopped on every way out. */
const started = []
/** The step running now, so that a signal can stop it. */
let current = null
/** Set once we are on the way out: the first exit code wins, later failures are consequences. */
let finishing = null

function fail (message, code = 1) {
  if (finishing === null) process.stderr.write(`npm test: ${message}\n`)
  return finish(code)
}

function finish (code) {
  finishing ??= stopServers().then(() => process.exit(code))
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
    await stopServers()
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
    ...(which('redis-server') === null || which('redis-cli') === null ? ['redis-server'] : []),
    ...(which('nats-server') === null && !executable('/usr/sbin/nats-server') ? ['nats-server'] : [])
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
      : []),
    ...(lacking.includes('nats-server') ? ['nats-server for the NATS fault tests (apt-get install nats-server)'] : [])
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
  const loopback = isLoopback(host)
  if (server === null || !loopback) {
    const why = server === null ? 'redis-server is not installed' : `${host} is not local, so none is started`
    return fail(`the Redis channel tests need a Redis at ${url.href}, none answers and ${why}: ` +
      'start one (redis-server, or docker run -p 6379:6379 redis:7) or set REDIS_URL')
  }
  const child = await startServer('redis-server', server, dir => [
    '--port', String(port), '--bind', host === 'localhost' ? '127.0.0.1' : host,
    '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no'
  ], () => ping(host, port, 500))
  if (child === null) return fail(`redis-server could not be started on ${host}:${port} for the Redis channel tests (above)`)
}

/**
 * Starts a server for the run in a temporary directory; resolves with it once `answers()` (up to 5 s), or with null
 * (its output said) when it does not.
 */
async function startServer (name, file, args, answers) {
  const dir = mkdtempSync(join(tmpdir(), `fastify-typed-sse-${name}-`))
  const child = spawn(file, args(dir), { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', chunk => { output += chunk })
  child.stderr.on('data', chunk => { output += chunk })
  const exited = new Promise(resolve => child.once('close', resolve))
  child.once('error', err => { output += err.message })
  started.push({ child, dir, exited })
  for (let i = 0; i < 50 && child.exitCode === null && !(await answers()); i++) await sleep(100)
  if (child.exitCode !== null || !(await answers())) {
    process.stderr.write(output)
    return null
  }
  // it runs for the tests only: its output is of no interest unless it dies
  child.stdout.resume()
  child.stderr.resume()
  return child
}

async function stopServers () {
  await Promise.all(started.splice(0).map(async ({ child, dir, exited }) => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    }
    rmSync(dir, { recursive: true, force: true })
  }))
}

// ---- PostgreSQL and NATS ---------------------------------------------------------------------------------------
/** Resolves with the first bytes a server sends after `hello` (or on connecting), or '' when none come in time. */
function greeting (host, port, hello, timeout = 2000) {
  return new Promise(resolve => {
    const socket = new Socket()
    const done = text => { socket.destroy(); resolve(text) }
    socket.setTimeout(timeout, () => done(''))
    socket.on('error', () => done(''))
    socket.on('data', data => done(String(data)))
    socket.connect(port, host, () => { if (hello !== null) socket.write(hello) })
  })
}

/** An SSLRequest: a PostgreSQL server answers it with one byte, S or N. */
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 4, 210, 22, 47])

function isLoopback (host) {
  return ['127.0.0.1', 'localhost', '::1'].includes(host)
}

async function checkPostgres () {
  const url = new URL(process.env.PG_URL || 'postgres://postgres@127.0.0.1:5432/test')
  const host = url.hostname.replace(/^\[|\]$/g, '')
  const port = Number(url.port || 5432)
  const answers = async () => /^[SN]/.test(await greeting(host, port, SSL_REQUEST))
  if (await answers()) return
  const ctl = which('pg_ctlcluster') ?? (executable('/usr/bin/pg_ctlcluster') ? '/usr/bin/pg_ctlcluster' : null)
  if (ctl !== null && isLoopback(host) && existsSync('/etc/postgresql')) {
    // every cluster of this machine (version/name), as the service would start them
    for (const version of readdirSync('/etc/postgresql')) {
      for (const cluster of readdirSync(join('/etc/postgresql', version))) {
        await run(ctl, [version, cluster, 'start'], { stdio: ['ignore', 'pipe', 'pipe'] })
      }
    }
    for (let i = 0; i < 50 && !(await answers()); i++) await sleep(100)
    if (await answers()) return
  }
  return fail(`the PostgreSQL channel tests need a PostgreSQL at ${url.href} and none answers: start one ` +
    '(pg_ctlcluster 15 main start, or docker run -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:15 ' +
    'and createdb test) or set PG_URL')
}

async function checkNats () {
  const url = new URL(process.env.NATS_URL || 'nats://127.0.0.1:4222')
  const host = url.hostname.replace(/^\[|\]$/g, '')
  const port = Number(url.port || 4222)
  const info = () => greeting(host, port, null)
  const text = await info()
  if (text.startsWith('INFO')) {
    if (/"jetstream":\s*true/.test(text)) return
    return fail(`the NATS server at ${url.href} runs without JetStream: start it with -js, or set NATS_URL`)
  }
  const server = which('nats-server') ?? (executable('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : null)
  if (server === null || !isLoopback(host)) {
    const why = server === null ? 'nats-server is not installed' : `${host} is not local, so none is started`
    return fail(`the NATS channel tests need a NATS server with JetStream at ${url.href}, none answers and ${why}: ` +
      'start one (nats-server -js, or docker run -p 4222:4222 nats -js) or set NATS_URL')
  }
  const child = await startServer('nats-server', server, dir => [
    '-a', host === 'localhost' ? '127.0.0.1' : host, '-p', String(port), '-js', '-sd', dir
  ], async () => (await info()).startsWith('INFO'))
  if (child === null) return fail(`nats-server could not be started on ${host}:${port} for the NATS channel tests (above)`)
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
  await checkPostgres()
  await checkNats()
  for (const script of ['build', 'typecheck', 'typecheck:ts7', 'lint', 'deps', 'samples', 'check:package']) {
    if (pkg.scripts?.[script] === undefined) continue
    const { code } = await npmRun(script)
    if (code !== 0) await fail(`npm run ${script} failed`, code)
  }
  const tap = join(root, 'node_modules', '.bin', windows ? 'tap.cmd' : 'tap')
  const { code } = await run(tap, process.argv.slice(2))
  await finish(code)
}

// the servers started here are stopped whatever happens
main().catch(err => fail(err?.stack ?? String(err)))
