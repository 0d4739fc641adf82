#!/usr/bin/env node
// `npm run samples`: type-checks every TypeScript sample of the user docs, so a sample cannot drift from the API.
//
// Every ```ts (or ```typescript) fence in README.md and docs/**/*.md is written to .samples/ as its own module and
// all of them are compiled together with `tsc --noEmit`, strict, NodeNext (the tsconfig README.md recommends).
// Samples import the package by its own name ('fastify-typed-sse', 'fastify-typed-sse/redis', ...): the package's
// `exports` resolve that to dist/, so run `npm run build` first. Errors are reported at their line in the Markdown
// file, as `README.md:123: <message>`.
//
// A sample must be a complete module (its imports included; top-level await is fine). A fence that must not be
// checked (a deliberate error, a fragment of a type) is written ```ts no-check — use it sparingly.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const outDir = join(root, '.samples')
const SKIP = 'no-check'

function markdownFiles () {
  const files = [join(root, 'README.md')]
  const walk = (dir) => {
    if (!existsSync(dir)) return
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) walk(path)
      else if (entry.name.endsWith('.md')) files.push(path)
    }
  }
  walk(join(root, 'docs'))
  return files
}

// Returns the ```ts fences of one file: { first: line number (1-based) of the sample's first line, code }.
function samplesOf (text) {
  const samples = []
  const lines = text.split('\n')
  let open = null
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]
    if (open === null) {
      const m = /^(\s*)(`{3,}|~{3,})\s*(\S*)\s*(.*)$/.exec(line)
      if (m === null) continue
      const lang = m[3].toLowerCase()
      const check = (lang === 'ts' || lang === 'typescript') && m[4].trim() !== SKIP
      open = { indent: m[1].length, fence: m[2], check, first: i + 2, body: [] }
    } else if (line.trim().startsWith(open.fence) && line.trim().replace(/[`~]/g, '') === '') {
      if (open.check) samples.push({ first: open.first, code: open.body.join('\n') })
      open = null
    } else {
      open.body.push(line.slice(Math.min(open.indent, line.length - line.trimStart().length)))
    }
  }
  return samples
}

if (!existsSync(join(root, 'dist', 'index.js'))) {
  console.error('samples: dist/ is missing; run `npm run build` first (samples import the built package)')
  process.exit(1)
}

rmSync(outDir, { recursive: true, force: true })
mkdirSync(outDir, { recursive: true })
const origin = new Map() // sample file name → { md, first }
let count = 0
for (const md of markdownFiles()) {
  const rel = relative(root, md)
  const slug = rel.replace(/\.md$/, '').replace(/[^A-Za-z0-9]+/g, '-')
  for (const { first, code } of samplesOf(readFileSync(md, 'utf8'))) {
    const name = `${slug}-${first}.ts`
    // `export {}` keeps a sample without imports a module, so its names do not clash with other samples.
    writeFileSync(join(outDir, name), code + '\nexport {}\n')
    origin.set(name, { md: rel, first })
    count++
  }
}
writeFileSync(join(outDir, 'tsconfig.json'), JSON.stringify({
  compilerOptions: {
    target: 'ES2022',
    lib: ['ES2023'],
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: ['node']
  },
  include: ['*.ts']
}, null, 2) + '\n')

const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
const run = spawnSync(process.execPath, [tsc, '-p', join(outDir, 'tsconfig.json'), '--pretty', 'false'], {
  cwd: root, encoding: 'utf8', timeout: 120_000
})
if (run.error !== undefined) {
  console.error(`samples: tsc did not run: ${run.error.message}`)
  process.exit(1)
}
const failures = []
for (const line of `${run.stdout}${run.stderr}`.split('\n')) {
  const m = /^(?:.*[\\/])?\.samples[\\/]([^\\/(]+)\((\d+),(\d+)\): (.*)$/.exec(line)
  if (m !== null && origin.has(m[1])) {
    const { md, first } = origin.get(m[1])
    failures.push(`${md}:${first + Number(m[2]) - 1}: ${m[4]}`)
  } else if (line.trim() !== '' && m === null && !line.startsWith(' ')) {
    failures.push(line)
  } else if (line.startsWith(' ') && failures.length > 0) {
    failures[failures.length - 1] += `\n${line}`
  }
}
if (run.status !== 0 || failures.length > 0) {
  console.error(failures.join('\n') || `tsc exited with ${run.status}`)
  console.error(`samples: ${failures.length} error(s) in ${count} TypeScript samples`)
  process.exit(1)
}
console.log(`samples: ${count} TypeScript samples type-check`)
