// The stream of a NATS backend, with a stand-in for the JetStream manager: made when missing, found when another
// server made it meanwhile, and what fails otherwise (the real server is exercised by the other NATS tests).
import t from 'tap'
import { JetStreamApiError } from '@nats-io/jetstream'
import { streamFacts, type NatsSettings } from '../../../lib/channel/nats/stream.js'

const info = { config: { subjects: ['p.>'], max_msgs_per_subject: 9 }, state: { first_seq: 1, last_seq: 4 }, created: 'c' }
const apiError = (code: number): Error => new JetStreamApiError({ code: 400, err_code: code, description: `error ${code}` })

function settings (manager: object): NatsSettings {
  return {
    prefix: 'p',
    stream: 'S',
    maxPerChannel: 9,
    maxAge: Infinity,
    idempotencyWindow: 1000,
    storage: 'file',
    manager: async () => manager
  } as unknown as NatsSettings
}

t.test('made meanwhile by another server (with other options): found', async t => {
  let infos = 0
  const manager = {
    streams: {
      info: async () => { if (infos++ === 0) throw apiError(10059); return info },
      add: async (config: { max_age: number }) => {
        t.equal(config.max_age, 0, 'no age limit')
        throw apiError(10058)
      }
    }
  }
  t.match(await streamFacts(settings(manager)), { first: 1, last: 4, perChannel: 9 })
})

t.test('any other failure is the caller’s', async t => {
  await t.rejects(streamFacts(settings({ streams: { info: async () => { throw new Error('timeout') } } })), /timeout/)
  const manager = {
    streams: { info: async () => { throw apiError(10059) }, add: async () => { throw apiError(10052) } }
  }
  await t.rejects(streamFacts(settings(manager)), /error 10052/)
})

t.test('a stream without subjects is refused; one without a per-subject limit has none', async t => {
  const found = (config: object) => settings({ streams: { info: async () => ({ ...info, config }) } })
  await t.rejects(streamFacts(found({})), /has the subjects \[\]: it must have \["p\.>"\] only/)
  t.match(await streamFacts(found({ subjects: ['p.>'] })), { perChannel: 0 })
})
