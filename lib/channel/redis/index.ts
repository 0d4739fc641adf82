// Channels shared by every server process through one Redis stream per channel: one `XADD … MAXLEN ~ N` per
// publish, whose id is the item's id (`<ms>-<seq>`, what a browser sends back as Last-Event-ID). Each process reads
// the streams of the channels it has local subscribers for with one `XREAD BLOCK` on one connection per backend,
// whatever their number (./reader.ts); a channel without local subscribers is not read at all. A channel joins the
// read in flight by writing to the reader's own control stream, which that read names too: it returns at once,
// even when the write reached Redis before it, and needs no `CLIENT UNBLOCK` permission. An entry holds the frame
// around its id line and the item's fields as JSON (./entry.ts), so each process rebuilds the frame by
// concatenation, never by serializing the data again. Only these modules use ioredis, and only by type: the main
// entry never loads it.
//
// On a Redis Cluster one XREAD may only name keys of one hash slot, so each channel's key carries its slot group's
// hash tag (./keys.ts: `{<prefix><n>}<name>`, n a hash of the name, or of the hash tag in it), and there is one
// reader per group in use, a cluster client of its own that follows the slot wherever it moves. A reader no
// channel has needed for a while closes (./shared.ts), and one that gets no answer in time takes a new connection.
import type { ChannelBackendFactory } from '../backend.js'
import { RedisBackend } from './backend.js'
import { settingsOf, type Exactly, type RedisChannelsOptions } from './options.js'
import { Backends } from './shared.js'

export type { RedisChannelsOptions } from './options.js'

/** What `redisChannels()` returns: pass it as the `backend` option of `app.sse.channel(name, { backend })`. */
export type RedisChannels = ChannelBackendFactory<Promise<string>>

/**
 * Channels shared by every server process through Redis Streams:
 * `app.sse.channel<T>('chat', { backend: redisChannels({ redis }) })`. Their `publish` returns a promise of the
 * stream id; a browser can reconnect to any process with `Last-Event-ID` and gets exactly what it missed.
 */
export function redisChannels<Options extends RedisChannelsOptions> (
  options: Exactly<Options, RedisChannelsOptions>
): RedisChannels {
  const backends = new Backends(settingsOf(options))
  return (name, history, deliver, log, reset) => new RedisBackend(name, history, deliver, log, reset, backends)
}
