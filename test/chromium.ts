import t from 'tap'
import { existsSync } from 'node:fs'
import { chromium, type Browser } from 'playwright-core'
import { deferred } from './helpers.js'

// Debian's Chromium driven by playwright-core, for the browser test files: one browser per file.

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
// As the machine notes say: without the background-networking flags Chromium keeps dialling Google's hosts.
const FLAGS = ['--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-sandbox']

/**
 * The browser of a test file, launched before its first test and closed after the last; undefined (and the file
 * failed, not skipped: npm test installs Chromium) when there is none.
 */
export function chromiumForFile (): { browser: () => Browser } | undefined {
  if (!existsSync(CHROMIUM)) {
    t.fail(`Chromium not found at ${CHROMIUM}: the browser tests need it. Install it with "apt-get install -y chromium" ` +
      '(npm test does so when it is missing) or point CHROMIUM_PATH at a Chromium binary.')
    return undefined
  }
  let browser!: Browser
  t.before(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM, headless: true, chromiumSandbox: false, args: FLAGS, timeout: 30_000
    })
  })
  t.teardown(() => browser?.close())
  return { browser: () => browser }
}

/** What a page reports, in order, and bounded waits on them. */
export class Reports<R> {
  readonly list: R[] = []
  #waiters: Array<() => void> = []

  push (report: R): void {
    this.list.push(report)
    for (const wake of this.#waiters.splice(0)) wake()
  }

  /** Resolves with the reports so far once `count` of them match `match`; fails after `timeout` ms. */
  async until (count: number, match: (r: R) => boolean, timeout: number): Promise<R[]> {
    const deadline = Date.now() + timeout
    for (;;) {
      if (this.list.filter(match).length >= count) return this.list
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`waited ${timeout} ms for ${count} matching browser reports; got ${JSON.stringify(this.list)}`)
      const woken = deferred()
      this.#waiters.push(woken.resolve)
      const timer = setTimeout(woken.resolve, left)
      await woken.promise
      clearTimeout(timer)
    }
  }
}
