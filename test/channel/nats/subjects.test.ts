// The pure pieces of NATS channels: subjects, stream tags, message bodies, and when a client cannot resume.
import t from 'tap'
import {
  checkStreamName, checkSubjectPrefix, NOT_OURS, pack, replayReset, streamTag, subjectToken, unpack, worthReading
} from '../../../lib/channel/nats/subjects.js'

t.test('prefixes and stream names are checked, naming the option', async t => {
  t.equal(checkSubjectPrefix('sse.app-1_x', 'f()'), 'sse.app-1_x')
  for (const prefix of ['', 'a..b', 'a.', '.a', 'a b', 'a.*', 'a.>', 'x'.repeat(65), 7]) {
    t.throws(() => checkSubjectPrefix(prefix, 'f()'), { field: 'prefix', message: /^f\(\) option "prefix" must be/ })
  }
  t.equal(checkStreamName('SSE_1-a', 'f()'), 'SSE_1-a')
  for (const stream of ['', 'a.b', 'a b', 'x'.repeat(65), null]) {
    t.throws(() => checkStreamName(stream, 'f()'), { code: 'FST_SSE_INVALID_OPTION', field: 'stream' })
  }
})

t.test('a channel name is one subject token, and two names never share one', async t => {
  t.equal(subjectToken('room-1_A'), 'room-1_A')
  t.equal(subjectToken('a.b c*>~'), 'a~2eb~20c~2a~3e~7e')
  t.equal(subjectToken('é✓'), '~c3~a9~e2~9c~93')
  t.not(subjectToken('a~2e'), subjectToken('a.'))
})

t.test('a stream tag follows its creation time', async t => {
  t.equal(streamTag('2026-01-01T00:00:00.000000001Z'), streamTag('2026-01-01T00:00:00.000000001Z'))
  t.not(streamTag('2026-01-01T00:00:00.000000001Z'), streamTag('2026-01-01T00:00:00.000000002Z'))
  t.match(streamTag('x'), /^[0-9a-z]{1,7}$/)
})

t.test('a message body holds the frame parts and the fields', async t => {
  const stored = { head: ': c\n', tail: 'data: é\n\n', fields: '{"data":"é"}' }
  t.equal(pack(stored), '4:9:: c\ndata: é\n\n{"data":"é"}')
  t.same(unpack(pack(stored)), stored)
  t.same(unpack('0:0:'), { head: '', tail: '', fields: '' })
  for (const body of ['', 'x', '1:2', '01:0:', '5:5:short', '1:x:']) t.equal(unpack(body), undefined, body)
  t.same(NOT_OURS, { head: '', tail: '', fields: '' })
})

t.test('a replay reads what it replays, not more than the history nor all the stream keeps of the channel', async t => {
  t.equal(worthReading(0, 10, 100), false)
  t.equal(worthReading(5, 10, 100), true)
  t.equal(worthReading(11, 10, 100), false)
  t.equal(worthReading(5, 10, 5), false)
  t.equal(worthReading(5, 10, 0), true)
})

t.test('replay: unknown, expired or nothing in the way', async t => {
  const stream = { tag: 't1', first: 5, last: 20 }
  const read = { count: 0, firstAt: undefined, now: 1000, maxAge: Infinity }
  t.equal(replayReset(stream, undefined, 0, read), 'unknown')
  t.equal(replayReset(stream, { tag: 't2', seq: 6 }, 0, read), 'unknown', 'another stream')
  t.equal(replayReset(stream, { tag: 't1', seq: 21 }, 0, read), 'unknown', 'after the last message')
  t.equal(replayReset(stream, { tag: 't1', seq: 3 }, 0, read), 'expired', 'messages after it were removed')
  t.equal(replayReset(stream, { tag: 't1', seq: 4 }, 0, read), undefined, 'just before the oldest kept')
  t.equal(replayReset(stream, { tag: 't1', seq: 10 }, 3, { ...read, count: 2 }), 'expired', 'not all were read')
  t.equal(replayReset(stream, { tag: 't1', seq: 10 }, 3, { ...read, count: 3, firstAt: 500, maxAge: 100 }), 'expired', 'too old')
  t.equal(replayReset(stream, { tag: 't1', seq: 10 }, 3, { ...read, count: 3, firstAt: 950, maxAge: 100 }), undefined)
})
