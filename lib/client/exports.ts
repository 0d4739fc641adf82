// What both entries of `fastify-typed-sse/client` (lib/client/index for Node, lib/client/browser for bundles) export
// beside `connect()`: what a consumer or a test needs to read a stream, without the server side.
export { parseEventStream, type ParseOptions } from './parse.js'
export { SseClientError, SseParseError, SseRuntimeError, type SseClientErrorCode } from '../errors.js'
export type {
  ClientSchema,
  Connect,
  ConnectBaseOptions,
  ConnectOptions,
  DataOf,
  FetchBody,
  FetchInit,
  FetchLike,
  FetchResponseLike,
  ItemsOf,
  ReceivedEvent,
  ReceivedItem,
  ReceivedOf
} from './connect.js'
export type { ConnectBody } from './http.js'
export type { DataValidator } from './decode.js'
export type { ConnectionState, ConnectionStateInfo } from './session.js'
export type { SseItem } from '../types.js'
