// `fastify-typed-sse/client`: what a Node consumer or a test needs to read a stream, without the server side.
export { parseEventStream, SseParseError, type ParseOptions } from './parse.js'
export {
  connect,
  SseClientError,
  type ClientSchema,
  type ConnectBaseOptions,
  type ConnectOptions,
  type DataOf,
  type FetchLike,
  type FetchResponseLike,
  type ReceivedItem
} from './connect.js'
export type { SseItem } from '../types.js'
