// `fastify-typed-sse/client`: what a Node consumer or a test needs to read a stream, without the server side.
export { parseEventStream, type ParseOptions } from './parse.js'
export { SseClientError, SseParseError, SseRuntimeError, type SseClientErrorCode } from '../errors.js'
export {
  connect,
  type ClientSchema,
  type ConnectBaseOptions,
  type ConnectOptions,
  type DataOf,
  type FetchLike,
  type FetchResponseLike,
  type ItemsOf,
  type ReceivedEvent,
  type ReceivedItem,
  type ReceivedOf
} from './connect.js'
export type { SseItem } from '../types.js'
