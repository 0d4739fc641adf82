// The node:cluster primary of the scale bench's `cluster` mode: forks `--procs` workers running
// bench/scale/server.js (its other arguments passed on), which share the same listening ports (Node's primary
// accepts the connections and hands them round-robin to the workers, its default on Linux). A publish is stamped
// here and handed to every worker over IPC; each broadcasts it to its own subscribers. Answers its parent's
// `stats` with the sum over the workers and itself.
import cluster from 'node:cluster'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'

const arg = (name, fallback) => process.argv.find(a => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const PROCS = Number(arg('procs', '2'))
const now = () => performance.timeOrigin + performance.now()

cluster.setupPrimary({
  exec: fileURLToPath(new URL('server.js', import.meta.url)),
  args: process.argv.slice(2),
  execArgv: (process.env.SCALE_WORKER_ARGV ?? '--expose-gc').split(' ').filter(Boolean)
})

const workers = []
const pending = new Map()
let seq = 0
const ask = (worker, msg) => new Promise((resolve) => {
  const id = ++seq
  pending.set(id, resolve)
  worker.send({ ...msg, id })
})

const ready = await Promise.all(Array.from({ length: PROCS }, () => new Promise((resolve, reject) => {
  const worker = cluster.fork()
  workers.push(worker)
  worker.on('message', (msg) => {
    if (msg?.ready === true) resolve(msg.ports)
    else if (msg?.id !== undefined) {
      pending.get(msg.id)?.(msg)
      pending.delete(msg.id)
    }
  })
  worker.on('exit', (code) => reject(new Error(`worker exited (${code})`)))
})))
const ports = ready[0]
if (!ready.every(p => p.join() === ports.join())) throw new Error(`workers listen on different ports: ${JSON.stringify(ready)}`)

process.on('message', async (msg) => {
  if (msg?.cmd === 'stats') {
    const each = await Promise.all(workers.map(w => ask(w, { cmd: 'stats', gc: msg.gc })))
    const own = process.cpuUsage()
    process.send({
      id: msg.id,
      cpu: own.user + own.system + each.reduce((a, s) => a + s.cpu, 0),
      heap: each.reduce((a, s) => a + s.heap, 0),
      rss: process.memoryUsage().rss + each.reduce((a, s) => a + s.rss, 0),
      subscribers: each.reduce((a, s) => a + s.subscribers, 0),
      perProcess: each.map(s => s.subscribers)
    })
  } else if (msg?.cmd === 'publish') {
    const t0 = now()
    for (const w of workers) w.send({ cmd: 'deliver', t: t0, n: msg.n })
    process.send({ id: msg.id, ms: now() - t0 })
  } else if (msg?.cmd === 'stop') {
    await Promise.all(workers.map(w => new Promise(resolve => {
      w.removeAllListeners('exit')
      w.once('exit', resolve)
      w.send({ cmd: 'stop' })
      setTimeout(() => { w.process.kill('SIGKILL'); resolve() }, 10_000).unref()
    })))
    process.exit(0)
  }
})
process.on('disconnect', () => {
  for (const w of workers) w.process.kill('SIGKILL')
  process.exit(0)
})
process.send({ ready: true, ports })
