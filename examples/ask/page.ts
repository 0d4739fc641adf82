// The page of the ask example, bundled for the browser by examples/ask/server.ts. `connect()` sends the question
// by POST with an Authorization header, and sends the same request again (with Last-Event-ID) if the connection
// drops; the events are decoded and typed by the route's own schema (examples/ask/events.ts).
import { connect, SseClientError, type ConnectionState } from '../../lib/client/browser.js'
import { answerEvents } from './events.js'

const $ = <E extends HTMLElement>(id: string): E => document.getElementById(id) as E
let current: AbortController | undefined

function note (text: string): void {
  const item = document.createElement('li')
  item.textContent = text
  $('notes').append(item)
}

function show (state: ConnectionState, delay?: number): void {
  $('state').textContent = delay === undefined ? state : `${state} in ${delay} ms`
  document.body.dataset.state = state
}

async function ask (prompt: string, token: string): Promise<void> {
  current?.abort()
  const controller = current = new AbortController()
  $('answer').textContent = ''
  const events = connect('/ask', {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ prompt }),
    schema: answerEvents,
    signal: controller.signal,
    onState: (state, info) => show(state, info.delay)
  })
  try {
    for await (const event of events) {
      // narrowed by its name: `data` has that event's type
      if (event.event === 'token') $('answer').textContent += (event.data.index === 0 ? '' : ' ') + event.data.text
      else if (event.event === 'note') note(event.data)
      else {
        note(`done: ${event.data.tokens} tokens`)
        document.body.dataset.done = String(event.data.tokens)
        break // the answer is complete: closes the connection instead of asking again
      }
    }
  } catch (err) {
    note(err instanceof SseClientError ? `failed (${err.code}${err.status === undefined ? '' : `, ${err.status}`})` : String(err))
  }
}

$('ask').addEventListener('submit', event => {
  event.preventDefault()
  delete document.body.dataset.done
  void ask($<HTMLTextAreaElement>('prompt').value, $<HTMLInputElement>('token').value)
})
$('interrupt').addEventListener('click', () => { void fetch('/interrupt', { method: 'POST' }) })
