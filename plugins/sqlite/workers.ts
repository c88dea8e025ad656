/**
 * Workers and jobs in SQLite; every compare-and-set is one transaction,
 * committed with the other writes of its turn (GroupCommit). Finished jobs
 * are numbered in the order they finished (`finished_seq`), and each one
 * that finishes deletes those numbered `finishedJobsKept` or more below it,
 * then the oldest while they take more than `finishedJobsMaxBytes` together
 * (their JSON, summed in `finished_jobs_size`): jobs still running are never
 * dropped.
 */
import type { Database, Statement } from 'bun:sqlite'
import type { GroupCommit } from './commit'
import { applyTransition, FINISHED_JOB_STATES, type JobFilter, type EnqueueOutcome, type JobQueue, type JobRecord, type JobTransition, type RememberedDispatch, type WorkerPatch, type WorkerRecord, type WorkerStore } from '../../src/backend/workers'

type Row<T> = Statement<T, (string | number | null)[]>

export class SqliteWorkers implements WorkerStore {
  private readonly statements: {
    worker: Row<{ record: string }>
    workers: Row<{ record: string }>
    workersOf: Row<{ record: string }>
    saveWorker: Row<never>
    deleteWorker: Row<never>
    job: Row<{ record: string }>
    saveJob: Row<never>
    finishedSeq: Row<{ finished_seq: number | null; bytes: number }>
    nextFinishedSeq: Row<{ next: number }>
    dropFinished: Row<{ bytes: number }>
    oldestFinished: Row<{ finished_seq: number; bytes: number }>
    finishedBytes: Row<{ bytes: number }>
    setFinishedBytes: Row<never>
    queueLength: Row<{ length: number }>
    clientQueued: Row<{ length: number }>
    enqueue: Row<never>
    queued: Row<{ position: number; job_id: string; claimed_until: number | null; state: string | null; record: string | null }>
    claim: Row<never>
    unqueue: Row<never>
    release: Row<never>
    dequeue: Row<never>
    queues: Row<{ owner: string; agent_name: string; length: number; oldest: number | null }>
    dispatchKey: Row<{ job_id: string; fingerprint: string }>
    dropExpiredKeys: Row<never>
    keyCount: Row<{ count: number }>
    dropEarliestKeys: Row<never>
    saveKey: Row<never>
    forgetKey: Row<never>
  }

  private readonly upsertTx: (worker: WorkerRecord) => WorkerRecord | null
  private readonly updateTx: (id: string, connection: string | null, patch: WorkerPatch) => WorkerRecord | null
  private readonly drainTx: (id: string, draining: boolean) => WorkerRecord | null
  private readonly deleteTx: (id: string, connection: string | null) => WorkerRecord | null
  private readonly reserveTx: (workerId: string, jobId: string) => boolean
  private readonly assignTx: (workerId: string, jobId: string) => boolean
  private readonly releaseTx: (workerId: string, jobId: string) => void
  private readonly transitionTx: (id: string, transition: JobTransition) => JobRecord | null
  private readonly enqueueTx: (job: JobRecord, max: number, clientMax: number) => EnqueueOutcome
  private readonly claimTx: (owner: string, agentName: string, claimant: string, until: number) => JobRecord | null
  private readonly rememberTx: (owner: string, key: string, dispatch: RememberedDispatch, expiresAt: number, maxKept: number) => RememberedDispatch | null

  constructor(
    private readonly db: Database,
    private readonly writes: GroupCommit,
    /** Finished jobs kept for their history; beyond it, the one that finished longest ago is dropped. */
    private readonly finishedJobsKept: number,
    /** Bytes (JSON) the finished jobs kept may take together; beyond it, too, the one that finished longest ago is dropped. */
    private readonly finishedJobsMaxBytes = Number.POSITIVE_INFINITY,
  ) {
    const prepare = <T>(sql: string) => db.prepare(sql) as Row<T>
    this.statements = {
      worker: prepare('SELECT record FROM workers WHERE id = ?'),
      workers: prepare('SELECT record FROM workers ORDER BY rowid'),
      workersOf: prepare('SELECT record FROM workers WHERE agent_name = ? ORDER BY rowid'),
      saveWorker: prepare('INSERT INTO workers (id, agent_name, record) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET agent_name = excluded.agent_name, record = excluded.record'),
      deleteWorker: prepare('DELETE FROM workers WHERE id = ?'),
      job: prepare('SELECT record FROM jobs WHERE id = ?'),
      saveJob: prepare(
        'INSERT INTO jobs (id, agent_name, state, worker_id, owner, created_at, finished_seq, room_id, bytes, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ' +
          'ON CONFLICT (id) DO UPDATE SET agent_name = excluded.agent_name, state = excluded.state, worker_id = excluded.worker_id, ' +
          'owner = excluded.owner, created_at = excluded.created_at, finished_seq = excluded.finished_seq, room_id = excluded.room_id, bytes = excluded.bytes, record = excluded.record',
      ),
      finishedSeq: prepare('SELECT finished_seq, bytes FROM jobs WHERE id = ?'),
      nextFinishedSeq: prepare('SELECT COALESCE(MAX(finished_seq), 0) + 1 AS next FROM jobs'),
      dropFinished: prepare('DELETE FROM jobs WHERE finished_seq <= ? RETURNING bytes'),
      oldestFinished: prepare('SELECT finished_seq, bytes FROM jobs WHERE finished_seq IS NOT NULL ORDER BY finished_seq LIMIT 100'),
      finishedBytes: prepare('SELECT bytes FROM finished_jobs_size'),
      setFinishedBytes: prepare('UPDATE finished_jobs_size SET bytes = ?'),
      queueLength: prepare('SELECT COUNT(*) AS length FROM job_queue WHERE owner = ? AND agent_name = ?'),
      clientQueued: prepare('SELECT COUNT(*) AS length FROM job_queue WHERE owner = ?'),
      enqueue: prepare('INSERT INTO job_queue (job_id, owner, agent_name) VALUES (?, ?, ?)'),
      queued: prepare(
        'SELECT q.position, q.job_id, q.claimed_until, j.state, j.record FROM job_queue q LEFT JOIN jobs j ON j.id = q.job_id ' +
          'WHERE q.owner = ? AND q.agent_name = ? AND q.position > ? ORDER BY q.position LIMIT 64',
      ),
      claim: prepare('UPDATE job_queue SET claimant = ?, claimed_until = ? WHERE position = ?'),
      unqueue: prepare('DELETE FROM job_queue WHERE position = ?'),
      release: prepare('UPDATE job_queue SET claimant = NULL, claimed_until = NULL WHERE job_id = ? AND claimant = ?'),
      dequeue: prepare('DELETE FROM job_queue WHERE job_id = ?'),
      queues: prepare(
        'SELECT q.owner, q.agent_name, COUNT(*) AS length, MIN(j.created_at) AS oldest FROM job_queue q LEFT JOIN jobs j ON j.id = q.job_id AND j.state = ? GROUP BY q.owner, q.agent_name',
      ),
      dispatchKey: prepare('SELECT job_id, fingerprint FROM dispatch_keys WHERE owner = ? AND key = ?'),
      dropExpiredKeys: prepare('DELETE FROM dispatch_keys WHERE expires_at <= ?'),
      keyCount: prepare('SELECT COUNT(*) AS count FROM dispatch_keys'),
      dropEarliestKeys: prepare('DELETE FROM dispatch_keys WHERE rowid IN (SELECT rowid FROM dispatch_keys ORDER BY expires_at LIMIT ?)'),
      saveKey: prepare('INSERT INTO dispatch_keys (owner, key, job_id, fingerprint, expires_at) VALUES (?, ?, ?, ?, ?)'),
      forgetKey: prepare('DELETE FROM dispatch_keys WHERE owner = ? AND key = ? AND job_id = ?'),
    }

    this.upsertTx = db.transaction((worker: WorkerRecord) => {
      const previous = this.readWorker(worker.id)
      const next: WorkerRecord = previous ? { ...worker, jobs: previous.jobs, reserved: previous.reserved, draining: previous.draining } : worker
      this.saveWorker(next)
      return previous
    })

    this.updateTx = db.transaction((id: string, connection: string | null, patch: WorkerPatch) => {
      const worker = this.readWorker(id)
      if (!worker || worker.connection !== connection) return null
      for (const [key, value] of Object.entries(patch)) {
        if (value !== undefined) (worker as unknown as Record<string, unknown>)[key] = value
      }
      this.saveWorker(worker)
      return worker
    })

    this.drainTx = db.transaction((id: string, draining: boolean) => {
      const worker = this.readWorker(id)
      if (!worker) return null
      worker.draining = draining
      this.saveWorker(worker)
      return worker
    })

    this.deleteTx = db.transaction((id: string, connection: string | null) => {
      const worker = this.readWorker(id)
      if (!worker || worker.connection !== connection) return null
      this.statements.deleteWorker.run(id)
      return worker
    })

    this.reserveTx = db.transaction((workerId: string, jobId: string) => {
      const worker = this.readWorker(workerId)
      if (!worker || worker.connection === null || worker.draining || worker.status !== 'available') return false
      if (worker.reserved.includes(jobId) || worker.jobs.includes(jobId)) return false
      const held = worker.jobs.length + worker.reserved.length
      if (held >= worker.maxProcesses || held / worker.maxProcesses >= worker.loadThreshold) return false
      worker.reserved.push(jobId)
      this.saveWorker(worker)
      return true
    })

    this.assignTx = db.transaction((workerId: string, jobId: string) => {
      const worker = this.readWorker(workerId)
      if (!worker || !worker.reserved.includes(jobId)) return false
      worker.reserved = worker.reserved.filter((id) => id !== jobId)
      worker.jobs.push(jobId)
      this.saveWorker(worker)
      return true
    })

    this.releaseTx = db.transaction((workerId: string, jobId: string) => {
      const worker = this.readWorker(workerId)
      if (!worker) return
      worker.reserved = worker.reserved.filter((id) => id !== jobId)
      worker.jobs = worker.jobs.filter((id) => id !== jobId)
      this.saveWorker(worker)
    })

    this.transitionTx = db.transaction((id: string, transition: JobTransition) => {
      const job = this.readJob(id)
      if (!job || !applyTransition(job, transition)) return null
      this.saveJob(job)
      return job
    })

    this.enqueueTx = db.transaction((job: JobRecord, max: number, clientMax: number): EnqueueOutcome => {
      if (this.statements.queueLength.get(job.owner, job.agentName)!.length >= max) return 'queue full'
      if (this.statements.clientQueued.get(job.owner)!.length >= clientMax) return 'client full'
      this.saveJob(job)
      this.statements.enqueue.run(job.id, job.owner, job.agentName)
      return 'queued'
    })

    this.claimTx = db.transaction((owner: string, agentName: string, claimant: string, until: number) => {
      const now = Date.now()
      // A page at a time: entries whose job left the backlog are dropped, claimed ones passed over.
      for (let after = 0; ; ) {
        const rows = this.statements.queued.all(owner, agentName, after)
        if (rows.length === 0) return null
        for (const row of rows) {
          after = row.position
          if (row.state !== 'pending') this.statements.unqueue.run(row.position)
          else if (row.claimed_until === null || row.claimed_until <= now) {
            this.statements.claim.run(claimant, until, row.position)
            return JSON.parse(row.record!) as JobRecord
          }
        }
      }
    })

    this.rememberTx = db.transaction((owner: string, key: string, dispatch: RememberedDispatch, expiresAt: number, maxKept: number) => {
      this.statements.dropExpiredKeys.run(Date.now())
      const live = this.statements.dispatchKey.get(owner, key)
      if (live) return { jobId: live.job_id, fingerprint: live.fingerprint }
      const over = this.statements.keyCount.get()!.count - maxKept + 1
      if (over > 0) this.statements.dropEarliestKeys.run(over)
      this.statements.saveKey.run(owner, key, dispatch.jobId, dispatch.fingerprint, expiresAt)
      return null
    })
  }

  private readWorker(id: string): WorkerRecord | null {
    const row = this.statements.worker.get(id)
    return row ? (JSON.parse(row.record) as WorkerRecord) : null
  }

  private saveWorker(worker: WorkerRecord): void {
    this.statements.saveWorker.run(worker.id, worker.agentName, JSON.stringify(worker))
  }

  private readJob(id: string): JobRecord | null {
    const row = this.statements.job.get(id)
    return row ? (JSON.parse(row.record) as JobRecord) : null
  }

  /**
   * Stores a job. One that has just finished (or is stored finished) takes the next finished number, and the
   * finished jobs that this pushes past `finishedJobsKept` are deleted in the same transaction.
   */
  private saveJob(job: JobRecord): void {
    const record = JSON.stringify(job)
    let finished: number | null = null
    let before = 0
    if (FINISHED_JOB_STATES.includes(job.state)) {
      // A finished job is never moved again (its state is final), so one already numbered keeps its number.
      const stored = this.statements.finishedSeq.get(job.id)
      if (stored?.finished_seq != null) before = stored.bytes
      finished = stored?.finished_seq ?? this.statements.nextFinishedSeq.get()!.next
    }
    const bytes = finished === null ? 0 : Buffer.byteLength(record)
    this.statements.saveJob.run(job.id, job.agentName, job.state, job.workerId, job.owner, job.createdAt, finished, job.roomId, bytes, record)
    if (finished === null) return
    let total = this.statements.finishedBytes.get()!.bytes - before + bytes
    for (const dropped of this.statements.dropFinished.all(finished - this.finishedJobsKept)) total -= dropped.bytes
    while (total > this.finishedJobsMaxBytes) {
      const oldest = this.statements.oldestFinished.all()
      if (oldest.length === 0) break
      for (const { finished_seq: seq, bytes: size } of oldest) {
        if (total <= this.finishedJobsMaxBytes) break
        this.statements.dropFinished.run(seq)
        total -= size
      }
    }
    this.statements.setFinishedBytes.run(total)
  }

  async upsertWorker(worker: WorkerRecord): Promise<WorkerRecord | null> {
    return this.writes.run(() => this.upsertTx(worker))
  }

  async getWorker(id: string): Promise<WorkerRecord | null> {
    return this.readWorker(id)
  }

  async listWorkers(agentName?: string): Promise<WorkerRecord[]> {
    const rows = agentName === undefined ? this.statements.workers.all() : this.statements.workersOf.all(agentName)
    return rows.map((row) => JSON.parse(row.record) as WorkerRecord)
  }

  async updateWorker(id: string, connection: string | null, patch: WorkerPatch): Promise<WorkerRecord | null> {
    return this.writes.run(() => this.updateTx(id, connection, patch))
  }

  async setDraining(id: string, draining: boolean): Promise<WorkerRecord | null> {
    return this.writes.run(() => this.drainTx(id, draining))
  }

  async deleteWorker(id: string, connection: string | null): Promise<WorkerRecord | null> {
    return this.writes.run(() => this.deleteTx(id, connection))
  }

  async reserveSlot(workerId: string, jobId: string): Promise<boolean> {
    return this.writes.run(() => this.reserveTx(workerId, jobId))
  }

  async assignSlot(workerId: string, jobId: string): Promise<boolean> {
    return this.writes.run(() => this.assignTx(workerId, jobId))
  }

  async releaseSlot(workerId: string, jobId: string): Promise<void> {
    await this.writes.run(() => this.releaseTx(workerId, jobId))
  }

  async createJob(job: JobRecord): Promise<void> {
    await this.writes.run(() => this.saveJob(job))
  }

  async getJob(id: string): Promise<JobRecord | null> {
    return this.readJob(id)
  }

  async listJobs(filter: JobFilter): Promise<JobRecord[]> {
    const conditions: string[] = []
    const values: (string | number)[] = []
    const match = (column: string, value: string | undefined) => {
      if (value === undefined) return
      conditions.push(`${column} = ?`)
      values.push(value)
    }
    match('agent_name', filter.agentName)
    match('state', filter.state)
    match('worker_id', filter.workerId)
    match('owner', filter.owner)
    match('room_id', filter.roomId)
    if (filter.createdFrom !== undefined) {
      conditions.push('created_at >= ?')
      values.push(filter.createdFrom)
    }
    if (filter.createdBefore !== undefined) {
      conditions.push('created_at < ?')
      values.push(filter.createdBefore)
    }
    if (filter.after !== undefined) {
      // After the cursor's job in the order below; when it is no longer stored, after those created at its time.
      conditions.push('(created_at < ? OR (created_at = ? AND seq < (SELECT seq FROM jobs WHERE id = ?)))')
      values.push(filter.after.createdAt, filter.after.createdAt, filter.after.id)
    }
    const where = conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : ''
    // Newest first: later insertions win ties on created_at.
    const limit = filter.limit === undefined ? '' : ' LIMIT ?'
    if (filter.limit !== undefined) values.push(filter.limit)
    const rows = this.db.query<{ record: string }, (string | number)[]>(`SELECT record FROM jobs ${where} ORDER BY created_at DESC, seq DESC${limit}`).all(...values)
    return rows.map((row) => JSON.parse(row.record) as JobRecord)
  }

  async transitionJob(id: string, transition: JobTransition): Promise<JobRecord | null> {
    return this.writes.run(() => this.transitionTx(id, transition))
  }

  async enqueueJob(job: JobRecord, max: number, clientMax: number): Promise<EnqueueOutcome> {
    return this.writes.run(() => this.enqueueTx(job, max, clientMax))
  }

  async claimQueuedJob(owner: string, agentName: string, claimant: string, until: number): Promise<JobRecord | null> {
    return this.writes.run(() => this.claimTx(owner, agentName, claimant, until))
  }

  async releaseQueuedJob(_owner: string, _agentName: string, jobId: string, claimant: string): Promise<void> {
    await this.writes.run(() => this.statements.release.run(jobId, claimant))
  }

  async dequeueJob(_owner: string, _agentName: string, jobId: string): Promise<void> {
    await this.writes.run(() => this.statements.dequeue.run(jobId))
  }

  async listQueues(): Promise<JobQueue[]> {
    return this.statements.queues
      .all('pending')
      .filter((row) => row.oldest !== null)
      .map((row) => ({ owner: row.owner, agentName: row.agent_name, length: row.length, oldestCreatedAt: row.oldest! }))
  }

  async rememberDispatch(owner: string, key: string, dispatch: RememberedDispatch, expiresAt: number, maxKept: number): Promise<RememberedDispatch | null> {
    return this.writes.run(() => this.rememberTx(owner, key, dispatch, expiresAt, maxKept))
  }

  async forgetDispatch(owner: string, key: string, jobId: string): Promise<void> {
    await this.writes.run(() => this.statements.forgetKey.run(owner, key, jobId))
  }
}
