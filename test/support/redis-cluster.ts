// A Redis Cluster of a test's own: three masters, with or without a replica each, each node a redis-server on a
// free loopback port in its own temporary directory (no persistence), joined with `redis-cli --cluster create`. A
// test can move a hash slot, with its keys, from one node to another, or fail a master over to its replica, while
// clients use it.
import { execFile } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import { startRedis, type RedisServer } from './redis-server.js'

const run = promisify(execFile)

export interface RedisCluster {
  /** The nodes' loopback addresses, as a `Cluster` takes them. */
  readonly nodes: Array<{ host: string, port: number }>
  /** A plain connection to each node (by port), for CLUSTER and CLIENT commands; closed by `stop()`. */
  readonly admin: Map<number, Redis>
  /** The port of the node that serves a key now. */
  owner: (key: string) => Promise<number>
  /** Moves the slot of a key, with every key in it, to the node on that port (MIGRATING/IMPORTING, MIGRATE). */
  moveSlot: (key: string, to: number) => Promise<void>
  /** `CLUSTER FAILOVER` on a replica of the master of a key's slot; resolves with its port once all see it serve. */
  failover: (key: string) => Promise<number>
  /** `kill -9` of the node on that port (its clients see their connections fail), and its start again. */
  kill: (port: number) => Promise<void>
  restart: (port: number) => Promise<void>
  /** SIGSTOP of the node on that port (it holds its connections and answers nothing), and SIGCONT. */
  pause: (port: number) => void
  resume: (port: number) => void
  /** Stops every node and removes their directories. */
  stop: () => Promise<void>
}

/** Polls `check` every 50 ms until it holds; rejects after `ms` saying what it waited for. */
async function until (check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`the test cluster: ${what} within ${ms} ms`)
    await sleep(50)
  }
}

/** The port serving a slot, as a node sees it (0: none). */
async function ownerOf (node: Redis, slot: number): Promise<number> {
  const ranges = await node.call('CLUSTER', 'SLOTS') as Array<[number, number, [string, number]]>
  const range = ranges.find(([from, to]) => from <= slot && slot <= to)
  return range === undefined ? 0 : range[2][1]
}

/**
 * Starts three masters (and `replicas` replicas of each) and makes them one cluster covering every slot; resolves
 * once every node says `ok` and every replica is in step with its master.
 */
export async function startCluster (replicas = 0): Promise<RedisCluster> {
  const size = 3 * (1 + replicas)
  const servers: RedisServer[] = []
  const admin = new Map<number, Redis>()
  /** Until the check holds on every node, for 10 s at most. */
  const everyNode = async (check: (node: Redis) => Promise<boolean>, what: string): Promise<void> =>
    await until(async () => (await Promise.all(Array.from(admin.values(), check))).every(Boolean), 10_000, what)
  const stop = async (): Promise<void> => {
    for (const connection of admin.values()) connection.disconnect()
    await Promise.all(servers.map(async server => await server.stop()))
  }
  try {
    for (let i = 0; i < size; i++) {
      servers.push(await startRedis(['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf',
        '--appendonly', 'no', '--cluster-node-timeout', '5000', '--repl-diskless-sync-delay', '0']))
    }
    const addresses = servers.map(server => `127.0.0.1:${server.port}`)
    await run('redis-cli', ['--cluster', 'create', ...addresses, '--cluster-replicas', String(replicas),
      '--cluster-yes'], { timeout: 20_000 })
    for (const server of servers) {
      const node = new Redis(server.port, '127.0.0.1')
      node.on('error', () => {}) // a node killed is the point of some tests; ioredis would print each reconnection
      admin.set(server.port, node)
    }
    const ok = async (node: Redis): Promise<boolean> =>
      (await node.call('CLUSTER', 'INFO') as string).includes('cluster_state:ok')
    await everyNode(ok, 'cluster_state:ok on every node')
    // a manual failover needs the master to know its replica: every node's view has every replica
    const inStep = async (node: Redis): Promise<boolean> => {
      const info = await node.info('replication')
      const view = (await node.call('CLUSTER', 'NODES') as string).split('\n')
      const known = view.filter(line => line.split(' ')[2]?.split(',').includes('slave') === true).length
      return known === 3 * replicas && (info.includes('role:master') || info.includes('master_link_status:up'))
    }
    await everyNode(inStep, 'every replica in step with its master, and known to every node')
  } catch (err) {
    await stop()
    throw err
  }
  const first = admin.values().next().value as Redis
  const slotOf = async (key: string): Promise<number> => Number(await first.call('CLUSTER', 'KEYSLOT', key))
  const servedBy = async (slot: number, port: number): Promise<void> =>
    await everyNode(async node => await ownerOf(node, slot) === port, `every node sees slot ${slot} on port ${port}`)
  const nodeId = async (port: number): Promise<string> => await (admin.get(port) as Redis).call('CLUSTER', 'MYID') as string
  return {
    nodes: servers.map(server => ({ host: '127.0.0.1', port: server.port })),
    admin,
    owner: async key => await ownerOf(first, await slotOf(key)),
    moveSlot: async (key, to) => {
      const slot = await slotOf(key)
      const from = await ownerOf(first, slot)
      if (from === to) return
      const source = admin.get(from) as Redis
      const target = admin.get(to) as Redis
      const [fromId, toId] = await Promise.all([nodeId(from), nodeId(to)])
      await target.call('CLUSTER', 'SETSLOT', slot, 'IMPORTING', fromId)
      await source.call('CLUSTER', 'SETSLOT', slot, 'MIGRATING', toId)
      for (;;) {
        const keys = await source.call('CLUSTER', 'GETKEYSINSLOT', slot, 100) as string[]
        if (keys.length === 0) break
        await source.call('MIGRATE', '127.0.0.1', to, '', 0, 5000, 'KEYS', ...keys)
      }
      // the target first, then the source (its clients get MOVED), then the others; gossip would do it too
      for (const node of [target, source, ...Array.from(admin.values()).filter(n => n !== source && n !== target)]) {
        await node.call('CLUSTER', 'SETSLOT', slot, 'NODE', toId)
      }
      await servedBy(slot, to)
    },
    failover: async key => {
      const slot = await slotOf(key)
      const master = await ownerOf(first, slot)
      let port = 0
      for (const [candidate, node] of admin) {
        if ((await node.info('replication')).includes(`master_port:${master}\r\n`)) port = candidate
      }
      if (port === 0) throw new Error(`the test cluster: no replica of the master on port ${master}`)
      await (admin.get(port) as Redis).call('CLUSTER', 'FAILOVER')
      await servedBy(slot, port)
      return port
    },
    kill: async port => { await (servers.find(server => server.port === port) as RedisServer).kill() },
    restart: async port => { await (servers.find(server => server.port === port) as RedisServer).restart() },
    pause: port => { (servers.find(server => server.port === port) as RedisServer).pause() },
    resume: port => { (servers.find(server => server.port === port) as RedisServer).resume() },
    stop
  }
}
