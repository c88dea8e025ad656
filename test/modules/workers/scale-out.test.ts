/**
 * Two Switchboard instances over one backend: a job created through
 * instance A reaches a worker whose socket instance B holds, the
 * availability round trip, the assignment and the termination relayed over
 * the backend's event bus. Runs on one shared memory backend (two instances
 * in one process) and, once the `redis` plugin is built in, on a real Redis
 * with a random key prefix.
 */
import { afterEach, describe, expect, it } from 'bun:test'
import { randomUUID } from 'node:crypto'
import Redis from 'ioredis'
import { createApp } from '../../../src/app'
import type { Config } from '../../../src/config'
import type { Backend } from '../../../src/backend/index'
import { BUILT_IN_BACKENDS } from '../../../plugins/index'
import { serve, type RunningServer } from '../../../src/http/node'
import { logger, makeBackend } from '../../support/backend'
import { deleteKeys, randomPrefix } from '../../support/redis'
import { eventually } from '../../support/wait'
import { TestWorker } from './worker'

interface Instance {
  app: ReturnType<typeof createApp>
  server: RunningServer
}

/** What a case opened, closed after it; `redis` holds the key prefixes it wrote under, deleted once its backends are closed. */
const open: { instances: Instance[]; backends: Backend[]; workers: TestWorker[]; redis: { url: string; prefix: string }[] } = { instances: [], backends: [], workers: [], redis: [] }

async function startInstance(backend: Backend, config: Partial<Config> = {}): Promise<Instance> {
  const app = createApp({ backend, config: { log_level: 'silent', ...config }, logger })
  const server = await serve(app, { host: '127.0.0.1', port: 0 })
  const instance = { app, server }
  open.instances.push(instance)
  return instance
}

type Json = Record<string, any>
const post = async (instance: Instance, path: string, body: Json, headers: Record<string, string> = {}) => {
  const response = await fetch(instance.server.url + path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })
  return { status: response.status, body: (await response.json()) as Json }
}
const get = async (instance: Instance, path: string) => (await (await fetch(instance.server.url + path)).json()) as Json

afterEach(async () => {
  for (const worker of open.workers.splice(0)) await worker.kill()
  for (const { server, app } of open.instances.splice(0)) {
    await server.stop()
    await app.decorator.workerService.stop()
  }
  for (const backend of open.backends.splice(0)) await backend.close()
  for (const { url, prefix } of open.redis.splice(0)) await deleteKeys(url, prefix)
})

function scaleOutCases(makeSharedBackends: () => Promise<[Backend, Backend]>): void {
  it('dispatches a job created through instance A to a worker connected to instance B', async () => {
    const [first, second] = await makeSharedBackends()
    const a = await startInstance(first)
    const b = await startInstance(second)
    const worker = await TestWorker.connect(b.server.url, { agentName: `scale-${randomUUID()}` })
    open.workers.push(worker)
    const created = await post(a, '/v2/agent/dispatch', { meetingId: 'room-x', agentId: worker.options.agentName })
    expect(created.status).toBe(200)
    const jobId = created.body.data.jobId
    const assignment = await worker.waitForAssignment(jobId)
    expect(assignment.room_id).toBe('room-x')
    expect(worker.protocolErrors).toEqual([])
    await eventually(async () => (await get(a, `/jobs/${jobId}`)).state === 'running', 5000, 'running seen through A')
    // Terminating through A reaches the socket held by B.
    const deleted = await fetch(`${a.server.url}/jobs/${jobId}`, { method: 'DELETE' })
    expect(deleted.status).toBe(200)
    expect(await worker.waitFor((frame) => frame.type === 'job_termination')).toEqual({ type: 'job_termination', job_id: jobId, reason: 'terminated by request' })
    expect((await get(b, `/jobs/${jobId}`)).state).toBe('cancelled')
  })

  it('closes the old socket on instance A when the worker re-registers through instance B', async () => {
    const [first, second] = await makeSharedBackends()
    const a = await startInstance(first)
    const b = await startInstance(second)
    const workerId = `moving-${randomUUID()}`
    const before = await TestWorker.connect(a.server.url, { workerId })
    const after = await TestWorker.connect(b.server.url, { workerId })
    open.workers.push(before, after)
    expect((await before.closed).code).toBe(4000)
    const created = await post(a, '/jobs', { agent_name: 'voice-agent', room_id: 'r' })
    expect(created.status).toBe(201)
    expect(created.body.worker_id).toBe(workerId)
    await after.waitForAssignment(created.body.id)
  })

  it('serves a job queued through instance A with a worker on instance B once its slot frees', async () => {
    const [first, second] = await makeSharedBackends()
    const backlog = { job_queue_max: 10 }
    const a = await startInstance(first, backlog)
    const b = await startInstance(second, backlog)
    const worker = await TestWorker.connect(b.server.url, { agentName: `queue-${randomUUID()}`, maxProcesses: 1 })
    open.workers.push(worker)
    const running = await post(a, '/jobs', { agent_name: worker.options.agentName, room_id: 'first' })
    expect(running.status).toBe(201)
    const queued = await post(a, '/jobs', { agent_name: worker.options.agentName, room_id: 'second' })
    expect(queued.status).toBe(202)
    expect(queued.body.state).toBe('pending')
    // The slot frees on B, which serves the job A queued.
    worker.update(running.body.id, 'completed')
    await worker.waitForAssignment(queued.body.id)
    await eventually(async () => (await get(a, `/jobs/${queued.body.id}`)).state === 'running', 5000, 'queued job running, seen through A')
  })

  it('answers a VideoSDK dispatch waiting on instance A when a worker on instance B takes its queued job', async () => {
    const [first, second] = await makeSharedBackends()
    const backlog = { job_queue_max: 10 }
    const a = await startInstance(first, backlog)
    const b = await startInstance(second, backlog)
    const agentName = `wait-${randomUUID()}`
    const waiting = post(a, '/v2/agent/dispatch', { meetingId: 'room-w', agentId: agentName })
    await eventually(async () => (await get(a, `/jobs?agent_name=${agentName}&state=pending`)).jobs.length === 1, 5000, 'job queued')
    const worker = await TestWorker.connect(b.server.url, { agentName })
    open.workers.push(worker)
    const answer = await waiting
    expect(answer.status).toBe(200)
    expect(answer.body.data.status).toBe('assigned')
    await worker.waitForAssignment(answer.body.data.jobId)
  })

  it('answers a VideoSDK dispatch and its retry through the other instance once a worker takes their one queued job', async () => {
    const [first, second] = await makeSharedBackends()
    const backlog = { job_queue_max: 10, dispatch_timeout_ms: 5000 }
    const a = await startInstance(first, backlog)
    const b = await startInstance(second, backlog)
    const agentName = `retry-${randomUUID()}`
    const key = { 'idempotency-key': `k-${randomUUID()}` }
    const original = post(a, '/v2/agent/dispatch', { meetingId: 'room-r', agentId: agentName }, key)
    await eventually(async () => (await get(a, `/jobs?agent_name=${agentName}&state=pending`)).jobs.length === 1, 5000, 'job queued')
    const retry = post(b, '/v2/agent/dispatch', { meetingId: 'room-r', agentId: agentName }, key)
    await Bun.sleep(100)
    const worker = await TestWorker.connect(a.server.url, { agentName })
    open.workers.push(worker)
    const connectedAt = Date.now()
    const [answer, retried] = await Promise.all([original, retry])
    // Both at once, not at the retry's deadline.
    expect(Date.now() - connectedAt).toBeLessThan(2000)
    expect([answer.status, retried.status]).toEqual([200, 200])
    expect(retried.body.data.jobId).toBe(answer.body.data.jobId)
    await worker.waitForAssignment(answer.body.data.jobId)
    expect(worker.assignments).toHaveLength(1)
  })

  it('gives the job of an idempotency key retried through the other instance, and 409 for another body', async () => {
    const [first, second] = await makeSharedBackends()
    const a = await startInstance(first)
    const b = await startInstance(second)
    const worker = await TestWorker.connect(b.server.url, { agentName: `idem-${randomUUID()}` })
    open.workers.push(worker)
    const body = { agent_name: worker.options.agentName, room_id: 'room-i', metadata: { order: 17 } }
    const key = { 'idempotency-key': `retry-${randomUUID()}` }
    const created = await post(a, '/jobs', body, key)
    expect(created.status).toBe(201)
    const retried = await post(b, '/jobs', body, key)
    expect(retried.body.id).toBe(created.body.id)
    const conflicting = await post(b, '/jobs', { ...body, room_id: 'room-j' }, key)
    expect(conflicting.status).toBe(409)
    expect(conflicting.body.error.message).toContain(created.body.id)
    expect(worker.assignments).toHaveLength(1)
  })
}

describe('two instances on one memory backend', () => {
  scaleOutCases(async () => {
    const backend = await makeBackend('memory')
    open.backends.push(backend)
    return [backend, backend]
  })
})

describe.if(BUILT_IN_BACKENDS.includes('redis'))('two instances on one Redis', () => {
  const shared = async (): Promise<[Backend, Backend, string]> => {
    const options = { redis_url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', redis_prefix: randomPrefix() }
    const backends: [Backend, Backend] = [await makeBackend('redis', options), await makeBackend('redis', options)]
    open.backends.push(...backends)
    open.redis.push({ url: options.redis_url, prefix: options.redis_prefix })
    return [...backends, options.redis_prefix]
  }
  scaleOutCases(async () => (await shared()).slice(0, 2) as [Backend, Backend])

  it('relays the ask, the answer and the assignment in-process to a worker on the same instance, and over Redis to one on the other', async () => {
    const [first, second, prefix] = await shared()
    const a = await startInstance(first)
    const b = await startInstance(second)
    const relayed: string[] = []
    const listener = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379')
    try {
      await listener.psubscribe(`${prefix}:event:workers:*`)
      listener.on('pmessage', (_pattern, _channel, message: string) => relayed.push((JSON.parse(message) as { kind: string }).kind))
      const [near, far] = [`near-${randomUUID()}`, `far-${randomUUID()}`]
      const local = await TestWorker.connect(a.server.url, { agentName: near })
      const remote = await TestWorker.connect(b.server.url, { agentName: far })
      open.workers.push(local, remote)
      const here = await post(a, '/jobs', { agent_name: near, room_id: 'r' })
      await local.waitForAssignment(here.body.id)
      await Bun.sleep(100)
      expect(relayed).toEqual([])
      const there = await post(a, '/jobs', { agent_name: far, room_id: 'r' })
      await remote.waitForAssignment(there.body.id)
      await eventually(() => relayed.length === 3, 5000, 'three relays over Redis')
      expect(relayed).toEqual(['ask', 'answer', 'assign'])
    } finally {
      listener.disconnect()
    }
  })
})
