#!/usr/bin/env node
// `npm run deps` (after dependency-cruiser): no module of lib/ is over 450 lines, so that each can be read whole.
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const LIMIT = 450

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

function * modules (dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) yield * modules(path)
    else if (entry.name.endsWith('.ts')) yield path
  }
}

const problems = []
for (const path of modules(join(root, 'lib'))) {
  const name = relative(root, path).split('\\').join('/')
  const text = readFileSync(path, 'utf8')
  const lines = text.split('\n').length - (text.endsWith('\n') ? 1 : 0)
  if (lines > LIMIT) problems.push(`${name} has ${lines} lines, over ${LIMIT}: split it by job`)
}
if (problems.length > 0) {
  process.stderr.write(problems.map(p => `check-size: ${p}\n`).join(''))
  process.exit(1)
}
