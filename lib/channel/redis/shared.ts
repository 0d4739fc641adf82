import type { FastifyBaseLogger } from 'fastify'
import { invalidOption } from '../../errors.js'
import type { Settings } from './options.js'
import { StreamReader, type ReadChannel } from './reader.js'

/**
 * What the channels of one `redisChannels()` backend share: the settings, the readers (one; on a cluster one per
 * slot group), the names in use.
 */
export class Backends {
  readonly settings: Settings
  readonly #channels = new Map<string, ReadChannel>()
  /**
   * The readers by tag, each started on first need and closed once no channel of its tag has had a local
   * subscriber for `readerIdleTimeout`, or with the last channel of its tag.
   */
  readonly #readers = new Map<string, StreamReader>()
  /** The closes of readers closed for idleness or by forgetting, until done: a channel closing waits for them. */
  readonly #closing = new Set<Promise<void>>()
  /** How many channels each tag has. */
  readonly #tags = new Map<string, number>()

  constructor (settings: Settings) {
    this.settings = settings
  }

  /** A channel of this backend is created: one per name (its reader reads each stream once). */
  open (name: string, backend: ReadChannel): void {
    if (this.#channels.has(name)) {
      throw invalidOption('backend', `of channel "${name}" already serves a channel of that name ` +
        '(another app of this process?): give each app its own redisChannels()')
    }
    this.#channels.set(name, backend)
    this.#tags.set(backend.tag, (this.#tags.get(backend.tag) ?? 0) + 1)
  }

  /** The reader of a channel's tag, started on first need. */
  reader (backend: ReadChannel, log: FastifyBaseLogger): StreamReader {
    const tag = backend.tag
    let reader = this.#readers.get(tag)
    if (reader === undefined) {
      reader = new StreamReader(this.settings, log, tag, () => this.#served(tag), () => this.#idle(tag))
      this.#readers.set(tag, reader)
    }
    return reader
  }

  /** Whether the reader's connection is up; undefined while there is no reader (no channel was read yet). */
  connected (backend: ReadChannel): boolean | undefined {
    return this.#readers.get(backend.tag)?.connected
  }

  /** Stops reading a channel's stream (there is nothing to stop without a reader). */
  remove (backend: ReadChannel): void {
    this.#readers.get(backend.tag)?.remove(backend)
  }

  /**
   * A channel of this backend closed: the last one of its tag closes their reader. It waits for every reader
   * closing too (one closed for idleness, or by the last channel of its tag forgotten), so the app's close does.
   */
  close (backend: ReadChannel): Promise<void> {
    const reader = this.#leave(backend)
    return Promise.all([reader?.close(), ...this.#closing]).then(() => {})
  }

  /**
   * A channel of this backend was forgotten (it has no subscriber): its name is free, and the last one of its tag
   * closes their reader (or no channel would be left to close it with the app).
   */
  forget (backend: ReadChannel): void {
    const reader = this.#leave(backend)
    if (reader !== undefined) this.#closeLater(reader)
  }

  /**
   * The channel leaves its name and its tag: answers the tag's reader (if any) when it was the last of the tag.
   * One that has left already (forgotten, then closed with the app) leaves nothing: it no longer counts in its tag.
   */
  #leave (backend: ReadChannel): StreamReader | undefined {
    if (this.#channels.get(backend.name) !== backend) return undefined
    this.#channels.delete(backend.name)
    const left = (this.#tags.get(backend.tag) as number) - 1
    if (left > 0) {
      this.#tags.set(backend.tag, left)
      return undefined
    }
    this.#tags.delete(backend.tag)
    const reader = this.#readers.get(backend.tag)
    this.#readers.delete(backend.tag)
    return reader
  }

  /** Closes a reader nothing waits for now: the last channel of a tag closing waits for it. */
  #closeLater (reader: StreamReader): void {
    const closed: Promise<void> = reader.close().then(() => { this.#closing.delete(closed) })
    this.#closing.add(closed)
  }

  /** A reader no channel needed for a while: closed (the next subscriber of its tag starts a new one). */
  #idle (tag: string): void {
    const reader = this.#readers.get(tag) as StreamReader
    this.#readers.delete(tag)
    this.#closeLater(reader)
  }

  /** The channels of a tag: those a reader's connection state is told to. */
  * #served (tag: string): Generator<ReadChannel, void> {
    for (const backend of this.#channels.values()) if (backend.tag === tag) yield backend
  }
}
