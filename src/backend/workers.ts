/** The workers module's part of the backend contract: workers, their capacity, and jobs. */
import * as v from 'valibot'

/** `available` and `draining` come from the worker's own status updates; `offline` once it says it is shutting down. */
export type WorkerStatus = 'available' | 'draining' | 'offline'

export interface WorkerRecord {
  id: string
  agentName: string
  /** Client id of the token the worker registered with (tenant isolation). */
  owner: string
  status: WorkerStatus
  /** Drained by an operator: no new jobs, running ones finish. */
  draining: boolean
  maxProcesses: number
  loadThreshold: number
  /** The worker's own last reported load (0..1); informative only. */
  reportedLoad: number
  /** Jobs assigned to the worker and not yet ended. */
  jobs: string[]
  /** Slots held for jobs whose availability question is open. */
  reserved: string[]
  /** The instance holding the worker's socket; null while disconnected. */
  instance: string | null
  /** Identifies the socket, so a stale socket's close cannot remove a newer registration. */
  connection: string | null
  capabilities: string[]
  registeredAt: number
  disconnectedAt: number | null
}

/** The fields of a worker that may be patched; capacity (`jobs`, `reserved`) only moves through the slot operations. */
export type WorkerPatch = Partial<Pick<WorkerRecord, 'status' | 'reportedLoad' | 'instance' | 'connection' | 'disconnectedAt'>>

export type JobState = 'pending' | 'assigned' | 'running' | 'completed' | 'failed' | 'cancelled' | 'reassigning'

/** The states a job ends in; a job in one of them is kept only for its history. */
export const FINISHED_JOB_STATES: readonly JobState[] = ['completed', 'failed', 'cancelled']

/**
 * The `finished_jobs_kept` option of every built-in backend (`[backend_options]`): at most this many finished jobs
 * are kept for their history; each job that finishes past it pushes out the one that finished longest ago.
 */
export const FinishedJobsKeptOption = v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(10_000_000)), 10_000)

/**
 * The `finished_jobs_max_mb` option of every built-in backend (`[backend_options]`): the finished jobs kept take at most
 * this many MiB together (their JSON in UTF-8 bytes); past it, too, the one that finished longest ago goes first.
 */
export const FinishedJobsMaxMbOption = v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1_048_576)), 64)

export interface JobEvent {
  state: JobState
  at: number
  workerId?: string
  reason?: string
}

export interface JobRecord {
  id: string
  agentName: string
  roomId: string
  owner: string
  metadata: Record<string, unknown> | null
  roomOptions: Record<string, unknown> | null
  state: JobState
  workerId: string | null
  history: JobEvent[]
  createdAt: number
  updatedAt: number
  /** The identity the worker joined the room as, from its job updates (absent until it sends one). */
  participantIdentity?: string
}

/** A job's place in the newest-first order of a list: the next page starts after it. */
export interface JobCursor {
  createdAt: number
  id: string
}

export interface JobFilter {
  agentName?: string
  state?: JobState
  workerId?: string
  owner?: string
  roomId?: string
  /** Created at or after this epoch ms. */
  createdFrom?: number
  /** Created before this epoch ms. */
  createdBefore?: number
  /** Only jobs after this one in the newest-first order (the ones after a job no longer stored: those created before it). */
  after?: JobCursor
  limit?: number
}

/** What became of a job put into the backlog: queued, or refused because its queue or its tenant's queues together are full. */
export type EnqueueOutcome = 'queued' | 'queue full' | 'client full'

/** One agent name's queue of pending jobs for one tenant (FIFO). */
export interface JobQueue {
  owner: string
  agentName: string
  /** Jobs waiting in it. */
  length: number
  /** `createdAt` of the job at its head (the oldest). */
  oldestCreatedAt: number
}

/** A dispatch remembered under its idempotency key: the job it created and the fingerprint of the request's body. */
export interface RememberedDispatch {
  jobId: string
  fingerprint: string
}

/** Whether a job passes every field of a filter but `limit` and `after` (which depend on the order). Plugins that read records share this one rule. */
export function jobMatches(job: JobRecord, filter: JobFilter): boolean {
  if (filter.agentName !== undefined && job.agentName !== filter.agentName) return false
  if (filter.state !== undefined && job.state !== filter.state) return false
  if (filter.workerId !== undefined && job.workerId !== filter.workerId) return false
  if (filter.owner !== undefined && job.owner !== filter.owner) return false
  if (filter.roomId !== undefined && job.roomId !== filter.roomId) return false
  if (filter.createdFrom !== undefined && job.createdAt < filter.createdFrom) return false
  if (filter.createdBefore !== undefined && job.createdAt >= filter.createdBefore) return false
  return true
}

/** One compare-and-set move of a job's state machine. */
export interface JobTransition {
  /** States the job must be in for the move to happen. */
  from: readonly JobState[]
  to: JobState
  /** When given, the job must currently be held by this worker (null: by no worker). */
  heldBy?: string | null
  /** The worker holding the job after the move; unchanged when omitted. */
  workerId?: string | null
  /** Why, recorded in the history event. */
  reason?: string
  /** Kept on the job as `participantIdentity` when given. */
  participantIdentity?: string
}

/**
 * Applies a transition to a job record in place, if the job is in one of
 * `from` (and held by `heldBy` when given); records the history event.
 * Returns false, changing nothing, when the job is not eligible. Plugins that
 * hold the record in their own process share this one rule.
 */
export function applyTransition(job: JobRecord, transition: JobTransition, at = Date.now()): boolean {
  if (!transition.from.includes(job.state)) return false
  if (transition.heldBy !== undefined && job.workerId !== transition.heldBy) return false
  if (transition.workerId !== undefined) job.workerId = transition.workerId
  if (transition.participantIdentity !== undefined) job.participantIdentity = transition.participantIdentity
  job.state = transition.to
  job.updatedAt = at
  job.history.push({
    state: transition.to,
    at,
    ...(job.workerId !== null ? { workerId: job.workerId } : {}),
    ...(transition.reason !== undefined ? { reason: transition.reason } : {}),
  })
  return true
}

/**
 * Worker and job storage. Capacity and job transitions are compare-and-set,
 * so two instances can never assign one slot or one job twice.
 */
export interface WorkerStore {
  /**
   * Insert a worker, or take over the registration with the same id (a
   * reconnection supersedes the old socket): the previous record's `jobs`,
   * `reserved` and `draining` are kept, everything else comes from `worker`.
   * Returns the previous record.
   */
  upsertWorker(worker: WorkerRecord): Promise<WorkerRecord | null>
  getWorker(id: string): Promise<WorkerRecord | null>
  /** Every worker, or those of one agent name. */
  listWorkers(agentName?: string): Promise<WorkerRecord[]>
  /** Apply `patch` only while the worker is held by `connection` (null: only while disconnected); returns the new record or null. */
  updateWorker(id: string, connection: string | null, patch: WorkerPatch): Promise<WorkerRecord | null>
  /** Set the operator's drain flag whatever socket holds the worker; returns the new record or null when unknown. */
  setDraining(id: string, draining: boolean): Promise<WorkerRecord | null>
  /** Remove the worker only while held by `connection` (null: only while disconnected); returns the removed record or null. */
  deleteWorker(id: string, connection: string | null): Promise<WorkerRecord | null>
  /**
   * Reserve a slot for `jobId` when the worker is connected, `available`, not
   * draining, does not hold the job yet, and has room by Switchboard's count
   * (n = jobs + reserved): `n < maxProcesses` and `n / maxProcesses < loadThreshold`.
   */
  reserveSlot(workerId: string, jobId: string): Promise<boolean>
  /**
   * Optional, for a store where reading every worker of a name on each
   * dispatch costs much (Redis): does what `reserveAny` below does, as one
   * step in the store, with `random` (in [0, 1)) as the weighted pick's draw.
   */
  reserveAny?(agentName: string, owner: string, jobId: string, exclude: ReadonlySet<string>, random: number): Promise<Reservation>
  /** Turn the reservation of `jobId` into an assignment; false when there is no such reservation. */
  assignSlot(workerId: string, jobId: string): Promise<boolean>
  /** Drop a reservation and/or an assignment of `jobId` from the worker (no-op when absent). */
  releaseSlot(workerId: string, jobId: string): Promise<void>
  createJob(job: JobRecord): Promise<void>
  getJob(id: string): Promise<JobRecord | null>
  /** Jobs matching every given filter field, newest `createdAt` first, at most `limit`. */
  listJobs(filter: JobFilter): Promise<JobRecord[]>
  /**
   * Apply `transition` if the job matches it, updating `state`, `workerId`
   * and `updatedAt` and appending `{state: to, at, workerId?, reason?}` to its
   * history (`workerId`: the job's worker after the move; absent fields
   * omitted). Returns the new record, or null when the job is unknown or does not match.
   */
  transitionJob(id: string, transition: JobTransition): Promise<JobRecord | null>

  // The backlog: pending jobs wait in one FIFO queue per tenant and agent name until a worker has room.

  /**
   * Store `job` (pending) at the tail of its tenant's and agent name's queue, unless that queue holds `max` jobs
   * already, or the tenant's queues together hold `clientMax`: then nothing is stored, and the answer says which.
   */
  enqueueJob(job: JobRecord, max: number, clientMax: number): Promise<EnqueueOutcome>
  /**
   * Claim the oldest job of the queue that no claim holds (or whose claim ran out), for `claimant` until `until`
   * (epoch ms), and return it; null when there is none. Entries whose job is no longer pending are dropped on the way.
   */
  claimQueuedJob(owner: string, agentName: string, claimant: string, until: number): Promise<JobRecord | null>
  /** Give a claim back: the job keeps its place (no-op unless `claimant` holds it). */
  releaseQueuedJob(owner: string, agentName: string, jobId: string, claimant: string): Promise<void>
  /** Take a job out of its queue (no-op when absent). */
  dequeueJob(owner: string, agentName: string, jobId: string): Promise<void>
  /** Every queue holding jobs. */
  listQueues(): Promise<JobQueue[]>

  // Idempotent dispatch: a key remembers the job it created, per tenant, until it expires.

  /**
   * Remember `dispatch` under the tenant's `key` until `expiresAt` unless a live entry is there: returns that entry
   * (storing nothing), or null once stored. Past `maxKept` live entries, the one expiring first is forgotten.
   */
  rememberDispatch(owner: string, key: string, dispatch: RememberedDispatch, expiresAt: number, maxKept: number): Promise<RememberedDispatch | null>
  /** Forget the tenant's `key` if it still names `jobId`. */
  forgetDispatch(owner: string, key: string, jobId: string): Promise<void>
}

/** Jobs a worker can hold by Switchboard's rule (n < maxProcesses and n / maxProcesses < loadThreshold). */
export function slotLimit(worker: Pick<WorkerRecord, 'maxProcesses' | 'loadThreshold'>): number {
  let limit = Math.min(worker.maxProcesses, Math.ceil(worker.loadThreshold * worker.maxProcesses))
  // ceil() can overshoot by one when threshold × max is a float just above an integer.
  while (limit > 0 && (limit - 1) / worker.maxProcesses >= worker.loadThreshold) limit--
  return limit
}

/** Free slots of a worker that may take a job now (0 when it may not). */
export function freeSlots(worker: WorkerRecord): number {
  if (worker.connection === null || worker.draining || worker.status !== 'available') return 0
  return Math.max(0, slotLimit(worker) - worker.jobs.length - worker.reserved.length)
}

/** Picks a worker at random, weighted by its free slots (LiveKit weighs by spare load the same way); `random` is the draw in [0, 1). */
export function pickBySpareCapacity(candidates: WorkerRecord[], random: number): WorkerRecord | null {
  const total = candidates.reduce((sum, worker) => sum + freeSlots(worker), 0)
  if (total === 0) return null
  let point = random * total
  for (const worker of candidates) {
    point -= freeSlots(worker)
    if (point < 0) return worker
  }
  return candidates.at(-1) ?? null
}

/** What a dispatch's pick found: the worker a slot is now reserved on (null: none had room), and whether any connected worker of the name and owner was seen. */
export interface Reservation {
  worker: WorkerRecord | null
  registered: boolean
}

/**
 * Picks one connected worker of `agentName` and `owner`, leaving out the
 * ids in `exclude`, at random weighted by its free slots, and reserves a
 * slot on it for `jobId` (`reserveSlot`'s rule); a worker that lost its room
 * meanwhile is passed over for the next. Through the store's own
 * `reserveAny` when it has one.
 */
export async function reserveAny(store: WorkerStore, agentName: string, owner: string, jobId: string, exclude: ReadonlySet<string>): Promise<Reservation> {
  if (store.reserveAny) return store.reserveAny(agentName, owner, jobId, exclude, Math.random())
  const passed = new Set(exclude)
  let registered = false
  for (;;) {
    const workers = (await store.listWorkers(agentName)).filter((worker) => worker.owner === owner && worker.connection !== null)
    registered ||= workers.length > 0
    const worker = pickBySpareCapacity(
      workers.filter((candidate) => !passed.has(candidate.id)),
      Math.random(),
    )
    if (!worker) return { worker: null, registered }
    passed.add(worker.id)
    if (await store.reserveSlot(worker.id, jobId)) return { worker, registered }
  }
}
