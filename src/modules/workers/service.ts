/**
 * Worker registry and job dispatch, without HTTP. Sockets are held by one
 * instance each; every question to a worker (availability, assignment,
 * termination, supersede) travels over the backend's event bus to the
 * instance whose id the worker record names, so with a shared backend any
 * instance can dispatch to any worker.
 *
 * Liveness outlives the process: each instance beats into the store, and on
 * each beat sweeps the workers. One whose record names a dead instance, or
 * this instance but no socket here, is marked lost; one lost longer than
 * the grace period has its jobs handled. Every such step is a
 * compare-and-set in the store, so it happens once across instances.
 */
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import * as v from 'valibot'
import { sha256 } from '../../backend/agents'
import type { EventBus } from '../../backend/events'
import { Heartbeat, type InstanceStore } from '../../backend/instances'
import { reserveAny, type JobCursor, type JobRecord, type JobState, type JobTransition, type WorkerRecord, type WorkerStore } from '../../backend/workers'
import { AppError, ConflictError, NotFoundError } from '../../errors'
import type { Logger } from '../../ops/logger'
import type { EmitEvent, EventType } from '../events/model'
import { frames, WORKER_FRAME_TYPES, WORKER_ID, WorkerFrame, type Assignment, type RegisterFrame, type ServerFrame } from './model'

export interface WorkerServiceOptions {
  /** This instance's id, stored in the records of the workers whose sockets it holds. */
  instanceId: string
  /** How long a worker may take to answer an availability request. */
  availabilityTimeoutMs: number
  /** Default and ceiling of a whole dispatch. */
  dispatchTimeoutMs: number
  /** How long a lost worker has to come back before its jobs are handled. */
  graceMs: number
  /** What happens to a lost worker's jobs after the grace period. */
  lossAction: 'redispatch' | 'fail'
  /** Period of this instance's heartbeat, and of its sweep for workers lost with their instance. */
  heartbeatMs: number
  /** Sent to workers in job_assignment.url. */
  assignmentUrl: string
  /** Pending jobs one queue (tenant and agent name) may hold; 0: no backlog, a dispatch no worker takes at once is refused. */
  jobQueueMax: number
  /** Pending jobs one tenant may have in its queues together. */
  jobQueueClientMax: number
  /** How long a job may wait in the backlog before it ends failed. */
  jobPendingTtlMs: number
  /** Where job and worker events go (GET /events, webhooks). */
  emit?: EmitEvent
}

/** How a dispatch is asked for. */
export interface DispatchOptions {
  /** Longest the caller waits for a worker to accept (default and ceiling: dispatchTimeoutMs). */
  timeoutMs?: number
  /** With the backlog: answer once the job waits in its queue with no worker free, rather than at the deadline. */
  returnWhenQueued?: boolean
  /** The caller's idempotency key: the same key and body within IDEMPOTENCY_MS give the same job. */
  idempotencyKey?: string
}

/** How the reason of a job that waited in the backlog too long starts (its event is job.expired). */
const EXPIRED_REASON = 'expired:'

/** How long an idempotency key names its job. */
export const IDEMPOTENCY_MS = 24 * 60 * 60 * 1000
/** Idempotency keys kept at most per store; past it, the one expiring first is forgotten. */
export const IDEMPOTENCY_KEYS_KEPT = 100_000

/** What the service needs of a worker's socket. */
export interface WorkerSocket {
  send(frame: ServerFrame): void
  close(code: number, reason: string): void
}

interface PendingAsk {
  requestId: string
  replyTo: string
  timer: ReturnType<typeof setTimeout>
}

/** One registered socket on this instance. */
export interface WorkerSession {
  readonly workerId: string
  readonly connection: string
  readonly owner: string
  /** The worker's own token (register frame or bearer header), the fallback job token. */
  readonly token: string
  readonly socket: WorkerSocket
  /** Availability questions sent on this socket and not answered yet, by job id. */
  readonly asks: Map<string, PendingAsk>
}

interface Answer {
  available: boolean
  token: string | null
  reason: string
}

/** Messages between instances, on the channel of the instance they are for. */
type RelayMessage =
  | { kind: 'ask'; requestId: string; replyTo: string; workerId: string; connection: string; jobId: string; roomId: string; agentName: string; timeoutMs: number }
  | ({ kind: 'answer'; requestId: string } & Answer)
  | { kind: 'assign'; workerId: string; connection: string; assignment: Assignment }
  | { kind: 'terminate'; workerId: string; jobId: string; reason: string }
  | { kind: 'close'; workerId: string; connection: string }

/**
 * Why a worker's frame was ignored, in the protocol's words only: the frame's `type` when it is one of the
 * protocol's, and the field at fault with what the schema expects there; never text the worker wrote.
 */
export interface IgnoredFrame {
  problem: 'not JSON' | 'unknown type' | 'invalid field' | 'register on a registered socket'
  type?: string
  field?: string
  expected?: string
}

export interface NewJob {
  agentName: string
  roomId: string
  metadata: Record<string, unknown> | null
  roomOptions: Record<string, unknown> | null
}

export interface JobQuery {
  agentName?: string
  state?: JobState
  workerId?: string
  roomId?: string
  createdFrom?: number
  createdBefore?: number
  after?: JobCursor
  limit?: number
}

/** No connected worker of the tenant serves the agent name. */
export class NoWorkersRegisteredError extends AppError {
  constructor() {
    super(503, 'NO_WORKERS_REGISTERED', 'No Workers Registered', undefined, 1)
  }
}

/** Workers serve the agent name, but none has room or accepted in time. */
export class NoWorkersAvailableError extends AppError {
  constructor() {
    super(503, 'NO_WORKERS_AVAILABLE', 'No workers available', undefined, 1)
  }
}

/** A queue of pending jobs (tenant and agent name) is full, or the tenant's queues together are. */
export class JobQueueFullError extends AppError {
  constructor(message: string) {
    super(503, 'JOB_QUEUE_FULL', message, undefined, 1)
  }
}

const ACTIVE: readonly JobState[] = ['pending', 'assigned', 'running', 'reassigning']
const channelOf = (instanceId: string) => `workers:${instanceId}`
/** Every instance hears on it of queued jobs that left the backlog, so a caller waiting on another instance is answered. */
const SETTLED_CHANNEL = 'workers:jobs-settled'
const queueOf = (owner: string, agentName: string) => JSON.stringify([owner, agentName])

/** Adds `member` to the set kept under `key`. */
function joinSet<K, T>(sets: Map<K, Set<T>>, key: K, member: T): void {
  let set = sets.get(key)
  if (!set) sets.set(key, (set = new Set()))
  set.add(member)
}

/** Removes `member` from the set kept under `key`, and the set once empty. */
function leaveSet<K, T>(sets: Map<K, Set<T>>, key: K, member: T): void {
  const set = sets.get(key)
  set?.delete(member)
  if (set?.size === 0) sets.delete(key)
}

/** The same for the same dispatch whatever the order of its objects' keys. */
function fingerprintOf(input: NewJob): string {
  const canonical = (value: unknown): unknown =>
    Array.isArray(value)
      ? value.map(canonical)
      : typeof value === 'object' && value !== null
        ? Object.fromEntries(Object.keys(value).sort().map((key) => [key, canonical((value as Record<string, unknown>)[key])]))
        : value
  return sha256(JSON.stringify(canonical(input)))
}

/** A caller waiting for its job to leave the backlog: `settle` answers it. */
type JobWaiter = () => void

export class WorkerService {
  private readonly sessions = new Map<string, WorkerSession>()
  private readonly answers = new Map<string, (answer: Answer) => void>()
  private readonly graceTimers = new Map<string, ReturnType<typeof setTimeout>>()
  private readonly background = new Set<Promise<unknown>>()
  private readonly subscribed: Promise<() => void>
  private readonly heartbeat: Heartbeat
  /** Subscribed, and the first beat written: no record names this instance before the others can see it alive. */
  private readonly started: Promise<unknown>
  /** Connections between their record's write and their session's, which a sweep must not take for lost sockets. */
  private readonly registering = new Set<string>()
  /** Queues this instance is serving now; `again` when a slot freed meanwhile. */
  private readonly pumps = new Map<string, { again: boolean }>()
  /** Callers waiting here for their job to leave the backlog, by job id. */
  private readonly waiters = new Map<string, Set<JobWaiter>>()
  /** Those of them answered when a pass over their queue ends here (POST /jobs), by queue. */
  private readonly queuedWaiters = new Map<string, Set<JobWaiter>>()
  private readonly settledSubscription: Promise<() => void>
  private stopped = false

  constructor(
    private readonly store: WorkerStore,
    private readonly events: EventBus,
    private readonly instances: InstanceStore,
    private readonly options: WorkerServiceOptions,
    private readonly logger: Logger,
  ) {
    this.subscribed = events.subscribe(channelOf(options.instanceId), (payload) => this.onRelay(payload))
    // Surfaced by every caller that awaits it; this only keeps an early failure from going unhandled.
    this.subscribed.catch((error) => logger.error('workers: cannot subscribe to the event bus', { error: String(error) }))
    this.settledSubscription = options.jobQueueMax > 0 ? events.subscribe(SETTLED_CHANNEL, (jobId) => this.wake(jobId)) : Promise.resolve(() => {})
    this.settledSubscription.catch((error) => logger.error('workers: cannot subscribe to the event bus', { error: String(error) }))
    this.heartbeat = new Heartbeat(instances, options.instanceId, options.heartbeatMs, () => this.sweep(), logger)
    this.started = this.subscribed.then(() => this.heartbeat.start())
  }

  // ---- sockets -----------------------------------------------------------

  /** Registers a worker's socket: keeps a valid proposed id (unless another tenant owns it), supersedes an older socket, replies first. */
  async register(socket: WorkerSocket, owner: string, headerToken: string, frame: RegisterFrame): Promise<WorkerSession> {
    await this.subscribed
    await this.started
    const proposed = frame.worker_id ?? ''
    let workerId = WORKER_ID.test(proposed) ? proposed : randomUUID()
    if (workerId === proposed) {
      const existing = await this.store.getWorker(proposed)
      if (existing && existing.owner !== owner) workerId = randomUUID()
    }
    const connection = randomUUID()
    const now = Date.now()
    this.registering.add(connection)
    try {
      return await this.registerAs(socket, owner, headerToken, frame, workerId, connection, now)
    } finally {
      this.registering.delete(connection)
    }
  }

  private async registerAs(socket: WorkerSocket, owner: string, headerToken: string, frame: RegisterFrame, workerId: string, connection: string, now: number): Promise<WorkerSession> {
    const previous = await this.store.upsertWorker({
      id: workerId,
      agentName: frame.agent_name,
      owner,
      status: 'available',
      draining: false,
      maxProcesses: frame.max_processes ?? 10,
      loadThreshold: frame.load_threshold ?? 0.75,
      reportedLoad: 0,
      jobs: [],
      reserved: [],
      instance: this.options.instanceId,
      connection,
      capabilities: frame.capabilities ?? [],
      registeredAt: now,
      disconnectedAt: null,
    })
    this.cancelGrace(workerId)
    const session: WorkerSession = { workerId, connection, owner, token: frame.token || headerToken, socket, asks: new Map() }
    socket.send(frames.registered(workerId))
    if (previous?.connection) {
      this.logger.info('worker re-registered; older socket superseded', { worker: workerId })
      if (previous.instance === this.options.instanceId) this.closeSession(previous.connection, workerId)
      else if (previous.instance) await this.relay(previous.instance, { kind: 'close', workerId, connection: previous.connection })
    } else {
      this.logger.info('worker registered', { worker: workerId, agent: frame.agent_name, jobs: previous?.jobs.length ?? 0 })
    }
    this.sessions.set(workerId, session)
    this.emitWorker('worker.registered', { id: workerId, owner, agentName: frame.agent_name, jobs: previous?.jobs ?? [] })
    this.serveQueue(owner, frame.agent_name)
    return session
  }

  /**
   * Handles one parsed frame from a registered worker. A bad frame is dropped and the worker stays: what is wrong
   * with it is returned for the socket to report (at a rate its own), null when the frame was handled.
   */
  async receive(session: WorkerSession, data: unknown): Promise<IgnoredFrame | null> {
    const parsed = v.safeParse(WorkerFrame, data)
    if (!parsed.success) {
      const type = typeof data === 'object' && data !== null ? (data as { type?: unknown }).type : undefined
      if (typeof type !== 'string' || !WORKER_FRAME_TYPES.has(type)) return { problem: 'unknown type' }
      const issue = parsed.issues[0]
      const field = issue.path?.map((item) => String(item.key)).join('.')
      return { problem: 'invalid field', type, ...(field ? { field } : {}), ...(issue.expected ? { expected: issue.expected } : {}) }
    }
    const frame = parsed.output
    switch (frame.type) {
      case 'availability_response': {
        const ask = session.asks.get(frame.job_id)
        if (!ask) {
          this.logger.debug('late or unasked availability response ignored', { worker: session.workerId, job: frame.job_id })
          return null
        }
        clearTimeout(ask.timer)
        session.asks.delete(frame.job_id)
        await this.relay(ask.replyTo, { kind: 'answer', requestId: ask.requestId, available: frame.available, token: frame.token ?? null, reason: frame.error ?? (frame.available ? '' : 'declined') })
        return null
      }
      case 'job_update':
        await this.applyJobUpdate(session.workerId, frame.job_id, frame.status, frame.error ?? undefined, frame.participant_identity ?? undefined)
        return null
      case 'status_update': {
        const worker = await this.store.updateWorker(session.workerId, session.connection, {
          status: frame.status,
          ...(typeof frame.load === 'number' ? { reportedLoad: frame.load } : {}),
        })
        // A drain that ends (or any report of room) may let the backlog move.
        if (worker && frame.status === 'available') this.serveQueue(worker.owner, worker.agentName)
        return null
      }
      case 'ping':
        session.socket.send(frames.pong(frame.timestamp ?? Date.now()))
        return null
      case 'register':
        return { problem: 'register on a registered socket', type: 'register' }
    }
  }

  /** The socket closed: open questions are answered "unavailable"; a worker holding jobs gets the grace period, one without is removed. */
  async disconnect(session: WorkerSession): Promise<void> {
    if (this.sessions.get(session.workerId) === session) this.sessions.delete(session.workerId)
    this.dropAsks(session, 'worker disconnected')
    if (this.stopped) return
    const worker = await this.store.updateWorker(session.workerId, session.connection, { connection: null, instance: null, disconnectedAt: Date.now() })
    if (!worker) return // superseded by a newer socket, or marked lost by a sweep
    await this.afterLoss(worker)
  }

  /** A worker just marked disconnected (by this compare-and-set alone): removed at once without jobs, else given the grace period. */
  private async afterLoss(worker: WorkerRecord): Promise<void> {
    this.emitWorker('worker.lost', worker)
    if (worker.jobs.length === 0) {
      await this.store.deleteWorker(worker.id, null)
      this.logger.info('worker disconnected', { worker: worker.id })
      return
    }
    this.logger.warn('worker lost with jobs; waiting for it to come back', { worker: worker.id, jobs: worker.jobs.length, grace_ms: this.options.graceMs })
    this.scheduleRecovery(worker.id, this.options.graceMs)
  }

  /** Handles a lost worker's jobs in `delayMs`, unless a recovery is already due here. */
  private scheduleRecovery(workerId: string, delayMs: number): void {
    if (this.stopped || this.graceTimers.has(workerId)) return
    const timer = setTimeout(
      () => {
        this.graceTimers.delete(workerId)
        this.track(this.recoverLostWorker(workerId))
      },
      Math.max(0, delayMs),
    )
    this.graceTimers.set(workerId, timer)
  }

  /**
   * One sweep, after each heartbeat (and at startup). Workers are read before
   * the live instances, so a record is never judged against an older list than
   * its own (an instance beats before any record names it).
   */
  private async sweep(): Promise<void> {
    if (this.stopped) return
    const held = new Map(this.sessions)
    const workers = await this.store.listWorkers()
    const alive = new Set(await this.instances.alive())
    alive.add(this.options.instanceId)
    const now = Date.now()
    for (const worker of workers) {
      if (this.stopped) return
      if (worker.connection === null) {
        // Lost earlier, perhaps by an instance that is gone with its grace timer: every instance keeps one.
        this.scheduleRecovery(worker.id, (worker.disconnectedAt ?? now) + this.options.graceMs - now)
        continue
      }
      const mine = worker.instance === this.options.instanceId
      if (mine ? this.sessions.get(worker.id)?.connection === worker.connection || this.registering.has(worker.connection) : worker.instance !== null && alive.has(worker.instance)) continue
      const lost = await this.store.updateWorker(worker.id, worker.connection, { connection: null, instance: null, disconnectedAt: now })
      if (!lost) continue // it came back, or another instance marked it first
      this.logger.warn(mine ? 'worker record names a socket this instance does not hold; marked lost' : 'worker lost with its instance', { worker: worker.id, instance: worker.instance })
      await this.afterLoss(lost)
    }
    // A socket here whose record moved on (marked lost while this instance looked dead, or removed) is closed, so its worker registers again.
    const records = new Map(workers.map((worker) => [worker.id, worker]))
    for (const [workerId, session] of held) {
      if (this.sessions.get(workerId) !== session || records.get(workerId)?.connection === session.connection) continue
      this.closeSession(session.connection, workerId, 'registration lost; register again')
    }
    await this.sweepBacklog()
  }

  /** Ends the jobs that waited in the backlog past their time, and serves every queue (a slot freed on an instance that is gone is found here). */
  private async sweepBacklog(): Promise<void> {
    if (this.options.jobQueueMax === 0) return
    const expiredBefore = Date.now() - this.options.jobPendingTtlMs
    for (const queue of await this.store.listQueues()) {
      if (this.stopped) return
      if (queue.oldestCreatedAt < expiredBefore) {
        for (const job of await this.store.listJobs({ owner: queue.owner, agentName: queue.agentName, state: 'pending', createdBefore: expiredBefore })) await this.expire(job)
      }
      this.serveQueue(queue.owner, queue.agentName)
    }
  }

  /** A job that waited in the backlog longer than job_pending_ttl_s ends failed. */
  private async expire(job: JobRecord): Promise<void> {
    const reason = `${EXPIRED_REASON} waited ${this.options.jobPendingTtlMs / 1000} s in the backlog (job_pending_ttl_s) with no worker free`
    if (await this.transition(job.id, { from: ['pending'], to: 'failed', reason })) this.logger.info('pending job expired', { job: job.id, agent: job.agentName })
  }

  // ---- jobs --------------------------------------------------------------

  /**
   * Creates a job and dispatches it. Without the backlog: resolves once a worker has accepted it, or fails it and
   * throws. With it: the job waits in its queue, and this resolves once it left the queue, or (`returnWhenQueued`)
   * once no worker had room for it, or at the deadline, with the job as it is then. The same idempotency key and
   * body give the job the first call created.
   */
  async createJob(owner: string, input: NewJob, options: DispatchOptions = {}): Promise<JobRecord> {
    const deadline = Date.now() + Math.min(options.timeoutMs ?? this.options.dispatchTimeoutMs, this.options.dispatchTimeoutMs)
    const key = options.idempotencyKey
    const id = randomUUID()
    if (key !== undefined) {
      const fingerprint = fingerprintOf(input)
      const earlier = await this.store.rememberDispatch(owner, key, { jobId: id, fingerprint }, Date.now() + IDEMPOTENCY_MS, IDEMPOTENCY_KEYS_KEPT)
      if (earlier) {
        if (earlier.fingerprint !== fingerprint) {
          throw new ConflictError(`Idempotency key "${key}" was used for a different dispatch (job ${earlier.jobId}); a new dispatch needs a new key`, { job_id: earlier.jobId })
        }
        const job = await this.storedJob(earlier.jobId)
        if (job?.owner === owner) {
          if (job.state !== 'pending') return job
          // Without the backlog, the first call is dispatching it right now: its outcome is near.
          if (this.options.jobQueueMax === 0) return this.whilePending(job, deadline)
          // A job waiting in the backlog is answered as the first call was: at once, or once a worker takes it within the deadline.
          if (options.returnWhenQueued) return job
          await this.settledSubscription
          return this.awaitJob(job, deadline, false)
        }
        // The first call was refused before its job was stored: this one dispatches anew.
        await this.store.forgetDispatch(owner, key, earlier.jobId)
        return this.createJob(owner, input, options)
      }
    }
    try {
      return await this.dispatchNew(owner, id, input, deadline, options.returnWhenQueued ?? false)
    } catch (error) {
      // A refused dispatch is not remembered: its retry is a new attempt.
      if (key !== undefined) await this.store.forgetDispatch(owner, key, id).catch(() => {})
      throw error
    }
  }

  /** The job once it is no longer pending, or as it is at the deadline. */
  private async whilePending(job: JobRecord, deadline: number): Promise<JobRecord> {
    let now: JobRecord | null = job
    while (now?.state === 'pending' && Date.now() < deadline && !this.stopped) {
      await sleep(50)
      now = await this.store.getJob(job.id)
    }
    return now ?? job
  }

  /** A job by id, waiting a moment for one whose creation another call has just remembered under its key. */
  private async storedJob(id: string): Promise<JobRecord | null> {
    for (let tries = 0; ; tries++) {
      const job = await this.store.getJob(id)
      if (job || tries >= 20 || this.stopped) return job
      await sleep(50)
    }
  }

  private async dispatchNew(owner: string, id: string, input: NewJob, deadline: number, returnWhenQueued: boolean): Promise<JobRecord> {
    const now = Date.now()
    const job: JobRecord = {
      id,
      agentName: input.agentName,
      roomId: input.roomId,
      owner,
      metadata: input.metadata,
      roomOptions: input.roomOptions,
      state: 'pending',
      workerId: null,
      history: [{ state: 'pending', at: now }],
      createdAt: now,
      updatedAt: now,
    }
    if (this.options.jobQueueMax === 0) {
      await this.store.createJob(job)
      this.jobChanged(job)
      try {
        return await this.dispatch(job, deadline)
      } catch (error) {
        await this.transition(job.id, { from: ['pending'], to: 'failed', reason: (error as Error).message })
        throw error
      }
    }
    // Subscribed before the job is queued, so that no instance can assign it before this one would hear of it.
    await this.settledSubscription
    const outcome = await this.store.enqueueJob(job, this.options.jobQueueMax, this.options.jobQueueClientMax)
    if (outcome === 'queue full') throw new JobQueueFullError(`The backlog of ${job.agentName} is full (${this.options.jobQueueMax} pending jobs, job_queue_max); retry later`)
    if (outcome === 'client full') throw new JobQueueFullError(`This client has ${this.options.jobQueueClientMax} pending jobs in the backlog (job_queue_client_max); retry later`)
    this.jobChanged(job)
    // The waiter is in place before the queue is served, so the end of this pass answers it.
    const answered = this.awaitJob(job, deadline, returnWhenQueued)
    this.serveQueue(owner, job.agentName)
    return answered
  }

  /**
   * Resolves with the job once it left the backlog, or (`returnWhenQueued`) once a pass over its queue on this
   * instance ends, or at the deadline. The waiter is in place when this returns.
   */
  private async awaitJob(job: JobRecord, deadline: number, returnWhenQueued: boolean): Promise<JobRecord> {
    let timer: ReturnType<typeof setTimeout> | undefined
    let waiter: JobWaiter = () => {}
    const settled = new Promise<void>((resolve) => {
      waiter = resolve
      timer = setTimeout(resolve, Math.max(0, deadline - Date.now()))
    })
    const queue = queueOf(job.owner, job.agentName)
    joinSet(this.waiters, job.id, waiter)
    if (returnWhenQueued) joinSet(this.queuedWaiters, queue, waiter)
    try {
      // It may have left the queue before the waiter was in place.
      const now = await this.store.getJob(job.id)
      if (now && now.state !== 'pending') return now
      await settled
      return (await this.store.getJob(job.id)) ?? job
    } finally {
      clearTimeout(timer)
      leaveSet(this.waiters, job.id, waiter)
      if (returnWhenQueued) leaveSet(this.queuedWaiters, queue, waiter)
    }
  }

  /** Answers the callers waiting here for a job that left the backlog. */
  private wake(jobId: string): void {
    for (const settle of this.waiters.get(jobId) ?? []) settle()
  }

  /**
   * Every change of a job passes here once it is stored (its creation, then each transition). A queued job that
   * has just left the backlog is taken out of its queue, and the callers waiting for it are answered.
   */
  private jobChanged(job: JobRecord): void {
    this.emitJob(job)
    const leftBacklog = this.options.jobQueueMax > 0 && job.state !== 'pending' && job.history.at(-2)?.state === 'pending'
    if (!leftBacklog) return
    this.track(this.store.dequeueJob(job.owner, job.agentName, job.id))
    // Callers here are answered at once; a retry of its idempotency key may be waiting on another instance too.
    this.wake(job.id)
    this.track(this.events.publish(SETTLED_CHANNEL, job.id))
  }

  /** The events of a job's change: created (and pending, when it waits in the backlog), then one per state it takes. */
  private emitJob(job: JobRecord): void {
    const emit = this.options.emit
    if (!emit) return
    const last = job.history.at(-1)
    const types: EventType[] =
      job.history.length === 1
        ? ['job.created', ...(this.options.jobQueueMax > 0 ? (['job.pending'] as const) : [])]
        : job.state === 'reassigning' || job.state === 'pending'
          ? ['job.pending']
          : job.state === 'failed' && last?.reason?.startsWith(EXPIRED_REASON)
            ? ['job.expired']
            : [`job.${job.state}` as EventType]
    const data = {
      state: job.state,
      agent_name: job.agentName,
      room_id: job.roomId,
      worker_id: job.workerId,
      ...(last?.reason ? { reason: last.reason } : {}),
      ...(job.participantIdentity ? { participant_identity: job.participantIdentity } : {}),
    }
    for (const type of types) emit({ type, tenant: job.owner, resource: { kind: 'job', id: job.id }, data })
  }

  private emitWorker(type: 'worker.registered' | 'worker.lost' | 'worker.drained', worker: Pick<WorkerRecord, 'id' | 'owner' | 'agentName' | 'jobs'>): void {
    this.options.emit?.({ type, tenant: worker.owner, resource: { kind: 'worker', id: worker.id }, data: { agent_name: worker.agentName, jobs: worker.jobs.length } })
  }

  /** Moves a job through the store's compare-and-set; every transition of a job is made here. */
  private async transition(id: string, transition: JobTransition): Promise<JobRecord | null> {
    const job = await this.store.transitionJob(id, transition)
    if (job) this.jobChanged(job)
    return job
  }

  /** Serves the backlog of a tenant's agent name on this instance (a slot freed, a worker registered, a drain ended). */
  private serveQueue(owner: string, agentName: string): void {
    if (this.options.jobQueueMax === 0 || this.stopped) return
    const key = queueOf(owner, agentName)
    const running = this.pumps.get(key)
    if (running) {
      running.again = true
      return
    }
    const pump = { again: false }
    this.pumps.set(key, pump)
    this.track(
      (async () => {
        try {
          do {
            pump.again = false
            await this.drainQueue(owner, agentName)
          } while (pump.again && !this.stopped)
        } finally {
          this.pumps.delete(key)
          for (const settle of this.queuedWaiters.get(key) ?? []) settle()
        }
      })(),
    )
  }

  /**
   * Dispatches the queue's oldest jobs one after another while workers take them. A job is claimed first, so
   * no two instances dispatch it at once; one that no worker takes (none has room, or every one declined in this
   * attempt) is given back in its place, and the queue waits for the next slot, registration or drain's end.
   */
  private async drainQueue(owner: string, agentName: string): Promise<void> {
    const claimant = randomUUID()
    while (!this.stopped) {
      const job = await this.store.claimQueuedJob(owner, agentName, claimant, Date.now() + this.options.dispatchTimeoutMs + this.options.availabilityTimeoutMs)
      if (!job) return
      if (job.createdAt + this.options.jobPendingTtlMs <= Date.now()) {
        await this.expire(job)
        continue
      }
      try {
        await this.dispatch(job, Date.now() + this.options.dispatchTimeoutMs)
      } catch (error) {
        await this.store.releaseQueuedJob(owner, agentName, job.id, claimant)
        if (error instanceof ConflictError) continue // cancelled meanwhile
        if (!(error instanceof NoWorkersAvailableError || error instanceof NoWorkersRegisteredError)) throw error
        return
      }
    }
  }

  /** A job of the tenant, with its history. */
  async getJob(owner: string, id: string): Promise<JobRecord> {
    const job = await this.store.getJob(id)
    if (!job || job.owner !== owner) throw new NotFoundError(`job ${id} not found`)
    return job
  }

  /** The tenant's jobs, newest first. */
  listJobs(owner: string, query: JobQuery): Promise<JobRecord[]> {
    return this.store.listJobs({ ...query, owner, limit: query.limit ?? 100 })
  }

  /** Cancels a job at once and tells its worker (job_termination); the worker's later updates are ignored. */
  async terminateJob(owner: string, id: string, reason = 'terminated by request'): Promise<JobRecord> {
    const job = await this.getJob(owner, id)
    const cancelled = await this.transition(id, { from: ACTIVE, to: 'cancelled', reason })
    if (!cancelled) {
      const now = await this.getJob(owner, id)
      if (now.state === 'cancelled') return now
      throw new ConflictError(`job ${id} is already ${now.state}`)
    }
    const workerId = cancelled.workerId ?? job.workerId
    if (workerId) {
      await this.store.releaseSlot(workerId, id)
      const worker = await this.store.getWorker(workerId)
      if (worker?.instance) await this.relay(worker.instance, { kind: 'terminate', workerId, jobId: id, reason })
      this.serveQueue(cancelled.owner, cancelled.agentName)
    }
    return cancelled
  }

  // ---- workers -----------------------------------------------------------

  /** The tenant's workers, optionally of one agent name. */
  async listWorkers(owner: string, agentName?: string): Promise<WorkerRecord[]> {
    return (await this.store.listWorkers(agentName)).filter((worker) => worker.owner === owner)
  }

  /** One of the tenant's workers. */
  async getWorker(owner: string, id: string): Promise<WorkerRecord> {
    const worker = await this.store.getWorker(id)
    if (!worker || worker.owner !== owner) throw new NotFoundError(`worker ${id} not found`)
    return worker
  }

  /** Drains a worker: it gets no new jobs, its jobs run to their end. */
  async drainWorker(owner: string, id: string): Promise<WorkerRecord> {
    await this.getWorker(owner, id)
    const drained = await this.store.setDraining(id, true)
    if (!drained) throw new NotFoundError(`worker ${id} not found`)
    this.emitWorker('worker.drained', drained)
    return drained
  }

  /** Questions and timers in flight on this instance (all zero when nothing is pending). */
  pending(): { answers: number; asks: number; graceTimers: number } {
    let asks = 0
    for (const session of this.sessions.values()) asks += session.asks.size
    return { answers: this.answers.size, asks, graceTimers: this.graceTimers.size }
  }

  /** Stops: workers held here are marked disconnected (they keep their jobs), timers end, waiting dispatches give up. */
  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    for (const timer of this.graceTimers.values()) clearTimeout(timer)
    this.graceTimers.clear()
    for (const session of [...this.sessions.values()]) {
      this.sessions.delete(session.workerId)
      this.dropAsks(session, 'switchboard is shutting down')
      await this.store.updateWorker(session.workerId, session.connection, { connection: null, instance: null, disconnectedAt: Date.now() }).catch(() => null)
      session.socket.close(1001, 'switchboard is shutting down')
    }
    for (const settle of [...this.answers.values()]) settle({ available: false, token: null, reason: 'switchboard is shutting down' })
    for (const set of this.waiters.values()) for (const settle of set) settle()
    // After the workers are marked disconnected: the others then give them the rest of their grace, starting at once.
    await this.heartbeat.stop()
    await Promise.allSettled([...this.background])
    for (const subscription of [this.subscribed, this.settledSubscription]) (await subscription.catch(() => null))?.()
  }

  // ---- dispatch ----------------------------------------------------------

  /**
   * Offers the job to one candidate at a time (weighted by free slots, each
   * worker once) until one accepts or the deadline passes. A slot is reserved
   * before the question, so concurrent dispatches never overfill a worker.
   */
  private async dispatch(job: JobRecord, deadline: number): Promise<JobRecord> {
    await this.subscribed
    const tried = new Set<string>()
    let anyRegistered = false
    while (!this.stopped && Date.now() < deadline) {
      const { worker, registered } = await reserveAny(this.store, job.agentName, job.owner, job.id, tried)
      anyRegistered ||= registered
      if (!worker) break
      tried.add(worker.id)
      const answer = await this.ask(worker, job, Math.min(this.options.availabilityTimeoutMs, deadline - Date.now()))
      if (!answer.available || !(await this.store.assignSlot(worker.id, job.id))) {
        await this.store.releaseSlot(worker.id, job.id)
        this.logger.debug('worker did not take the job', { job: job.id, worker: worker.id, reason: answer.reason || 'reservation lost' })
        continue
      }
      const assigned = await this.transition(job.id, { from: ['pending', 'reassigning'], heldBy: null, to: 'assigned', workerId: worker.id })
      if (!assigned) {
        await this.store.releaseSlot(worker.id, job.id)
        throw new ConflictError(`job ${job.id} was cancelled while being dispatched`)
      }
      const assignment: Assignment = {
        jobId: job.id,
        roomId: job.roomId,
        agentName: job.agentName,
        token: answer.token,
        url: this.options.assignmentUrl,
        metadata: job.metadata,
        roomOptions: job.roomOptions,
      }
      await this.relay(worker.instance!, { kind: 'assign', workerId: worker.id, connection: worker.connection!, assignment })
      return assigned
    }
    throw anyRegistered ? new NoWorkersAvailableError() : new NoWorkersRegisteredError()
  }

  /** Sends availability_request through the worker's instance and waits for the answer, at most `timeoutMs`. */
  private ask(worker: WorkerRecord, job: JobRecord, timeoutMs: number): Promise<Answer> {
    const requestId = randomUUID()
    return new Promise<Answer>((resolve) => {
      const settle = (answer: Answer) => {
        clearTimeout(timer)
        this.answers.delete(requestId)
        resolve(answer)
      }
      const timer = setTimeout(() => settle({ available: false, token: null, reason: 'no answer in time' }), Math.max(0, timeoutMs))
      this.answers.set(requestId, settle)
      const message: RelayMessage = {
        kind: 'ask',
        requestId,
        replyTo: this.options.instanceId,
        workerId: worker.id,
        connection: worker.connection!,
        jobId: job.id,
        roomId: job.roomId,
        agentName: job.agentName,
        timeoutMs,
      }
      this.relay(worker.instance!, message).catch((error) => settle({ available: false, token: null, reason: `relay failed: ${String(error)}` }))
    })
  }

  /** Applies a worker's job_update; unknown jobs, jobs it does not hold and repeated terminal updates are ignored. */
  private async applyJobUpdate(workerId: string, jobId: string, status: 'running' | 'completed' | 'failed', error?: string, participantIdentity?: string): Promise<void> {
    const identity = participantIdentity ? { participantIdentity } : {}
    if (status === 'running') {
      const moved = await this.transition(jobId, { from: ['assigned'], heldBy: workerId, to: 'running', ...identity })
      if (!moved) this.logger.debug('job update ignored', { worker: workerId, job: jobId, status })
      return
    }
    const ended = await this.transition(jobId, { from: ['assigned', 'running'], heldBy: workerId, to: status, ...(error ? { reason: error } : {}), ...identity })
    if (!ended) {
      this.logger.debug('job update ignored', { worker: workerId, job: jobId, status })
      return
    }
    await this.store.releaseSlot(workerId, jobId)
    this.serveQueue(ended.owner, ended.agentName)
  }

  /** After the grace period: if the worker is still gone, its jobs are re-dispatched or failed. */
  private async recoverLostWorker(workerId: string): Promise<void> {
    if (this.stopped) return
    const worker = await this.store.getWorker(workerId)
    if (!worker || worker.connection !== null) return // it came back, or another instance handled it
    // A timer set for an earlier loss (here or on another instance) must not cut short the grace of a later one.
    const left = (worker.disconnectedAt ?? 0) + this.options.graceMs - Date.now()
    if (left > 0) return this.scheduleRecovery(workerId, left)
    const lost = await this.store.deleteWorker(workerId, null)
    if (!lost) return // it came back, or another instance handled it first
    const reason = `worker ${workerId} lost`
    this.logger.warn('worker did not come back; handling its jobs', { worker: workerId, jobs: lost.jobs.length, action: this.options.lossAction })
    for (const jobId of lost.jobs) {
      if (this.options.lossAction === 'fail') {
        await this.transition(jobId, { from: ['assigned', 'running'], heldBy: workerId, to: 'failed', reason })
        continue
      }
      const orphan = await this.transition(jobId, { from: ['assigned', 'running'], heldBy: workerId, to: 'reassigning', workerId: null, reason })
      if (orphan) this.track(this.redispatch(orphan))
    }
  }

  private async redispatch(job: JobRecord): Promise<void> {
    try {
      const assigned = await this.dispatch(job, Date.now() + this.options.dispatchTimeoutMs)
      this.logger.info('job re-dispatched', { job: job.id, worker: assigned.workerId })
    } catch (error) {
      await this.transition(job.id, { from: ['reassigning'], to: 'failed', reason: (error as Error).message }).catch(() => null)
      this.logger.warn('job could not be re-dispatched', { job: job.id, error: (error as Error).message })
    }
  }

  // ---- relay between instances -------------------------------------------

  /** Sends `message` to the sessions of `instance`: handled at once when that is this instance (no round trip through the bus, as the memory bus does it), else published to it. */
  private relay(instance: string, message: RelayMessage): Promise<void> {
    if (instance !== this.options.instanceId) return this.events.publish(channelOf(instance), JSON.stringify(message))
    this.handleRelay(message)
    return Promise.resolve()
  }

  private onRelay(payload: string): void {
    let message: RelayMessage
    try {
      message = JSON.parse(payload) as RelayMessage
    } catch {
      this.logger.error('workers: unreadable relay message', { payload: payload.slice(0, 200) })
      return
    }
    this.handleRelay(message)
  }

  private handleRelay(message: RelayMessage): void {
    switch (message.kind) {
      case 'answer':
        this.answers.get(message.requestId)?.({ available: message.available, token: message.token, reason: message.reason })
        return
      case 'ask':
        this.forwardAsk(message)
        return
      case 'assign': {
        const session = this.sessions.get(message.workerId)
        if (!session || session.connection !== message.connection) {
          // The worker's jobs stay on its record: its return or the grace period settles them.
          this.logger.warn('assignment for a worker no longer connected here', { worker: message.workerId, job: message.assignment.jobId })
          return
        }
        session.socket.send(frames.jobAssignment(message.assignment, message.assignment.token || session.token))
        return
      }
      case 'terminate':
        this.sessions.get(message.workerId)?.socket.send(frames.jobTermination(message.jobId, message.reason))
        return
      case 'close':
        this.closeSession(message.connection, message.workerId)
        return
    }
  }

  private forwardAsk(message: Extract<RelayMessage, { kind: 'ask' }>): void {
    const reply = (available: boolean, reason: string) =>
      void this.relay(message.replyTo, { kind: 'answer', requestId: message.requestId, available, token: null, reason }).catch((error) =>
        this.logger.error('workers: cannot relay an answer', { error: String(error) }),
      )
    const session = this.sessions.get(message.workerId)
    if (!session || session.connection !== message.connection) return reply(false, 'worker not connected')
    if (session.asks.has(message.jobId)) return reply(false, 'already asked about this job')
    // Forget the question when the dispatcher stops waiting, so nothing lingers.
    const timer = setTimeout(() => session.asks.delete(message.jobId), message.timeoutMs)
    session.asks.set(message.jobId, { requestId: message.requestId, replyTo: message.replyTo, timer })
    session.socket.send(frames.availabilityRequest(message.jobId, message.roomId, message.agentName))
  }

  /** Closes the local socket of a connection whose registration has moved on (superseded by default). */
  private closeSession(connection: string, workerId: string, reason = 'superseded by a newer connection'): void {
    const session = this.sessions.get(workerId)
    if (!session || session.connection !== connection) return
    this.sessions.delete(workerId)
    this.dropAsks(session, reason)
    session.socket.close(4000, reason)
  }

  /** Answers every open question of a socket with "unavailable", so dispatches move on at once. */
  private dropAsks(session: WorkerSession, reason: string): void {
    for (const ask of session.asks.values()) {
      clearTimeout(ask.timer)
      void this.relay(ask.replyTo, { kind: 'answer', requestId: ask.requestId, available: false, token: null, reason }).catch(() => {})
    }
    session.asks.clear()
  }

  private cancelGrace(workerId: string): void {
    const timer = this.graceTimers.get(workerId)
    if (timer) clearTimeout(timer)
    this.graceTimers.delete(workerId)
  }

  private track(work: Promise<unknown>): void {
    const tracked = work.catch((error) => this.logger.error('workers: background task failed', { error: String(error) })).finally(() => this.background.delete(tracked))
    this.background.add(tracked)
  }
}
