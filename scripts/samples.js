// The TypeScript samples of the user docs (README.md and docs/**/*.md), and their type-check: shared by
// `npm run samples` (against this checkout) and scripts/check-fresh-app.js (against the packed package in a new
// app). Every ```ts (or ```typescript) fence is written as its own module and all of them are compiled together
// with `tsc --noEmit`; errors are reported at their line in the Markdown file, as `README.md:123: <message>`.
//
// A sample must be a complete module (its imports included; top-level await is fine). A fence that must not be
// checked (a deliberate error, a fragment of a type) is written ```ts no-check — use it sparingly.
//
// Samples are written for typebox 1.x (`import { Type } from 'typebox'`, or from @fastify/type-provider-typebox,
// which re-exports its TypeBox); `flavours` rewrites their imports for each TypeBox they are checked with.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'

const SKIP = 'no-check'

/** README.md and every Markdown file under docs/, in a stable order. */
export function markdownFiles (root) {
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

/** The ```ts fences of one file: { first: line number (1-based) of the sample's first line, code }. */
export function samplesOf (text) {
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

/** Rewrites the module names of `from '…'` clauses (whole names, and their subpaths) by `names`. */
export function renameImports (code, names) {
  return code.replace(/(\bfrom\s+')([^']+)(')/g, (all, before, name, after) => {
    const base = Object.keys(names).find(from => name === from || name.startsWith(`${from}/`))
    return base === undefined ? all : before + names[base] + name.slice(base.length) + after
  })
}

/**
 * The TypeBoxes samples are checked with, as the module names to rewrite. In this checkout the real names are
 * typebox 1.x, @sinclair/typebox 0.34 and provider 5; provider 6 is installed as `type-provider-typebox-6`.
 */
export const flavours = {
  typebox1: { checkout: { '@fastify/type-provider-typebox': 'type-provider-typebox-6' }, app: {} },
  sinclair: { checkout: { typebox: '@sinclair/typebox' }, app: { typebox: '@sinclair/typebox' } }
}

/**
 * Writes the samples of `root`'s docs into `outDir` (emptied first), their imports renamed by `names`, with a
 * tsconfig.json (strict, NodeNext, and `compilerOptions` over that). Returns where each file came from.
 */
export function writeSamples (root, outDir, names = {}, compilerOptions = {}) {
  rmSync(outDir, { recursive: true, force: true })
  mkdirSync(outDir, { recursive: true })
  const origin = new Map() // sample file name → { md, first }
  for (const md of markdownFiles(root)) {
    const rel = relative(root, md)
    const slug = rel.replace(/\.md$/, '').replace(/[^A-Za-z0-9]+/g, '-')
    for (const { first, code } of samplesOf(readFileSync(md, 'utf8'))) {
      const name = `${slug}-${first}.ts`
      // `export {}` keeps a sample without imports a module, so its names do not clash with other samples.
      writeFileSync(join(outDir, name), renameImports(code, names) + '\nexport {}\n')
      origin.set(name, { md: rel, first })
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
      types: ['node'],
      ...compilerOptions
    },
    include: ['*.ts']
  }, null, 2) + '\n')
  return origin
}

/**
 * Runs `tsc` (the path of a TypeScript's bin/tsc) on `dir`'s tsconfig.json; returns its errors, each at its line
 * in the Markdown file a sample came from (`origin`, from writeSamples) or as tsc printed it.
 */
export function compile (tsc, dir, origin = new Map()) {
  const run = spawnSync(process.execPath, [tsc, '-p', join(dir, 'tsconfig.json'), '--pretty', 'false'], {
    cwd: dir, encoding: 'utf8', timeout: 300_000
  })
  if (run.error !== undefined) return [`tsc did not run: ${run.error.message}`]
  const failures = []
  for (const line of `${run.stdout}${run.stderr}`.split('\n')) {
    const m = /^(?:.*[\\/])?([^\\/(]+)\((\d+),(\d+)\): (.*)$/.exec(line)
    if (m !== null && origin.has(m[1])) {
      const { md, first } = origin.get(m[1])
      failures.push(`${md}:${first + Number(m[2]) - 1}: ${m[4]}`)
    } else if (line.trim() !== '' && !line.startsWith(' ')) {
      failures.push(line)
    } else if (line.startsWith(' ') && failures.length > 0) {
      failures[failures.length - 1] += `\n${line}`
    }
  }
  if (run.status !== 0 && failures.length === 0) failures.push(`tsc exited with ${run.status}`)
  return failures
}
