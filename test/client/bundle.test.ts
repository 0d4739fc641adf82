import t from 'tap'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import { build, type Metafile } from 'esbuild'
import { sseSchema } from '../../lib/schema.js'
import { sseSchema as fromMain } from '../../lib/index.js'

// What `import { connect } from 'fastify-typed-sse/client'` costs a browser page: the module the `browser` export
// condition names, bundled by esbuild for the browser, minified and gzipped. It must stay small (the TypeBox
// compiler stays out: validation is opt-in there) and use nothing of Node.

const root = fileURLToPath(new URL('../..', import.meta.url))
const LIMIT = 6 * 1024 // bytes, min+gzip

interface Bundle {
  minified: number
  gzipped: number
  inputs: string[]
  imports: string[]
}

async function bundle (contents: string): Promise<Bundle> {
  const result = await build({
    stdin: { contents, resolveDir: root, loader: 'ts' },
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    metafile: true,
    logLevel: 'silent'
  })
  const code = result.outputFiles[0]!.contents
  const output = Object.values((result.metafile as Metafile).outputs)[0]!
  return {
    minified: code.length,
    gzipped: gzipSync(code, { level: 9 }).length,
    inputs: Object.keys(output.inputs),
    imports: output.imports.map(i => i.path)
  }
}

t.test('the browser entry of the client is what the package exports to bundlers', async t => {
  const pkg = JSON.parse(readFileSync(`${root}/package.json`, 'utf8')) as { exports: Record<string, Record<string, string>> }
  t.same(pkg.exports['./client'], {
    types: './dist/client/index.d.ts',
    browser: './dist/client/browser.js',
    default: './dist/client/index.js'
  })
  t.same(pkg.exports['./client/validate'], { types: './dist/client/validate.d.ts', default: './dist/client/validate.js' })
  t.same(pkg.exports['./schema'], { types: './dist/schema.d.ts', default: './dist/schema.js' })
  t.equal(sseSchema, fromMain, 'the schema entry has the main entry\'s sseSchema()')
})

t.test(`connect() bundled for a browser: at most ${LIMIT} bytes min+gzip, nothing of Node, no TypeBox`, async t => {
  t.setTimeout(30_000)
  const client = await bundle("export { connect } from './lib/client/browser.ts'")
  t.comment(`connect(): ${client.minified} bytes minified, ${client.gzipped} min+gzip`)
  t.ok(client.gzipped <= LIMIT, `${client.gzipped} bytes min+gzip <= ${LIMIT}`)
  t.same(client.imports, [], 'no import left (no node: built-in, nothing external)')
  t.same(client.inputs.filter(input => input.includes('node_modules')), [], 'no dependency bundled')
  t.same(client.inputs.filter(input => !input.startsWith('lib/') && input !== '<stdin>'), [])

  const validate = await bundle("export { connect } from './lib/client/browser.ts'; export { validator } from './lib/client/validate.ts'")
  t.comment(`connect() and validator(): ${validate.minified} bytes minified, ${validate.gzipped} min+gzip`)
  t.ok(validate.inputs.some(input => input.includes('@sinclair/typebox')), 'validator() brings the TypeBox compiler')
  t.ok(validate.gzipped > client.gzipped * 2, 'which is why it is opt-in')
  t.same(validate.imports, [])

  // a page that shares the route's schema module: sseSchema() and TypeBox's builders, imported by name
  const shared = await bundle("import { connect } from './lib/client/browser.ts'; import { sseSchema } from './lib/schema.ts'; " +
    "import { Object as O, Integer, String as S } from '@sinclair/typebox'; export const events = sseSchema({ tick: O({ n: Integer() }), log: S() }); export { connect }")
  t.comment(`connect() and a shared sseSchema(): ${shared.minified} bytes minified, ${shared.gzipped} min+gzip`)
  t.ok(shared.gzipped <= LIMIT + 2 * 1024, `${shared.gzipped} bytes: the schema module adds about 2 KB, not the server`)
  t.same(shared.inputs.filter(input => input.startsWith('lib/') && !input.startsWith('lib/client/')).sort(),
    ['lib/errors.ts', 'lib/schema.ts', 'lib/typed/schema.ts'], 'nothing of the plugin')
  t.same(shared.imports, [])
})
