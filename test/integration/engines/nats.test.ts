// The engines' contract (./contract) on the NATS server at NATS_URL (JetStream): each server has its own
// connection; the stream of this run has a name of its own and is deleted at the end.
import t from 'tap'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { jetstreamManager } from '@nats-io/jetstream'
import { natsChannels } from '../../../lib/channel/nats/index.js'
import { contract } from './contract.js'

const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222'
const stream = `T${process.pid}_CONTRACT`
const prefix = `t${process.pid}.contract`
const connections: NatsConnection[] = []
const admin = await connect({ servers: NATS_URL })
const manager = await jetstreamManager(admin)
t.teardown(async () => {
  await Promise.all(connections.map(c => c.close()))
  await manager.streams.delete(stream).catch(() => false)
  await admin.close()
})

async function connection (): Promise<NatsConnection> {
  const made = await connect({ servers: NATS_URL })
  connections.push(made)
  return made
}

contract(t, {
  name: 'NATS',
  shared: true,
  backend: async () => natsChannels({ connection: await connection(), prefix, stream }),
  unreachable: async () => {
    const closed = await connection()
    await closed.close()
    return natsChannels({ connection: closed, prefix, stream })
  },
  held: async () => (await manager.streams.info(stream).then(info => info.state.consumer_count, () => 0))
})
