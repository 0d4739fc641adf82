import type { ChannelItem, ReplayPage } from './backend.js'
import { frameSize } from '../encode.js'

// One page of a replay out of what a store answered (its rows, entries or messages after the id, oldest first, a
// few more than the page may hold): the items of at most `count` of them and at most `page.bytes` bytes (at least one
// item, however big), and whether more follow.

export interface CutPage {
  readonly items: readonly ChannelItem[]
  /** How many of the stored ones the page covers (those no channel wrote included). */
  readonly taken: number
  /** Whether the page was cut short by its bytes: the next one then asks for `taken`, not `count`. */
  readonly cut: boolean
}

/** The page of `stored` (more than `count` of them: more follow); `item` builds one (undefined: skipped). */
export function cutPage<T> (
  stored: readonly T[], count: number, page: ReplayPage, item: (stored: T) => ChannelItem | undefined
): CutPage {
  const items: ChannelItem[] = []
  let bytes = 0
  let taken = 0
  let cut = false
  for (; taken < stored.length && taken < count; taken++) {
    const built = item(stored[taken] as T)
    if (built === undefined) continue
    const size = frameSize(built)
    cut = items.length > 0 && bytes + size > page.bytes
    if (cut) break
    items.push(built)
    bytes += size
  }
  return { items: Object.freeze(items), taken, cut }
}
