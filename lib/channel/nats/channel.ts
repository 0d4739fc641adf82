import type { FastifyBaseLogger } from 'fastify'
import type { Deliver, HistoryOptions, Replay, ReplayPage, Reset } from '../backend.js'
import { channelUnavailable } from '../../errors.js'
import { cutPage } from '../page.js'
import { StoredChannel } from '../store/channel.js'
import type { Cursor } from '../store/cursor.js'
import { formatId, parseId, rebuild, type ReadItem, type StoredItem } from '../store/items.js'
import type { NatsReader } from './reader.js'
import type { NatsSettings, StreamFacts } from './stream.js'
import { NOT_OURS, pack, replayReset, subjectToken, unpack, worthReading } from './subjects.js'

// One NATS channel: a subject of the backend's stream (`<prefix>.<token>`). A publish is one JetStream publish (its
// acknowledgement gives the stream sequence: the id); live items come through the backend's reader; a replay reads
// the channel's messages after the id with an ordered consumer of its own, filtered on its subject, one page at a
// time.

/** What a channel needs of its backend. */
export interface NatsGroup {
  readonly settings: NatsSettings
  /** Where the reader is: the position of every channel of the backend. */
  readonly cursor: Cursor
  /** Whether the reader's connection is up; undefined while there is no reader. */
  readonly connected: boolean | undefined
  /** Whether the connection is up now (a publish while it is not is refused at once). */
  readonly up: boolean
  /** The reader, started on first need. */
  reader: (log: FastifyBaseLogger) => NatsReader
  /** Settles once a reader that is starting (and not failing) consumes; undefined when there is no such start. */
  readonly starting: Promise<unknown> | undefined
  /** Takes the channel out of the reader's (there is nothing to do without a reader). */
  remove: (channel: NatsChannel) => void
  /** The stream's facts: the last ones read, or (`fresh`) read now; the stream is made when it is missing. */
  facts: (fresh?: boolean) => Promise<StreamFacts>
  /** The channel closed: the last one stops the reader. */
  close: (channel: NatsChannel) => Promise<void>
  /** The channel was forgotten: its name is free, and the last one stops the reader. */
  forget: (channel: NatsChannel) => void
  /** A forgotten channel is taken back: its name again (throws when another channel has it). */
  rejoin: (channel: NatsChannel) => void
}

/** Milliseconds a replay waits for the messages it counted. */
const REPLAY_WAIT = 5000

export class NatsChannel extends StoredChannel {
  /** Its subject's last token. */
  readonly token: string
  readonly #subject: string
  readonly #group: NatsGroup

  constructor (
    name: string, history: HistoryOptions, deliver: Deliver, log: FastifyBaseLogger, reset: Reset, group: NatsGroup
  ) {
    super(name, history, deliver, log, reset, { engine: 'NATS', publishTimeout: group.settings.publishTimeout })
    this.#group = group
    this.token = subjectToken(name)
    this.#subject = group.settings.prefix + '.' + this.token
  }

  protected get cursor (): Cursor {
    return this.#group.cursor
  }

  protected get connected (): boolean | undefined {
    return this.#group.connected
  }

  protected async store (stored: StoredItem, idempotencyKey: string | undefined): Promise<string> {
    const { connection, js, stream, publishTimeout } = this.#group.settings
    if (connection.isClosed()) throw channelUnavailable(this.name, 'the NATS connection is closed; the item was not published')
    if (!this.#group.up) throw channelUnavailable(this.name, 'NATS is not connected (reconnecting); the item was not published')
    // a channel that has just got its first subscriber waits for the reader to start: its subscribers get this item
    const starting = this.#group.starting
    if (starting !== undefined) await starting
    const { tag } = await this.#group.facts()
    const ack = await js.publish(this.#subject, pack(stored), {
      timeout: publishTimeout,
      expect: { streamName: stream },
      ...(idempotencyKey === undefined ? {} : { msgID: this.token + ':' + idempotencyKey })
    })
    this.know(tag, ack.seq)
    return formatId(tag, ack.seq)
  }

  replay (lastEventId: string, page: ReplayPage): Promise<Replay> {
    return this.#page(lastEventId, page.items, page)
  }

  /** The page after `lastEventId`: at most `count` items (one more is read: whether another page follows). */
  async #page (lastEventId: string, count: number, page: ReplayPage): Promise<Replay> {
    // once the reader is started, what this replay reads it has handed on or will
    await this.cursor.reached(0)
    const id = parseId(lastEventId)
    const { settings } = this.#group
    const read: ReadItem[] = []
    let wanted = 0
    let firstAt: number | undefined
    // an id of another stream (or none of ours) reads nothing
    if (id !== undefined && id.tag === this.cursor.tag) {
      const consumer = await settings.js.consumers.get(settings.stream, {
        filter_subjects: this.#subject, deliver_policy: 'by_start_sequence', opt_start_seq: id.seq + 1
      })
      try {
        const pending = (await consumer.info(true)).num_pending
        const { perChannel } = await this.#group.facts()
        // more than the channel replays is an `expired` reset: not read
        wanted = pending
        if (worthReading(pending, this.history.history, perChannel)) {
          wanted = Math.min(pending, count + 1)
          for await (const message of await consumer.fetch({ max_messages: wanted, expires: REPLAY_WAIT })) {
            firstAt ??= message.info.timestampNanos / 1e6
            read.push({ seq: message.seq, ...(unpack(message.string()) ?? NOT_OURS) })
          }
        }
      } finally {
        void Promise.allSettled([consumer.delete()])
      }
    }
    const facts = await this.#group.facts(true)
    const reset = replayReset(facts, id, wanted, {
      count: read.length, firstAt, now: Date.now(), maxAge: this.history.historyMaxAge
    })
    if (reset !== undefined) return this.answer(reset, [], facts.tag, await this.#newest(facts))
    const tag = facts.tag
    const { items, taken, cut } = cutPage(read, count, page, item => rebuild(item, formatId(tag, item.seq)))
    if (taken < read.length) {
      const position = formatId(tag, (read[taken - 1] as ReadItem).seq)
      return { items, position, next: () => this.#page(position, cut ? taken : count, page) }
    }
    return this.answer(undefined, items, tag, read.at(-1)?.seq ?? (id as { seq: number }).seq)
  }

  subscribed (active: boolean): void {
    if (active) this.#group.reader(this.log).add(this)
    else this.#group.remove(this)
  }

  close (): Promise<void> {
    this.#group.remove(this)
    return this.#group.close(this)
  }

  /** Let go by its registry (it has no subscriber): its name is free, its stream keeps what a client resumes from. */
  forget (): void {
    this.#group.remove(this)
    this.#group.forget(this)
  }

  /** Taken back: its name again (refused when another channel of the backend took it meanwhile). */
  rejoined (): void {
    this.#group.rejoin(this)
  }

  /** The sequence of the channel's newest message (the stream's last when it has none): where a reset puts it. */
  async #newest (facts: StreamFacts): Promise<number> {
    const manager = await this.#group.settings.manager()
    const newest = await manager.streams.getMessage(this.#group.settings.stream, { last_by_subj: this.#subject })
    return newest?.seq ?? facts.last
  }
}
