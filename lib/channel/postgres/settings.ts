import type { Client, Pool } from 'pg'
import type { schemaNames } from './schema.js'

/** What every channel of one `postgresChannels()` backend shares. */
export interface PostgresSettings {
  readonly pool: Pool
  readonly prefix: string
  readonly names: ReturnType<typeof schemaNames>
  readonly publishTimeout: number
  readonly idempotencyWindow: number
  readonly readerName: string
  /** Opens the connection the listener LISTENs on. */
  readonly listener: () => Promise<Client>
}
