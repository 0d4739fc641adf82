// Type tests of the error catalogue: codes are literal unions, so a misspelt code fails to compile.
import { expectTypeOf } from 'expect-type'
import {
  SseError, SseParseError, SseRuntimeError, type SseInputErrorCode, type SseRuntimeErrorCode
} from '../lib/index.js'
import { SseClientError, type SseClientErrorCode } from '../lib/client/index.js'

declare const input: SseError
expectTypeOf(input).toMatchTypeOf<TypeError>()
expectTypeOf(input.code).toEqualTypeOf<SseInputErrorCode>()
expectTypeOf(input.field).toEqualTypeOf<string>()

declare const runtime: SseRuntimeError
expectTypeOf(runtime.code).toEqualTypeOf<SseRuntimeErrorCode>()
// @ts-expect-error a runtime error is not a bad input: it has no field
expectTypeOf(runtime.field).toEqualTypeOf<string>()

declare const client: SseClientError
expectTypeOf(client).toMatchTypeOf<SseRuntimeError>()
expectTypeOf(client.code).toEqualTypeOf<SseClientErrorCode>()
expectTypeOf(client.status).toEqualTypeOf<number | undefined>()

declare const parse: SseParseError
expectTypeOf(parse.code).toEqualTypeOf<'FST_SSE_PARSE'>()

function isClosed (err: unknown): boolean {
  // @ts-expect-error no such code
  return err instanceof SseRuntimeError && err.code === 'FST_SSE_CHANEL_CLOSED'
}
void isClosed
