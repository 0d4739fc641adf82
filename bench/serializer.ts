// `npx tsx bench/serializer.ts`: encoding one SSE event with the serializer the plugin compiles from the route's
// data schema (fast-json-stringify, through Fastify's serializer compiler, exactly as a typed route gets it)
// against JSON.stringify, both through encodeItem. Not part of `npm test`: timings depend on the machine.
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import { encodeItem, type SseSerializer } from '../lib/index.js'
import { recordFigures, recording } from './figures.js'

const Message = Type.Object({
  id: Type.Integer(),
  room: Type.String(),
  user: Type.Object({ name: Type.String(), admin: Type.Boolean() }),
  text: Type.String(),
  sentAt: Type.String(),
  tags: Type.Array(Type.String()),
  reactions: Type.Array(Type.Object({ emoji: Type.String(), count: Type.Integer() }))
})

const data = {
  id: 4211,
  room: 'general',
  user: { name: 'ann', admin: false },
  text: 'The build is green again, thanks for the quick fix!',
  sentAt: '2026-11-26T13:45:00.000Z',
  tags: ['ci', 'release'],
  reactions: [{ emoji: '🎉', count: 3 }, { emoji: '👍', count: 5 }]
}

// The compiled serializer, obtained the way the plugin obtains it on a typed route.
async function compiledSerializer (): Promise<SseSerializer> {
  const app = Fastify()
  let serializer: SseSerializer | undefined
  app.get('/', (request, reply) => {
    serializer = reply.compileSerializationSchema(Message) as SseSerializer
    return 'ok'
  })
  await app.inject('/')
  await app.close()
  if (serializer === undefined) throw new Error('no serializer compiled')
  return serializer
}

function opsPerSecond (serialize: SseSerializer, iterations: number): number {
  const item = { id: '4211', event: 'message', data }
  let bytes = 0
  const start = process.hrtime.bigint()
  for (let i = 0; i < iterations; i++) bytes += encodeItem(item, serialize).length
  const ns = Number(process.hrtime.bigint() - start)
  if (bytes === 0) throw new Error('nothing encoded')
  return iterations / (ns / 1e9)
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] as number
}

const compiled = await compiledSerializer()
const json: SseSerializer = JSON.stringify
if (encodeItem({ data }, compiled) !== encodeItem({ data }, json)) throw new Error('the two serializers disagree')

const iterations = 200_000
const rounds = 7
for (let i = 0; i < 3; i++) { opsPerSecond(json, iterations); opsPerSecond(compiled, iterations) } // warm up
const results = { json: [] as number[], compiled: [] as number[] }
for (let i = 0; i < rounds; i++) {
  results.json.push(opsPerSecond(json, iterations))
  results.compiled.push(opsPerSecond(compiled, iterations))
}
const jsonOps = median(results.json)
const compiledOps = median(results.compiled)
const format = (ops: number): string => `${Math.round(ops).toLocaleString('en-US')} events/s`
const calls = iterations.toLocaleString('en-US')
console.log(`node ${process.version}, ${rounds} rounds of ${calls} encodeItem() calls, median:`)
console.log(`  JSON.stringify                  ${format(jsonOps)}`)
console.log(`  compiled (fast-json-stringify) ${format(compiledOps)}`)
console.log(`  compiled / JSON.stringify: ${(compiledOps / jsonOps).toFixed(2)}x`)
if (recording()) {
  recordFigures('serializer', [
    `${rounds} rounds of ${calls} \`encodeItem()\` calls (a chat message of 7 fields), median.`, '',
    '| serializer | events/s | × `JSON.stringify` |', '|---|---|---|',
    `| \`JSON.stringify\` | ${format(jsonOps)} | ×1.00 |`,
    `| compiled from the data schema (fast-json-stringify) | ${format(compiledOps)} | ×${(compiledOps / jsonOps).toFixed(2)} |`
  ].join('\n'), 'npx tsx bench/serializer.ts')
}
