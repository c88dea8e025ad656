/**
 * Dispatch latency and throughput: the time from `POST /jobs` to the
 * `job_assignment` frame arriving at the worker, with 1, 10 and 100 workers
 * connected over real WebSockets (speaking the exact VideoSDK frames), and
 * jobs per second with 32 concurrent callers, on the memory, SQLite and
 * Redis backends (Redis skipped, with the reason, when none answers at
 * REDIS_URL). Each worker accepts, reports `running`, then `completed` as
 * soon as it is assigned, so capacity frees up. Switchboard runs as a
 * separate process; the workers and callers run here. Bounded to well under
 * a minute.
 *
 * The backlog row: 10 one-slot workers and a backlog (job_queue_max) kept at
 * 100 waiting jobs (each assignment brings one more dispatch); jobs/s and the
 * time from `POST /jobs` (answered 202 while the job waits) to its
 * `job_assignment` at the worker, which includes the wait behind the 100.
 *
 *   bun bench/dispatch.ts       (writes bench/results/dispatch.json)
 */
import { benchStore, keepAlive, redisAvailable, REDIS_URL, request, startSwitchboard, summarize, table, writeResult, type BenchBackend, type Summary } from './lib'
import { TestWorker } from '../test/modules/workers/worker'

const BACKENDS: BenchBackend[] = ['memory', 'sqlite', 'redis']
const WORKER_COUNTS = [1, 10, 100]
const LATENCY_SAMPLES = Number(process.env.DISPATCH_BENCH_SAMPLES ?? 300)
const THROUGHPUT_MS = Number(process.env.DISPATCH_BENCH_RUN_MS ?? 2000)
const CONCURRENCY = 32
/** LiveKit's documented ceiling for agent dispatch. */
const LIVEKIT_MS = 150

interface Row {
  backend: BenchBackend
  workers: number
  latency: Summary
  jobsPerSecond: number
  throughputLatency: Summary
  failures: number
}

async function measure(url: string, backend: BenchBackend, count: number): Promise<Row> {
  const agentName = `bench-${count}`
  const assignedAt = new Map<string, number>()
  const arrivals = new Map<string, () => void>()
  const pool: TestWorker[] = []
  for (let i = 0; i < count; i++) {
    const worker = await TestWorker.connect(url, { agentName, maxProcesses: 10_000, loadThreshold: 1 })
    worker.ws.on('message', (raw) => {
      const frame = JSON.parse(raw.toString()) as { type: string; job_id?: string }
      if (frame.type !== 'job_assignment' || !frame.job_id) return
      assignedAt.set(frame.job_id, performance.now())
      worker.update(frame.job_id, 'completed')
      arrivals.get(frame.job_id)?.()
    })
    pool.push(worker)
  }
  const body = JSON.stringify({ agent_name: agentName, room_id: 'bench-room' })

  /** One dispatch: resolves with the milliseconds from the call to the assignment at the worker. */
  const dispatchOne = async (): Promise<number> => {
    const started = performance.now()
    const response = await request(`${url}/jobs`, 'POST', body)
    if (response.status !== 201) throw new Error(`dispatch answered ${response.status}: ${response.text}`)
    const jobId = (JSON.parse(response.text) as { id: string }).id
    if (!assignedAt.has(jobId)) await new Promise<void>((resolve) => arrivals.set(jobId, resolve))
    arrivals.delete(jobId)
    const at = assignedAt.get(jobId)!
    assignedAt.delete(jobId)
    return at - started
  }

  for (let i = 0; i < 30; i++) await dispatchOne() // warm-up
  const sequential: number[] = []
  let failures = 0
  for (let i = 0; i < LATENCY_SAMPLES; i++) {
    try {
      sequential.push(await dispatchOne())
    } catch {
      failures++
    }
  }
  const underLoad: number[] = []
  const started = performance.now()
  const end = started + THROUGHPUT_MS
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < end) {
        try {
          underLoad.push(await dispatchOne())
        } catch {
          failures++
        }
      }
    }),
  )
  const seconds = (performance.now() - started) / 1000
  for (const worker of pool) await worker.kill()
  return { backend, workers: count, latency: summarize(sequential), jobsPerSecond: Math.round(underLoad.length / seconds), throughputLatency: summarize(underLoad), failures }
}

/** Jobs kept waiting in the backlog row, and its workers (one slot each). */
const BACKLOG_WAITING = 100
const BACKLOG_WORKERS = 10

interface BacklogRow {
  backend: BenchBackend
  waiting: number
  workers: number
  jobsPerSecond: number
  enqueueToAssignment: Summary
  failures: number
}

async function measureBacklog(url: string, backend: BenchBackend): Promise<BacklogRow> {
  const agentName = 'bench-backlog'
  const sentAt = new Map<string, number>()
  const assignedAt = new Map<string, number>()
  const latencies: number[] = []
  let failures = 0
  /** Off while the backlog fills: the workers hold their jobs, so the 100 wait behind them. */
  let running = false
  let stopping = false
  const held: (() => void)[] = []
  let assigned = 0
  let measuredFrom = Infinity
  const body = JSON.stringify({ agent_name: agentName, room_id: 'bench-room' })
  const settle = (jobId: string) => {
    const sent = sentAt.get(jobId)
    const at = assignedAt.get(jobId)
    if (sent === undefined || at === undefined) return
    sentAt.delete(jobId)
    assignedAt.delete(jobId)
    // Only jobs dispatched once the backlog was full count: those of the filling waited for it to fill.
    if (sent >= measuredFrom) latencies.push(at - sent)
  }
  /** Dispatches whose answer has not come yet: the row waits for them before its workers and server go. */
  const inFlight = new Set<Promise<void>>()
  const submit = async () => {
    const started = performance.now()
    const response = await request(`${url}/jobs`, 'POST', body)
    if (response.status !== 201 && response.status !== 202) {
      failures++
      return
    }
    const jobId = (JSON.parse(response.text) as { id: string }).id
    sentAt.set(jobId, started)
    settle(jobId)
  }
  const track = () => {
    const sent = submit().catch(() => void failures++)
    inFlight.add(sent)
    void sent.finally(() => inFlight.delete(sent))
  }
  const pool: TestWorker[] = []
  for (let i = 0; i < BACKLOG_WORKERS; i++) {
    const worker = await TestWorker.connect(url, { agentName, maxProcesses: 1, loadThreshold: 1 })
    worker.ws.on('message', (raw) => {
      const frame = JSON.parse(raw.toString()) as { type: string; job_id?: string }
      if (frame.type !== 'job_assignment' || !frame.job_id) return
      const jobId = frame.job_id
      assigned++
      assignedAt.set(jobId, performance.now())
      settle(jobId)
      const finish = () => {
        worker.update(jobId, 'completed')
        if (!stopping) track()
      }
      if (running) finish()
      else held.push(finish)
    })
    pool.push(worker)
  }
  // The backlog filled first: every slot busy and BACKLOG_WAITING jobs behind them; then each job that ends brings one more.
  await Promise.all(Array.from({ length: BACKLOG_WAITING + BACKLOG_WORKERS }, () => submit()))
  while (held.length < BACKLOG_WORKERS) await Bun.sleep(5)
  const started = performance.now()
  measuredFrom = started
  const assignedBefore = assigned
  running = true
  for (const finish of held.splice(0)) finish()
  await Bun.sleep(THROUGHPUT_MS)
  // A job sent in the window waits behind the 100 before it: a short run (or a slow machine) goes on until one is through.
  while (latencies.length === 0 && performance.now() - started < 10_000) await Bun.sleep(10)
  const seconds = (performance.now() - started) / 1000
  const jobsPerSecond = Math.round((assigned - assignedBefore) / seconds)
  stopping = true
  // The jobs still waiting are served before the workers go, so nothing is left in the backlog.
  await Promise.all(inFlight)
  const deadline = performance.now() + 10_000
  while (sentAt.size > 0 && performance.now() < deadline) await Bun.sleep(20)
  failures += sentAt.size
  for (const worker of pool) await worker.kill()
  return { backend, waiting: BACKLOG_WAITING, workers: BACKLOG_WORKERS, jobsPerSecond, enqueueToAssignment: summarize(latencies), failures }
}

const rows: Row[] = []
const backlogRows: BacklogRow[] = []
const hasRedis = await redisAvailable()
try {
  for (const backend of BACKENDS) {
    if (backend === 'redis' && !hasRedis) {
      console.log(`redis: no Redis answers at ${REDIS_URL}; skipped`)
      continue
    }
    const store = benchStore(backend)
    const server = await startSwitchboard(['--worker-ping-s', '30', ...store.flags])
    try {
      for (const count of WORKER_COUNTS) rows.push(await measure(server.url, backend, count))
    } finally {
      await server.stop()
      await store.remove()
    }
    const backlogStore = benchStore(backend)
    const backlogServer = await startSwitchboard(['--worker-ping-s', '30', '--job-queue-max', String(10 * BACKLOG_WAITING), ...backlogStore.flags])
    try {
      backlogRows.push(await measureBacklog(backlogServer.url, backend))
    } finally {
      await backlogServer.stop()
      await backlogStore.remove()
    }
  }
} finally {
  keepAlive.destroy()
}

console.log(
  table(
    ['backend', 'workers', 'p50 ms (one at a time)', 'p99 ms (one at a time)', `jobs/s (${CONCURRENCY} callers)`, 'p50 ms under load', 'p99 ms under load', 'failures'],
    rows.map((row) => [row.backend, row.workers, row.latency.p50, row.latency.p99, row.jobsPerSecond, row.throughputLatency.p50, row.throughputLatency.p99, row.failures]),
  ),
)
console.log(`\nLatency = POST /jobs sent → job_assignment received by the worker (availability round trip included). LiveKit documents dispatch "under ${LIVEKIT_MS} ms".\n`)
console.log(
  table(
    ['backend', 'with a backlog of', 'workers (1 slot each)', 'jobs/s', 'p50 ms enqueue → assignment', 'p99 ms enqueue → assignment', 'failures'],
    backlogRows.map((row) => [row.backend, row.waiting, row.workers, row.jobsPerSecond, row.enqueueToAssignment.p50, row.enqueueToAssignment.p99, row.failures]),
  ),
)
console.log(`\nBacklog: job_queue_max on; ${BACKLOG_WAITING} jobs kept waiting (each assignment brings one more dispatch); enqueue → assignment includes the wait behind them.`)
writeResult('dispatch', {
  method: 'POST /jobs → job_assignment at the worker; memory, SQLite and Redis backends; Switchboard in its own process; workers accept and complete at once',
  reference: { livekitDocumentedMaxMs: LIVEKIT_MS },
  samplesOneAtATime: LATENCY_SAMPLES,
  throughputRunMs: THROUGHPUT_MS,
  concurrency: CONCURRENCY,
  rows,
  backlog: backlogRows,
})
