/**
 * Job dispatch end to end on a real listening server with real worker
 * sockets: the VideoSDK dispatch API, the native job routes, capacity,
 * declines, termination, worker loss, and no double assignment under load.
 */
import { afterEach, describe, expect, it } from 'bun:test'
import { serveBackend, startServer, writeTokensFile, type TestServer } from '../../support/app'
import { makeTestBackend } from '../../support/backend'
import type { WorkerStore } from '../../../src/backend/workers'
import { eventually } from '../../support/wait'
import { TestWorker, type TestWorkerOptions } from './worker'

let server: TestServer | null = null
const workers: TestWorker[] = []

async function start(config: Parameters<typeof startServer>[0] = {}): Promise<TestServer> {
  server = await startServer(config)
  return server
}

/** Starts Switchboard over the test backend with one worker-store method held up: `before` runs, and is awaited, ahead of each call (a slow disk, a distant Redis, a store that answers only when the test lets it). */
async function startWithHeldStore<K extends 'transitionJob' | 'updateWorker'>(method: K, before: (...args: Parameters<WorkerStore[K]>) => Promise<void>): Promise<TestServer> {
  const backend = await makeTestBackend()
  type Held = (...args: Parameters<WorkerStore[K]>) => Promise<unknown>
  const store = backend.workers as unknown as Record<K, Held>
  const call = store[method]
  store[method] = async (...args) => {
    await before(...args)
    return call.apply(store, args)
  }
  server = await serveBackend(backend)
  return server
}

async function connect(options: TestWorkerOptions = {}): Promise<TestWorker> {
  const worker = await TestWorker.connect(server!.url, options)
  workers.push(worker)
  return worker
}

type Json = Record<string, any>

async function request(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: Json }> {
  const response = await fetch(server!.url + path, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  return { status: response.status, body: (await response.json()) as Json }
}

const createJob = (body: Json = {}, headers: Record<string, string> = {}) => request('POST', '/jobs', { agent_name: 'voice-agent', room_id: 'room-1', ...body }, headers)
const getJob = async (id: string) => (await request('GET', `/jobs/${id}`)).body
const getWorker = async (id: string) => (await request('GET', `/workers/${id}`)).body

/** Every job any worker was assigned, with the workers that got it. */
function assignmentsByJob(list: TestWorker[]): Map<string, string[]> {
  const byJob = new Map<string, string[]>()
  for (const worker of list) for (const frame of worker.assignments) byJob.set(String(frame.job_id), [...(byJob.get(String(frame.job_id)) ?? []), worker.workerId])
  return byJob
}

afterEach(async () => {
  for (const worker of workers.splice(0)) await worker.kill()
  await server?.close()
  server = null
})

describe('VideoSDK dispatch API', () => {
  it('dispatches to a worker, answers once it accepted, and follows the job to completed', async () => {
    await start()
    const worker = await connect({ workerId: 'w1' })
    const { status, body } = await request('POST', '/v2/agent/dispatch', { meetingId: 'room-42', agentId: 'voice-agent', metadata: { topic: 'billing' }, roomOptions: { vision: true } }, { authorization: 'any-token' })
    expect(status).toBe(200)
    expect(body).toEqual({ message: 'Agent dispatch requested successfully.', data: { success: true, status: 'assigned', roomId: 'room-42', agentId: 'voice-agent', jobId: body.data.jobId } })
    const request1 = worker.frames.find((frame) => frame.type === 'availability_request')
    expect(request1).toEqual({ type: 'availability_request', job_id: body.data.jobId, room_id: 'room-42', agent_name: 'voice-agent' })
    const assignment = await worker.waitForAssignment(body.data.jobId)
    expect(assignment).toEqual({ type: 'job_assignment', job_id: body.data.jobId, room_id: 'room-42', agent_name: 'voice-agent', token: 'worker-token', url: '', metadata: { topic: 'billing' }, room_options: { vision: true } })
    await eventually(async () => (await getJob(body.data.jobId)).state === 'running', 5000, 'job running')
    worker.update(body.data.jobId, 'completed')
    await eventually(async () => (await getJob(body.data.jobId)).state === 'completed', 5000, 'job completed')
    const job = await getJob(body.data.jobId)
    expect(job.history.map((event: Json) => event.state)).toEqual(['pending', 'assigned', 'running', 'completed'])
    expect(job.history[1].worker_id).toBe('w1')
    expect((await getWorker('w1')).jobs).toEqual([])
    expect(worker.protocolErrors).toEqual([])
  })

  it('says No Workers Registered when no worker serves the agent', async () => {
    await start()
    const { status, body } = await request('POST', '/v2/agent/dispatch', { meetingId: 'r', agentId: 'nobody-serves-this' }, { authorization: 't' })
    expect(status).toBe(503)
    expect(body).toEqual({ message: 'No Workers Registered' })
  })

  it('says No workers available when every worker is busy', async () => {
    await start()
    await connect({ availability: 'decline' })
    const { status, body } = await request('POST', '/v2/agent/dispatch', { meetingId: 'r', agentId: 'voice-agent' }, { authorization: 't' })
    expect(status).toBe(503)
    expect(body).toEqual({ message: 'No workers available' })
  })

  it('answers a malformed dispatch body with 400 and a message naming the field', async () => {
    await start()
    const missing = await request('POST', '/v2/agent/dispatch', { agentId: 'voice-agent' }, { authorization: 't' })
    expect(missing.status).toBe(400)
    expect(missing.body.message).toContain('meetingId')
    const response = await fetch(server!.url + '/v2/agent/dispatch', { method: 'POST', headers: { authorization: 't', 'content-type': 'application/json' }, body: '{not json' })
    expect(response.status).toBe(400)
    expect(((await response.json()) as Json).message).toContain('not valid JSON')
  })

  it('requires the Authorization header when auth is on', async () => {
    await start({ auth: 'token', tokens_file: writeTokensFile([{ token: 'secret', client: 'tenant-a' }]) })
    expect((await request('POST', '/v2/agent/dispatch', { meetingId: 'r', agentId: 'a' })).status).toBe(401)
    expect((await request('POST', '/v2/agent/dispatch', { meetingId: 'r', agentId: 'a' }, { authorization: 'wrong' })).status).toBe(403)
    const ok = await request('POST', '/v2/agent/dispatch', { meetingId: 'r', agentId: 'a' }, { authorization: 'secret' })
    expect(ok.body).toEqual({ message: 'No Workers Registered' })
  })
})

describe('dispatch', () => {
  it('offers the job to the next worker after a decline, each worker once', async () => {
    await start()
    const declining = await connect({ availability: 'decline' })
    const accepting = await connect()
    const { status, body } = await createJob()
    expect(status).toBe(201)
    expect(body.worker_id).toBe(accepting.workerId)
    await accepting.waitForAssignment(body.id)
    expect(declining.assignments).toEqual([])
    const asked = declining.frames.filter((frame) => frame.type === 'availability_request' && frame.job_id === body.id)
    expect(asked.length).toBeLessThanOrEqual(1)
    expect((await getWorker(declining.workerId)).reserved).toBe(0)
  })

  it('moves on from a worker that does not answer in time', async () => {
    await start({ availability_timeout_ms: 100 })
    const silent = await connect({ availability: 'ignore' })
    const accepting = await connect()
    const results = await Promise.all(Array.from({ length: 6 }, () => createJob()))
    for (const result of results) expect(result.body.worker_id).toBe(accepting.workerId)
    expect(silent.assignments).toEqual([])
    await eventually(async () => (await getWorker(silent.workerId)).reserved === 0, 5000, 'silent worker reservations released')
  })

  it('moves on at once when the asked worker disconnects', async () => {
    await start({ availability_timeout_ms: 60000 })
    const vanishing = await connect({ availability: 'ignore' })
    const pending = createJob()
    await vanishing.waitFor((frame) => frame.type === 'availability_request')
    const accepting = await connect()
    await vanishing.kill()
    const { status, body } = await pending
    expect(status).toBe(201)
    expect(body.worker_id).toBe(accepting.workerId)
  })

  it('respects max_processes = 1 by its own count, whatever load the worker reports', async () => {
    await start()
    const worker = await connect({ maxProcesses: 1, loadThreshold: 0.75 })
    const first = await createJob()
    expect(first.status).toBe(201)
    // The worker's own (stale) view says it is idle; Switchboard still counts the running job.
    worker.send({ type: 'status_update', worker_id: worker.workerId, agent_name: 'voice-agent', status: 'available', load: 0, job_count: 0 })
    const second = await createJob()
    expect(second.status).toBe(503)
    expect(second.body.error).toEqual({ code: 'NO_WORKERS_AVAILABLE', message: 'No workers available' })
    expect(worker.frames.filter((frame) => frame.type === 'availability_request').length).toBe(1)
    worker.update(first.body.id, 'completed')
    await eventually(async () => (await getWorker(worker.workerId)).jobs.length === 0, 5000, 'slot freed')
    expect((await createJob()).status).toBe(201)
  })

  it('records a failed dispatch in the job history', async () => {
    await start()
    const { status } = await createJob({ agent_name: 'ghost' })
    expect(status).toBe(503)
    const { body } = await request('GET', '/jobs?agent_name=ghost')
    expect(body.jobs.length).toBe(1)
    expect(body.jobs[0].state).toBe('failed')
    expect(body.jobs[0].history.at(-1)).toMatchObject({ state: 'failed', reason: 'No Workers Registered' })
  })

  it('spreads 20 jobs across 4 workers without exceeding anyone\'s capacity', async () => {
    await start()
    const pool = await Promise.all(Array.from({ length: 4 }, () => connect({ maxProcesses: 5, loadThreshold: 1 })))
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => createJob({ room_id: `room-${i}` })))
    for (const result of results) expect(result.status).toBe(201)
    for (const worker of pool) await eventually(() => worker.assignments.length === 5, 5000, 'five assignments each')
    const byJob = assignmentsByJob(pool)
    expect(byJob.size).toBe(20)
    for (const holders of byJob.values()) expect(holders.length).toBe(1)
    expect((await createJob()).status).toBe(503)
  })

  it('drained workers get no new jobs while their jobs run to the end', async () => {
    await start()
    const worker = await connect()
    const running = await createJob()
    const drained = await request('POST', `/workers/${worker.workerId}/drain`)
    expect(drained.status).toBe(200)
    expect(drained.body.draining).toBe(true)
    expect((await createJob()).status).toBe(503)
    worker.update(running.body.id, 'completed')
    await eventually(async () => (await getJob(running.body.id)).state === 'completed', 5000, 'job completed')
    expect((await request('POST', '/workers/unknown-worker/drain')).status).toBe(404)
  })
})

describe('job updates', () => {
  it('treats repeated terminal updates and updates for unknown jobs as no-ops', async () => {
    await start()
    const worker = await connect()
    const { body } = await createJob()
    await worker.waitForAssignment(body.id)
    worker.update(body.id, 'failed', 'crashed')
    worker.update(body.id, 'completed')
    worker.update(body.id, 'failed', 'again')
    worker.update('no-such-job', 'completed')
    worker.send({ type: 'ping', timestamp: 5 })
    await worker.waitFor((frame) => frame.type === 'pong')
    const job = await getJob(body.id)
    expect(job.state).toBe('failed')
    expect(job.history.map((event: Json) => event.state)).toEqual(['pending', 'assigned', 'running', 'failed'])
    expect(job.history.at(-1).reason).toBe('crashed')
    expect(worker.isOpen).toBe(true)
  })

  it("answers about one job while the store is still writing another job's update, and keeps each job's updates in order", async () => {
    // A store whose writes of a finished job take a while.
    await startWithHeldStore('transitionJob', async (_id, transition) => {
      if (transition.to === 'completed') await Bun.sleep(1500)
    })
    const worker = await connect()
    const first = (await createJob()).body
    await worker.waitForAssignment(first.id)
    worker.update(first.id, 'completed')
    const started = performance.now()
    const second = await createJob()
    expect(second.status).toBe(201)
    expect(performance.now() - started).toBeLessThan(1000)
    expect((await getJob(first.id)).state).toBe('running')
    // The ping after them answers once every frame before it was handled.
    worker.send({ type: 'ping', timestamp: 7 })
    await worker.waitFor((frame) => frame.type === 'pong')
    expect((await getJob(first.id)).history.map((event: Json) => event.state)).toEqual(['pending', 'assigned', 'running', 'completed'])
  })

  it("holds at most 64 jobs' updates of one worker in the store at once, and answers after all of them", async () => {
    let inFlight = 0
    let most = 0
    let handled = 0
    await startWithHeldStore('transitionJob', async () => {
      most = Math.max(most, ++inFlight)
      await Bun.sleep(20)
      inFlight--
      handled++
    })
    const worker = await connect()
    for (let i = 0; i < 300; i++) worker.update(`no-such-job-${i}`, 'running')
    worker.send({ type: 'ping', timestamp: 9 })
    await worker.waitFor((frame) => frame.type === 'pong', 10_000)
    expect(handled).toBe(300)
    expect(most).toBeGreaterThan(1)
    expect(most).toBeLessThanOrEqual(64)
    expect(worker.isOpen).toBe(true)
  })

  it('stops reading a worker that sends faster than its frames are handled, and handles every frame once it catches up', async () => {
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    let updates = 0
    // A store that answers no status update until the test lets it.
    await startWithHeldStore('updateWorker', async () => {
      await gate
      updates++
    })
    const worker = await connect()
    const padding = 'x'.repeat(20_000)
    for (let i = 0; i < 1000; i++) worker.send({ type: 'status_update', status: 'available', load: i / 1000, padding })
    // About 20 MB sent: Switchboard holds at most 256 of these frames, so most of them stay unread on the worker's side.
    await Bun.sleep(1000)
    expect(worker.ws.bufferedAmount).toBeGreaterThan(1_000_000)
    release()
    worker.send({ type: 'ping', timestamp: 3 })
    await worker.waitFor((frame) => frame.type === 'pong', 20_000)
    expect(updates).toBe(1000)
    expect(worker.isOpen).toBe(true)
  }, 30_000)

  it('ignores updates from a worker that does not hold the job', async () => {
    await start()
    const holder = await connect({ autoRun: false })
    const other = await connect({ availability: 'decline' })
    const { body } = await createJob()
    expect(body.worker_id).toBe(holder.workerId)
    other.update(body.id, 'completed')
    other.send({ type: 'ping', timestamp: 1 })
    await other.waitFor((frame) => frame.type === 'pong')
    expect((await getJob(body.id)).state).toBe('assigned')
  })
})

describe('termination', () => {
  it('cancels a running job at once and sends the worker exactly job_id and reason', async () => {
    await start()
    const worker = await connect()
    const { body } = await createJob()
    await eventually(async () => (await getJob(body.id)).state === 'running', 5000, 'job running')
    const deleted = await request('DELETE', `/jobs/${body.id}`)
    expect(deleted.status).toBe(200)
    expect(deleted.body.state).toBe('cancelled')
    const termination = await worker.waitFor((frame) => frame.type === 'job_termination')
    expect(termination).toEqual({ type: 'job_termination', job_id: body.id, reason: 'terminated by request' })
    expect((await getWorker(worker.workerId)).jobs).toEqual([])
    // The worker keeps running and may report later: the job stays cancelled.
    worker.update(body.id, 'completed')
    worker.send({ type: 'ping', timestamp: 1 })
    await worker.waitFor((frame) => frame.type === 'pong')
    expect((await getJob(body.id)).state).toBe('cancelled')
    expect((await request('DELETE', `/jobs/${body.id}`)).body.state).toBe('cancelled')
    expect(worker.protocolErrors).toEqual([])
  })

  it('refuses to terminate a finished job, and answers 404 for an unknown one', async () => {
    await start()
    const worker = await connect()
    const { body } = await createJob()
    worker.update(body.id, 'completed')
    await eventually(async () => (await getJob(body.id)).state === 'completed', 5000, 'job completed')
    const refused = await request('DELETE', `/jobs/${body.id}`)
    expect(refused.status).toBe(409)
    expect(refused.body.error.message).toContain('completed')
    expect((await request('DELETE', '/jobs/nope')).status).toBe(404)
  })
})

describe('worker loss', () => {
  it('re-dispatches the jobs of a worker that does not come back within the grace period', async () => {
    await start({ worker_grace_s: 0.2 })
    const lost = await connect({ workerId: 'lost' })
    const { body } = await createJob()
    expect(body.worker_id).toBe('lost')
    const rescuer = await connect({ availability: 'accept' })
    await lost.kill()
    await rescuer.waitForAssignment(body.id)
    await eventually(async () => (await getJob(body.id)).state === 'running', 5000, 're-dispatched job running')
    const job = await getJob(body.id)
    expect(job.worker_id).toBe(rescuer.workerId)
    expect(job.history.map((event: Json) => event.state)).toEqual(['pending', 'assigned', 'running', 'reassigning', 'assigned', 'running'])
    expect(job.history[3].reason).toBe('worker lost lost')
    expect((await request('GET', '/workers/lost')).status).toBe(404)
  })

  it('gives the jobs back to the same worker id when it returns within the grace period', async () => {
    await start({ worker_grace_s: 30 })
    const first = await connect({ workerId: 'flaky' })
    const { body } = await createJob()
    await eventually(async () => (await getJob(body.id)).state === 'running', 5000, 'job running')
    await first.kill()
    await eventually(async () => (await getWorker('flaky')).connected === false, 5000, 'worker marked disconnected')
    expect((await getJob(body.id)).state).toBe('running')
    const back = await connect({ workerId: 'flaky' })
    expect((await getWorker('flaky')).jobs).toEqual([body.id])
    back.update(body.id, 'completed')
    await eventually(async () => (await getJob(body.id)).state === 'completed', 5000, 'job completed by the returning worker')
  })

  it('fails the jobs instead when worker_loss_action is fail', async () => {
    await start({ worker_grace_s: 0.1, worker_loss_action: 'fail' })
    const lost = await connect()
    const { body } = await createJob()
    await lost.kill()
    await eventually(async () => (await getJob(body.id)).state === 'failed', 5000, 'job failed')
    expect((await getJob(body.id)).history.at(-1).reason).toBe(`worker ${lost.workerId} lost`)
  })
})

describe('under load', () => {
  it('never assigns a job twice in concurrent dispatch storms with declines and disconnects', async () => {
    await start({ availability_timeout_ms: 2000 })
    const steady = await Promise.all(Array.from({ length: 4 }, () => connect({ maxProcesses: 20, loadThreshold: 1 })))
    const flaky = await Promise.all(Array.from({ length: 2 }, () => connect({ availability: 'decline' })))
    const doomed = await connect({ availability: 'ignore' })
    const storm = Array.from({ length: 60 }, (_, i) => createJob({ room_id: `storm-${i}` }))
    await doomed.waitFor((frame) => frame.type === 'availability_request')
    await doomed.kill()
    const results = await Promise.all(storm)
    const created = results.filter((result) => result.status === 201)
    expect(created.length).toBe(60)
    await eventually(() => assignmentsByJob(steady).size === 60, 5000, 'every assignment delivered')
    const byJob = assignmentsByJob([...steady, ...flaky])
    for (const [, holders] of byJob) expect(holders.length).toBe(1)
    expect(byJob.size).toBe(60)
    for (const worker of steady) expect((await getWorker(worker.workerId)).jobs.length).toBeLessThanOrEqual(20)
  })

  it('leaves no pending assignment state after 1,000 dispatches with declines and disconnects', async () => {
    await start({ availability_timeout_ms: 2000 })
    const pool = await Promise.all(Array.from({ length: 5 }, () => connect({ maxProcesses: 1000, loadThreshold: 1 })))
    await connect({ availability: 'decline', maxProcesses: 1000, loadThreshold: 1 })
    let dispatched = 0
    for (let round = 0; round < 10; round++) {
      const vanishing = await connect({ availability: 'ignore', maxProcesses: 1000, loadThreshold: 1 })
      const batch = Array.from({ length: 100 }, (_, i) => createJob({ room_id: `leak-${round}-${i}` }))
      await vanishing.waitFor((frame) => frame.type === 'availability_request')
      await vanishing.kill()
      const results = await Promise.all(batch)
      for (const result of results) expect(result.status).toBe(201)
      dispatched += results.length
      // Finish half the jobs, so slots are released as well as taken.
      for (const result of results.filter((_, i) => i % 2 === 0)) pool.find((w) => w.workerId === result.body.worker_id)!.update(result.body.id, 'completed')
    }
    expect(dispatched).toBe(1000)
    await eventually(() => {
      const counts = server!.app.decorator.workerService.pending()
      return counts.answers === 0 && counts.asks === 0
    }, 5000, 'no pending questions')
    // Completions are sent without waiting for them; count slots once they have all been handled.
    await eventually(async () => (await request('GET', '/jobs?state=completed&limit=9999')).body.jobs.length === 500, 5000, 'half the jobs completed')
    const { body } = await request('GET', '/workers')
    for (const worker of body.workers) expect(worker.reserved).toBe(0)
    const assigned = body.workers.reduce((sum: number, worker: Json) => sum + worker.jobs.length, 0)
    expect(assigned).toBe(500)
    await eventually(() => assignmentsByJob(workers).size === 1000, 5000, 'every assignment delivered')
    const byJob = assignmentsByJob(workers)
    expect(byJob.size).toBe(1000)
    for (const holders of byJob.values()) expect(holders.length).toBe(1)
  }, 60000)
})

describe('backlog', () => {
  /** Completes every job assigned to `list` as it arrives, until `count` jobs have completed; resolves with them in the order they were assigned. */
  async function completeAssigned(list: TestWorker[], count: number): Promise<string[]> {
    const done: string[] = []
    await eventually(
      () => {
        for (const worker of list) {
          for (const frame of worker.assignments) {
            const id = String(frame.job_id)
            if (done.includes(id)) continue
            done.push(id)
            worker.update(id, 'completed')
          }
        }
        return done.length >= count
      },
      20_000,
      `${count} jobs completed`,
    )
    return done
  }

  it('takes 50 dispatches for 2 one-slot workers without refusing one, and runs them all in the order they came as slots free', async () => {
    await start({ job_queue_max: 50 })
    const pair = [await connect({ maxProcesses: 1 }), await connect({ maxProcesses: 1 })]
    const created: Json[] = []
    for (let i = 0; i < 50; i++) {
      const { status, body } = await createJob({ room_id: `room-${i}` })
      expect([201, 202]).toContain(status)
      created.push(body)
    }
    expect(created.slice(0, 2).map((job) => job.state)).toEqual(['assigned', 'assigned'])
    expect(created.slice(2).every((job) => job.state === 'pending')).toBe(true)
    const order = await completeAssigned(pair, 50)
    expect(order.sort()).toEqual(created.map((job) => job.id).sort())
    await eventually(async () => (await request('GET', '/jobs?state=completed&limit=100')).body.jobs.length === 50, 5000, 'all 50 completed')
    // Each job was assigned no earlier than every job dispatched before it.
    const assignedAt = await Promise.all(created.map(async (job) => Date.parse((await getJob(job.id)).history.find((event: Json) => event.state === 'assigned').at)))
    for (let i = 1; i < assignedAt.length; i++) expect(assignedAt[i]!).toBeGreaterThanOrEqual(assignedAt[i - 1]!)
    expect(pair.flatMap((worker) => worker.protocolErrors)).toEqual([])
  }, 30_000)

  it('drains the backlog to a worker that registers late', async () => {
    await start({ job_queue_max: 10 })
    const queued = await Promise.all(Array.from({ length: 5 }, (_, i) => createJob({ room_id: `late-${i}` })))
    expect(queued.map((answer) => [answer.status, answer.body.state])).toEqual(Array.from({ length: 5 }, () => [202, 'pending']))
    const late = await connect()
    for (const answer of queued) await late.waitForAssignment(answer.body.id, 2000)
    expect((await request('GET', '/jobs?state=pending')).body.jobs).toEqual([])
  })

  it("dispatches a queued job the moment a worker's drain ends", async () => {
    await start({ job_queue_max: 5 })
    const worker = await connect()
    worker.send({ type: 'status_update', worker_id: worker.workerId, agent_name: 'voice-agent', status: 'draining', load: 0, job_count: 0 })
    await eventually(async () => (await getWorker(worker.workerId)).status === 'draining', 5000, 'worker draining')
    const queued = await createJob()
    expect([queued.status, queued.body.state]).toEqual([202, 'pending'])
    worker.send({ type: 'status_update', worker_id: worker.workerId, agent_name: 'voice-agent', status: 'available', load: 0, job_count: 0 })
    await worker.waitForAssignment(queued.body.id, 2000)
  })

  it('refuses a dispatch past job_queue_max with 503 and Retry-After, storing nothing', async () => {
    await start({ job_queue_max: 2 })
    expect((await createJob()).status).toBe(202)
    expect((await createJob()).status).toBe(202)
    const response = await fetch(server!.url + '/jobs', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ agent_name: 'voice-agent', room_id: 'one-too-many' }) })
    expect(response.status).toBe(503)
    expect(response.headers.get('retry-after')).toBe('1')
    expect(((await response.json()) as Json).error.code).toBe('JOB_QUEUE_FULL')
    const videoSdk = await request('POST', '/v2/agent/dispatch', { meetingId: 'one-too-many', agentId: 'voice-agent' }, { authorization: 't' })
    expect(videoSdk).toEqual({ status: 503, body: { message: 'The backlog of voice-agent is full (2 pending jobs, job_queue_max); retry later' } })
    expect((await request('GET', '/jobs?room_id=one-too-many')).body.jobs).toEqual([])
    expect((await request('GET', '/jobs')).body.jobs).toHaveLength(2)
    // Another agent name has a backlog of its own.
    expect((await createJob({ agent_name: 'other-agent' })).status).toBe(202)
  })

  it("refuses a client's dispatch past job_queue_client_max over all its agent names, storing nothing", async () => {
    await start({ job_queue_max: 10, job_queue_client_max: 3 })
    for (const agent of ['a', 'b', 'c']) expect((await createJob({ agent_name: agent })).status).toBe(202)
    const refused = await createJob({ agent_name: 'd' })
    expect(refused.status).toBe(503)
    expect(refused.body.error).toEqual({ code: 'JOB_QUEUE_FULL', message: 'This client has 3 pending jobs in the backlog (job_queue_client_max); retry later' })
    expect((await request('GET', '/jobs')).body.jobs).toHaveLength(3)
  })

  it('ends a job that waited past job_pending_ttl_s as failed, with the reason in its history', async () => {
    await start({ job_queue_max: 5, job_pending_ttl_s: 1, instance_heartbeat_s: 0.1 })
    const { status, body } = await createJob()
    expect(status).toBe(202)
    await eventually(async () => (await getJob(body.id)).state === 'failed', 5000, 'job expired')
    const job = await getJob(body.id)
    expect(job.history.map((event: Json) => event.state)).toEqual(['pending', 'failed'])
    expect(job.history[1].reason).toBe('expired: waited 1 s in the backlog (job_pending_ttl_s) with no worker free')
    // A worker that comes after is not offered it.
    const worker = await connect()
    await Bun.sleep(300)
    expect(worker.frames.filter((frame) => frame.type === 'availability_request')).toEqual([])
  })

  it('answers a VideoSDK dispatch once a slot frees within its deadline, and says pending after it', async () => {
    await start({ job_queue_max: 5, dispatch_timeout_ms: 1500 })
    const busy = await connect({ maxProcesses: 1 })
    const first = await request('POST', '/v2/agent/dispatch', { meetingId: 'r1', agentId: 'voice-agent' }, { authorization: 't' })
    expect(first.body.data.status).toBe('assigned')
    const waiting = request('POST', '/v2/agent/dispatch', { meetingId: 'r2', agentId: 'voice-agent' }, { authorization: 't' })
    await Bun.sleep(200)
    busy.update(first.body.data.jobId, 'completed')
    const second = await waiting
    expect(second.status).toBe(200)
    expect(second.body).toEqual({ message: 'Agent dispatch requested successfully.', data: { success: true, status: 'assigned', roomId: 'r2', agentId: 'voice-agent', jobId: second.body.data.jobId } })
    const started = Date.now()
    const third = await request('POST', '/v2/agent/dispatch', { meetingId: 'r3', agentId: 'voice-agent' }, { authorization: 't' })
    expect(Date.now() - started).toBeGreaterThanOrEqual(1400)
    expect(third.status).toBe(202)
    expect(third.body).toEqual({ message: 'Agent dispatch requested successfully.', data: { success: true, status: 'pending', roomId: 'r3', agentId: 'voice-agent', jobId: third.body.data.jobId } })
    busy.update(second.body.data.jobId, 'completed')
    await busy.waitForAssignment(third.body.data.jobId)
  })

  it('reports the backlog per agent name in the metrics', async () => {
    await start({ job_queue_max: 5 })
    await createJob()
    await Bun.sleep(20)
    await createJob()
    await createJob({ agent_name: 'other-agent' })
    const text = await (await fetch(server!.url + '/metrics')).text()
    expect(text).toContain('switchboard_jobs_queued{agent_name="voice-agent"} 2')
    expect(text).toContain('switchboard_jobs_queued{agent_name="other-agent"} 1')
    const age = Number(/switchboard_jobs_queued_oldest_age_seconds\{agent_name="voice-agent"\} ([0-9.]+)/.exec(text)?.[1])
    expect(age).toBeGreaterThanOrEqual(0.02)
    await connect()
    await eventually(async () => !(await (await fetch(server!.url + '/metrics')).text()).includes('switchboard_jobs_queued{agent_name="voice-agent"}'), 5000, "voice-agent's backlog gone")
    expect(await (await fetch(server!.url + '/metrics')).text()).toContain('switchboard_jobs_queued{agent_name="other-agent"} 1')
  })
})

describe('idempotent dispatch', () => {
  it('gives the same job for the same key and body, on both dispatch routes, and 409 naming the conflict for another body', async () => {
    await start()
    const worker = await connect()
    const first = await createJob({ metadata: { a: 1, b: 2 } }, { 'idempotency-key': 'order-17' })
    expect(first.status).toBe(201)
    const again = await createJob({ metadata: { b: 2, a: 1 } }, { 'idempotency-key': 'order-17' })
    expect(again.body.id).toBe(first.body.id)
    const byField = await createJob({ metadata: { a: 1, b: 2 }, request_id: 'order-17' })
    expect(byField.body.id).toBe(first.body.id)
    expect(worker.assignments).toHaveLength(1)
    const conflict = await createJob({ room_id: 'another-room' }, { 'idempotency-key': 'order-17' })
    expect(conflict.status).toBe(409)
    expect(conflict.body.error.message).toBe(`Idempotency key "order-17" was used for a different dispatch (job ${first.body.id}); a new dispatch needs a new key`)
    const videoSdk = { meetingId: 'room-v', agentId: 'voice-agent' }
    const dispatched = await request('POST', '/v2/agent/dispatch', videoSdk, { authorization: 't', 'idempotency-key': 'v-1' })
    const redispatched = await request('POST', '/v2/agent/dispatch', { ...videoSdk, request_id: 'v-1' }, { authorization: 't' })
    expect(redispatched).toEqual(dispatched)
    expect((await request('POST', '/v2/agent/dispatch', { ...videoSdk, meetingId: 'other' }, { authorization: 't', 'idempotency-key': 'v-1' })).status).toBe(409)
    expect(worker.assignments).toHaveLength(2)
    const bad = await createJob({}, { 'idempotency-key': 'has space' })
    expect(bad.status).toBe(400)
    expect(bad.body.error.message).toContain('Idempotency-Key')
  })

  it('answers a retry that comes while the first call is still dispatching with the same job, once a worker took it', async () => {
    await start()
    const worker = await connect({ availability: 'ignore' })
    const first = createJob({}, { 'idempotency-key': 'in-flight' })
    const asked = await worker.waitFor((frame) => frame.type === 'availability_request')
    const retry = createJob({}, { 'idempotency-key': 'in-flight' })
    await Bun.sleep(150)
    worker.send({ type: 'availability_response', job_id: asked.job_id, available: true, token: 'worker-token' })
    const [answer, retried] = await Promise.all([first, retry])
    expect([answer.status, retried.status]).toEqual([201, 201])
    expect(retried.body.id).toBe(answer.body.id)
    expect(retried.body.state).not.toBe('pending')
  })

  it('answers a retry of a job still waiting in the backlog at once, with the same job', async () => {
    await start({ job_queue_max: 5 })
    const first = await createJob({}, { 'idempotency-key': 'waiting' })
    expect(first.status).toBe(202)
    const started = Date.now()
    const retried = await createJob({}, { 'idempotency-key': 'waiting' })
    expect(Date.now() - started).toBeLessThan(1000)
    expect([retried.status, retried.body.id, retried.body.state]).toEqual([202, first.body.id, 'pending'])
    expect((await request('GET', '/jobs')).body.jobs).toHaveLength(1)
  })

  it('dispatches anew after a refused dispatch with the same key, and keeps keys apart per tenant', async () => {
    await start({ auth: 'token', tokens_file: writeTokensFile([{ token: 'ta', client: 'tenant-a' }, { token: 'tb', client: 'tenant-b' }]) })
    const refused = await createJob({}, { 'idempotency-key': 'k', authorization: 'Bearer ta' })
    expect(refused.status).toBe(503)
    await connect({ token: 'ta' })
    await connect({ token: 'tb' })
    const accepted = await createJob({}, { 'idempotency-key': 'k', authorization: 'Bearer ta' })
    expect(accepted.status).toBe(201)
    expect((await createJob({}, { 'idempotency-key': 'k', authorization: 'Bearer ta' })).body.id).toBe(accepted.body.id)
    const theirs = await createJob({}, { 'idempotency-key': 'k', authorization: 'Bearer tb' })
    expect(theirs.status).toBe(201)
    expect(theirs.body.id).not.toBe(accepted.body.id)
    expect((await createJob({}, { 'idempotency-key': 'k', authorization: 'Bearer tb' })).body.id).toBe(theirs.body.id)
  })
})

describe('job lists', () => {
  it('filters by room and creation time, pages by cursor, and shows the participant identity a worker reported', async () => {
    await start()
    const worker = await connect({ autoRun: false })
    const ids: string[] = []
    for (let i = 0; i < 7; i++) ids.push((await createJob({ room_id: i % 2 === 0 ? 'even' : 'odd' })).body.id)
    worker.send({ type: 'job_update', job_id: ids[0], status: 'running', participant_identity: 'agent-alice' })
    await eventually(async () => (await getJob(ids[0]!)).participant_identity === 'agent-alice', 5000, 'participant identity kept')
    expect((await getJob(ids[1]!)).participant_identity).toBeNull()
    const odd = await request('GET', '/jobs?room_id=odd')
    expect(odd.body.jobs.map((job: Json) => job.id)).toEqual([ids[5], ids[3], ids[1]])
    expect(odd.body.next_cursor).toBeNull()
    const pages: string[] = []
    let cursor: string | null = null
    do {
      const page: { body: Json } = await request('GET', `/jobs?limit=3${cursor ? `&cursor=${cursor}` : ''}`)
      pages.push(...page.body.jobs.map((job: Json) => job.id))
      cursor = page.body.next_cursor
    } while (cursor)
    expect(pages).toEqual([...ids].reverse())
    const firstAt = (await getJob(ids[0]!)).created_at
    expect((await request('GET', `/jobs?created_before=${encodeURIComponent(firstAt)}`)).body.jobs).toEqual([])
    expect((await request('GET', `/jobs?created_from=${Date.parse(firstAt)}&room_id=even`)).body.jobs).toHaveLength(4)
    for (const [query, field] of [['cursor=nonsense', 'cursor'], ['created_from=yesterday', 'created_from'], ['limit=10000', 'limit']]) {
      const refused = await request('GET', `/jobs?${query}`)
      expect(refused.status).toBe(400)
      expect(refused.body.error.message).toContain(field)
    }
  })
})
