/**
 * Liveness that outlives the process, on real server processes: a worker's
 * jobs are handled (re-dispatched) once within the grace period plus the
 * detection bound after the instance that held its socket is killed or
 * stopped and the worker stays away; on Redis, messages an instance had
 * taken when it was killed go back to their mailboxes. Settings come from
 * the environment. LIVENESS_RUNS (default 3) sets the runs of each case;
 * each case prints its figures.
 */
import { afterAll, afterEach, describe, expect, it } from 'bun:test'
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { detectionBoundMs } from '../../src/backend/instances'
import { agentId, bodies, userId } from '../support/academy'
import { rawRequest } from '../support/http'
import { receive, sendUntilGone } from '../support/numbered'
import { BUN, startProcess, type RunningProcess } from '../support/process'
import { deleteKeys, randomPrefix, testRedis } from '../support/redis'
import { eventually } from '../support/wait'
import { TestWorker } from '../modules/workers/worker'

const RUNS = Number(process.env.LIVENESS_RUNS ?? 3)
const HEARTBEAT_MS = 200
const GRACE_MS = 500
const BOUND_MS = detectionBoundMs(HEARTBEAT_MS)
/** Room for a dispatch round trip and a loaded machine on top of grace + detection. */
const SLACK_MS = 1000
const SETTINGS = {
  SWITCHBOARD_INSTANCE_HEARTBEAT_S: String(HEARTBEAT_MS / 1000),
  SWITCHBOARD_WORKER_GRACE_S: String(GRACE_MS / 1000),
  SWITCHBOARD_WORKER_LOSS_ACTION: 'redispatch',
  SWITCHBOARD_LOG_LEVEL: 'error',
}

const dir = mkdtempSync(join(tmpdir(), 'switchboard-liveness-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const running = new Set<RunningProcess>()
const sockets = new Set<TestWorker>()
afterEach(async () => {
  for (const worker of sockets) await worker.kill()
  sockets.clear()
  for (const server of running) server.process.kill('SIGKILL')
  await Promise.all([...running].map((server) => server.process.exited))
  running.clear()
})

async function start(args: string[]): Promise<RunningProcess> {
  const server = await startProcess([BUN, 'src/main.ts', '--port', '0', ...args], SETTINGS)
  running.add(server)
  return server
}

/** Stops a server (kill -9 or SIGTERM) and waits until it is gone. */
async function stop(server: RunningProcess, signal: 'SIGKILL' | 'SIGTERM'): Promise<void> {
  await server.stop(signal)
  running.delete(server)
}

async function connect(url: string, agentName: string): Promise<TestWorker> {
  const worker = await TestWorker.connect(url, { agentName })
  sockets.add(worker)
  return worker
}

type Json = Record<string, any>
const getJob = async (url: string, id: string) => (await (await fetch(`${url}/jobs/${id}`)).json()) as Json

/** Creates a job for `agentName` and waits until its worker runs it. */
async function runningJob(url: string, agentName: string): Promise<Json> {
  const response = await fetch(`${url}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ agent_name: agentName, room_id: 'room' }) })
  expect(response.status).toBe(201)
  const job = (await response.json()) as Json
  await eventually(async () => (await getJob(url, job.id)).state === 'running', 5000, 'job running')
  return job
}

/**
 * Waits for `rescuer` to be assigned the job, then checks it happened once: one reassignment in the job's
 * history, one assignment on the rescuer, and nothing more after another detection bound. Returns the time taken from `since`.
 */
async function handledOnce(url: string, jobId: string, rescuer: TestWorker, since: number): Promise<number> {
  await rescuer.waitForAssignment(jobId, GRACE_MS + BOUND_MS + 5000)
  const took = Date.now() - since
  await eventually(async () => (await getJob(url, jobId)).state === 'running', 5000, 're-dispatched job running')
  await Bun.sleep(BOUND_MS)
  const job = await getJob(url, jobId)
  expect(job.history.map((event: Json) => event.state)).toEqual(['pending', 'assigned', 'running', 'reassigning', 'assigned', 'running'])
  expect(job.worker_id).toBe(rescuer.workerId)
  expect(rescuer.assignments.filter((frame) => frame.job_id === jobId)).toHaveLength(1)
  return took
}

const summary = (times: number[]) => `${times.length} runs, ${Math.min(...times)}–${Math.max(...times)} ms (grace ${GRACE_MS} ms + detection bound ${BOUND_MS} ms)`

describe('a worker whose instance is gone, on SQLite', () => {
  for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
    it(`re-dispatches its running job once after a restart that follows a ${signal === 'SIGKILL' ? 'kill -9' : 'clean SIGTERM'}, within grace + the detection bound`, async () => {
      const times: number[] = []
      for (let run = 0; run < RUNS; run++) {
        const db = join(dir, `${randomUUID()}.db`)
        const agentName = `live-${randomUUID()}`
        const first = await start(['--backend', 'sqlite', '--db', db])
        const lost = await connect(first.url, agentName)
        const job = await runningJob(first.url, agentName)
        await stop(first, signal)
        await lost.closed
        const second = await start(['--backend', 'sqlite', '--db', db])
        const restartedAt = Date.now()
        const rescuer = await connect(second.url, agentName)
        const took = await handledOnce(second.url, job.id, rescuer, restartedAt)
        expect(took).toBeLessThanOrEqual(GRACE_MS + BOUND_MS + SLACK_MS)
        expect((await fetch(`${second.url}/workers/${lost.workerId}`)).status).toBe(404)
        times.push(took)
        await stop(second, 'SIGTERM')
      }
      console.log(`sqlite, ${signal}: job handled after the restart in ${summary(times)}`)
    }, 30_000 + RUNS * 5_000)
  }
})

const redis = await testRedis()

describe.skipIf(redis.url === null)('two instances on one Redis, one killed', () => {
  const prefix = randomPrefix()
  const args = () => ['--backend', 'redis', '--redis-url', redis.url!, '--redis-prefix', prefix]
  afterAll(async () => {
    await deleteKeys(redis.url!, prefix)
  })

  it('re-dispatches, through the survivor, the running job of a worker whose instance was killed, once, within grace + the detection bound', async () => {
    const survivor = await start(args())
    const times: number[] = []
    for (let run = 0; run < RUNS; run++) {
      const agentName = `live-${randomUUID()}`
      const doomed = await start(args())
      const lost = await connect(doomed.url, agentName)
      const job = await runningJob(survivor.url, agentName)
      expect(job.worker_id).toBe(lost.workerId)
      const rescuer = await connect(survivor.url, agentName)
      const killedAt = Date.now()
      await stop(doomed, 'SIGKILL')
      const took = await handledOnce(survivor.url, job.id, rescuer, killedAt)
      expect(took).toBeLessThanOrEqual(GRACE_MS + BOUND_MS + SLACK_MS)
      times.push(took)
    }
    console.log(`redis, kill -9 of the worker's instance: job handled by the survivor in ${summary(times)}`)
  }, 30_000 + RUNS * 5_000)

  it('loses no acknowledged message when the instance its receivers take from is killed', async () => {
    const survivor = await start(args())
    let acknowledgedTotal = 0
    let repeated = 0
    for (let run = 0; run < RUNS; run++) {
      const doomed = await start(args())
      const [sender, receiver] = [userId(), agentId()]
      for (const id of [sender, receiver]) expect((await rawRequest(`${survivor.url}/mailbox`, { method: 'POST', body: bodies.create(id) })).status).toBe(200)
      const acknowledged: number[] = []
      const received: number[] = []
      let killed = false
      const sending = sendUntilGone(survivor.url, sender, receiver, { next: 0 }, acknowledged, () => killed)
      // Several long-polls at once on the doomed instance, so takes are in flight when it dies.
      const receiving = Array.from({ length: 4 }, async () => {
        try {
          for (;;) {
            const n = await receive(doomed.url, receiver)
            if (n !== null) received.push(n)
          }
        } catch {
          // The instance is gone.
        }
      })
      await Bun.sleep(300 + Math.floor(Math.random() * 300))
      await stop(doomed, 'SIGKILL')
      killed = true
      await Promise.all([sending, ...receiving])
      // The survivor learns of the death within the detection bound and puts back what the dead instance had taken.
      await Bun.sleep(BOUND_MS)
      for (let n = await receive(survivor.url, receiver); n !== null; n = await receive(survivor.url, receiver)) received.push(n)
      expect(acknowledged.length).toBeGreaterThan(10)
      const seen = new Set(received)
      expect(acknowledged.filter((n) => !seen.has(n))).toEqual([])
      acknowledgedTotal += acknowledged.length
      repeated += received.length - seen.size
    }
    console.log(`redis, kill -9 of the receiving instance: ${RUNS} runs, ${acknowledgedTotal} messages acknowledged, 0 lost, ${repeated} delivered twice`)
  }, 30_000 + RUNS * 5_000)
})
