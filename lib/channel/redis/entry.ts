import type { ChannelEncoder, ChannelItem } from '../backend.js'
import { joinFrame, withFrame } from '../../encode.js'
import { invalidItem } from '../../errors.js'
import type { SseItem } from '../../types.js'

// The layout of a stream entry: the frame around its id line (`h`, `t`) and the item's fields as JSON (`j`), so
// every process rebuilds the frame by concatenation, never by serializing the data again. Entries carry their
// layout first (`v`), so that a later layout can be told apart and read beside this one; entries without it were
// written before the mark existed, in this same layout, and are read the same way.

/** An entry as XRANGE and XREAD answer it. */
export type Entry = [id: string, fields: string[]]

/** The layout entries are written in: the value of their `v` field. */
export const LAYOUT = '1'

/** Why an entry was not read: no channel wrote it, or a newer version did, in a layout this one does not know. */
export type Unread = 'foreign' | 'newer'

/**
 * The fields to store for an item without an id (the stream gives it), in the order XADD takes them. Throws for
 * an item the channel's encoder refuses or whose fields JSON cannot hold: then nothing is stored.
 */
export function entryFields (item: SseItem<unknown>, encode: ChannelEncoder): string[] {
  // encoded (and refused) once, here, around its id line; every reader joins the parts with the entry's id
  const { head, tail } = encode.parts(item)
  let fields: string
  try {
    fields = JSON.stringify({ event: item.event, retry: item.retry, comment: item.comment, data: item.data })
  } catch (err) {
    throw invalidItem('data', 'must be JSON-serializable on a Redis channel', err)
  }
  return ['v', LAYOUT, 'h', head, 't', tail, 'j', fields]
}

/** The item of a stream entry, its frame rebuilt around its id; or why it was not read. */
export function readEntry (id: string, fields: string[]): ChannelItem | Unread {
  // `v <layout>` first, or nothing before `h` (an entry written before the mark)
  const at = fields[0] === 'v' ? 2 : 0
  const layout = at === 2 ? fields[1] ?? '' : LAYOUT
  if (layout !== LAYOUT) {
    return /^[0-9]{1,9}$/.test(layout) && Number(layout) > Number(LAYOUT) ? 'newer' : 'foreign'
  }
  if (fields.length === at + 6 && fields[at] === 'h' && fields[at + 2] === 't' && fields[at + 4] === 'j') {
    try {
      const stored = JSON.parse(fields[at + 5] as string) as SseItem<unknown>
      const frame = joinFrame({ head: fields[at + 1] as string, tail: fields[at + 3] as string }, id)
      return withFrame({ ...stored, id }, Buffer.from(frame))
    } catch {}
  }
  return 'foreign'
}
