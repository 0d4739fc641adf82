#!/usr/bin/env node
// `npm run samples`: type-checks every TypeScript sample of the user docs, so a sample cannot drift from the API,
// twice: with typebox 1.x and @fastify/type-provider-typebox 6, and with @sinclair/typebox 0.34 and provider 5
// (scripts/samples.js says how). Samples import the package by its own name ('fastify-typed-sse',
// 'fastify-typed-sse/redis', ...): the package's `exports` resolve that to dist/, so run `npm run build` first.
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { compile, flavours, writeSamples } from './samples.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

if (!existsSync(join(root, 'dist', 'index.js'))) {
  console.error('samples: dist/ is missing; run `npm run build` first (samples import the built package)')
  process.exit(1)
}

const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
let failed = false
for (const [flavour, { checkout }] of Object.entries(flavours)) {
  const dir = join(root, '.samples', flavour)
  const origin = writeSamples(root, dir, checkout)
  const failures = compile(tsc, dir, origin)
  if (failures.length > 0) {
    failed = true
    console.error(failures.join('\n'))
    console.error(`samples (${flavour}): ${failures.length} error(s) in ${origin.size} TypeScript samples`)
  } else {
    console.log(`samples: ${origin.size} TypeScript samples type-check (${flavour})`)
  }
}
process.exit(failed ? 1 : 0)
