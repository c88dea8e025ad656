/**
 * The `memory` backend: zero setup, one process, nothing survives a restart.
 *
 * Retention is bounded so a long-running process does not grow: mailboxes
 * expire as in the redis backend (`mailbox_expiration_d` of idleness,
 * gravestones after `gravestone_expiration_d`), and only the newest
 * `finished_jobs_kept` finished jobs, of `finished_jobs_max_mb` together,
 * are kept for their history. What clients make the exchange hold (queued
 * messages, pending requests, mailboxes, counts of sent requests) may take
 * `max_queued_mb` together, in UTF-8 bytes: past that a send, create or share
 * is refused (507) until receivers catch up, so no client can grow the
 * process until the host kills it. Workspaces, their tokens and the proxy's
 * activity take `max_registry_mb` together: past it a new or grown workspace
 * is refused (507) and the oldest activity goes first.
 */
import * as v from 'valibot'
import type { Backend, BackendPlugin } from '../../src/backend/index'
import { LocalEventBus } from '../../src/backend/events'
import { LocalInstances } from '../../src/backend/instances'
import { mailboxRetention } from '../../src/backend/mailboxes'
import { FinishedJobsKeptOption, FinishedJobsMaxMbOption } from '../../src/backend/workers'
import { ConfigSchema } from '../../src/config'
import { MemoryMailboxes } from './mailboxes'
import { MemoryWorkers } from './workers'
import { MemoryAgents } from './agents'
import { MemoryEventLog, MemoryWebhooks } from './journal'

export const DRIVER_NAME = 'memory'

const MemoryOptionsSchema = v.object({
  mailbox_expiration_d: ConfigSchema.entries.mailbox_expiration_d,
  gravestone_expiration_d: ConfigSchema.entries.gravestone_expiration_d,
  /** Finished jobs (completed, failed, cancelled) kept for their history; the one that finished longest ago goes first. Set in `[backend_options]`. */
  finished_jobs_kept: FinishedJobsKeptOption,
  /** MiB the finished jobs kept take together (their JSON); past it the one that finished longest ago goes first too. Set in `[backend_options]`. */
  finished_jobs_max_mb: FinishedJobsMaxMbOption,
  /** MiB (UTF-8 bytes plus each record's cost) of queued messages, pending requests, mailboxes and sent-request counts together; a send, create or share past it is refused with 507. Set in `[backend_options]`. */
  max_queued_mb: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1_048_576)), 512),
  /** MiB (UTF-8 JSON) of workspaces, their tokens and the proxy's activity records together; a workspace created or grown past it is refused with 507, activity past it pushes out the oldest activity. Set in `[backend_options]`. */
  events_retained: ConfigSchema.entries.events_retained,
  events_retained_kb: ConfigSchema.entries.events_retained_kb,
  max_registry_mb: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1_048_576)), 256),
})

export type MemoryOptions = v.InferOutput<typeof MemoryOptionsSchema>

const plugin: BackendPlugin<MemoryOptions> = {
  name: DRIVER_NAME,
  options: MemoryOptionsSchema,
  create(input): Backend {
    // Parsed again because plugins that wrap this one may call create() with their own options, or none.
    const options = v.parse(MemoryOptionsSchema, input)
    const mailboxes = new MemoryMailboxes(
      mailboxRetention(options),
      options.max_queued_mb * 1024 * 1024,
    )
    return {
      name: DRIVER_NAME,
      mailboxes,
      workers: new MemoryWorkers({ finishedJobsKept: options.finished_jobs_kept, finishedJobsMaxBytes: options.finished_jobs_max_mb * 1024 * 1024 }),
      agents: new MemoryAgents(options.max_registry_mb * 1024 * 1024),
      events: new LocalEventBus(),
      instances: new LocalInstances(),
      eventLog: new MemoryEventLog({ maxEvents: options.events_retained, maxBytes: options.events_retained_kb * 1024 }),
      webhooks: new MemoryWebhooks(),
      ready: async () => true,
      close: async () => mailboxes.close(),
    }
  },
}

export default plugin
