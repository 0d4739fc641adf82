#!/usr/bin/env node
// `npm run check:package` (and a step of `npm test`): the package as it would be published, checked offline.
//
// - publint: package.json's fields and `exports` against the files they name.
// - @arethetypeswrong/cli on the packed tarball (`attw --pack`): every entry point's types resolve as its
//   JavaScript does. Profile node16 (TypeScript 7 has no node10 resolution), and `cjs-resolves-to-esm` ignored:
//   the package is ESM and `require()` of it works on every Node it supports (>= 20.19 loads ES modules).
// - Links: every relative link in a Markdown file of the tarball names a file the tarball holds, so the docs of
//   an installed package send nobody to a file they lack (examples, tests and benchmarks are linked by URL).
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { dirname, join, normalize, posix } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const bin = name => join(root, 'node_modules', '.bin', process.platform === 'win32' ? `${name}.cmd` : name)
let failed = false

function step (what, command, args) {
  const run = spawnSync(command, args, { cwd: root, encoding: 'utf8', timeout: 300_000, shell: process.platform === 'win32' })
  if (run.status === 0) {
    console.log(`package: ${what} clean`)
    return run.stdout
  }
  failed = true
  process.stderr.write(`${run.stdout ?? ''}${run.stderr ?? ''}${run.error === undefined ? '' : run.error.message + '\n'}`)
  console.error(`package: ${what} failed (above)`)
  return undefined
}

step('publint', bin('publint'), ['--strict'])
step('attw', bin('attw'), ['--pack', '.', '--profile', 'node16', '--ignore-rules', 'cjs-resolves-to-esm', '--format', 'table-flipped'])

// the files `npm pack` would put in the tarball
const listed = step('npm pack --dry-run', process.platform === 'win32' ? 'npm.cmd' : 'npm', ['pack', '--dry-run', '--json', '--ignore-scripts'])
if (listed !== undefined) {
  const files = new Set(JSON.parse(listed)[0].files.map(file => file.path))
  const dirs = new Set([...files].flatMap(file => file.split('/').slice(0, -1).map((_, i, parts) => parts.slice(0, i + 1).join('/'))))
  const dead = []
  for (const md of [...files].filter(file => file.endsWith('.md'))) {
    const text = readFileSync(join(root, md), 'utf8').replace(/```[\s\S]*?```/g, '') // links in code are code
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('#')) continue // a URL, or an anchor on the page
      const path = normalize(posix.join(posix.dirname(md), target.split('#')[0])).split('\\').join('/')
      if (!files.has(path) && !dirs.has(path.replace(/\/$/, ''))) dead.push(`${md}: ${target}`)
    }
  }
  if (dead.length > 0) {
    failed = true
    console.error(`package: links to files the package does not hold:\n  ${dead.join('\n  ')}`)
  } else {
    console.log(`package: every relative link of its ${[...files].filter(f => f.endsWith('.md')).length} Markdown files resolves`)
  }
}
process.exit(failed ? 1 : 0)
