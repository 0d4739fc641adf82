// Type tests of the plugin's limits on new streams, checked by `npm run typecheck` (tsc), never run:
// each @ts-expect-error must stay an error.
import Fastify from 'fastify'
import { expectTypeOf } from 'expect-type'
import ssePlugin, { type SseAdmissionOptions, type SsePluginOptions } from '../lib/index.js'

const app = Fastify()
void app.register(ssePlugin, {
  maxConnections: 10_000, maxStreamsPerConnection: 100, admission: { rate: 500, burst: 1000, spread: 30 }
})
void app.register(ssePlugin, { maxStreamsPerConnection: Infinity, admission: { rate: 0.5 } })
expectTypeOf<SsePluginOptions['admission']>().toEqualTypeOf<SseAdmissionOptions | undefined>()
expectTypeOf<SseAdmissionOptions['rate']>().toEqualTypeOf<number>()
// @ts-expect-error maxStreamsPerConnection is a number
void app.register(ssePlugin, { maxStreamsPerConnection: '100' })
// @ts-expect-error admission needs its rate
void app.register(ssePlugin, { admission: { burst: 10 } })
// @ts-expect-error admission's options are rate, burst and spread
void app.register(ssePlugin, { admission: { rate: 10, bursts: 10 } })
// @ts-expect-error admission is an object, not a rate
void app.register(ssePlugin, { admission: 10 })
// @ts-expect-error spread is a number of seconds
void app.register(ssePlugin, { admission: { rate: 10, spread: '5s' } })
