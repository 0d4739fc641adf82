import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'

// The PostgreSQL and NATS subpaths of the built package, loaded by name; the main entry loads neither client.
const root = fileURLToPath(new URL('..', import.meta.url))
const run = promisify(execFile)
const env = { ...process.env }
delete env.NODE_V8_COVERAGE // dist/ is what is shipped, lib/ is what the coverage measures

t.test('the postgres and nats subpaths by name; only the nats modules load a NATS client, none loads pg', async t => {
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', `
    import { postgresChannels, ensureSchema, schemaSql } from 'fastify-typed-sse/postgres'
    import { natsChannels } from 'fastify-typed-sse/nats'
    import { readdirSync, readFileSync } from 'node:fs'
    const loading = re => readdirSync('dist', { recursive: true })
      .filter(f => f.endsWith('.js') && re.test(readFileSync('dist/' + f, 'utf8'))).sort()
    console.log(JSON.stringify({
      postgres: [typeof postgresChannels, typeof ensureSchema, typeof schemaSql], nats: typeof natsChannels,
      pg: loading(/from ['"]pg['"]|require\\(['"]pg['"]/), natsClient: loading(/from ['"]@nats-io\\//)
    }))`], { cwd: root, env, timeout: 20_000 })
  t.same(JSON.parse(stdout), {
    postgres: ['function', 'function', 'function'],
    nats: 'function',
    pg: [],
    natsClient: ['channel/nats/stream.js']
  })
})
