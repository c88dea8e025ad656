import type { JobEvent, JobFilter, JobRecord, JobState, WorkerRecord, WorkerStore } from '../../src/backend/workers'

const clone = <T>(value: T): T => structuredClone(value)

/** Workers and jobs in plain maps; each operation is one synchronous step. */
export class MemoryWorkers implements WorkerStore {
  private readonly workers = new Map<string, WorkerRecord>()
  private readonly jobs = new Map<string, JobRecord>()

  async upsertWorker(worker: WorkerRecord): Promise<WorkerRecord | null> {
    const previous = this.workers.get(worker.id) ?? null
    this.workers.set(worker.id, clone(worker))
    return previous ? clone(previous) : null
  }

  async getWorker(id: string): Promise<WorkerRecord | null> {
    const worker = this.workers.get(id)
    return worker ? clone(worker) : null
  }

  async listWorkers(agentName?: string): Promise<WorkerRecord[]> {
    return [...this.workers.values()].filter((worker) => agentName === undefined || worker.agentName === agentName).map(clone)
  }

  async updateWorker(id: string, connection: string | null, patch: Partial<WorkerRecord>): Promise<WorkerRecord | null> {
    const worker = this.workers.get(id)
    if (!worker || (connection !== null && worker.connection !== connection)) return null
    Object.assign(worker, clone(patch))
    return clone(worker)
  }

  async deleteWorker(id: string): Promise<void> {
    this.workers.delete(id)
  }

  async reserveSlot(workerId: string, jobId: string): Promise<boolean> {
    const worker = this.workers.get(workerId)
    if (!worker || worker.instance === null || worker.draining || worker.status !== 'available') return false
    if (worker.reserved.includes(jobId) || worker.jobs.includes(jobId)) return false
    if (worker.jobs.length + worker.reserved.length >= worker.maxProcesses) return false
    if ((worker.jobs.length + worker.reserved.length + 1) / worker.maxProcesses > Math.max(worker.loadThreshold, 1 / worker.maxProcesses)) return false
    worker.reserved.push(jobId)
    return true
  }

  async releaseSlot(workerId: string, jobId: string): Promise<void> {
    const worker = this.workers.get(workerId)
    if (!worker) return
    worker.reserved = worker.reserved.filter((id) => id !== jobId)
    worker.jobs = worker.jobs.filter((id) => id !== jobId)
  }

  async assignSlot(workerId: string, jobId: string): Promise<boolean> {
    const worker = this.workers.get(workerId)
    if (!worker || !worker.reserved.includes(jobId)) return false
    worker.reserved = worker.reserved.filter((id) => id !== jobId)
    worker.jobs.push(jobId)
    return true
  }

  async createJob(job: JobRecord): Promise<void> {
    this.jobs.set(job.id, clone(job))
  }

  async getJob(id: string): Promise<JobRecord | null> {
    const job = this.jobs.get(id)
    return job ? clone(job) : null
  }

  async listJobs(filter: JobFilter): Promise<JobRecord[]> {
    const found: JobRecord[] = []
    for (const job of this.jobs.values()) {
      if (filter.agentName !== undefined && job.agentName !== filter.agentName) continue
      if (filter.state !== undefined && job.state !== filter.state) continue
      if (filter.workerId !== undefined && job.workerId !== filter.workerId) continue
      if (filter.owner !== undefined && job.owner !== filter.owner) continue
      found.push(clone(job))
      if (filter.limit !== undefined && found.length >= filter.limit) break
    }
    return found
  }

  async transitionJob(id: string, from: readonly JobState[], next: JobState, patch: Partial<Pick<JobRecord, 'workerId'>>, event: Omit<JobEvent, 'state' | 'at'>): Promise<JobRecord | null> {
    const job = this.jobs.get(id)
    if (!job || !from.includes(job.state)) return null
    const at = Date.now()
    Object.assign(job, patch)
    job.state = next
    job.updatedAt = at
    job.history.push({ state: next, at, ...event })
    return clone(job)
  }
}
