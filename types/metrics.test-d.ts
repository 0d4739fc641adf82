// Type tests of app.sse.stats() and the diagnostics events, checked by `npm run typecheck` (tsc), never run:
// each @ts-expect-error must stay an error.
import Fastify from 'fastify'
import dc from 'node:diagnostics_channel'
import { expectTypeOf } from 'expect-type'
import ssePlugin, {
  SSE_DIAGNOSTICS, subscribeSseDiagnostic, type EndReason, type RejectReason, type ResetReason, type SseChannelStats,
  type SseStats
} from '../lib/index.js'

const app = Fastify()
void app.register(ssePlugin)

const stats = app.sse.stats()
expectTypeOf(stats.channelCount).toEqualTypeOf<number>()
expectTypeOf(app.sse.stats({ channels: 10 })).toEqualTypeOf<SseStats>()
app.sse.stats({ channels: Infinity })
// @ts-expect-error unknown option (channels)
app.sse.stats({ channel: 10 })
// @ts-expect-error channels is a number
app.sse.stats({ channels: 'all' })
expectTypeOf(stats).toEqualTypeOf<SseStats>()
expectTypeOf(stats.open).toEqualTypeOf<number>()
expectTypeOf(stats.openByRoute).toEqualTypeOf<Record<string, number>>()
expectTypeOf(stats.closed).toEqualTypeOf<Record<EndReason, number>>()
expectTypeOf(stats.resets).toEqualTypeOf<Record<ResetReason, number>>()
expectTypeOf(stats.rejected).toEqualTypeOf<number>()
expectTypeOf(stats.rejectedByReason).toEqualTypeOf<Record<RejectReason, number>>()
expectTypeOf<RejectReason>().toEqualTypeOf<
  'max connections' | 'max streams per connection' | 'admission' | 'server closing' | 'not acceptable'
>()
expectTypeOf(stats.channels).toEqualTypeOf<SseChannelStats[]>()
expectTypeOf(stats.channels[0]?.history).toEqualTypeOf<number | undefined>()
expectTypeOf(stats.channels[0]?.connected).toEqualTypeOf<boolean | undefined>()
// @ts-expect-error not a reason a stream closes for
stats.closed['timed out'] = 1
// @ts-expect-error not a reason a request is answered instead of streamed
stats.rejectedByReason['bad request'] = 1
// @ts-expect-error stats() takes options, not a channel name
app.sse.stats('chat')

expectTypeOf(SSE_DIAGNOSTICS.streamClose).toEqualTypeOf<'fastify-typed-sse:stream:close'>()
const unsubscribe = subscribeSseDiagnostic(SSE_DIAGNOSTICS.streamClose, message => {
  expectTypeOf(message.reason).toEqualTypeOf<EndReason>()
  expectTypeOf(message.durationMs).toEqualTypeOf<number>()
  expectTypeOf(message.route).toEqualTypeOf<string>()
  // @ts-expect-error a close message has no channel
  void message.channel
})
expectTypeOf(unsubscribe).toEqualTypeOf<() => void>()
subscribeSseDiagnostic('fastify-typed-sse:channel:reset', message => {
  expectTypeOf(message.reason).toEqualTypeOf<ResetReason>()
  expectTypeOf(message.channel).toEqualTypeOf<string>()
})
subscribeSseDiagnostic(SSE_DIAGNOSTICS.readerDown, message => {
  expectTypeOf(message.after).toEqualTypeOf<string | undefined>()
})
// @ts-expect-error not one of the plugin's channels
subscribeSseDiagnostic('fastify-typed-sse:stream:opened', () => {})
// the names work with node:diagnostics_channel as well
dc.subscribe(SSE_DIAGNOSTICS.cutOff, () => {})
