// Where a Redis channel's keys are (lib/channel/redis/keys.ts): pure functions, no Redis needed.
import t from 'tap'
import { hashTag, idempotencyPrefix, place, slotGroup } from '../../../lib/channel/redis/keys.js'

t.test('hashTag: Redis Cluster\'s rule, the first { and the first } after it, with something between', async t => {
  t.equal(hashTag('sse:{tenant-7}orders'), 'tenant-7')
  t.equal(hashTag('{a}{b}'), 'a', 'the first tag')
  t.equal(hashTag('a}{b}'), 'b', 'a } before the first { does not count')
  t.equal(hashTag('{{a}}'), '{a', 'up to the first } after the first {')
  t.equal(hashTag('{}{b}'), undefined, 'an empty first tag: the whole key is hashed')
  t.equal(hashTag('{open'), undefined, 'no } after it')
  t.equal(hashTag('plain'), undefined)
})

t.test('slotGroup: FNV-1a (32 bits) over UTF-16 code units, modulo the number of groups', async t => {
  // the published FNV-1a test vectors (ASCII: one code unit per byte), with 2^32 groups to see the hash itself
  t.equal(slotGroup('', 2 ** 32), 0x811c9dc5)
  t.equal(slotGroup('a', 2 ** 32), 0xe40c292c)
  t.equal(slotGroup('foobar', 2 ** 32), 0xbf9cf968)
  t.equal(slotGroup('chat', 16), 11, 'the example of docs/redis.md: {sse:11}chat')
  t.equal(slotGroup('chat', 1), 0, 'one group: every channel in it')
  // FNV-1a over the code units, computed independently: 0xe9 for é; 0xd83d, 0xde00 for 😀 (not its code point)
  t.equal(slotGroup('\u00e9', 2 ** 32), 0x6c0b6c44, 'é: one code unit')
  t.equal(slotGroup('\u{1f600}', 2 ** 32), 0xcb31c4b8, '😀: its two UTF-16 code units')
  t.not(slotGroup('\u00e9', 2 ** 32), slotGroup('\u00c3\u00a9', 2 ** 32), 'not its UTF-8 bytes')
  for (const name of ['chat', 'room:1', 'room:2', '😀']) {
    const group = slotGroup(name, 7)
    t.ok(Number.isInteger(group) && group >= 0 && group < 7, `${name}: a group from 0 to 6`)
  }
})

t.test('place: the stream key and the reader\'s tag, one reader for all without a cluster', async t => {
  const standalone = { prefix: 'sse:', cluster: false, slotGroups: 16 }
  t.same(place(standalone, 'chat'), { key: 'sse:chat', tag: '' })
  t.same(place(standalone, '{t}chat'), { key: 'sse:{t}chat', tag: '' }, 'a hash tag is just part of the name')

  const cluster = { prefix: 'sse:', cluster: true, slotGroups: 16 }
  t.same(place(cluster, 'chat'), { key: '{sse:11}chat', tag: '{sse:11}' }, 'a slot group')
  // its own tag chooses the group, so names that share it share a slot; the group's tag comes first
  const group = `{sse:${slotGroup('tenant-7', 16)}}`
  t.same(place(cluster, '{tenant-7}orders'), { key: `${group}{tenant-7}orders`, tag: group }, 'its own tag: its group')
  t.equal(place(cluster, '{tenant-7}invoices').tag, group, 'another name with that tag: the same group')
  t.equal(group, '{sse:13}', 'the same group in every version (FNV-1a of "tenant-7" is 0x4932b8fd: 13 modulo 16)')
  const groups = new Set(Array.from({ length: 500 }, (_, n) => place(cluster, `{tenant-${n}}room`).tag))
  t.ok(groups.size <= 16, `500 tags: at most 16 groups (${groups.size})`)
  t.same(place(cluster, '{}{t}x'), { key: `{sse:${slotGroup('{}{t}x', 16)}}{}{t}x`, tag: `{sse:${slotGroup('{}{t}x', 16)}}` }, 'an empty first tag is no tag')
  t.same(place({ ...cluster, slotGroups: 1 }, 'chat'), { key: '{sse:0}chat', tag: '{sse:0}' })
  // every key of a reader hashes by its tag: the stream key and the idempotency keys of its publishes
  for (const name of ['chat', '{tenant-7}orders', 'a}{b}c', '{}{t}x']) {
    const { key, tag } = place(cluster, name)
    t.equal(`{${hashTag(key) as string}}`, tag, `${name}: the key carries the tag`)
    t.equal(hashTag(idempotencyPrefix('sse:', key) + '{other}'), hashTag(key), `${name}: so does its idempotency key`)
  }
})

t.test('idempotencyPrefix: starts as no channel key does, and keeps two channels apart', async t => {
  t.equal(idempotencyPrefix('sse:', 'sse:chat'), '#8:sse:chat:', 'the example of docs/redis.md')
  t.equal(idempotencyPrefix('#x:', '#x:chat'), '!7:#x:chat:', 'a prefix that starts with #: ! instead')
  t.equal(idempotencyPrefix('sse:', '{sse:11}chat'), '#12:{sse:11}chat:')
  // channel "a" with key "b:c" and channel "a:b" with key "c" would meet without the length
  t.not(idempotencyPrefix('sse:', 'sse:a') + 'b:c', idempotencyPrefix('sse:', 'sse:a:b') + 'c')
  t.notOk(idempotencyPrefix('sse:', 'sse:chat').startsWith('sse:'), 'not under the prefix')
})
