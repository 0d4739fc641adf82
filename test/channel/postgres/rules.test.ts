// The pure rules of PostgreSQL channels: when a client or a reader cannot go on without a gap.
import t from 'tap'
import { catchUp, channelRow, parseNotification, replayReset } from '../../../lib/channel/postgres/rules.js'

const row = channelRow({ epoch: 'e1', last_seq: '10', trimmed_seq: '4' })
const item = (seq: number) => ({ seq, head: '', tail: 'data: x\n\n', fields: '{}' })

t.test('a row as pg answers it', async t => {
  t.same(row, { epoch: 'e1', last: 10, trimmed: 4 })
})

t.test('replay: unknown, expired or nothing in the way', async t => {
  const now = 1_000_000
  t.equal(replayReset(undefined, 'e1-5', undefined, now, Infinity), 'unknown', 'no row: nothing was published')
  t.equal(replayReset(row, 'garbage', undefined, now, Infinity), 'unknown', 'not an id')
  t.equal(replayReset(row, 'e2-5', undefined, now, Infinity), 'unknown', 'another epoch')
  t.equal(replayReset(row, 'e1-11', undefined, now, Infinity), 'unknown', 'after the last number given')
  t.equal(replayReset(row, 'e1-3', 0, now, Infinity), 'expired', 'before what was removed')
  t.equal(replayReset(row, 'e1-4', now - 10, now, 1000), undefined, 'at the last removed: nothing missed')
  t.equal(replayReset(row, 'e1-4', now - 1000, now, 1000), 'expired', 'the first item after it is too old')
  t.equal(replayReset(row, 'e1-10', undefined, now, 1000), undefined, 'at the newest')
})

t.test('catch-up: the row gone or made again, items removed before they were read, or none', async t => {
  t.same(catchUp('e1', 5, undefined, []), { relocate: true })
  t.same(catchUp('e0', 5, row, []), { relocate: true })
  t.same(catchUp('e1', 10, row, []), { relocate: false, lost: undefined }, 'nothing new')
  t.same(catchUp('e1', 8, row, [item(9), item(10)]), { relocate: false, lost: undefined }, 'the next ones')
  t.same(catchUp('e1', 2, row, [item(5), item(6)]), { relocate: false, lost: 4 }, 'trimmed before read')
  t.same(catchUp('e1', 7, row, []), { relocate: false, lost: 10 }, 'deleted before read')
})

t.test('notifications say <seq>:<epoch>:<channel>', async t => {
  t.same(parseNotification('12:ab3:room:a'), { seq: 12, epoch: 'ab3', name: 'room:a' })
  t.same(parseNotification('1:e:'), { seq: 1, epoch: 'e', name: '' })
  for (const payload of [undefined, '', 'x:e:room', '0:e:room', '12:room', '12::room', '12:E:room']) {
    t.equal(parseNotification(payload), undefined, String(payload))
  }
})
