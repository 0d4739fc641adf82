#!/usr/bin/env node
// `npm run check:fresh-app`: the package as a new user meets it. Packs this checkout, then in a new directory
// outside it makes an app per pairing with what `npm i` gives today, the packed package added:
//
//   typebox1   fastify @fastify/type-provider-typebox typebox          (provider 6, typebox 1.x)
//   sinclair   fastify @fastify/type-provider-typebox@5 @sinclair/typebox@0.34
//   none       fastify, no TypeBox at all
//
// and in each, with the newest TypeScript and with 5.9, strict and `skipLibCheck: false` (so the package's own
// declarations are checked, its optional peers missing included):
//
// - every TypeScript sample of README.md and docs/ compiles (the `none` app: those that use no TypeBox);
// - a wrong yield fails, on its own line: the lines marked WRONG below are exactly the lines tsc reports;
// - at run time a typed route serializes and validates with the app's TypeBox, and the client checks with it.
//
// It needs the npm registry (or a warm npm cache), so it is not part of `npm test`: run it by hand or in CI.
// `--keep` leaves the apps in place and prints where.
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { isDeepStrictEqual } from 'node:util'
import { compile, flavours, writeSamples } from './samples.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const keep = process.argv.includes('--keep')
const npm = process.env.npm_execpath === undefined ? ['npm'] : [process.execPath, process.env.npm_execpath]

// what the docs' samples import besides the package and a TypeBox
const COMMON = ['fastify', 'typescript', 'ts59@npm:typescript@~5.9', '@types/node', 'ioredis', '@fastify/swagger',
  'prom-client', '@opentelemetry/api', 'undici']
const APPS = {
  typebox1: { packages: ['@fastify/type-provider-typebox', 'typebox'], typebox: 'typebox' },
  sinclair: { packages: ['@fastify/type-provider-typebox@5', '@sinclair/typebox@0.34'], typebox: '@sinclair/typebox' },
  none: { packages: [], typebox: undefined }
}

function sh (command, args, cwd) {
  const run = spawnSync(command, args, { cwd, encoding: 'utf8', timeout: 600_000, shell: process.platform === 'win32' })
  if (run.status !== 0) {
    throw new Error(`${[command, ...args].join(' ')} failed:\n${run.stdout ?? ''}${run.stderr ?? ''}${run.error?.message ?? ''}`)
  }
  return run.stdout
}

// A wrong yield in each handler shape: tsc must report these lines, and no other.
const WRONG_TYPED = `import Fastify from 'fastify'
import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import ssePlugin, { sseSchema, type SseGenerator } from 'fastify-typed-sse'

const app = Fastify().withTypeProvider<TypeBoxTypeProvider>()
await app.register(ssePlugin)
const ticks = sseSchema(Type.Object({ now: Type.String() }))
app.get('/annotated', { schema: { response: { 200: ticks } } }, async function * (): SseGenerator<typeof ticks> {
  yield { data: { now: new Date().toISOString() } }
  yield { data: { now: 42 } } // WRONG
  yield { data: { now: 'ok' }, evnt: 'tick' } // WRONG
})
// unannotated, TypeScript reports a wrong yield on the handler as a whole
app.get('/unannotated', { schema: { response: { 200: ticks } } }, async function * () { // WRONG
  yield { data: { now: 42 } }
})
app.get('/array', { schema: { response: { 200: ticks } } }, () => [{ data: { now: 42 } }]) // WRONG
app.get('/reply', { schema: { response: { 200: ticks } } }, (request, reply) => reply.sse([{ data: { now: 42 } }])) // WRONG
`
const WRONG_UNTYPED = `import Fastify from 'fastify'
import ssePlugin, { type SseGenerator } from 'fastify-typed-sse'

const app = Fastify()
await app.register(ssePlugin)
app.get('/any', async function * (): SseGenerator {
  yield { data: { anything: true } }
  yield { data: 1, evnt: 'x' } // WRONG
})
app.get('/reply', (request, reply) => reply.sse([{ data: 1, evnt: 'x' }])) // WRONG
`

// At run time: the compiled serializer drops `extra`, validate refuses `n: 'two'`, the client checks with the
// app's TypeBox. Prints what it saw as JSON.
const smoke = typebox => `import Fastify from 'fastify'
${typebox === undefined ? '' : `import { Type } from '${typebox}'`}
import ssePlugin, { sseSchema } from 'fastify-typed-sse'
import { connect } from 'fastify-typed-sse/client'
import { collect } from 'fastify-typed-sse/testing'

const app = Fastify()
await app.register(ssePlugin, { validate: true, heartbeat: false })
${typebox === undefined
  ? "app.get('/ticks', async function * () { yield { event: 'tick', data: { n: 1 } } })"
  : `const Tick = Type.Object({ n: Type.Number() })
const ticks = sseSchema({ tick: Tick })
app.get('/ticks', { schema: { response: { 200: ticks } } }, async function * () {
  yield { event: 'tick', data: { n: 1, extra: true } }
  yield { event: 'tick', data: { n: 'two' } }
})`}
app.get('/bad', async function * () { yield { data: { n: 'x' } } })
const url = await app.listen({ port: 0, host: '127.0.0.1' })
const out = { collected: await collect(app, { url: '/ticks'${typebox === undefined ? '' : ', schema: ticks'} }) }
${typebox === undefined
  ? ''
  : `try {
  for await (const event of connect(url + '/bad', { schema: Tick, reconnect: false })) out.unchecked = event
} catch (err) {
  out.refused = err.code
}`}
await app.close()
console.log(JSON.stringify(out))
`

function expectedSmoke (typebox) {
  return typebox === undefined
    ? { collected: [{ event: 'tick', data: { n: 1 } }] }
    : { collected: [{ event: 'tick', data: { n: 1 } }], refused: 'FST_SSE_CLIENT_DATA' }
}

/**
 * An error in another package's declarations: `skipLibCheck: false` checks them all, and some have their own
 * (ioredis 5 imports the untyped `redis-errors`); only this package's are of interest here.
 */
function othersDeclarations (failure) {
  return /^\.\.[\\/]node_modules[\\/]/.test(failure) && !/[\\/]node_modules[\\/]fastify-typed-sse[\\/]/.test(failure)
}

function wrongLines (code) {
  return code.split('\n').flatMap((line, i) => line.includes('// WRONG') ? [i + 1] : [])
}

function checkApp (name, tarball, base) {
  const { packages, typebox } = APPS[name]
  const dir = join(base, name)
  mkdirSync(dir)
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `fresh-${name}`, private: true, type: 'module' }, null, 2))
  sh(npm[0], [...npm.slice(1), 'install', '--no-audit', '--no-fund', '--loglevel=error', ...COMMON, ...packages, tarball], dir)
  const installed = JSON.parse(sh(npm[0], [...npm.slice(1), 'ls', '--depth=0', '--json'], dir)).dependencies
  const versions = Object.entries(installed).filter(([n]) => /typebox|^typescript$|^ts59$|^fastify$/.test(n))
    .map(([n, { version }]) => `${n}@${version}`).join(' ')

  const samples = join(dir, 'samples')
  const origin = writeSamples(root, samples, flavours[name]?.app ?? {}, { skipLibCheck: false })
  if (typebox === undefined) { // the samples that need no TypeBox
    for (const [file] of origin) {
      if (/typebox/.test(readFileSync(join(samples, file), 'utf8'))) {
        rmSync(join(samples, file))
        origin.delete(file)
      }
    }
  }
  const wrong = typebox === undefined ? WRONG_UNTYPED : WRONG_TYPED
  writeFileSync(join(samples, 'wrong.ts'), wrong)
  const problems = []
  for (const tsc of ['typescript', 'ts59']) {
    const failures = compile(join(dir, 'node_modules', tsc, 'bin', 'tsc'), samples, origin)
    const reported = new Set()
    for (const failure of failures) {
      const at = /^(?:.*[\\/])?wrong\.ts\((\d+),\d+\)/.exec(failure)
      if (at !== null) reported.add(Number(at[1]))
      else if (!othersDeclarations(failure)) problems.push(`${tsc}: ${failure}`)
    }
    const expected = wrongLines(wrong)
    const missed = expected.filter(line => !reported.has(line))
    const extra = [...reported].filter(line => !expected.includes(line))
    if (missed.length > 0 || extra.length > 0) {
      problems.push(`${tsc}: wrong.ts should fail on lines ${expected.join(', ')}; it failed on ${[...reported].join(', ') || 'none'}`)
    }
  }
  writeFileSync(join(dir, 'smoke.mjs'), smoke(typebox))
  const seen = sh(process.execPath, ['smoke.mjs'], dir).trim().split('\n').at(-1)
  if (!isDeepStrictEqual(JSON.parse(seen), expectedSmoke(typebox))) {
    problems.push(`at run time: expected ${JSON.stringify(expectedSmoke(typebox))}, got ${seen}`)
  }
  return { versions, samples: origin.size, problems }
}

const base = mkdtempSync(join(tmpdir(), 'fastify-typed-sse-fresh-'))
let failed = false
try {
  sh(npm[0], [...npm.slice(1), 'run', '--silent', 'build'], root)
  sh(npm[0], [...npm.slice(1), 'pack', '--ignore-scripts', '--silent', '--pack-destination', base], root)
  const tarball = join(base, readdirSync(base).find(file => file.endsWith('.tgz')))
  for (const name of Object.keys(APPS)) {
    const { versions, samples, problems } = checkApp(name, tarball, base)
    failed ||= problems.length > 0
    console.log(`fresh app ${name} (${versions}): ${samples} samples, ` +
      (problems.length === 0 ? 'all compile, each wrong yield fails on its line, run time fine' : `${problems.length} problem(s):\n  ${problems.join('\n  ')}`))
  }
} finally {
  if (keep) console.log(`apps kept in ${base}`)
  else rmSync(base, { recursive: true, force: true })
}
process.exit(failed ? 1 : 0)
