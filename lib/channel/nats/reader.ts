import type { FastifyBaseLogger } from 'fastify'
import type { Consumer, ConsumerMessages, JsMsg } from '@nats-io/jetstream'
import type { ResetReason } from '../backend.js'
import { channelUnavailable } from '../../errors.js'
import type { Cursor } from '../store/cursor.js'
import type { StreamFacts, NatsSettings } from './stream.js'
import { NOT_OURS, unpack } from './subjects.js'
import type { StoredItem } from '../store/items.js'

// One backend's reader: one ordered consumer over every channel's subject (`<prefix>.>`), whatever the number of
// channels, from the stream's last message when it starts; each message is handed to the channel of its subject if
// it has local subscribers here, and dropped otherwise. The stream holds only the channels' subjects, so its
// sequence numbers follow each other: a jump says that messages were removed before they were read (the stream's
// limits, or a reader far behind), and every channel read is reset there. A stream made again (another creation
// time: another tag) resets them too, as `unknown`.

/** What the reader needs of its backend. */
export interface ReaderHost {
  readonly settings: NatsSettings
  /** Where the reader has handed messages on to: the position of every channel of the backend. */
  readonly cursor: Cursor
  /** The stream's facts: (`fresh`) read now, the stream made when it is missing. */
  facts: (fresh: boolean) => Promise<StreamFacts>
}

/** What the reader needs of a channel it reads (a `NatsChannel`): its subject's token and where to hand on. */
export interface ReadChannel {
  readonly token: string
  /** A message of its subject, read from the stream of `tag` at `seq`. */
  handOn: (tag: string, stored: StoredItem & { seq: number }) => void
  /** The stream lost messages (`reason`), or is another stream now (`tag`), at `seq`. */
  lost: (reason: ResetReason, tag: string, seq: number) => void
}

export class NatsReader {
  readonly #host: ReaderHost
  readonly #log: FastifyBaseLogger
  /** The channels read, by subject token: each has local subscribers. */
  readonly #reading = new Map<string, ReadChannel>()
  readonly #subjectStart: number
  #messages: ConsumerMessages | undefined
  #consumer: Consumer | undefined
  /** Bumped by each start and stop: what an older consumer delivers or says is ignored. */
  #generation = 0
  #closed = false
  #failures = 0
  #retry: NodeJS.Timeout | undefined
  /** Settles once the consumer consumes (never rejects); undefined once it does. */
  starting: Promise<unknown> | undefined

  constructor (host: ReaderHost, log: FastifyBaseLogger) {
    this.#host = host
    this.#log = log
    this.#subjectStart = host.settings.prefix.length + 1
    this.#start()
  }

  /** Whether it failed to start and has not started since. */
  get failing (): boolean {
    return this.#failures > 0
  }

  /** Hands this channel its messages from now on. */
  add (channel: ReadChannel): void {
    this.#reading.set(channel.token, channel)
  }

  remove (channel: ReadChannel): void {
    if (this.#reading.get(channel.token) === channel) this.#reading.delete(channel.token)
  }

  /**
   * Checks the stream after the connection came back or the consumer was made again: a stream made again (another
   * tag) restarts the reader from its end, after resetting every channel read (`unknown`). Messages removed before
   * the reader read them show as a jump of the sequence with the next message.
   */
  async check (): Promise<void> {
    let facts: StreamFacts
    try {
      facts = await this.#host.facts(true)
    } catch (err) {
      // the next reconnection or consumer notice checks again
      const failure = channelUnavailable(this.#host.settings.prefix + '.*', `the reader could not check the stream: ${(err as Error).message}`, err)
      this.#log.error({ err: failure }, 'SSE NATS channel reader could not check its stream')
      return
    }
    const { cursor } = this.#host
    const { tag, at } = cursor
    // not started yet, or closed: the start reads the stream itself
    if (at === undefined || this.#closed) return
    if (facts.tag === tag) return
    this.#stop()
    this.#start()
  }

  /**
   * Starts a new consumer after the reader's position, once the connection is back: the server may have restarted
   * (without the consumer, or without its store), and the client's own recovery of an ordered consumer can wait a
   * long while. Checked like a start: a stream made again resets every channel read.
   */
  restart (): void {
    if (this.#closed) return
    clearTimeout(this.#retry)
    this.#stop()
    this.#start()
  }

  async close (): Promise<void> {
    this.#closed = true
    clearTimeout(this.#retry)
    const consumer = this.#consumer
    this.#stop()
    this.#host.cursor.clear()
    // an ordered consumer is removed by the server after a while on its own; this says so at once
    if (consumer !== undefined) await Promise.allSettled([consumer.delete()])
  }

  /**
   * Starts an ordered consumer after the reader's position (the stream's last message on the first start), and
   * retries after a while when NATS does not answer. A stream made again since the position was taken resets
   * every channel read, and the reader starts at its end.
   */
  #start (): void {
    const generation = ++this.#generation
    const { settings, cursor } = this.#host
    const started = (async () => {
      const facts = await this.#host.facts(true)
      if (generation !== this.#generation) return
      const { tag, at } = cursor
      if (at !== undefined && tag !== facts.tag) this.#lose('unknown', facts.tag, facts.last)
      const from = at !== undefined && tag === facts.tag ? at : facts.last
      cursor.set(facts.tag, from)
      const consumer = await settings.js.consumers.get(settings.stream, {
        filter_subjects: settings.prefix + '.>', deliver_policy: 'by_start_sequence', opt_start_seq: from + 1
      })
      const messages = await consumer.consume({ callback: message => { this.#onMessage(generation, message) } })
      this.#consumer = consumer
      this.#messages = messages
      this.#failures = 0
      void this.#watch(generation, messages)
      // closed or restarted while it started: this consumer is not the reader's any more
      if (generation !== this.#generation) messages.stop()
    })()
    this.starting = Promise.allSettled([started])
    // a start that settles after the reader was stopped leaves alone what a later start set (see `#stop`)
    started.then(() => {
      if (generation !== this.#generation) return
      this.starting = undefined
    }, (err: unknown) => {
      if (generation !== this.#generation) return
      this.starting = undefined
      this.#failed(err)
      this.#retry = setTimeout(() => this.#start(), Math.min(2000, 50 * 2 ** this.#failures)).unref()
    })
  }

  #stop (): void {
    this.#generation++
    this.starting = undefined
    this.#messages?.stop()
    this.#messages = undefined
    this.#consumer = undefined
  }

  /** The consumer says it was made again (after a reconnection, a server restart, a stream that went away). */
  async #watch (generation: number, messages: ConsumerMessages): Promise<void> {
    for await (const status of messages.status()) {
      if (generation !== this.#generation) break
      if (status.type === 'ordered_consumer_recreated' || status.type === 'stream_not_found') void this.check()
    }
  }

  #onMessage (generation: number, message: JsMsg): void {
    if (generation !== this.#generation) return
    const { cursor } = this.#host
    const tag = cursor.tag as string
    const at = cursor.at as number
    const seq = message.seq
    if (seq <= at) return
    if (seq > at + 1) this.#lose('expired', tag, seq - 1)
    const channel = this.#reading.get(message.subject.slice(this.#subjectStart))
    if (channel !== undefined) channel.handOn(tag, { seq, ...(unpack(message.string()) ?? NOT_OURS) })
    cursor.set(tag, seq)
  }

  #lose (reason: ResetReason, tag: string, seq: number): void {
    for (const channel of this.#reading.values()) channel.lost(reason, tag, seq)
  }

  #failed (err: unknown): void {
    this.#failures++
    const failure = channelUnavailable(this.#host.settings.prefix + '.*', `the reader could not start: ${(err as Error).message}`, err)
    // said once per outage; each try after that at debug
    if (this.#failures === 1) this.#log.error({ err: failure }, 'SSE NATS channel reader failed; retrying')
    else this.#log.debug({ err: failure }, 'SSE NATS channel reader failed again')
  }
}
