/** The workers module's part of the backend contract: workers, their capacity, and jobs. */

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
  /** Slots held between an accepted availability and the job's first update. */
  reserved: string[]
  /** The instance holding the worker's socket; null while disconnected. */
  instance: string | null
  /** Identifies the socket, so a stale socket's close cannot remove a newer registration. */
  connection: string | null
  capabilities: unknown
  registeredAt: number
  disconnectedAt: number | null
}

export type JobState = 'pending' | 'assigned' | 'running' | 'completed' | 'failed' | 'cancelled' | 'reassigning'

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
}

export interface JobFilter {
  agentName?: string
  state?: JobState
  workerId?: string
  owner?: string
  limit?: number
}

/**
 * Worker and job storage. Capacity and job transitions are compare-and-set,
 * so two instances can never assign one slot or one job twice.
 */
export interface WorkerStore {
  /** Insert or replace a worker's registration; returns the previous record (its connection is superseded). */
  upsertWorker(worker: WorkerRecord): Promise<WorkerRecord | null>
  getWorker(id: string): Promise<WorkerRecord | null>
  listWorkers(agentName?: string): Promise<WorkerRecord[]>
  /** Apply a patch only if the worker is still held by `connection`; returns the new record or null. */
  updateWorker(id: string, connection: string | null, patch: Partial<WorkerRecord>): Promise<WorkerRecord | null>
  deleteWorker(id: string): Promise<void>
  /** Reserve a slot for `jobId` if the worker has free capacity by Switchboard's accounting. */
  reserveSlot(workerId: string, jobId: string): Promise<boolean>
  /** Drop a reservation and/or an assignment of `jobId` from the worker. */
  releaseSlot(workerId: string, jobId: string): Promise<void>
  /** Turn a reservation into an assignment. */
  assignSlot(workerId: string, jobId: string): Promise<boolean>
  createJob(job: JobRecord): Promise<void>
  getJob(id: string): Promise<JobRecord | null>
  listJobs(filter: JobFilter): Promise<JobRecord[]>
  /** Move a job to `next` if it is in one of `from`; records the event. Returns the new record, or null if the job was not in `from`. */
  transitionJob(id: string, from: readonly JobState[], next: JobState, patch: Partial<Pick<JobRecord, 'workerId'>>, event: Omit<JobEvent, 'state' | 'at'>): Promise<JobRecord | null>
}
