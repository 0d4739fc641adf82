import {
  jetstream, JetStreamApiError, jetstreamManager, type JetStreamClient, type JetStreamManager, type StreamInfo
} from '@nats-io/jetstream'
import type { NatsConnection } from '@nats-io/transport-node'
import { streamTag, type StreamState } from './subjects.js'

// The JetStream stream of a `natsChannels()` backend: made with the backend's limits when it is missing, used as it
// is when it exists (its own limits then rule), and refused when it holds other subjects than the channels' (the
// reader tells a gap by a jump in the stream's sequence, which another subject's messages would fake).

/** What every channel of one `natsChannels()` backend shares. */
export interface NatsSettings {
  readonly connection: NatsConnection
  readonly js: JetStreamClient
  /** The JetStream manager, made on first need. */
  readonly manager: () => Promise<JetStreamManager>
  readonly prefix: string
  readonly stream: string
  readonly publishTimeout: number
  readonly idempotencyWindow: number
  readonly maxPerChannel: number
  readonly maxAge: number
  readonly storage: 'file' | 'memory'
}

/** The stream as a replay or the reader needs it. */
export interface StreamFacts extends StreamState {
  /** Messages the stream keeps per subject (per channel); 0 or less: no such limit. */
  readonly perChannel: number
}

/** The JetStream API error code of a stream that does not exist. */
const STREAM_NOT_FOUND = 10059
/** …and of a stream made meanwhile with another configuration (by a server with other options). */
const STREAM_NAME_IN_USE = 10058

function apiCode (err: unknown): number | undefined {
  return err instanceof JetStreamApiError ? err.code : undefined
}

/** The stream's facts; throws for a stream that holds other subjects than the channels'. */
function factsOf (info: StreamInfo, settings: NatsSettings): StreamFacts {
  const wanted = settings.prefix + '.>'
  const { subjects } = info.config
  if (subjects?.length !== 1 || subjects[0] !== wanted) {
    throw new Error(`the stream ${settings.stream} has the subjects ${JSON.stringify(subjects ?? [])}: it must ` +
      `have ["${wanted}"] only (give the channels a stream of their own)`)
  }
  const { first_seq: first, last_seq: last } = info.state
  return { tag: streamTag(info.created), first, last, perChannel: info.config.max_msgs_per_subject ?? 0 }
}

/** The JetStream handles of a connection: the client now, the manager (one API call) once it is needed. */
export function handles (connection: NatsConnection): {
  js: JetStreamClient, manager: () => Promise<JetStreamManager>
} {
  let manager: Promise<JetStreamManager> | undefined
  return {
    js: jetstream(connection),
    manager: () => {
      manager ??= jetstreamManager(connection, { checkAPI: false })
      return manager
    }
  }
}

/** The stream's facts now, the stream made first when it is missing. */
export async function streamFacts (settings: NatsSettings): Promise<StreamFacts> {
  const manager = await settings.manager()
  try {
    return factsOf(await manager.streams.info(settings.stream), settings)
  } catch (err) {
    if (apiCode(err) !== STREAM_NOT_FOUND) throw err
  }
  try {
    return factsOf(await manager.streams.add({
      name: settings.stream,
      subjects: [settings.prefix + '.>'],
      storage: settings.storage,
      max_msgs_per_subject: settings.maxPerChannel,
      max_age: Number.isFinite(settings.maxAge) ? settings.maxAge * 1_000_000 : 0,
      duplicate_window: settings.idempotencyWindow * 1_000_000,
      discard: 'old'
    }), settings)
  } catch (err) {
    if (apiCode(err) !== STREAM_NAME_IN_USE) throw err
    return factsOf(await manager.streams.info(settings.stream), settings)
  }
}
