import { utf8Bytes } from '../../src/backend/mailboxes'
import { applyTransition, FINISHED_JOB_STATES, jobMatches, type JobFilter, type EnqueueOutcome, type JobQueue, type JobRecord, type JobTransition, type RememberedDispatch, type WorkerPatch, type WorkerRecord, type WorkerStore } from '../../src/backend/workers'

const clone = <T>(value: T): T => structuredClone(value)

/** A worker record is flat but for three lists of strings: copying those is all a caller's copy needs (a dispatch reads every worker of its agent name). */
const copyWorker = (worker: WorkerRecord): WorkerRecord => ({ ...worker, jobs: [...worker.jobs], reserved: [...worker.reserved], capabilities: [...worker.capabilities] })

export interface MemoryWorkersOptions {
  /** Finished jobs kept for their history; beyond it, the one that finished longest ago is dropped. */
  finishedJobsKept: number
  /** Bytes the finished jobs kept may take together (their JSON in UTF-8); beyond it, too, the one that finished longest ago is dropped. */
  finishedJobsMaxBytes?: number
}

/** What a job's objects take beyond its JSON text, in bytes (its history events, the maps holding it), rounded up. */
const JOB_COST = 1024

/**
 * Workers and jobs in plain maps; each operation is one synchronous step,
 * hence atomic. Finished jobs are bounded in number and in bytes: each job
 * that finishes pushes out the oldest finished ones past `finishedJobsKept` or
 * `finishedJobsMaxBytes`, so the cost is one step per finish (and one per job
 * dropped) and jobs still running are never dropped.
 */
export class MemoryWorkers implements WorkerStore {
  private readonly workers = new Map<string, WorkerRecord>()
  /** Worker ids by agent name, so listing one agent's workers does not walk every worker. */
  private readonly byAgent = new Map<string, Set<string>>()
  private readonly jobs = new Map<string, JobRecord>()
  /** Bytes of each finished job, in the order they finished (a Map keeps insertion order). */
  private readonly finished = new Map<string, number>()
  private finishedBytes = 0
  /** Queued job ids by queue (tenant and agent name), oldest first (insertion order), with their claims. */
  private readonly queues = new Map<string, Map<string, { claimant: string; until: number } | null>>()
  /** Jobs each tenant has in its queues together. */
  private readonly queuedBy = new Map<string, number>()
  /** Remembered dispatches by tenant and key, in the order they were remembered (Switchboard gives each the same time to live, so the order they expire in). */
  private readonly dispatches = new Map<string, RememberedDispatch & { expiresAt: number }>()

  constructor(private readonly options: MemoryWorkersOptions) {}

  /** Keeps `finished` in step with a job's new state, dropping the oldest finished jobs while over either bound. */
  private noteState(job: JobRecord): void {
    const before = this.finished.get(job.id)
    if (before !== undefined) {
      this.finished.delete(job.id)
      this.finishedBytes -= before
    }
    if (!FINISHED_JOB_STATES.includes(job.state)) return
    const bytes = JOB_COST + utf8Bytes(JSON.stringify(job))
    this.finished.set(job.id, bytes)
    this.finishedBytes += bytes
    const maxBytes = this.options.finishedJobsMaxBytes ?? Number.POSITIVE_INFINITY
    while (this.finished.size > this.options.finishedJobsKept || this.finishedBytes > maxBytes) {
      const [oldest, size] = this.finished.entries().next().value!
      this.finished.delete(oldest)
      this.finishedBytes -= size
      this.jobs.delete(oldest)
    }
  }

  private index(worker: WorkerRecord): void {
    let ids = this.byAgent.get(worker.agentName)
    if (!ids) this.byAgent.set(worker.agentName, (ids = new Set()))
    ids.add(worker.id)
  }

  private unindex(worker: WorkerRecord): void {
    const ids = this.byAgent.get(worker.agentName)
    ids?.delete(worker.id)
    if (ids?.size === 0) this.byAgent.delete(worker.agentName)
  }

  async upsertWorker(worker: WorkerRecord): Promise<WorkerRecord | null> {
    const previous = this.workers.get(worker.id) ?? null
    const next = copyWorker(worker)
    if (previous) {
      next.jobs = [...previous.jobs]
      next.reserved = [...previous.reserved]
      next.draining = previous.draining
      this.unindex(previous)
    }
    this.workers.set(worker.id, next)
    this.index(next)
    return previous ? copyWorker(previous) : null
  }

  async getWorker(id: string): Promise<WorkerRecord | null> {
    const worker = this.workers.get(id)
    return worker ? copyWorker(worker) : null
  }

  async listWorkers(agentName?: string): Promise<WorkerRecord[]> {
    if (agentName === undefined) return [...this.workers.values()].map(copyWorker)
    return [...(this.byAgent.get(agentName) ?? [])].map((id) => copyWorker(this.workers.get(id)!))
  }

  async updateWorker(id: string, connection: string | null, patch: WorkerPatch): Promise<WorkerRecord | null> {
    const worker = this.workers.get(id)
    if (!worker || worker.connection !== connection) return null
    Object.assign(worker, clone(patch))
    return copyWorker(worker)
  }

  async setDraining(id: string, draining: boolean): Promise<WorkerRecord | null> {
    const worker = this.workers.get(id)
    if (!worker) return null
    worker.draining = draining
    return copyWorker(worker)
  }

  async deleteWorker(id: string, connection: string | null): Promise<WorkerRecord | null> {
    const worker = this.workers.get(id)
    if (!worker || worker.connection !== connection) return null
    this.workers.delete(id)
    this.unindex(worker)
    return copyWorker(worker)
  }

  async reserveSlot(workerId: string, jobId: string): Promise<boolean> {
    const worker = this.workers.get(workerId)
    if (!worker || worker.connection === null || worker.draining || worker.status !== 'available') return false
    if (worker.reserved.includes(jobId) || worker.jobs.includes(jobId)) return false
    const held = worker.jobs.length + worker.reserved.length
    if (held >= worker.maxProcesses || held / worker.maxProcesses >= worker.loadThreshold) return false
    worker.reserved.push(jobId)
    return true
  }

  async assignSlot(workerId: string, jobId: string): Promise<boolean> {
    const worker = this.workers.get(workerId)
    if (!worker || !worker.reserved.includes(jobId)) return false
    worker.reserved = worker.reserved.filter((id) => id !== jobId)
    worker.jobs.push(jobId)
    return true
  }

  async releaseSlot(workerId: string, jobId: string): Promise<void> {
    const worker = this.workers.get(workerId)
    if (!worker) return
    worker.reserved = worker.reserved.filter((id) => id !== jobId)
    worker.jobs = worker.jobs.filter((id) => id !== jobId)
  }

  async createJob(job: JobRecord): Promise<void> {
    const stored = clone(job)
    this.jobs.set(job.id, stored)
    this.noteState(stored)
  }

  async getJob(id: string): Promise<JobRecord | null> {
    const job = this.jobs.get(id)
    return job ? clone(job) : null
  }

  async listJobs(filter: JobFilter): Promise<JobRecord[]> {
    // Newest first: later insertions win ties on createdAt.
    const found = [...this.jobs.values()].reverse().filter((job) => jobMatches(job, filter))
    found.sort((a, b) => b.createdAt - a.createdAt)
    let start = 0
    if (filter.after) {
      const { createdAt, id } = filter.after
      const at = found.findIndex((job) => job.id === id)
      start = at >= 0 ? at + 1 : found.findIndex((job) => job.createdAt < createdAt)
      if (start < 0) return []
    }
    return found.slice(start, filter.limit === undefined ? undefined : start + filter.limit).map(clone)
  }

  async transitionJob(id: string, transition: JobTransition): Promise<JobRecord | null> {
    const job = this.jobs.get(id)
    if (!job || !applyTransition(job, transition)) return null
    this.noteState(job)
    return clone(job)
  }

  async enqueueJob(job: JobRecord, max: number, clientMax: number): Promise<EnqueueOutcome> {
    const key = queueKey(job.owner, job.agentName)
    const queue = this.queues.get(key) ?? new Map()
    if (queue.size >= max) return 'queue full'
    const held = this.queuedBy.get(job.owner) ?? 0
    if (held >= clientMax) return 'client full'
    this.queues.set(key, queue.set(job.id, null))
    this.queuedBy.set(job.owner, held + 1)
    await this.createJob(job)
    return 'queued'
  }

  /** Takes a job out of a queue, keeping the tenant's count. */
  private unqueue(owner: string, key: string, jobId: string): void {
    const queue = this.queues.get(key)
    if (!queue?.delete(jobId)) return
    if (queue.size === 0) this.queues.delete(key)
    const held = (this.queuedBy.get(owner) ?? 1) - 1
    if (held > 0) this.queuedBy.set(owner, held)
    else this.queuedBy.delete(owner)
  }

  async claimQueuedJob(owner: string, agentName: string, claimant: string, until: number): Promise<JobRecord | null> {
    const key = queueKey(owner, agentName)
    const queue = this.queues.get(key)
    if (!queue) return null
    const now = Date.now()
    for (const [id, claim] of queue) {
      const job = this.jobs.get(id)
      if (job?.state !== 'pending') {
        this.unqueue(owner, key, id)
        continue
      }
      if (claim && claim.until > now) continue
      queue.set(id, { claimant, until })
      return clone(job)
    }
    return null
  }

  async releaseQueuedJob(owner: string, agentName: string, jobId: string, claimant: string): Promise<void> {
    const queue = this.queues.get(queueKey(owner, agentName))
    if (queue?.get(jobId)?.claimant === claimant) queue.set(jobId, null)
  }

  async dequeueJob(owner: string, agentName: string, jobId: string): Promise<void> {
    this.unqueue(owner, queueKey(owner, agentName), jobId)
  }

  async listQueues(): Promise<JobQueue[]> {
    const found: JobQueue[] = []
    for (const [key, queue] of this.queues) {
      const head = [...queue.keys()].map((id) => this.jobs.get(id)).find((job) => job?.state === 'pending')
      if (!head) continue
      const [owner, agentName] = JSON.parse(key) as [string, string]
      found.push({ owner, agentName, length: queue.size, oldestCreatedAt: head.createdAt })
    }
    return found
  }

  async rememberDispatch(owner: string, key: string, dispatch: RememberedDispatch, expiresAt: number, maxKept: number): Promise<RememberedDispatch | null> {
    const now = Date.now()
    for (const [name, entry] of this.dispatches) {
      if (entry.expiresAt > now) break
      this.dispatches.delete(name)
    }
    const name = queueKey(owner, key)
    const live = this.dispatches.get(name)
    if (live && live.expiresAt > now) return { jobId: live.jobId, fingerprint: live.fingerprint }
    this.dispatches.delete(name)
    while (this.dispatches.size >= maxKept) this.dispatches.delete(this.dispatches.keys().next().value!)
    this.dispatches.set(name, { ...dispatch, expiresAt })
    return null
  }

  async forgetDispatch(owner: string, key: string, jobId: string): Promise<void> {
    const name = queueKey(owner, key)
    if (this.dispatches.get(name)?.jobId === jobId) this.dispatches.delete(name)
  }
}

/** One key for a pair of strings that may hold any character. */
const queueKey = (owner: string, name: string) => JSON.stringify([owner, name])
