#!/usr/bin/env node
// `npm run deps` (after dependency-cruiser): no module of lib/ is over 450 lines, so that each can be read whole.
// A module listed in OVER may not grow past the lines it has there, and the list must go once it is split.
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const LIMIT = 450
/** Modules over the limit, each with the most lines it may have until it is split. */
const OVER = {}

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

function * modules (dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) yield * modules(path)
    else if (entry.name.endsWith('.ts')) yield path
  }
}

const problems = []
const seen = new Set()
for (const path of modules(join(root, 'lib'))) {
  const name = relative(root, path).split('\\').join('/')
  const text = readFileSync(path, 'utf8')
  const lines = text.split('\n').length - (text.endsWith('\n') ? 1 : 0)
  const allowed = OVER[name] ?? LIMIT
  if (name in OVER) seen.add(name)
  if (lines > allowed) problems.push(`${name} has ${lines} lines, over ${allowed}: split it by job`)
  else if (name in OVER && lines <= LIMIT) problems.push(`${name} has ${lines} lines now: take it out of OVER in scripts/check-size.js`)
}
for (const name of Object.keys(OVER)) {
  if (!seen.has(name)) problems.push(`${name} is gone: take it out of OVER in scripts/check-size.js`)
}
if (problems.length > 0) {
  process.stderr.write(problems.map(p => `check-size: ${p}\n`).join(''))
  process.exit(1)
}
