/**
 * What the stores' kept history costs the requests that read it: each
 * operation is timed on a backend holding little, then on one holding what
 * a long-running Switchboard keeps (10,000 finished jobs, 1,000 workers of
 * ten agent names, a workspace with more than its 10,000 calls of activity),
 * in the same run, on memory, SQLite and Redis. An operation that reads only
 * what it returns costs about the same on both; one that walks everything
 * kept grows with it. Each figure is the p50 of 30 calls, in-process against
 * the store (no HTTP). About ten seconds; not part of `bun run bench`.
 *
 *   bun bench/stores.ts    (Redis at REDIS_URL, default redis://127.0.0.1:6379; writes bench/results/stores.json)
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadPlugin } from '../plugins/index'
import { createBackend, type ActivityRecord, type Backend, type JobRecord, type WorkerRecord } from '../src/backend/index'
import { reserveAny } from '../src/backend/workers'
import { createLogger } from '../src/ops/logger'
import { deleteMatching } from '../test/support/redis'
import { REDIS_URL, round, summarize, table, writeResult } from './lib'

const SAMPLES = 30
const FINISHED = 10_000
const WORKERS = 1000
const NAMES = 10
const CALLS = 12_000

const dir = mkdtempSync(join(tmpdir(), 'switchboard-stores-'))
const prefix = `bench-stores-${crypto.randomUUID().slice(0, 8)}`
let opened = 0

async function open(name: string): Promise<Backend | null> {
  opened++
  const options: Record<string, unknown> = { finished_jobs_kept: FINISHED }
  if (name === 'sqlite') Object.assign(options, { db: join(dir, `stores-${opened}.db`), synchronous: 'normal' })
  if (name === 'redis') Object.assign(options, { redis_url: REDIS_URL, redis_prefix: `${prefix}-${opened}` })
  try {
    return await createBackend(await loadPlugin(name), options, { logger: createLogger('silent') })
  } catch (error) {
    console.log(`${name}: not measured (${(error as Error).message})`)
    return null
  }
}

const now = Date.now()
const job = (id: string, state: JobRecord['state'], at: number): JobRecord => ({
  id, agentName: 'voice', roomId: 'room', owner: 'tenant', metadata: null, roomOptions: null, state, workerId: null, history: [{ state, at }], createdAt: at, updatedAt: at,
})
const worker = (index: number): WorkerRecord => ({
  id: `worker-${index}`, agentName: `agent-${index % NAMES}`, owner: 'tenant', status: 'available', draining: false, maxProcesses: 4, loadThreshold: 1, reportedLoad: 0,
  jobs: [], reserved: [], instance: 'bench', connection: `connection-${index}`, capabilities: [], registeredAt: now, disconnectedAt: null,
})
const call = (index: number): ActivityRecord => ({
  id: crypto.randomUUID(), source: 'caller', target: 'agent', method: 'message/send', status: 200, durationMs: 1, requestBytes: 1024, responseBytes: 1024, error: null, at: now + index,
})

/** The workers of agent-0 (100), alone or among those of nine other names. */
const workersOfTenNames = (backend: Backend, kept: boolean) =>
  fill(kept ? WORKERS : WORKERS / NAMES, (index) => backend.workers.upsertWorker(kept ? worker(index) : worker(index * NAMES)))
let reservations = 0

/** Runs `make` for every index in batches, so filling a store does not hold thousands of writes at once. */
async function fill(count: number, make: (index: number) => Promise<unknown>): Promise<void> {
  for (let at = 0; at < count; at += 500) await Promise.all(Array.from({ length: Math.min(500, count - at) }, (_, offset) => make(at + offset)))
}

/** p50 in ms of SAMPLES calls of `operation`, after ten unmeasured ones (connections, scripts and the JIT warmed). */
async function p50(operation: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 10; i++) await operation()
  const samples: number[] = []
  for (let i = 0; i < SAMPLES; i++) {
    const started = performance.now()
    await operation()
    samples.push(performance.now() - started)
  }
  return summarize(samples).p50
}

interface Measure {
  operation: string
  /** Puts the store in the small state or the kept state; the operation then runs against it. */
  setup(backend: Backend, kept: boolean): Promise<void>
  run(backend: Backend): Promise<unknown>
}

const MEASURES: Measure[] = [
  {
    operation: `list the 10 pending jobs (as /metrics does for each active state), beside 0 vs ${FINISHED.toLocaleString('en')} finished`,
    async setup(backend, kept) {
      await fill(10, (index) => backend.workers.createJob(job(`pending-${index}`, 'pending', now)))
      if (kept) await fill(FINISHED, (index) => backend.workers.createJob(job(`done-${index}`, 'completed', now + index)))
    },
    run: (backend) => backend.workers.listJobs({ state: 'pending' }),
  },
  {
    operation: `list a tenant's 100 newest jobs (GET /jobs), among 100 vs ${FINISHED.toLocaleString('en')}`,
    async setup(backend, kept) {
      await fill(kept ? FINISHED : 100, (index) => backend.workers.createJob(job(`done-${index}`, 'completed', now + index)))
    },
    run: (backend) => backend.workers.listJobs({ owner: 'tenant', limit: 100 }),
  },
  {
    operation: `list the workers of one agent name (GET /workers?agent_name=…), 100 of 100 vs 100 of ${WORKERS.toLocaleString('en')}`,
    setup: workersOfTenNames,
    run: (backend) => backend.workers.listWorkers('agent-0'),
  },
  {
    // Each call reserves one more of the name's 400 slots.
    operation: `pick a worker of one agent name and reserve its slot (a dispatch), 100 of 100 vs 100 of ${WORKERS.toLocaleString('en')}`,
    setup: workersOfTenNames,
    run: (backend) => reserveAny(backend.workers, 'agent-0', 'tenant', `job-${++reservations}`, new Set()),
  },
  {
    operation: `record a proxied call, a workspace with 0 vs ${CALLS.toLocaleString('en')} calls recorded`,
    async setup(backend, kept) {
      if (kept) await fill(CALLS, (index) => backend.agents.recordActivity(call(index)))
    },
    run: (backend) => backend.agents.recordActivity(call(0)),
  },
]

const rows: (string | number)[][] = []
const results: Record<string, unknown>[] = []
for (const name of ['memory', 'sqlite', 'redis']) {
  for (const measure of MEASURES) {
    const figures: number[] = []
    for (const kept of [false, true]) {
      const backend = await open(name)
      if (backend === null) break
      try {
        await measure.setup(backend, kept)
        figures.push(await p50(() => measure.run(backend)))
      } finally {
        await backend.close()
      }
    }
    if (figures.length < 2) break
    const [small, large] = figures as [number, number]
    // Below a few microseconds the ratio says nothing.
    rows.push([name, measure.operation, small, large, Math.min(small, large) < 0.005 ? '—' : `${round(large / small, 1)}×`])
    results.push({ backend: name, operation: measure.operation, small_p50_ms: small, kept_p50_ms: large })
  }
}

rmSync(dir, { recursive: true, force: true })
// Without a Redis nothing was written there.
await deleteMatching(REDIS_URL, `${prefix}-*`).catch(() => {})

const markdown = table(['backend', 'operation', 'p50 ms, little kept', 'p50 ms, history kept', 'kept ÷ little'], rows)
console.log(`\nWhat kept history costs the requests that read it (p50 of ${SAMPLES} calls each)\n\n${markdown}\n`)
writeResult('stores', { samples: SAMPLES, results, markdown })
