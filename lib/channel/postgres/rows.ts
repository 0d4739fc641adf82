import type { ReadItem } from '../store/items.js'

// What pg answers for stored items, as the channel's replay and the listener's reads both take it.

/** Items one read hands on at most per channel; a channel with more is read again at once. */
export const READ_BATCH = 512

/** An item row as pg answers it. */
export interface RawItemRow {
  seq: string | null
  head: string
  tail: string
  fields: string
}

export function readItem (row: RawItemRow): ReadItem {
  return { seq: Number(row.seq), head: row.head, tail: row.tail, fields: row.fields }
}
