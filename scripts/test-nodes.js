#!/usr/bin/env node
// `npm run test:nodes`: the whole `npm test` on every Node major the package supports (the CI matrix), one after
// the other (each run uses both cores, builds dist/ and starts Redis servers on fixed ports: two at once would
// collide). The Node running this script runs its own major; any other is installed from the npm registry's
// `node-<platform>-<arch>` package (its bin/node) into node_modules/.cache/nodes/<major> — once, and npm's cache
// serves a later install offline. A major whose newest registry build is below `engines.node` is not tested, and
// says so (the registry's Node 20 stops at 20.8: run this on Node 20 itself to include 20).
//
//   npm run test:nodes                        # 20, 22 and 24
//   npm run test:nodes -- --nodes=22,24       # some of them
//   npm run test:nodes -- test/encode.test.ts # arguments for tap, as `npm test -- ...`
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { delimiter, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const MAJORS = [20, 22, 24]
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const minimum = /^>=\s*(\d+)\.(\d+)/.exec(pkg.engines.node).slice(1).map(Number) // ">=20.19" → [20, 19]

const option = process.argv.find(arg => arg.startsWith('--nodes='))
const majors = option === undefined ? MAJORS : option.slice('--nodes='.length).split(',').map(Number)
const tapArgs = process.argv.slice(2).filter(arg => arg !== option)
for (const major of majors) {
  if (!MAJORS.includes(major)) {
    console.error(`test:nodes: --nodes takes some of ${MAJORS.join(', ')}, got ${major}`)
    process.exit(1)
  }
}

function version (node) {
  const run = spawnSync(node, ['-v'], { encoding: 'utf8' })
  return run.status === 0 ? run.stdout.trim().slice(1) : undefined
}

function supported (v) {
  const [major, minor] = v.split('.').map(Number)
  return major > minimum[0] || (major === minimum[0] && minor >= minimum[1])
}

/** The path of a Node of `major`: this one, or the registry's, installed into the cache (once). */
function nodeOf (major) {
  if (Number(process.versions.node.split('.')[0]) === major) return process.execPath
  const platform = process.platform === 'win32' ? 'win' : process.platform
  const name = `node-${platform}-${process.arch}`
  const prefix = join(root, 'node_modules', '.cache', 'nodes', String(major))
  const node = join(prefix, 'node_modules', name, 'bin', process.platform === 'win32' ? 'node.exe' : 'node')
  if (!existsSync(node)) {
    mkdirSync(prefix, { recursive: true })
    console.log(`test:nodes: installing ${name}@${major} into ${prefix}`)
    const npm = process.env.npm_execpath
    const [command, args] = npm === undefined ? ['npm', []] : [process.execPath, [npm]]
    const install = spawnSync(command, [
      ...args, 'install', '--prefix', prefix, '--no-save', '--no-package-lock', '--no-audit', '--no-fund',
      '--prefer-offline', `${name}@${major}`
    ], { stdio: 'inherit', shell: process.platform === 'win32' })
    if (install.status !== 0) return undefined
  }
  return node
}

/** Runs `npm test` with `node` first on PATH (npm, tap and the steps they start all run on it). */
function test (node) {
  return new Promise(resolve => {
    const env = { ...process.env, PATH: `${dirname(node)}${delimiter}${process.env.PATH}` }
    const child = spawn(node, [join(root, 'scripts', 'test.js'), ...tapArgs], { cwd: root, env, stdio: ['ignore', 'pipe', 'inherit'] })
    let tail = '' // enough of the output to hold tap's closing summary, `# { total: N, pass: N }`
    child.stdout.on('data', chunk => {
      process.stdout.write(chunk)
      tail = (tail + String(chunk)).slice(-4096)
    })
    child.on('close', code => {
      const summaries = tail.match(/^# \{ total: .*\}$/gm) ?? []
      resolve({ code: code ?? 1, summary: (summaries.at(-1) ?? '').slice(2) })
    })
  })
}

const results = []
for (const major of majors) {
  const node = nodeOf(major)
  const v = node === undefined ? undefined : version(node)
  if (v === undefined) {
    results.push({ major, line: `Node ${major}: could not be installed (above)`, ok: false })
  } else if (!supported(v)) {
    results.push({ major, line: `Node ${major}: not tested, the registry's newest is ${v}, below engines ${pkg.engines.node}`, ok: false })
  } else {
    console.log(`\ntest:nodes: npm test on Node ${v} (${node})`)
    const started = Date.now()
    const { code, summary } = await test(node)
    const took = `${Math.round((Date.now() - started) / 1000)} s`
    results.push({ major, line: `Node ${v}: ${code === 0 ? 'passed' : `failed (exit ${code})`} ${summary} in ${took}`, ok: code === 0 })
  }
}
console.log(`\ntest:nodes:\n${results.map(r => `  ${r.line}`).join('\n')}`)
process.exit(results.every(r => r.ok) ? 0 : 1)
