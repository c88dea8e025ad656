/**
 * The `sqlite` backend: one file on one host, kept by `bun:sqlite` in WAL
 * mode; everything acknowledged survives a restart or a crash of the process.
 * See README.md beside this file for the durability level and crash window.
 */
import * as v from 'valibot'
import type { Backend, BackendPlugin } from '../../src/backend/index'
import { LocalEventBus } from '../../src/backend/events'
import { LocalInstances } from '../../src/backend/instances'
import { mailboxRetention, RedeliveryWindowOption } from '../../src/backend/mailboxes'
import { FinishedJobsKeptOption, FinishedJobsMaxMbOption } from '../../src/backend/workers'
import { ConfigSchema } from '../../src/config'
import { GroupCommit } from './commit'
import { DatabaseSize, openDatabase } from './database'
import { SqliteMailboxes } from './mailboxes'
import { SqliteWorkers } from './workers'
import { SqliteAgents } from './agents'
import { SqliteEventLog, SqliteWebhooks } from './journal'

export const DRIVER_NAME = 'sqlite'

const SqliteOptions = v.object({
  /** Database file; created with its schema when absent. */
  db: v.optional(v.pipe(v.string(), v.minLength(1)), './switchboard.db'),
  /** `full`: a commit is on disk before the 200 (survives power loss); `normal`: survives a crash of the process, not of the host. */
  synchronous: v.optional(v.picklist(['full', 'normal']), 'full'),
  /** Once the file holds this many MiB, client sends are refused with 507 and nothing of them stored; the rest (takes, mailboxes, jobs) may take it a quarter further, at least 8 MiB (0: as large as its disk allows). */
  max_db_mb: v.optional(v.pipe(v.number(), v.minValue(0)), 0),
  /** How long a message handed to a receiver is kept, to be delivered again if the process dies before the answer is out. */
  redelivery_window_ms: RedeliveryWindowOption,
  mailbox_expiration_d: ConfigSchema.entries.mailbox_expiration_d,
  gravestone_expiration_d: ConfigSchema.entries.gravestone_expiration_d,
  /** Finished jobs (completed, failed, cancelled) kept for their history; the one that finished longest ago goes first. */
  finished_jobs_kept: FinishedJobsKeptOption,
  /** MiB the finished jobs kept take together (their JSON); past it the one that finished longest ago goes first too. */
  finished_jobs_max_mb: FinishedJobsMaxMbOption,
  events_retained: ConfigSchema.entries.events_retained,
  events_retained_kb: ConfigSchema.entries.events_retained_kb,
})

export type SqliteOptions = v.InferOutput<typeof SqliteOptions>

const plugin: BackendPlugin<SqliteOptions> = {
  name: DRIVER_NAME,
  options: SqliteOptions,
  create(options, { logger }): Backend {
    const db = openDatabase({ path: options.db, synchronous: options.synchronous, maxMb: options.max_db_mb })
    // One group commit for the three stores: the writes of one turn share a commit, whatever they change.
    const writes = new GroupCommit(db)
    const mailboxes = new SqliteMailboxes(db, writes, options.redelivery_window_ms, logger, mailboxRetention(options), new DatabaseSize(db, options.max_db_mb))
    let closed = false
    return {
      name: DRIVER_NAME,
      mailboxes,
      workers: new SqliteWorkers(db, writes, options.finished_jobs_kept, options.finished_jobs_max_mb * 1024 * 1024),
      agents: new SqliteAgents(db, writes),
      events: new LocalEventBus(),
      // One process per file (its lock): every instance a previous process recorded is dead, so beats need not outlive this one.
      instances: new LocalInstances(),
      eventLog: new SqliteEventLog(db, writes, { maxEvents: options.events_retained, maxBytes: options.events_retained_kb * 1024 }),
      webhooks: new SqliteWebhooks(db, writes),
      async ready() {
        if (closed) return false
        try {
          return db.query<{ ok: number }, []>('SELECT 1 AS ok').get()?.ok === 1
        } catch {
          return false
        }
      },
      async close() {
        if (closed) return
        closed = true
        // Writes still queued are committed before the file closes.
        writes.flush()
        mailboxes.close()
        db.close(true)
      },
    }
  },
}

export default plugin
