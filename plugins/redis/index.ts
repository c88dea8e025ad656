/**
 * The `redis` backend: the distributed engine. Any number of Switchboards
 * share one Redis; any of them can serve any request. Each instance holds
 * two connections however many receivers wait: one for commands and Lua
 * scripts, one for pub/sub (wake-ups, terminations, the event bus).
 *
 * Lost data: a marker key is written when the store is first used; if it is
 * gone after a reconnect, Redis restarted without persistence (or was
 * flushed). The instance logs that at error level and goes on from the empty
 * store, whose every record is gone alike (no half-state), waking its
 * waiters so they find their mailboxes missing.
 *
 * Expiry: a mailbox with no activity (create, put, take, send) for
 * `mailbox_expiration_d` days disappears with its queue; a terminated
 * mailbox is remembered for `gravestone_expiration_d` days. At most
 * `finished_jobs_kept` finished jobs are kept.
 *
 * In flight: a message handed to a receiver stays in this instance's
 * in-flight hash for `redelivery_window_ms`; the instance beats into the
 * store (`instance_heartbeat_s`), and on each beat puts back at the head of
 * their mailboxes the messages of instances whose beats stopped, so a
 * message taken by an instance that dies is delivered again (at least once).
 *
 * Indexes: jobs by state and by creation, workers by agent name, so that a
 * dispatch, a list of the newest jobs or a list of one state reads about
 * what it lists. A store written before an index existed is indexed once,
 * at the first start that knows it.
 */
import * as v from 'valibot'
import type { Backend, BackendPlugin, PluginContext } from '../../src/backend/index'
import { PluginError } from '../../src/backend/index'
import { Waiters } from '../../src/backend/waiters'
import { Heartbeat } from '../../src/backend/instances'
import { RedeliveryWindowOption } from '../../src/backend/mailboxes'
import { FinishedJobsKeptOption, FinishedJobsMaxMbOption } from '../../src/backend/workers'
import { ConfigSchema } from '../../src/config'
import { RedisAgents } from './agents'
import { describeTarget, RedisConnection, redisTarget, type RedisTarget } from './connection'
import { RedisEventBus } from './events'
import { RedisInstances } from './instances'
import { RedisKeys } from './keys'
import { Drained } from './drained'
import { mailboxChannels, RedisMailboxes, wakeAll } from './mailboxes'
import { RedisWorkers } from './workers'
import { RedisEventLog, RedisWebhooks } from './journal'

export const DRIVER_NAME = 'redis'

const RedisOptionsSchema = v.object({
  ...v.pick(ConfigSchema, ['redis_url', 'redis_sentinels', 'redis_master_name', 'redis_cluster', 'redis_wait_replicas', 'redis_wait_timeout_ms', 'redis_command_timeout_ms', 'redis_prefix', 'mailbox_expiration_d', 'gravestone_expiration_d', 'instance_heartbeat_s', 'events_retained', 'events_retained_kb']).entries,
  /** How long a message handed to a receiver stays in flight, put back by the other instances if this one dies first. Set in `[backend_options]`. */
  redelivery_window_ms: RedeliveryWindowOption,
  /** Finished jobs (completed, failed, cancelled) kept for their history; the one that finished longest ago goes first. Set in `[backend_options]`. */
  finished_jobs_kept: FinishedJobsKeptOption,
  /** MiB the finished jobs kept take together (their values in Redis); past it the one that finished longest ago goes first too. */
  finished_jobs_max_mb: FinishedJobsMaxMbOption,
})

export type RedisOptions = v.InferOutput<typeof RedisOptionsSchema>

/** Connects to Redis and builds the backend; fails with a clear message when Redis cannot be reached. */
async function createRedisBackend(options: RedisOptions, context: PluginContext): Promise<Backend> {
  let target: RedisTarget
  try {
    target = redisTarget(options)
  } catch (error) {
    throw new PluginError(`backend "${DRIVER_NAME}": ${(error as Error).message}`)
  }
  const keys = new RedisKeys(options.redis_prefix, { cluster: 'cluster' in target })
  const waiters = new Waiters()
  const drained = new Drained()
  let connection: RedisConnection
  let workers: RedisWorkers
  /** The marker's value this instance last saw; null before the first check. */
  let marker: string | null = null
  /**
   * Writes the store marker if absent, then reads it; reports when the store
   * this instance knew has lost it: absent (this instance writes it anew) or
   * replaced (another instance sharing the prefix got there first).
   */
  const checkStoreMarker = async () => {
    const fresh = crypto.randomUUID()
    const created = (await connection.command.set(keys.storeMarker(), fresh, 'NX')) === 'OK'
    const current = created ? fresh : await connection.command.get(keys.storeMarker())
    if (marker !== null && current !== marker) {
      context.logger.error('Redis lost the data of this store (restarted without persistence, or flushed): serving from an empty store', { prefix: options.redis_prefix, redis: describeTarget(target) })
    }
    marker = current
  }
  const onReconnected = () => {
    wakeAll(waiters, drained)
    if (marker !== null) void checkStoreMarker().catch((error) => context.logger.warn('could not check the Redis store marker', { error: (error as Error).message }))
  }
  try {
    connection = await RedisConnection.open(target, `switchboard:${options.redis_prefix}`, context.logger, onReconnected, mailboxChannels(keys, waiters, drained), {
      replicas: options.redis_wait_replicas,
      timeoutMs: options.redis_wait_timeout_ms,
      commandTimeoutMs: options.redis_command_timeout_ms,
    }, keys.storeMarker())
    await checkStoreMarker()
    // Every slot of the store: the mailbox, workspace and worker buckets' (in a Cluster), beside the store's own.
    connection.probes = keys.buckets > 1 ? keys.allBuckets().flatMap((bucket) => [keys.activeMailboxes(bucket), keys.workspaces(bucket), keys.workers(bucket)]) : []
    workers = new RedisWorkers(connection, keys, options.finished_jobs_kept, options.finished_jobs_max_mb * 1024 * 1024)
    await workers.indexEarlierJobs()
    await workers.indexEarlierWorkers()
  } catch (error) {
    throw new PluginError(`backend "${DRIVER_NAME}": ${(error as Error).message}`)
  }
  if (options.redis_wait_replicas > 0) {
    // Said at startup, since otherwise the first sign is every write answered 503.
    const replicas = Number(/^connected_slaves:(\d+)/m.exec(((await connection.atStore('INFO', ['replication'])) as string))?.[1] ?? 0)
    if (replicas < options.redis_wait_replicas) {
      context.logger.warn('redis_wait_replicas asks for more replicas than the Redis master has: writes get 503 until enough of them follow it', { wanted: options.redis_wait_replicas, connected: replicas, redis: describeTarget(target) })
    }
  }
  const mailboxes = new RedisMailboxes(
    connection,
    keys,
    waiters,
    drained,
    { mailboxDays: options.mailbox_expiration_d, gravestoneDays: options.gravestone_expiration_d },
    options.redelivery_window_ms,
    context.logger,
  )
  const instances = new RedisInstances(connection, keys)
  // The messages this backend has in flight live as long as its heartbeat; on each beat it puts back those of dead instances.
  const heartbeat = new Heartbeat(
    instances,
    mailboxes.instance,
    options.instance_heartbeat_s * 1000,
    async () => {
      const restored = await mailboxes.recoverDead()
      if (restored > 0) context.logger.warn('messages in flight on a dead instance were put back in their mailboxes', { count: restored })
    },
    context.logger,
  )
  await heartbeat.start()
  const events = new RedisEventBus(connection, keys)
  return {
    name: DRIVER_NAME,
    mailboxes,
    workers,
    agents: new RedisAgents(connection, keys),
    events,
    instances,
    eventLog: new RedisEventLog(connection, keys, events, { maxEvents: options.events_retained, maxBytes: options.events_retained_kb * 1024 }),
    webhooks: new RedisWebhooks(connection, keys),
    async ready() {
      if (!connection.isReady()) return false
      // In a Cluster, the masters of every slot of the store (a store with a slot unserved cannot serve some mailboxes).
      return await Promise.race([connection.serving(), Bun.sleep(1000).then(() => false)])
    },
    async close() {
      // Deliveries settled before the heartbeat stops, so nobody puts back what was delivered.
      await mailboxes.close()
      await heartbeat.stop()
      await connection.close()
    },
  }
}

const plugin: BackendPlugin<RedisOptions> = {
  name: DRIVER_NAME,
  options: RedisOptionsSchema,
  create: createRedisBackend,
}

export default plugin
