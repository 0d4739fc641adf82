// `fastify-typed-sse/client`: what a Node consumer or a test needs to read a stream, without the server side.
export { parseEventStream, type ParseOptions } from './parse.js'
export { SseClientError, SseParseError, SseRuntimeError, type SseClientErrorCode } from '../errors.js'
export { connect, type ConnectBaseOptions, type ConnectOptions, type FetchLike, type FetchResponseLike } from './connect.js'
export type { ClientSchema, DataOf, ItemsOf, ReceivedEvent, ReceivedItem, ReceivedOf } from './decode.js'
export type { SseItem } from '../types.js'
