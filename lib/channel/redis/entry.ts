import type { ChannelEncoder, ChannelItem } from '../backend.js'
import { joinFrame, withFrame } from '../../encode.js'
import { invalidItem } from '../../errors.js'
import type { SseItem } from '../../types.js'

// The layout of a stream entry: the frame around its id line (`h`, `t`) and the item's fields as JSON (`j`), so
// every process rebuilds the frame by concatenation, never by serializing the data again.

/** An entry as XRANGE and XREAD answer it. */
export type Entry = [id: string, fields: string[]]

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
  return ['h', head, 't', tail, 'j', fields]
}

/** The item of a stream entry, its frame rebuilt around its id; undefined for an entry no channel wrote. */
export function readEntry (id: string, fields: string[]): ChannelItem | undefined {
  if (fields.length === 6 && fields[0] === 'h' && fields[2] === 't' && fields[4] === 'j') {
    try {
      const stored = JSON.parse(fields[5] as string) as SseItem<unknown>
      const frame = joinFrame({ head: fields[1] as string, tail: fields[3] as string }, id)
      return withFrame({ ...stored, id }, Buffer.from(frame))
    } catch {}
  }
  return undefined
}
