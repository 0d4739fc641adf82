// The one schema of the ask example, shared by the route (examples/ask/server.ts) and the page
// (examples/ask/page.ts): the route types what it yields with it, the page decodes and types what it reads.
// TypeBox's builders are imported by name and sseSchema() from the schema entry: the page's bundle then carries
// a few hundred bytes of them, not all of TypeBox and not the server.
import { Integer, Object as TObject, String as TString } from '@sinclair/typebox'
import { sseSchema } from '../../lib/schema.js'

export const Question = TObject({ prompt: TString({ minLength: 1, maxLength: 500 }) })
export const Refusal = TObject({ error: TString() })

export const answerEvents = sseSchema({
  token: TObject({ index: Integer({ minimum: 0 }), text: TString() }),
  done: TObject({ tokens: Integer({ minimum: 0 }) }),
  note: TString() // string data: the text itself on the wire, not JSON
})
