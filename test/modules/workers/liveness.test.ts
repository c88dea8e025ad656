/**
 * Workers whose instance is gone, on the test backend (TEST_BACKEND): a
 * record that names an instance with no heartbeat is marked lost by the
 * sweep, never offered a job, and its job gets the loss action once although
 * two instances sweep the same store.
 */
import { afterEach, describe, expect, it } from 'bun:test'
import { randomUUID } from 'node:crypto'
import { createApp } from '../../../src/app'
import { ANONYMOUS } from '../../../src/http/auth'
import type { Backend, JobRecord, WorkerRecord } from '../../../src/backend/index'
import { job as pendingJob, worker } from '../../backend/conformance/workers'
import { detectionBoundMs } from '../../../src/backend/instances'
import { call, type TestApp } from '../../support/app'
import { logger, makeTestBackend } from '../../support/backend'
import { eventually } from '../../support/wait'

const HEARTBEAT_S = 0.1
const GRACE_S = 0.2

let backend: Backend | null = null
const apps: TestApp[] = []
afterEach(async () => {
  for (const app of apps.splice(0)) await app.decorator.workerService.stop()
  await backend?.close()
  backend = null
})

/** A worker record left by an instance that died holding its socket: connected, on an instance that never beats. */
function orphan(agentName: string): WorkerRecord {
  return worker({ id: `orphan-${randomUUID()}`, agentName, owner: ANONYMOUS.id, instance: `gone-${randomUUID()}`, capabilities: [] })
}

/** A job the orphan runs, moved through the store as a dispatch would. */
async function runningOn(worker: WorkerRecord): Promise<JobRecord> {
  const store = backend!.workers
  const job = pendingJob({ agentName: worker.agentName, roomId: 'room', owner: worker.owner })
  await store.createJob(job)
  expect(await store.reserveSlot(worker.id, job.id)).toBe(true)
  expect(await store.assignSlot(worker.id, job.id)).toBe(true)
  await store.transitionJob(job.id, { from: ['pending'], to: 'assigned', workerId: worker.id })
  return (await store.transitionJob(job.id, { from: ['assigned'], heldBy: worker.id, to: 'running' }))!
}

function startInstance(config: Record<string, unknown> = {}): TestApp {
  const app = createApp({ backend: backend!, config: { log_level: 'silent', instance_heartbeat_s: HEARTBEAT_S, worker_grace_s: GRACE_S, ...config }, logger })
  apps.push(app)
  return app
}

describe('workers of an instance that is gone', () => {
  it('fails the running job of a worker left by a dead instance once, within grace + the detection bound, though two instances sweep', async () => {
    backend = await makeTestBackend()
    const worker = orphan(`agent-${randomUUID()}`)
    await backend.workers.upsertWorker(worker)
    const job = await runningOn(worker)
    const startedAt = Date.now()
    startInstance({ worker_loss_action: 'fail' })
    startInstance({ worker_loss_action: 'fail' })
    const bound = (GRACE_S + detectionBoundMs(HEARTBEAT_S) / 1000) * 1000
    await eventually(async () => (await backend!.workers.getJob(job.id))?.state === 'failed', bound + 2000, 'the job failed')
    expect(Date.now() - startedAt).toBeLessThanOrEqual(bound + 1000)
    // Several more sweeps of both instances change nothing.
    await Bun.sleep(detectionBoundMs(HEARTBEAT_S))
    const failed = (await backend.workers.getJob(job.id))!
    expect(failed.history.map((event) => event.state)).toEqual(['pending', 'assigned', 'running', 'failed'])
    expect(failed.history.at(-1)!.reason).toBe(`worker ${worker.id} lost`)
    expect(await backend.workers.getWorker(worker.id)).toBeNull()
  })

  it('marks the worker lost at the first sweep and never offers it a job', async () => {
    backend = await makeTestBackend()
    const worker = orphan(`agent-${randomUUID()}`)
    await backend.workers.upsertWorker(worker)
    const job = await runningOn(worker)
    // A long grace: the worker stays known, disconnected, with its job.
    const app = startInstance({ worker_grace_s: 60, availability_timeout_ms: 5000 })
    await eventually(async () => (await backend!.workers.getWorker(worker.id))?.connection === null, detectionBoundMs(HEARTBEAT_S) + 1000, 'the worker marked lost')
    const lost = (await backend.workers.getWorker(worker.id))!
    expect(lost.jobs).toEqual([job.id])
    expect(lost.instance).toBeNull()
    const started = Date.now()
    const response = await call(app, 'POST', '/jobs', JSON.stringify({ agent_name: worker.agentName, room_id: 'r' }))
    // Refused at once: no availability question to a worker nobody holds (that would wait out the 5 s timeout).
    expect(response.status).toBe(503)
    expect(Date.now() - started).toBeLessThan(1000)
    expect((await backend.workers.getJob(job.id))!.state).toBe('running')
  })
})
