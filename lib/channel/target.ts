import { invalidOption } from '../errors.js'
import { refuseNonObject, refuseUnknown } from '../options.js'
import type { ChannelItem } from './backend.js'

// Targeted publish: subscribers carry tags (`subscribe({ tags })`), a publish names the tags it goes `to` or
// `exclude`s. The targeting is kept with the stored item, so a replay honours it as the live fan-out does: a
// reconnecting client never gets an item it was excluded from. Only plain strings travel, so a backend could
// store them; the channel refuses them on a backend that does not keep them (`ChannelBackend.targeting`).

/** Options of an in-memory channel's `publish(item, options)`: which subscribers get the item. */
export interface TargetOptions {
  /** Only subscribers with at least one of these tags get the item (`[]`: none does). Default: every subscriber. */
  to?: string | readonly string[] | undefined
  /** Subscribers with any of these tags do not get it (the sender's own connection, say). Wins over `to`. */
  exclude?: string | readonly string[] | undefined
}

/** The targeting of one published item, checked. */
export interface Target {
  readonly to: ReadonlySet<string> | undefined
  readonly exclude: ReadonlySet<string> | undefined
  /** The tag of `to` when it names just one (the common case): its subscribers are read from the index as they are. */
  readonly one: string | undefined
}

/** A subscriber's tags, checked: an empty array when it has none. */
export type Tags = readonly string[]

export const NO_TAGS: Tags = Object.freeze([])

/** What `publish()` takes: targeting here, `idempotencyKey` for a shared backend (which checks it). */
const PUBLISH_OPTIONS: readonly string[] = ['to', 'exclude', 'idempotencyKey']

/** Where a published item's targeting is kept: the item object itself is what the history stores and replays. */
const targets = new WeakMap<ChannelItem, Target>()

function tagList (option: string, value: unknown, owner: string): string[] {
  const list = typeof value === 'string' ? [value] : value
  if (!Array.isArray(list) || !list.every(tag => typeof tag === 'string' && tag !== '')) {
    throw invalidOption(option, 'must be a non-empty string or an array of them', owner)
  }
  return list
}

/** `subscribe({ tags })`, checked: a copy without repeats (the caller's array is left as it is). */
export function resolveTags (tags: unknown): Tags {
  return tags === undefined ? NO_TAGS : Object.freeze(Array.from(new Set(tagList('tags', tags, 'subscribe()'))))
}

/** A publish's `to`/`exclude`, checked; undefined when it targets every subscriber. */
export function resolveTarget (options: TargetOptions | undefined): Target | undefined {
  if (options === undefined) return undefined
  // an ignored targeting would send the item to every subscriber
  refuseNonObject(options, '{ to, exclude }', 'publish()')
  refuseUnknown(options, PUBLISH_OPTIONS, 'publish()')
  if (options.to === undefined && options.exclude === undefined) return undefined
  const toList = options.to === undefined ? undefined : tagList('to', options.to, 'publish()')
  const to = toList === undefined ? undefined : new Set(toList)
  return {
    to,
    exclude: options.exclude === undefined ? undefined : new Set(tagList('exclude', options.exclude, 'publish()')),
    one: to?.size === 1 ? toList?.[0] : undefined
  }
}

/** Keeps the targeting with the item (before it is stored or delivered). */
export function setTarget (item: ChannelItem, target: Target): ChannelItem {
  targets.set(item, target)
  return item
}

/** The targeting kept with the item; undefined when it goes to every subscriber. Looked up once per item. */
export function targetOf (item: ChannelItem): Target | undefined {
  return targets.get(item)
}

/** Whether a subscriber with `tags` has one of `exclude`. */
function excluded (exclude: ReadonlySet<string> | undefined, tags: Tags): boolean {
  if (exclude !== undefined) {
    for (const tag of tags) if (exclude.has(tag)) return true
  }
  return false
}

/** Whether a subscriber with `tags` gets an item with this targeting. */
export function reaches (target: Target, tags: Tags): boolean {
  const { to } = target
  if (excluded(target.exclude, tags)) return false
  if (to === undefined) return true
  for (const tag of tags) if (to.has(tag)) return true
  return false
}

/** The items of a replay that a subscriber with `tags` gets (the same array when it gets them all). */
export function reachable (items: readonly ChannelItem[], tags: Tags): readonly ChannelItem[] {
  const gets = (item: ChannelItem): boolean => {
    const target = targetOf(item)
    return target === undefined || reaches(target, tags)
  }
  return items.every(gets) ? items : items.filter(gets)
}

/** What the index holds: a subscriber, with its tags, that takes items. */
export interface Tagged {
  readonly tags: Tags
  push: (item: ChannelItem) => void
}

/**
 * A channel's tagged subscribers by tag, so a targeted publish finds those of its tags without looking at every
 * subscriber's tags. A tag with one subscriber (a user's own tag, a connection's id) holds it without a set. Built
 * by the channel's first targeted publish (`start`): until then subscribing costs it nothing.
 */
export class TagIndex<S extends Tagged> {
  readonly #byTag = new Map<string, S | Set<S>>()
  #started = false

  /** From now on the index holds every subscriber: those of `subscribers` now, and those `add`ed. */
  start (subscribers: Iterable<S>): void {
    if (this.#started) return
    this.#started = true
    for (const subscriber of subscribers) this.add(subscriber)
  }

  add (subscriber: S): void {
    if (!this.#started) return
    for (const tag of subscriber.tags) {
      const held = this.#byTag.get(tag)
      if (held === undefined) this.#byTag.set(tag, subscriber)
      else if (held instanceof Set) held.add(subscriber)
      else this.#byTag.set(tag, new Set([held, subscriber]))
    }
  }

  delete (subscriber: S): void {
    if (!this.#started) return
    for (const tag of subscriber.tags) {
      const held = this.#byTag.get(tag)
      if (held === subscriber) {
        this.#byTag.delete(tag)
        continue
      }
      // a tag of a subscriber in the index holds it, alone or in a set
      const set = held as Set<S>
      set.delete(subscriber)
      if (set.size === 1) this.#byTag.set(tag, set.values().next().value as S)
    }
  }

  /**
   * Hands `item` to the subscribers `target` selects, out of `everyone`. To one tag (a user, a connection), the index
   * entry is read as it is, with no set made per publish.
   */
  deliver (item: ChannelItem, target: Target, everyone: Iterable<S>): void {
    const { to, exclude, one } = target
    if (one !== undefined) {
      const held = this.#byTag.get(one)
      if (held instanceof Set) {
        for (const subscriber of held) if (!excluded(exclude, subscriber.tags)) subscriber.push(item)
      } else if (held !== undefined && !excluded(exclude, held.tags)) {
        held.push(item)
      }
      return
    }
    const left = exclude === undefined ? undefined : this.having(exclude)
    for (const subscriber of to === undefined ? everyone : this.having(to)) {
      if (left?.has(subscriber) !== true) subscriber.push(item)
    }
  }

  /** The subscribers with any of `tags`, each once. */
  having (tags: ReadonlySet<string>): Set<S> {
    const found = new Set<S>()
    for (const tag of tags) {
      const held = this.#byTag.get(tag)
      if (held === undefined) continue
      if (held instanceof Set) for (const subscriber of held) found.add(subscriber)
      else found.add(held)
    }
    return found
  }
}
