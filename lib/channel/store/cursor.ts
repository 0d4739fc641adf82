// Where a reader has handed items on to, with the replays waiting for it to get somewhere: a replay answers only
// once the live items up to its position were delivered, so that the subscription can drop those it replayed.

/** A reader's position: the tag of the history it reads and the sequence number it handed on last. */
export class Cursor {
  /** The tag of the ids (undefined until the reader knows where it is). */
  tag: string | undefined
  #at: number | undefined
  #waiting: Array<{ at: number, resolve: () => void }> = []

  /** The sequence number handed on last; undefined until the reader knows where it is. */
  get at (): number | undefined {
    return this.#at
  }

  /** The reader is at `at` (of `tag`): the waits for it or less are over. */
  set (tag: string, at: number): void {
    this.tag = tag
    this.#at = at
    if (this.#waiting.length === 0) return
    const reached = this.#waiting.filter(waiter => waiter.at <= at)
    this.#waiting = this.#waiting.filter(waiter => waiter.at > at)
    for (const waiter of reached) waiter.resolve()
  }

  /** Settles once the reader is at `at` or further. */
  reached (at: number): Promise<void> {
    if (this.#at !== undefined && this.#at >= at) return Promise.resolve()
    return new Promise(resolve => this.#waiting.push({ at, resolve }))
  }

  /** The reader stopped: its position is unknown, and what waited for it is dropped (its subscribers left). */
  clear (): void {
    this.#at = undefined
    this.#waiting = []
  }
}
