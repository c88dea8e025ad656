/** Workers and jobs in Redis: every record a hash of JSON fields, every capacity or job move one Lua script. */
import { FINISHED_JOB_STATES, type JobFilter, type EnqueueOutcome, type JobQueue, type JobRecord, type JobTransition, type RememberedDispatch, type Reservation, type WorkerPatch, type WorkerRecord, type WorkerStore } from '../../src/backend/workers'
import { script, storeError, type RedisConnection } from './connection'
import type { RedisKeys } from './keys'
import * as lua from './scripts/workers'

const SCRIPTS = {
  upsert: script(lua.UPSERT_WORKER),
  update: script(lua.UPDATE_WORKER),
  setDraining: script(lua.SET_DRAINING),
  delete: script(lua.DELETE_WORKER),
  reserve: script(lua.RESERVE_SLOT),
  reserveAny: script(lua.RESERVE_ANY_SLOT),
  assign: script(lua.ASSIGN_SLOT),
  release: script(lua.RELEASE_SLOT),
  createJob: script(lua.CREATE_JOB),
  transition: script(lua.TRANSITION_JOB),
  trimFinished: script(lua.TRIM_FINISHED_JOBS, { answered: false }),
  indexJobs: script(lua.INDEX_JOBS, { answered: false }),
  indexNames: script(lua.INDEX_WORKER_NAMES, { answered: false }),
  // A 202 says the job waits, and a key's job is what a retry gets: the client's answer depends on both writes.
  enqueue: script(lua.ENQUEUE_JOB),
  remember: script(lua.REMEMBER_DISPATCH),
  // Steps of dispatching itself: what the caller is told rests on the job's own transition, not on these.
  claimQueued: script(lua.CLAIM_QUEUED_JOB, { answered: false }),
  releaseQueued: script(lua.RELEASE_QUEUED_JOB, { answered: false }),
  dequeue: script(lua.DEQUEUE_JOB, { answered: false }),
  forget: script(lua.FORGET_DISPATCH, { answered: false }),
  forgetWorker: script(lua.FORGET_WORKER, { answered: false }),
}

/** A worker hash as its record and `dir`, the token of its directory entry (in a Cluster), which is not the record's; null when empty. */
function parseWorker(hash: string[] | Record<string, string>): { worker: WorkerRecord; dir: number | undefined } | null {
  const parsed = fromFields<WorkerRecord & { dir?: number }>(hash)
  if (parsed === null) return null
  const { dir, ...worker } = parsed
  return { worker, dir }
}

/** The record a worker hash holds, or null when empty. */
const workerOf = (hash: string[] | Record<string, string>): WorkerRecord | null => parseWorker(hash)?.worker ?? null

/** The fields of a job a list reads: first those its filter compares, in JobFilter's order, then those it orders by. */
const LIST_FIELDS = ['agentName', 'state', 'workerId', 'owner', 'roomId', 'createdAt', 'seq'] as const

/** A job a list considers: its id and what the list orders by. */
interface ListedJob {
  id: string
  createdAt: number
  seq: number
}

/** Newest first; later insertions win ties on createdAt. */
const newestFirst = (a: ListedJob, b: ListedJob) => b.createdAt - a.createdAt || b.seq - a.seq

/** Job states as the job hashes hold them (JSON). */
const FINISHED_STATES = new Set(FINISHED_JOB_STATES.map((state) => JSON.stringify(state)))

/** A record as alternating field names and JSON values, the way the scripts take it. */
export function toFields(record: object): string[] {
  const fields: string[] = []
  for (const [field, value] of Object.entries(record)) if (value !== undefined) fields.push(field, JSON.stringify(value))
  return fields
}

/** The record a hash holds (as a flat list or an object of JSON fields), or null when empty. */
export function fromFields<T>(hash: string[] | Record<string, string>, skip: readonly string[] = []): T | null {
  const entries = Array.isArray(hash) ? pairs(hash) : Object.entries(hash)
  if (entries.length === 0) return null
  const record: Record<string, unknown> = {}
  for (const [field, value] of entries) if (!skip.includes(field)) record[field] = JSON.parse(value)
  return record as T
}

function pairs(flat: string[]): [string, string][] {
  const entries: [string, string][] = []
  for (let i = 0; i + 1 < flat.length; i += 2) entries.push([flat[i]!, flat[i + 1]!])
  return entries
}

export class RedisWorkers implements WorkerStore {
  constructor(
    private readonly connection: RedisConnection,
    private readonly keys: RedisKeys,
    /** Finished jobs kept for their history; beyond it, the one that finished longest ago is dropped. */
    private readonly finishedJobsKept: number,
    /** Bytes the finished jobs kept may take together (their hashes' values); beyond it, too, the oldest is dropped. */
    private readonly finishedJobsMaxBytes: number = Number.MAX_SAFE_INTEGER,
  ) {}

  /**
   * Indexes the jobs a Switchboard without per-state sets and finished_jobs_kept stored, once per store (a key
   * marks it done): each goes into the set of its state, and the finished ones are counted among the finished,
   * before every job counted already, in the order they last changed, so they are the first to go; the finished
   * set is then trimmed in batches.
   */
  async indexEarlierJobs(): Promise<void> {
    const { command } = this.connection
    try {
      if ((await command.exists(this.keys.jobsIndexed())) === 1) return
      const found: { id: string; at: number }[] = []
      let cursor = '0'
      do {
        const [next, ids] = await command.sscan(this.keys.jobs(), cursor, 'COUNT', 1000)
        cursor = next
        if (ids.length === 0) continue
        // Each job's state is read inside the script, so one that moves meanwhile is put in its new state's set.
        await this.connection.run(SCRIPTS.indexJobs, [this.keys.jobsByCreation()], [this.keys.jobPrefix(), this.keys.jobsInStatePrefix(), ...ids])
        const pipeline = command.pipeline()
        for (const id of ids) pipeline.hmget(this.keys.job(id), 'state', 'updatedAt').zscore(this.keys.finishedJobs(), id)
        const results = (await pipeline.exec()) ?? []
        ids.forEach((id, index) => {
          const [[readError, fields], [scoreError, score]] = [results[2 * index]!, results[2 * index + 1]!]
          if (readError || scoreError) throw readError ?? scoreError
          const [state, at] = fields as (string | null)[]
          if (score === null && state != null && FINISHED_STATES.has(state)) found.push({ id, at: Number(at ?? 0) })
        })
      } while (cursor !== '0')
      found.sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : 1))
      // Scores below every counted job's (theirs start at 1).
      for (let at = 0; at < found.length; at += 1000) {
        const members = found.slice(at, at + 1000).flatMap((job, offset) => [at + offset - found.length, job.id])
        await command.zadd(this.keys.finishedJobs(), 'NX', ...members)
      }
      await command.set(this.keys.jobsIndexed(), '1')
    } catch (error) {
      throw storeError(error)
    }
    const keys = [this.keys.finishedJobs(), this.keys.finishedSequence(), this.keys.jobs(), this.keys.jobsByCreation(), this.keys.finishedJobSizes()]
    while (((await this.connection.run(SCRIPTS.trimFinished, keys, [this.finishedBounds(), this.keys.jobPrefix(), this.keys.jobsInStatePrefix()])) as number) > 0);
  }

  /** Indexes the workers a Switchboard without agent-name indexes stored under their names, once per store (a key marks it done). */
  async indexEarlierWorkers(): Promise<void> {
    // A Cluster store was never written without them.
    if (this.keys.buckets > 1) return
    try {
      if ((await this.connection.command.exists(this.keys.workersIndexed())) === 1) return
      const ids = await this.connection.command.zrange(this.keys.workers(), '0', '-1')
      for (let at = 0; at < ids.length; at += 1000) {
        await this.connection.run(SCRIPTS.indexNames, [this.keys.workers()], [this.keys.workerPrefix(), this.keys.workersOfPrefix(), ...ids.slice(at, at + 1000)])
      }
      await this.connection.command.set(this.keys.workersIndexed(), '1')
    } catch (error) {
      throw storeError(error)
    }
  }

  private async command<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run()
    } catch (error) {
      throw storeError(error)
    }
  }

  /** The hashes at `keys` (one slot: a pipeline goes to one node), in order. */
  private read(keys: string[]): Promise<Record<string, string>[]> {
    if (keys.length === 0) return Promise.resolve([])
    return this.command(async () => {
      const pipeline = this.connection.command.pipeline()
      for (const key of keys) pipeline.hgetall(key)
      const results = (await pipeline.exec()) ?? []
      return results.map(([error, hash]) => {
        if (error) throw error
        return hash as Record<string, string>
      })
    })
  }

  /** The workers of one bucket that `ids` name, skipping ids with no worker. */
  private async readWorkers(bucket: number, ids: string[]): Promise<WorkerRecord[]> {
    const hashes = await this.read(ids.map((id) => this.keys.worker(bucket, id)))
    return hashes.flatMap((hash) => workerOf(hash) ?? [])
  }

  /** A worker's directory entry in a Cluster ("<token> <agent name>") with the name, or null when the id is unknown. */
  private async directoryEntry(id: string): Promise<{ entry: string; agentName: string } | null> {
    const entry = await this.command(() => this.connection.command.hget(this.keys.workerDirectory(), id))
    return entry === null ? null : { entry, agentName: entry.slice(entry.indexOf(' ') + 1) }
  }

  /** The bucket of a worker addressed by id alone: 0 on one Redis; in a Cluster, its agent name's, as the directory says (null: unknown). */
  private async bucketOfWorker(id: string): Promise<number | null> {
    if (this.keys.buckets === 1) return 0
    const found = await this.directoryEntry(id)
    return found === null ? null : this.keys.workerBucketOf(found.agentName)
  }

  /** A script on the hash of a worker addressed by id; `missing` when the id is unknown. */
  private async onWorker<T>(id: string, missing: T, run: (key: string) => Promise<T>): Promise<T> {
    const bucket = await this.bucketOfWorker(id)
    return bucket === null ? missing : run(this.keys.worker(bucket, id))
  }

  /**
   * In a Cluster, a worker's hash is written before its directory entry and removed before the entry is forgotten,
   * and the entry carries the token of the registration that created the hash (its `dir`, from the store's
   * sequence): a removal forgets its own entry only, never one that a registration under the same id wrote
   * meanwhile. A worker registering under an agent name of another bucket is moved: taken out of its old bucket
   * (its jobs, reservations and drain flag carried over), written in the new one, then its entry changed; an
   * operation on it by id in between finds no worker, as for an unknown id.
   */
  async upsertWorker(worker: WorkerRecord): Promise<WorkerRecord | null> {
    const bucket = this.keys.workerBucketOf(worker.agentName)
    let record = worker
    let carried: WorkerRecord | null = null
    const before = this.keys.buckets > 1 ? await this.directoryEntry(worker.id) : null
    if (before !== null && this.keys.workerBucketOf(before.agentName) !== bucket) {
      const from = this.keys.workerBucketOf(before.agentName)
      const taken = (await this.connection.run(SCRIPTS.delete, [this.keys.worker(from, worker.id), this.keys.workers(from)], ['', worker.id, this.keys.workersOfPrefix(from), '1'])) as string[]
      carried = workerOf(taken)
      if (carried) record = { ...worker, jobs: carried.jobs, reserved: carried.reserved, draining: carried.draining }
    }
    const upsert = async (order: number | '') =>
      (await this.connection.run(SCRIPTS.upsert, [this.keys.worker(bucket, worker.id), this.keys.workers(bucket)], [worker.id, this.keys.workersOfPrefix(bucket), order, ...toFields(record)])) as string[] | null
    // A takeover keeps its order and token, so it writes nothing else (and runs in a full Redis); a new worker takes the store's next number.
    let token: number | undefined
    let previous = await upsert('')
    if (previous === null) {
      token = await this.command(() => this.connection.command.incr(this.keys.sequence()))
      previous = (await upsert(token))!
    }
    const found = parseWorker(previous)
    if (this.keys.buckets > 1) {
      // The hash's own token: ours when this call created it, else the one it kept (another call may have created it meanwhile).
      const entry = `${found === null ? token : found.dir} ${worker.agentName}`
      if (before?.entry !== entry) await this.command(() => this.connection.command.hset(this.keys.workerDirectory(), worker.id, entry))
    }
    return carried ?? found?.worker ?? null
  }

  async getWorker(id: string): Promise<WorkerRecord | null> {
    const bucket = await this.bucketOfWorker(id)
    if (bucket === null) return null
    const [worker] = await this.readWorkers(bucket, [id])
    return worker ?? null
  }

  async listWorkers(agentName?: string): Promise<WorkerRecord[]> {
    if (agentName !== undefined) {
      // A dispatch lists the workers of one agent name: it reads only those, in the name's bucket.
      const ids = await this.command(() => this.connection.command.zrange(this.keys.workersOf(agentName), '0', '-1'))
      return (await this.readWorkers(this.keys.workerBucketOf(agentName), ids)).filter((worker) => worker.agentName === agentName)
    }
    // Each bucket's workers, merged by registration order.
    const buckets = await Promise.all(
      this.keys.allBuckets().map(async (bucket) => {
        const flat = await this.command(() => this.connection.command.zrange(this.keys.workers(bucket), '0', '-1', 'WITHSCORES'))
        const order = new Map<string, number>()
        for (let at = 0; at < flat.length; at += 2) order.set(flat[at]!, Number(flat[at + 1]))
        return (await this.readWorkers(bucket, [...order.keys()])).map((worker) => ({ worker, order: order.get(worker.id)! }))
      }),
    )
    return buckets
      .flat()
      .sort((a, b) => a.order - b.order)
      .map(({ worker }) => worker)
  }

  async updateWorker(id: string, connection: string | null, patch: WorkerPatch): Promise<WorkerRecord | null> {
    const hash = await this.onWorker(id, [], async (key) => (await this.connection.run(SCRIPTS.update, [key], [JSON.stringify(connection), ...toFields(patch)])) as string[])
    return workerOf(hash)
  }

  async setDraining(id: string, draining: boolean): Promise<WorkerRecord | null> {
    const hash = await this.onWorker(id, [], async (key) => (await this.connection.run(SCRIPTS.setDraining, [key], [JSON.stringify(draining)])) as string[])
    return workerOf(hash)
  }

  async deleteWorker(id: string, connection: string | null): Promise<WorkerRecord | null> {
    const bucket = await this.bucketOfWorker(id)
    if (bucket === null) return null
    const hash = (await this.connection.run(SCRIPTS.delete, [this.keys.worker(bucket, id), this.keys.workers(bucket)], [JSON.stringify(connection), id, this.keys.workersOfPrefix(bucket), ''])) as string[]
    const removed = parseWorker(hash)
    if (removed && this.keys.buckets > 1) await this.connection.run(SCRIPTS.forgetWorker, [this.keys.workerDirectory()], [id, `${removed.dir} ${removed.worker.agentName}`])
    return removed?.worker ?? null
  }

  async reserveSlot(workerId: string, jobId: string): Promise<boolean> {
    return this.onWorker(workerId, false, async (key) => (await this.connection.run(SCRIPTS.reserve, [key], [jobId])) === 1)
  }

  /** A dispatch's pick and reservation in one script, in the agent name's bucket: the instance reads one worker, not every worker of the name. */
  async reserveAny(agentName: string, owner: string, jobId: string, exclude: ReadonlySet<string>, random: number): Promise<Reservation> {
    const [seen, ...hash] = (await this.connection.run(
      SCRIPTS.reserveAny,
      [this.keys.workersOf(agentName)],
      [this.keys.workerPrefix(this.keys.workerBucketOf(agentName)), JSON.stringify(owner), JSON.stringify(agentName), jobId, String(random), ...exclude],
    )) as [number, ...string[]]
    return { worker: workerOf(hash), registered: seen === 1 }
  }

  async assignSlot(workerId: string, jobId: string): Promise<boolean> {
    return this.onWorker(workerId, false, async (key) => (await this.connection.run(SCRIPTS.assign, [key], [jobId])) === 1)
  }

  async releaseSlot(workerId: string, jobId: string): Promise<void> {
    await this.onWorker(workerId, null, (key) => this.connection.run(SCRIPTS.release, [key], [jobId]))
  }

  /** The finished jobs' bounds as the scripts take them: JSON [count, bytes]. */
  private finishedBounds(): string {
    return JSON.stringify([this.finishedJobsKept, this.finishedJobsMaxBytes])
  }

  async createJob(job: JobRecord): Promise<void> {
    await this.connection.run(
      SCRIPTS.createJob,
      [this.keys.job(job.id), this.keys.jobs(), this.keys.sequence(), this.keys.finishedJobs(), this.keys.finishedSequence(), this.keys.jobsByCreation(), this.keys.finishedJobSizes()],
      [job.id, this.finishedBounds(), this.keys.jobPrefix(), this.keys.jobsInStatePrefix(), ...toFields(job)],
    )
  }

  async getJob(id: string): Promise<JobRecord | null> {
    const [hash] = await this.read([this.keys.job(id)])
    return fromFields<JobRecord>(hash!, ['seq'])
  }

  async listJobs(filter: JobFilter): Promise<JobRecord[]> {
    const { command } = this.connection
    // Only the fields the filter and the order need are read of the jobs considered; the whole records only of those returned.
    // The filter's values as the hashes hold them (JSON), at the positions of LIST_FIELDS.
    const wanted = [filter.agentName, filter.state, filter.workerId, filter.owner, filter.roomId].map((value) => (value === undefined ? undefined : JSON.stringify(value)))
    const from = filter.createdFrom ?? -Infinity
    const before = Math.min(filter.createdBefore ?? Infinity, filter.after ? filter.after.createdAt + 1 : Infinity)
    // After the cursor's job: created before it, or at its time and stored after it (none when it is no longer stored).
    let afterSeq = -Infinity
    if (filter.after) {
      try {
        afterSeq = Number((await command.hget(this.keys.job(filter.after.id), 'seq')) ?? -Infinity)
      } catch (error) {
        throw storeError(error)
      }
    }
    const { after } = filter
    const matching: ListedJob[] = []
    // A job created or dropped while the newest are paged through moves the others by one: none is taken twice.
    const seen = new Set<string>()
    const consider = async (ids: string[]) => {
      const fresh = ids.filter((id) => !seen.has(id))
      const pipeline = command.pipeline()
      for (const id of fresh) pipeline.hmget(this.keys.job(id), ...LIST_FIELDS)
      const results = (await pipeline.exec()) ?? []
      fresh.forEach((id, index) => {
        seen.add(id)
        const [error, values] = results[index]!
        if (error) throw error
        const [agentName, state, workerId, owner, roomId, createdAt, seq] = values as (string | null)[]
        // A job dropped since the index was read has no fields left.
        if (agentName === null) return
        if ([agentName, state, workerId, owner, roomId].some((field, at) => wanted[at] !== undefined && field !== wanted[at])) return
        const job = { id, createdAt: Number(createdAt), seq: Number(seq) }
        if (job.createdAt < from || job.createdAt >= before) return
        if (after && job.createdAt === after.createdAt && !(job.seq < afterSeq)) return
        matching.push(job)
      })
    }
    try {
      if (filter.state === undefined && filter.limit !== undefined) {
        // The newest first, a page at a time, until `limit` match and every job left was created before the last of them.
        const page = Math.max(200, 2 * filter.limit)
        for (let offset = 0; ; offset += page) {
          const entries = await command.zrevrangebyscore(
            this.keys.jobsByCreation(),
            Number.isFinite(before) ? `(${before}` : '+inf',
            Number.isFinite(from) ? from : '-inf',
            'WITHSCORES',
            'LIMIT',
            offset,
            page,
          )
          await consider(entries.filter((_, at) => at % 2 === 0))
          if (entries.length < 2 * page) break
          if (matching.length >= filter.limit && Number(entries[entries.length - 1]) < matching.sort(newestFirst)[filter.limit - 1]!.createdAt) break
        }
      } else {
        // A list of one state reads only the jobs in it (the metrics read each active state's on every scrape).
        await consider(await command.smembers(filter.state === undefined ? this.keys.jobs() : this.keys.jobsInState(filter.state)))
      }
    } catch (error) {
      throw storeError(error)
    }
    const chosen = matching.sort(newestFirst).slice(0, filter.limit ?? matching.length)
    const hashes = await this.read(chosen.map((entry) => this.keys.job(entry.id)))
    return hashes.map((hash) => fromFields<JobRecord>(hash, ['seq'])).filter((job): job is JobRecord => job !== null)
  }

  async transitionJob(id: string, transition: JobTransition): Promise<JobRecord | null> {
    const hash = (await this.connection.run(
      SCRIPTS.transition,
      [this.keys.job(id), this.keys.finishedJobs(), this.keys.finishedSequence(), this.keys.jobs(), this.keys.jobsByCreation(), this.keys.finishedJobSizes()],
      [
        JSON.stringify(transition.from),
        transition.to,
        transition.heldBy !== undefined ? '1' : '',
        JSON.stringify(transition.heldBy ?? null),
        transition.workerId !== undefined ? '1' : '',
        JSON.stringify(transition.workerId ?? null),
        Date.now(),
        transition.reason ?? '',
        id,
        this.finishedBounds(),
        this.keys.jobPrefix(),
        this.keys.jobsInStatePrefix(),
        transition.participantIdentity ?? '',
      ],
    )) as string[]
    return fromFields<JobRecord>(hash, ['seq'])
  }

  private queueKeys(owner: string, agentName: string): [string, string, string, string] {
    return [this.keys.jobQueue(owner, agentName), this.keys.jobQueueClaims(owner, agentName), this.keys.jobQueues(), this.keys.jobsQueuedBy(owner)]
  }

  async enqueueJob(job: JobRecord, max: number, clientMax: number): Promise<EnqueueOutcome> {
    const queued = await this.connection.run(
      SCRIPTS.enqueue,
      [
        this.keys.job(job.id),
        this.keys.jobs(),
        this.keys.sequence(),
        this.keys.finishedJobs(),
        this.keys.finishedSequence(),
        this.keys.jobsByCreation(),
        this.keys.jobQueue(job.owner, job.agentName),
        this.keys.jobQueues(),
        this.keys.jobsQueuedBy(job.owner),
        this.keys.finishedJobSizes(),
      ],
      [job.id, this.finishedBounds(), this.keys.jobPrefix(), this.keys.jobsInStatePrefix(), max, JSON.stringify([job.owner, job.agentName]), clientMax, ...toFields(job)],
    )
    return queued === 1 ? 'queued' : queued === 0 ? 'queue full' : 'client full'
  }

  async claimQueuedJob(owner: string, agentName: string, claimant: string, until: number): Promise<JobRecord | null> {
    const hash = (await this.connection.run(SCRIPTS.claimQueued, this.queueKeys(owner, agentName), [this.keys.jobPrefix(), claimant, until, Date.now(), JSON.stringify([owner, agentName])])) as string[]
    return fromFields<JobRecord>(hash, ['seq'])
  }

  async releaseQueuedJob(owner: string, agentName: string, jobId: string, claimant: string): Promise<void> {
    await this.connection.run(SCRIPTS.releaseQueued, [this.keys.jobQueueClaims(owner, agentName)], [jobId, claimant])
  }

  async dequeueJob(owner: string, agentName: string, jobId: string): Promise<void> {
    await this.connection.run(SCRIPTS.dequeue, this.queueKeys(owner, agentName), [jobId, JSON.stringify([owner, agentName])])
  }

  async listQueues(): Promise<JobQueue[]> {
    const { command } = this.connection
    try {
      const names = (await command.smembers(this.keys.jobQueues())).map((name) => JSON.parse(name) as [string, string])
      if (names.length === 0) return []
      const heads = command.pipeline()
      for (const [owner, agentName] of names) heads.zcard(this.keys.jobQueue(owner, agentName)).zrange(this.keys.jobQueue(owner, agentName), '0', '0')
      const results = (await heads.exec()) ?? []
      const created = command.pipeline()
      const found: JobQueue[] = []
      names.forEach(([owner, agentName], index) => {
        const [[lengthError, length], [headError, head]] = [results[2 * index]!, results[2 * index + 1]!]
        if (lengthError || headError) throw lengthError ?? headError
        const [id] = head as string[]
        if (!id) return
        created.hget(this.keys.job(id), 'createdAt')
        found.push({ owner, agentName, length: length as number, oldestCreatedAt: 0 })
      })
      const times = (await created.exec()) ?? []
      found.forEach((queue, index) => {
        const [error, at] = times[index]!
        if (error) throw error
        queue.oldestCreatedAt = Number(at ?? Date.now())
      })
      return found
    } catch (error) {
      throw storeError(error)
    }
  }

  async rememberDispatch(owner: string, key: string, dispatch: RememberedDispatch, expiresAt: number, maxKept: number): Promise<RememberedDispatch | null> {
    const live = (await this.connection.run(
      SCRIPTS.remember,
      [this.keys.dispatchKey(owner, key), this.keys.dispatchKeys()],
      [JSON.stringify({ jobId: dispatch.jobId, fingerprint: dispatch.fingerprint }), expiresAt, Date.now(), maxKept],
    )) as string | null
    return live ? (JSON.parse(live) as RememberedDispatch) : null
  }

  async forgetDispatch(owner: string, key: string, jobId: string): Promise<void> {
    await this.connection.run(SCRIPTS.forget, [this.keys.dispatchKey(owner, key), this.keys.dispatchKeys()], [jobId])
  }
}
