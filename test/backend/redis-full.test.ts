/**
 * A private Redis (never the shared one) at its maxmemory, with the policy
 * noeviction: a write that would grow it is refused with 507 and the reason,
 * nothing of it stored; receivers still drain it, and once they have, sends
 * are accepted again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import Redis from 'ioredis'
import { agentId, bodies, messageJson, userId } from '../support/academy'
import { serveBackend, type TestServer } from '../support/app'
import { makeBackend } from '../support/backend'
import type { Backend, JobRecord, WorkerRecord } from '../../src/backend/index'
import { StoreFullError } from '../../src/errors'
import { fillUntilRefused, expectAllDelivered, mailboxStats } from '../support/full'
import { rawRequest } from '../support/http'
import { eventually } from '../support/wait'
import { spawnRedisServer } from '../support/redis'

const binary = Bun.which('redis-server')
if (!binary) {
  if (process.env.CI === 'true') throw new Error('the full-Redis test needs redis-server on PATH')
  console.warn('skipping the full-Redis test: no redis-server binary on PATH')
}

describe.skipIf(!binary)('a Redis at its maxmemory', () => {
  let redis: Awaited<ReturnType<typeof spawnRedisServer>> = null
  let running: TestServer
  const ADMIN = 'admin-secret'
  beforeAll(async () => {
    redis = await spawnRedisServer(binary!, undefined, ['--maxmemory', '4mb', '--maxmemory-policy', 'noeviction'])
    if (!redis) throw new Error('redis-server did not start')
    // Delivered messages stay in their instance's in-flight hash for the redelivery window: a short one here.
    const backend = await makeBackend('redis', { redis_url: redis.url, redis_prefix: 'full', redelivery_window_ms: 100 })
    running = await serveBackend(backend, { admin_token: ADMIN })
  })
  afterAll(async () => {
    await running?.close()
    redis?.process.kill('SIGKILL')
  })

  /** Runs `work` on a backend of its own on the private Redis; `limit` sets Redis's maxmemory, which is set back to 4 MB after. */
  const onOwnBackend = async (options: Record<string, unknown>, work: (backend: Backend, limit: (value: '64kb' | '4mb') => Promise<unknown>) => Promise<void>) => {
    const backend = await makeBackend('redis', { redis_url: redis!.url, ...options })
    const admin = new Redis(redis!.url)
    try {
      await work(backend, (value) => admin.config('SET', 'maxmemory', value))
    } finally {
      await admin.config('SET', 'maxmemory', '4mb')
      admin.disconnect()
      await backend.close()
    }
  }
  /** What a write ends with: 'stored', or the error it was refused with. */
  const outcome = (work: Promise<unknown>) => work.then(() => 'stored', (error: unknown) => error)

  it('refuses sends with 507 and the reason, stores nothing of them, and still lets receivers drain it', async () => {
    const [user, agent] = [userId(), agentId()]
    const { accepted, refused } = await fillUntilRefused(running.url, user, agent, 200)
    expect(refused.status).toBe(507)
    expect(refused.headers['content-type']).toStartWith('text/plain')
    expect(refused.text).toContain('Redis is out of memory')
    expect(accepted.length).toBeGreaterThan(5)

    // The refused request left no trace: the counts are those of the accepted ones.
    const stats = () => mailboxStats(running.url, agent)
    const before = await stats()
    expect(Object.values(before)).toContain(accepted.length)

    // Held over its maxmemory (a refusal at the edge is transient: the refused command's own bytes count while it waits),
    // every write that would grow Redis is refused alike, in each surface's own form.
    const admin = new Redis(redis!.url)
    await admin.config('SET', 'maxmemory', '64kb')
    const small = await rawRequest(`${running.url}/message`, { method: 'PUT', body: bodies.send(messageJson(user, agent)) })
    expect(small.status).toBe(507)
    const created = await rawRequest(`${running.url}/mailbox`, { method: 'POST', body: bodies.create(agentId()) })
    expect(created.status).toBe(507)
    expect(created.text).toContain('Redis is out of memory')
    expect(await stats()).toEqual(before)
    const workspace = await fetch(`${running.url}/workspaces`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'planner', role: 'lead' }) })
    expect(workspace.status).toBe(507)
    expect(JSON.stringify(await workspace.json())).toContain('Redis is out of memory')

    // A listener still gets every accepted message, in order, from the full Redis.
    await expectAllDelivered(running.url, agent, accepted)

    // Drained, and under its maxmemory again once the redelivery window has let go of what was delivered: sends are accepted again.
    await admin.config('SET', 'maxmemory', '4mb')
    admin.disconnect()
    let again = 0
    await eventually(async () => {
      again = (await rawRequest(`${running.url}/message`, { method: 'PUT', body: bodies.send(messageJson(user, agent)) })).status
      return again !== 507
    }, 3000, 'a send accepted again')
    expect(again).toBe(200)
  }, 60_000)

  it("answers a registered agent's heartbeat and re-registration over HTTP while over its maxmemory", async () => {
    const call = (path: string, token: string, body: unknown) =>
      fetch(`${running.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
    const created = (await (await call('/workspaces', ADMIN, { name: 'researcher' })).json()) as { id: string; auth_token: string }
    expect((await call('/registry/register', created.auth_token, { id: created.id, url: 'http://93.184.216.34/a2a' })).status).toBe(200)
    const admin = new Redis(redis!.url)
    try {
      await admin.config('SET', 'maxmemory', '64kb')
      expect((await call('/registry/heartbeat', created.auth_token, { workspace_id: created.id, active_tasks: 3 })).status).toBe(200)
      expect((await call('/registry/register', created.auth_token, { id: created.id, url: 'http://93.184.216.35/a2a' })).status).toBe(200)
    } finally {
      await admin.config('SET', 'maxmemory', '4mb')
      admin.disconnect()
    }
    const seen = await fetch(`${running.url}/workspaces/${created.id}`, { headers: { authorization: `Bearer ${ADMIN}` } })
    expect(await seen.json()).toMatchObject({ url: 'http://93.184.216.35/a2a', active_tasks: 3 })
  })

  it('takes back a message given back (a listener that went away before it was written) while Redis is over its maxmemory', async () => {
    await onOwnBackend({ redis_prefix: 'give-back' }, async (backend, limit) => {
      const owner = { id: 'owner', groups: [] }
      const box = { uid: crypto.randomUUID(), name: null, role: 'agent' as const }
      await backend.mailboxes.create(owner, box, null)
      const raw = messageJson(userId(), box)
      await backend.mailboxes.put(owner, { raw, src: box, dest: box, tag: 't', label: null, kind: 'request' })
      await limit('64kb')
      expect(await backend.mailboxes.take(owner, box, { deadline: Date.now() + 1000 })).toBe(raw)
      await backend.mailboxes.restore(box, raw)
      expect(await backend.mailboxes.take(owner, box, { deadline: Date.now() + 1000 })).toBe(raw)
    })
  })

  it('refuses new jobs and workers while over its maxmemory, and still lets a job end, its slot go and a worker report', async () => {
    await onOwnBackend({ redis_prefix: 'jobs' }, async (backend, limit) => {
      const now = Date.now()
      const worker: WorkerRecord = {
        id: crypto.randomUUID(), agentName: 'voice', owner: 'tenant', status: 'available', draining: false, maxProcesses: 4, loadThreshold: 1, reportedLoad: 0,
        jobs: [], reserved: [], instance: 'i', connection: 'c', capabilities: [], registeredAt: now, disconnectedAt: null,
      }
      const job = (id: string): JobRecord => ({
        id, agentName: 'voice', roomId: 'room', owner: 'tenant', metadata: null, roomOptions: null, state: 'pending', workerId: null, history: [{ state: 'pending', at: now }], createdAt: now, updatedAt: now,
      })
      await backend.workers.upsertWorker(worker)
      await backend.workers.createJob(job('running'))
      expect(await backend.workers.reserveSlot(worker.id, 'running')).toBe(true)
      expect(await backend.workers.assignSlot(worker.id, 'running')).toBe(true)
      expect(await backend.workers.transitionJob('running', { from: ['pending'], to: 'assigned', workerId: worker.id })).not.toBeNull()
      await limit('64kb')

      expect(await outcome(backend.workers.createJob(job('new')))).toBeInstanceOf(StoreFullError)
      expect(await backend.workers.getJob('new')).toBeNull()
      expect(await outcome(backend.workers.upsertWorker({ ...worker, id: crypto.randomUUID() }))).toBeInstanceOf(StoreFullError)
      // What frees room, or only overwrites, still runs: the job ends, its slot goes, the worker's status follows.
      expect((await backend.workers.transitionJob('running', { from: ['assigned'], to: 'completed' }))?.state).toBe('completed')
      await backend.workers.releaseSlot(worker.id, 'running')
      expect((await backend.workers.getWorker(worker.id))?.jobs).toEqual([])
      expect((await backend.workers.updateWorker(worker.id, 'c', { status: 'draining', reportedLoad: 1 }))?.status).toBe('draining')
      expect((await backend.workers.listJobs({ state: 'completed' })).map((stored) => stored.id)).toEqual(['running'])
      // A worker that registers again under its id (a reconnect) takes its record over, and an operator may drain it:
      // both only overwrite, so a worker back from a blip can serve jobs while Redis is full.
      expect((await backend.workers.upsertWorker({ ...worker, connection: 'c2', instance: 'j', registeredAt: now + 1 }))?.connection).toBe('c')
      expect(await backend.workers.getWorker(worker.id)).toMatchObject({ connection: 'c2', instance: 'j', status: 'available', registeredAt: now + 1 })
      expect((await backend.workers.setDraining(worker.id, true))?.draining).toBe(true)
      expect((await backend.workers.listWorkers('voice')).map((stored) => stored.id)).toEqual([worker.id])
    })
  })

  it("still takes a registered agent's heartbeats, new URL and token rotation while over its maxmemory, and refuses a new workspace", async () => {
    await onOwnBackend({ redis_prefix: 'agents' }, async (backend, limit) => {
      const now = Date.now()
      const workspace = {
        id: crypto.randomUUID(), name: 'planner', role: null, parentId: null, url: 'http://127.0.0.1:9/a2a', agentCard: { name: 'planner' }, deliveryMode: 'push' as const,
        inboundSecret: 's', createdAt: now, removedAt: null, lastHeartbeatAt: now, errorRate: 0, activeTasks: 0, currentTask: null, uptimeSeconds: 1,
      }
      expect(await backend.agents.createWorkspace(workspace, 'digest')).toBe(true)
      await limit('64kb')
      const patched = await backend.agents.updateWorkspace(workspace.id, { lastHeartbeatAt: now + 1000, activeTasks: 2, url: 'http://127.0.0.1:10/a2a' })
      expect(patched).toMatchObject({ lastHeartbeatAt: now + 1000, activeTasks: 2, url: 'http://127.0.0.1:10/a2a', name: 'planner' })
      expect(await outcome(backend.agents.createWorkspace({ ...workspace, id: crypto.randomUUID() }, 'other'))).toBeInstanceOf(StoreFullError)
      // A token rotation revokes the old token first (which frees room), so it runs too.
      expect(await backend.agents.rotateToken(workspace.id, 'rotated')).toBe(true)
      await limit('4mb')
      expect(await backend.agents.workspaceOfToken('digest')).toBeNull()
      expect(await backend.agents.workspaceOfToken('rotated')).toBe(workspace.id)
      expect(await backend.agents.getWorkspace(workspace.id)).toMatchObject({ lastHeartbeatAt: now + 1000, url: 'http://127.0.0.1:10/a2a' })
      expect(await backend.agents.workspaceOfToken('other')).toBeNull()
    })
  })

  it('refuses a new mailbox while over its maxmemory even when the create first settles an expired one', async () => {
    await onOwnBackend({ redis_prefix: 'expiring', mailbox_expiration_d: 0.2 / 86_400 }, async (backend, limit) => {
      const owner = { id: 'owner', groups: [] }
      const mailbox = () => ({ uid: crypto.randomUUID(), name: null, role: 'agent' as const })
      await backend.mailboxes.create(owner, mailbox(), null)
      // Idle past its expiry: the next create settles its entry in the counts, a write that frees memory.
      await Bun.sleep(400)
      await limit('64kb')
      const fresh = mailbox()
      expect(await outcome(backend.mailboxes.create(owner, fresh, null))).toBeInstanceOf(StoreFullError)
      await limit('4mb')
      expect(await backend.mailboxes.status(owner, fresh)).toBe('MISSING')
    })
  })
})
