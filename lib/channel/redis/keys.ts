import type { Settings } from './options.js'

// Where a channel's keys are: its stream, its reader's hash tag, its publishes' idempotency keys. Pure functions.

/**
 * The start of a channel's idempotency keys: `#<length of the stream key>:<stream key>:` (`!` instead of `#` when
 * the prefix starts with `#`). No channel key starts with it (they start with the prefix, or on a cluster with `{`),
 * the length keeps two channels' keys apart whatever their names and keys hold, and the stream key's hash tag comes
 * first on a cluster: the script's two keys share a slot.
 */
export function idempotencyPrefix (prefix: string, key: string): string {
  return (prefix.startsWith('#') ? '!' : '#') + key.length + ':' + key + ':'
}

/** The hash tag Redis Cluster hashes a key by (its first `{…}` with something inside), or undefined. */
export function hashTag (key: string): string | undefined {
  const open = key.indexOf('{')
  if (open === -1) return undefined
  const close = key.indexOf('}', open + 1)
  return close > open + 1 ? key.slice(open + 1, close) : undefined
}

/** The slot group of a channel name: FNV-1a (32 bits) over its UTF-16 code units, modulo the number of groups. */
export function slotGroup (name: string, groups: number): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 0x01000193)
  return (hash >>> 0) % groups
}

/** What decides where a channel's keys are. */
export type Placement = Pick<Settings, 'prefix' | 'cluster' | 'slotGroups'>

/**
 * Where a channel lives: its stream's key, and the reader's tag (`''` without a cluster: one reader for all; on a
 * cluster `{<prefix><group>}`, which every key of that reader starts with, so that they share a slot). A name's own
 * hash tag chooses its group (names that share a tag share a slot), never a slot of its own: readers stay as few
 * as the groups, whatever tags the names carry.
 */
export function place (settings: Placement, name: string): { key: string, tag: string } {
  if (!settings.cluster) return { key: settings.prefix + name, tag: '' }
  const tag = `{${settings.prefix}${slotGroup(hashTag(name) ?? name, settings.slotGroups)}}`
  return { key: tag + name, tag }
}
