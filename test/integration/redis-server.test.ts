// The tests' own redis-servers (test/support/redis-server.ts) do not outlive a test process that ends without its
// teardown (an uncaught error; a timeout or a kill, which run no exit handler): no redis-server left running, no
// directory left behind.
import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** Whether a process of that id is alive (a zombie has exited: only its parent has not reaped it yet). */
function running (pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z'
  } catch {
    return false
  }
}

for (const [how, end] of [['throws', "throw new Error('a test that throws')"], ['is killed', "process.kill(process.pid, 'SIGKILL')"]]) {
  t.test(`a test process that ${how} takes its redis-server and its directory with it`, async t => {
    t.setTimeout(20_000)
    const script = `
      import { startRedis } from ${JSON.stringify(new URL('../support/redis-server.ts', import.meta.url).href)}
      import { readFileSync } from 'node:fs'
      const server = await startRedis(['--appendonly', 'no'])
      const dir = (await import('node:child_process')).execFileSync('redis-cli', ['-p', String(server.port), 'CONFIG', 'GET', 'dir']).toString().split('\\n')[1]
      console.log(JSON.stringify({ pid: Number(readFileSync(dir + '/pid', 'utf8')), dir }))
      ${end}
    `
    const failed = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { timeout: 15_000 })
      .then(() => undefined, (err: { stdout: string }) => err)
    t.ok(failed !== undefined, 'the process failed')
    const { pid, dir } = JSON.parse((failed as { stdout: string }).stdout) as { pid: number, dir: string }
    for (let i = 0; i < 50 && (running(pid) || existsSync(dir)); i++) await sleep(100)
    t.notOk(running(pid), 'its redis-server is gone')
    t.notOk(existsSync(dir), 'and its directory')
  })
}
