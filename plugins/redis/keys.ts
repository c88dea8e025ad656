/**
 * Every Redis key and pub/sub channel of the redis backend, in one place.
 * All of them start with the configured prefix, so several Switchboards (or
 * test runs) can share one Redis without seeing each other.
 *
 * In a Redis Cluster every key carries a hash tag naming its unit of
 * atomicity, so that each script's keys share one slot:
 * - a mailbox bucket, `{prefix:m<n>}` (MAILBOX_BUCKETS of them): a mailbox
 *   with its queue, pending requests, put ids and outgoing counters, and
 *   the bucket's own counts, discover indexes and in-flight hashes. The
 *   exchange's traffic spreads over the buckets' slots; what spans
 *   mailboxes (counts, discover, recovery) walks the buckets (bounded
 *   fan-out) and sums, and a put between two buckets is two scripts;
 * - a workspace bucket, `{prefix:a<n>}` (as many): a workspace with its
 *   tokens (a token is chosen so that its digest falls in its workspace's
 *   bucket: see `tokenFits`), its activity and the index of its children,
 *   and the bucket's index of workspaces. Listings walk the buckets and
 *   merge by the creation sequence; a child's entry in its parent's index
 *   is written apart, before the child;
 * - a worker bucket, `{prefix:w<n>}` (as many): an agent name with its
 *   workers and their slots, and the bucket's index of workers. A dispatch's
 *   pick and reservation is one script in the name's slot; a worker
 *   addressed by id alone is found through the store's worker directory;
 *   listings walk the buckets and merge by the registration sequence;
 * - the store, `{prefix}`: jobs and their backlog, idempotency keys,
 *   instances, the event log, webhooks, the worker directory, the store
 *   marker and the sequence (one slot).
 * A single Redis or a Sentinel master has one bucket of each and keeps the
 * untagged names, so stores written before stay readable without a migration.
 * Channels are classic pub/sub (heard on every node), named alike.
 */
import type { EntityId } from '../../src/backend/mailboxes'
import { mailboxKey, outgoingKey } from '../../src/backend/mailboxes'

/** Mailbox (and workspace, and worker) buckets in a Redis Cluster: enough to spread over a few masters' slots, few enough to walk on every scrape. Fixed: every instance of a store must agree. */
export const MAILBOX_BUCKETS = 16

/** FNV-1a: a mailbox key's bucket, the same on every instance and version. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193) >>> 0
  return hash
}

export class RedisKeys {
  /** What every store key starts with: the prefix, as a hash tag in a Cluster. */
  private readonly start: string
  /** Mailbox buckets: MAILBOX_BUCKETS in a Cluster, 1 (untagged) otherwise. */
  readonly buckets: number

  constructor(
    readonly prefix: string,
    { cluster = false }: { cluster?: boolean } = {},
  ) {
    this.start = cluster ? `{${prefix}}` : prefix
    this.buckets = cluster ? MAILBOX_BUCKETS : 1
  }

  private key(...parts: string[]): string {
    return `${this.start}:${parts.join(':')}`
  }

  /** A key of mailbox bucket `bucket`. */
  private inBucket(bucket: number, ...parts: string[]): string {
    return this.buckets === 1 ? this.key(...parts) : `{${this.prefix}:m${bucket}}:${parts.join(':')}`
  }

  /** A key of workspace bucket `bucket`. */
  private inWorkspaceBucket(bucket: number, ...parts: string[]): string {
    return this.buckets === 1 ? this.key(...parts) : `{${this.prefix}:a${bucket}}:${parts.join(':')}`
  }

  /** The bucket whose slot holds a workspace's keys (and its tokens'). */
  workspaceBucketOf(id: string): number {
    return this.buckets === 1 ? 0 : fnv1a(id) % this.buckets
  }

  /** Whether a token digest falls in the workspace's bucket, so that the workspace and its tokens change in one script. */
  tokenFits(workspaceId: string, tokenHash: string): boolean {
    return this.buckets === 1 || fnv1a(tokenHash) % this.buckets === this.workspaceBucketOf(workspaceId)
  }

  /** The bucket whose slot holds a mailbox's keys. */
  bucketOf(id: EntityId): number {
    return this.buckets === 1 ? 0 : fnv1a(mailboxKey(id)) % this.buckets
  }

  /** Every bucket number. */
  allBuckets(): number[] {
    return Array.from({ length: this.buckets }, (_, bucket) => bucket)
  }

  /** String: the id of this store's data, written once; its absence after a reconnect means Redis lost the data. */
  storeMarker(): string {
    return this.key('store')
  }

  /** Hash: owner, state, class, mro, seq, shares, active, completed. */
  mailbox(id: EntityId): string {
    return this.inBucket(this.bucketOf(id), 'mailbox', mailboxKey(id))
  }

  /** Prefix of every mailbox hash; scripts append a mailbox key (the counts sweep walks an index of mailbox keys). */
  mailboxPrefix(bucket = 0): string {
    return this.inBucket(bucket, 'mailbox', '')
  }

  /** Prefix of agent mailbox hashes; scripts append a uid (discover walks an index of uids). */
  agentMailboxPrefix(bucket = 0): string {
    return this.inBucket(bucket, 'mailbox', 'agent', '')
  }

  /** List of queued message texts, oldest first. */
  queue(id: EntityId): string {
    return this.inBucket(this.bucketOf(id), 'queue', mailboxKey(id))
  }

  /** Sorted set put id → epoch ms until which it is remembered: the puts into the mailbox Redis applied lately, so that a put it receives twice (re-sent after a lost reply) queues once. */
  puts(id: EntityId): string {
    return this.inBucket(this.bucketOf(id), 'puts', mailboxKey(id))
  }

  /** Hash tag → PendingRequest JSON: requests put into the mailbox and not yet answered. */
  pending(id: EntityId): string {
    return this.inBucket(this.bucketOf(id), 'pending', mailboxKey(id))
  }

  /** Counter of the requests one client sent from the mailbox key (kept even when the sender has no mailbox here). */
  outgoing(id: EntityId, clientId: string): string {
    return this.outgoingPrefix(this.bucketOf(id)) + outgoingKey(id, clientId)
  }

  /** Prefix of the outgoing counters; the stats script appends the outgoingKey of the client whose count it reads. */
  outgoingPrefix(bucket = 0): string {
    return this.inBucket(bucket, 'outgoing', '')
  }

  /** Prefix of one bucket's discover indexes; scripts append a class name. Each index is a sorted set of agent uids by creation order. */
  discoverPrefix(bucket = 0): string {
    return this.inBucket(bucket, 'discover', '')
  }

  /** Sorted set of the agents of one bucket whose MRO holds `className`. */
  discover(bucket: number, className: string): string {
    return this.discoverPrefix(bucket) + className
  }

  /** Sorted set of one bucket's active mailboxes' keys, scored by the epoch ms at which each one's hash expires (the counts' index). */
  activeMailboxes(bucket = 0): string {
    return this.inBucket(bucket, 'active')
  }

  /** Hash mailbox key → queue length as last seen by a script, for one bucket's active mailboxes with messages queued. */
  queuedBy(bucket = 0): string {
    return this.inBucket(bucket, 'queued')
  }

  /** Counter: the sum of `queuedBy`, i.e. the messages queued in one bucket's active mailboxes. */
  queuedTotal(bucket = 0): string {
    return this.inBucket(bucket, 'queued-total')
  }

  /** Counter giving every mailbox (and webhook subscription) its creation order. */
  sequence(): string {
    return this.key('sequence')
  }

  /** Sorted set of instance ids, scored by the epoch ms (Redis's clock) at which each one's last heartbeat expires. */
  instances(): string {
    return this.key('instances')
  }

  /**
   * Hash take number → the message one take of `instance` popped from a mailbox of `bucket` (with its mailbox key),
   * kept until it is settled: a take re-sent after a reconnect gets the same message, and the survivors put it back
   * if the instance dies first.
   */
  inflight(instance: string, bucket: number): string {
    return this.inflightPrefix(bucket) + instance
  }

  /** One bucket's in-flight hashes' common prefix (a script reaches a dead instance's by its id). */
  inflightPrefix(bucket = 0): string {
    return this.inBucket(bucket, 'inflight', '')
  }

  /** One bucket's queues' common prefix (a script reaches a mailbox's queue by its key). */
  queuePrefix(bucket = 0): string {
    return this.inBucket(bucket, 'queue', '')
  }

  /** A key of worker bucket `bucket`. */
  private inWorkerBucket(bucket: number, ...parts: string[]): string {
    return this.buckets === 1 ? this.key(...parts) : `{${this.prefix}:w${bucket}}:${parts.join(':')}`
  }

  /** The bucket whose slot holds the workers of an agent name, with their slots and the name's index. */
  workerBucketOf(agentName: string): number {
    return this.buckets === 1 ? 0 : fnv1a(agentName) % this.buckets
  }

  /** Hash of one worker (in its agent name's bucket): each WorkerRecord field as JSON, and `dir`, its directory token. */
  worker(bucket: number, id: string): string {
    return this.workerPrefix(bucket) + id
  }

  /** Sorted set of one bucket's worker ids by registration order (the store's sequence). */
  workers(bucket = 0): string {
    return this.inWorkerBucket(bucket, 'workers')
  }

  /** Sorted set of the ids of the workers of one agent name, by registration order. */
  workersOf(agentName: string): string {
    return this.workersOfPrefix(this.workerBucketOf(agentName)) + agentName
  }

  /** The common prefix of one bucket's agent-name indexes (a script reaches one by the name). */
  workersOfPrefix(bucket = 0): string {
    return this.inWorkerBucket(bucket, 'workers-of', '')
  }

  /** One bucket's worker hashes' common prefix. */
  workerPrefix(bucket = 0): string {
    return this.inWorkerBucket(bucket, 'worker', '')
  }

  /**
   * Hash worker id → "<token> <agent name>", in a Cluster only: which bucket holds a worker addressed by its id
   * alone. The token is the one its hash's `dir` holds, so that a removal forgets only its own entry.
   */
  workerDirectory(): string {
    return this.key('worker-directory')
  }

  /** Hash of one job: each JobRecord field as JSON, plus its creation sequence. */
  job(id: string): string {
    return this.key('job', id)
  }

  /** Set of every job id. */
  jobs(): string {
    return this.key('jobs')
  }

  /** Sorted set of every job id, scored by the job's `createdAt` (a list of the newest reads from the top). */
  jobsByCreation(): string {
    return this.key('jobs-created')
  }

  /** Set of the ids of the jobs in one state (`jobsInStatePrefix()` + the state, e.g. `pending`). */
  jobsInState(state: string): string {
    return this.key('jobs-state', state)
  }

  /** The common prefix of the per-state job sets (a script reaches a state's set by the state's name). */
  jobsInStatePrefix(): string {
    return this.key('jobs-state', '')
  }

  /** The job hashes' common prefix (a script reaches a finished job it drops by id). */
  jobPrefix(): string {
    return this.key('job', '')
  }

  /** Sorted set of the finished jobs' ids, scored by the order they finished (the oldest past finished_jobs_kept go first). */
  finishedJobs(): string {
    return this.key('jobs-finished')
  }

  /** Counter giving every finished job its place in `finishedJobs`. */
  finishedSequence(): string {
    return this.key('jobs-finished-sequence')
  }

  /** Hash: each finished job's size in bytes by id, and their sum (`~total`), for finished_jobs_max_mb. */
  finishedJobSizes(): string {
    return this.key('jobs-finished-sizes')
  }

  /** Set once the jobs stored before the per-state sets and `finishedJobs` existed have been put into them. */
  jobsIndexed(): string {
    return this.key('jobs-indexed')
  }

  /** Sorted set of the ids of one tenant's queued jobs of one agent name, scored by the order they were queued (the backlog, FIFO). */
  jobQueue(owner: string, agentName: string): string {
    return this.key('jobs-queue', JSON.stringify([owner, agentName]))
  }

  /** Hash job id → "<claimant> <epoch ms until>": the claims on one queue's jobs being dispatched. */
  jobQueueClaims(owner: string, agentName: string): string {
    return this.key('jobs-queue-claims', JSON.stringify([owner, agentName]))
  }

  /** Set of the ids of the jobs one tenant has in its queues together. */
  jobsQueuedBy(owner: string): string {
    return this.key('jobs-queued-by', JSON.stringify(owner))
  }

  /** Set of the queues holding jobs, each as the JSON [owner, agent name]. */
  jobQueues(): string {
    return this.key('jobs-queues')
  }

  /** String: the JSON { jobId, fingerprint } a tenant's idempotency key names, expiring with the key. */
  dispatchKey(owner: string, key: string): string {
    return this.key('dispatch-key', JSON.stringify([owner, key]))
  }

  /** Sorted set of the live idempotency keys' Redis keys, scored by when they expire (the ones expiring first go past the bound). */
  dispatchKeys(): string {
    return this.key('dispatch-keys')
  }

  /** Set once the workers stored before the agent-name indexes existed have been put into them. */
  workersIndexed(): string {
    return this.key('workers-indexed')
  }

  /** String: Switchboard's card-signing key (a private JWK as JSON), written once by the first instance. */
  cardSigningKey(): string {
    return this.key('card-signing-key')
  }

  /** Hash of one workspace: each WorkspaceRecord field as JSON. */
  workspace(id: string): string {
    return this.inWorkspaceBucket(this.workspaceBucketOf(id), 'workspace', id)
  }

  /** Sorted set of one bucket's workspace ids, scored by the creation sequence. */
  workspaces(bucket = 0): string {
    return this.inWorkspaceBucket(bucket, 'workspaces')
  }

  /** Sorted set of the direct children of a workspace (whatever their buckets), scored by the creation sequence. */
  children(parentId: string): string {
    return this.inWorkspaceBucket(this.workspaceBucketOf(parentId), 'children', parentId)
  }

  /** String: the workspace a token digest belongs to (in that workspace's bucket: see `tokenFits`). */
  token(tokenHash: string): string {
    return this.tokenPrefix(this.buckets === 1 ? 0 : fnv1a(tokenHash) % this.buckets) + tokenHash
  }

  /** One bucket's token keys' common prefix (a script revokes a workspace's tokens by their digests). */
  tokenPrefix(bucket = 0): string {
    return this.inWorkspaceBucket(bucket, 'token', '')
  }

  /** Set of the token digests of a workspace. */
  tokensOf(workspaceId: string): string {
    return this.inWorkspaceBucket(this.workspaceBucketOf(workspaceId), 'tokens', workspaceId)
  }

  /** List of a workspace's activity JSON, oldest first (only the newest are kept). */
  activity(workspaceId: string): string {
    return this.inWorkspaceBucket(this.workspaceBucketOf(workspaceId), 'activity', workspaceId)
  }

  /** Counter of every activity ever appended for a workspace (the sequence that cursors count in). */
  activityCount(workspaceId: string): string {
    return this.inWorkspaceBucket(this.workspaceBucketOf(workspaceId), 'activity-count', workspaceId)
  }

  /** Channel: payload is a mailbox key that has a new message (wake one waiter). */
  wakeChannel(): string {
    return this.key('wake')
  }

  /** Channel: payload is a mailbox key that was terminated (fail every waiter). */
  terminatedChannel(): string {
    return this.key('terminated')
  }

  /** Channel of the cross-instance event bus. */
  eventChannel(channel: string): string {
    return this.key('event', channel)
  }

  /** Stream: the retained event log, one entry (field b: the event's JSON) per event. */
  eventLog(): string {
    return this.key('eventlog')
  }

  /** Hash: bytes (of the events the log keeps), dropped (the newest id trimmed away). */
  eventLogState(): string {
    return this.key('eventlog', 'state')
  }

  /** Hash: subscription id → WebhookSubscription JSON. */
  webhookSubscriptions(): string {
    return this.key('webhooks', 'subscriptions')
  }

  /** Prefix of the sorted sets of a tenant's subscription ids by creation; scripts append the tenant. */
  webhookTenantPrefix(): string {
    return this.key('webhooks', 'tenant', '')
  }

  /** Hash: delivery id → WebhookDelivery JSON (pending and dead-lettered). */
  webhookDeliveries(): string {
    return this.key('webhooks', 'deliveries')
  }

  /** Sorted set: pending delivery ids by the time they are due (a taken one: when its lease ends). */
  webhookDue(): string {
    return this.key('webhooks', 'due')
  }

  /** Prefix of the sets of delivery ids one subscription holds; scripts append the subscription id. */
  webhookHeldPrefix(): string {
    return this.key('webhooks', 'held', '')
  }

  /** Prefix of the sorted sets of a subscription's dead letters by the time they died; scripts append the subscription id. */
  webhookDeadPrefix(): string {
    return this.key('webhooks', 'dead', '')
  }

  /** The event bus channel a Redis channel stands for, or null when it is not an event channel. */
  eventOf(redisChannel: string): string | null {
    const prefix = this.key('event', '')
    return redisChannel.startsWith(prefix) ? redisChannel.slice(prefix.length) : null
  }
}
