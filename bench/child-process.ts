import { fork, type ChildProcess } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'

// The Redis benches' orchestration: a child process (this same script, another role) and a way to wait for its
// next message of a type. Shared so each bench reads as what it measures.

export interface Child<From extends { type: string }> {
  proc: ChildProcess
  /** The next message of that type (earlier ones of other types wait their turn); throws after `ms`. */
  next: <K extends From['type']>(type: K, ms?: number) => Promise<Extract<From, { type: K }>>
  send: (message: unknown) => boolean
}

/** Forks `script` with `args` (its role and settings); `timeout` is `next()`'s default wait in ms. */
export function child<From extends { type: string }> (
  script: string, args: string[], options: { execArgv?: string[], timeout?: number } = {}
): Child<From> {
  const { execArgv = [], timeout = 120_000 } = options
  const proc: ChildProcess = fork(script, args, { stdio: 'inherit', execArgv: [...process.execArgv, ...execArgv] })
  const messages: From[] = []
  let wake: (() => void) | undefined
  proc.on('message', (m: From) => { messages.push(m); wake?.() })
  const next = async <K extends From['type']>(type: K, ms = timeout): Promise<Extract<From, { type: K }>> => {
    const deadline = Date.now() + ms
    for (;;) {
      const i = messages.findIndex(m => m.type === type)
      if (i !== -1) return messages.splice(i, 1)[0] as Extract<From, { type: K }>
      if (Date.now() > deadline) throw new Error(`no "${type}" from ${args.join(' ')} within ${ms} ms`)
      await Promise.race([new Promise<void>(resolve => { wake = resolve }), sleep(1000)])
    }
  }
  return { proc, next, send: (m: unknown) => proc.send(m as object) }
}
