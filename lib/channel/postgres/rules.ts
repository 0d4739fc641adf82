import type { ResetReason } from '../backend.js'
import { parseId, type ReadItem } from '../store/items.js'

// The pure rules of PostgreSQL channels: when a client or a reader cannot go on without a gap, and what a
// notification says. Numbers are dense per channel (see ./schema), so what was missed is known exactly.

/** A channel's row: its epoch (its ids' tag), the last number given, the last number removed by retention. */
export interface ChannelRow {
  readonly epoch: string
  readonly last: number
  readonly trimmed: number
}

/** A channel's row as pg answers it (bigint columns as strings). */
export interface RawChannelRow {
  epoch: string
  last_seq: string
  trimmed_seq: string
}

export function channelRow (raw: RawChannelRow): ChannelRow {
  return { epoch: raw.epoch, last: Number(raw.last_seq), trimmed: Number(raw.trimmed_seq) }
}

/**
 * Why a client at `lastEventId` cannot resume, or undefined when it can. `row`: the channel's, undefined when it has
 * none (nothing was ever published on it); `firstAt`: when the first item after the id was stored (ms, on the
 * database's clock, like `now`), if there is one.
 */
export function replayReset (
  row: ChannelRow | undefined, lastEventId: string, firstAt: number | undefined, now: number, maxAge: number
): ResetReason | undefined {
  const id = parseId(lastEventId)
  // another channel's id, or one of a row made again (deleted, or a database restored from an older backup)
  if (row === undefined || id === undefined || id.tag !== row.epoch || id.seq > row.last) return 'unknown'
  if (id.seq < row.trimmed) return 'expired'
  if (firstAt !== undefined && firstAt <= now - maxAge) return 'expired'
  return undefined
}

/** What a reader does with what it read after `last`. */
export type CatchUp =
  /** The channel's row is gone or was made again (another epoch): the reader finds where it is again. */
  | { readonly relocate: true }
  /** `lost`: items after `last` were removed before they were read; the subscribers are reset to it first. */
  | { readonly relocate: false, readonly lost: number | undefined }

/** Whether a reader at `last` of `epoch` goes on with `items` (read after `last`, oldest first) without a gap. */
export function catchUp (
  epoch: string, last: number, row: ChannelRow | undefined, items: readonly ReadItem[]
): CatchUp {
  if (row === undefined || row.epoch !== epoch) return { relocate: true }
  // numbers are dense: anything but `last + 1` first means the items in between were removed (retention, or deleted)
  const first = items[0]?.seq ?? row.last + 1
  return { relocate: false, lost: first > last + 1 ? first - 1 : undefined }
}

const NOTIFICATION = /^([1-9][0-9]{0,15}):([0-9a-z]{1,16}):/

/** What a notification says (`<seq>:<epoch>:<channel>`); undefined for one no channel sent. */
export function parseNotification (
  payload: string | undefined
): { seq: number, epoch: string, name: string } | undefined {
  const match = NOTIFICATION.exec(payload ?? '')
  if (match === null) return undefined
  return { seq: Number(match[1]), epoch: match[2] as string, name: (payload as string).slice(match[0].length) }
}
