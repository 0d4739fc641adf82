import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'

// The built package as users load it: by its name, from ESM and from CommonJS (require of ESM, Node >= 20.19).
const root = fileURLToPath(new URL('..', import.meta.url))
const run = promisify(execFile)
const env = { ...process.env }
delete env.NODE_V8_COVERAGE // dist/ is what is shipped, lib/ is what the coverage measures

async function node (args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, args, { cwd: root, env, timeout: 20_000 })
  return stdout.trim()
}

t.test('import by name: default and named plugin, parser, client subpath', async t => {
  const out = await node(['--input-type=module', '-e', `
    import plugin, { ssePlugin, parseEventStream, encodeItem, lastEventId, SseError, sseSchema, sseSwaggerTransform } from 'fastify-typed-sse'
    import * as client from 'fastify-typed-sse/client'
    import * as testing from 'fastify-typed-sse/testing'
    console.log(JSON.stringify({
      same: plugin === ssePlugin,
      name: plugin[Symbol.for('plugin-meta')].name,
      parser: typeof parseEventStream, client: [typeof client.parseEventStream, typeof client.connect],
      testing: [typeof testing.collect, typeof testing.injectSse], schema: [typeof sseSchema, typeof sseSwaggerTransform],
      encode: encodeItem({ data: 1 }), error: SseError.prototype instanceof TypeError,
      lastEventId: lastEventId({ headers: { 'last-event-id': Buffer.from('✓').toString('latin1') } })
    }))`])
  t.same(JSON.parse(out), {
    same: true,
    name: 'fastify-typed-sse',
    parser: 'function',
    client: ['function', 'function'],
    testing: ['function', 'function'],
    schema: ['function', 'function'],
    encode: 'data: 1\n\n',
    error: true,
    lastEventId: '✓'
  })
})

t.test('require() from CommonJS', async t => {
  const out = await node(['-e', `
    const m = require('fastify-typed-sse')
    const c = require('fastify-typed-sse/client')
    console.log(typeof m.default, typeof m.ssePlugin, typeof c.parseEventStream)`])
  t.equal(out, 'function function function')
})

t.test('the redis subpath by name; no module of the package loads ioredis (the user hands in the client)', async t => {
  const out = await node(['--input-type=module', '-e', `
    import { redisChannels } from 'fastify-typed-sse/redis'
    import { readdirSync, readFileSync } from 'node:fs'
    const loads = readdirSync('dist', { recursive: true }).filter(f => f.endsWith('.js') && /from ['"]ioredis['"]|require\\(['"]ioredis/.test(readFileSync('dist/' + f, 'utf8')))
    const entry = import.meta.resolve('fastify-typed-sse/redis')
    console.log(JSON.stringify({ factory: typeof redisChannels, loads, entry: entry.slice(entry.indexOf('/dist/')) }))`])
  t.same(JSON.parse(out), { factory: 'function', loads: [], entry: '/dist/channel/redis/index.js' })
})

t.test('no module of the package loads a TypeBox up front: the client loads the one its schema comes from', async t => {
  const out = await node(['--input-type=module', '-e', `
    import 'fastify-typed-sse'
    import 'fastify-typed-sse/client'
    import 'fastify-typed-sse/testing'
    import { readdirSync, readFileSync } from 'node:fs'
    const loads = readdirSync('dist', { recursive: true }).filter(f => f.endsWith('.js') && /^import [^(]*from ['"](@sinclair\\/typebox|typebox)[/'"]/m.test(readFileSync('dist/' + f, 'utf8')))
    const lazily = readdirSync('dist', { recursive: true }).filter(f => f.endsWith('.js') && /import\\(['"](@sinclair\\/typebox|typebox)\\//.test(readFileSync('dist/' + f, 'utf8')))
    console.log(JSON.stringify({ loads, lazily }))`])
  t.same(JSON.parse(out), { loads: [], lazily: ['client/check.js'] })
})
