#!/usr/bin/env node
// Part of `npm run build`: copies the hand-written declaration files of lib/ (lib/**/*.d.ts) into dist/, beside
// the ones tsc emits (tsc reads them but never emits them). Such a file exists where the declarations must say
// something tsc would not write, such as the `@ts-ignore` on an optional peer dependency's types.
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const lib = join(root, 'lib')
const dist = join(root, 'dist')

function copy (dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) {
      copy(path)
    } else if (entry.name.endsWith('.d.ts')) {
      const target = join(dist, relative(lib, path))
      mkdirSync(dirname(target), { recursive: true })
      copyFileSync(path, target)
    }
  }
}

copy(lib)
