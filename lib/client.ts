// `fastify-typed-sse/client`: what a Node consumer or a test needs to read a stream, without the server side.
export { parseEventStream, SseParseError, type ParseOptions } from './parse.js'
export type { SseItem } from './types.js'
