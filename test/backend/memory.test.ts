import { afterEach, describe, expect, it } from 'bun:test'
import { randomUUID } from 'node:crypto'
import type { Backend, Client, EntityId, Envelope, JobRecord } from '../../src/backend/index'
import { PluginError } from '../../src/backend/index'
import { testBackend } from './conformance'
import { makeBackend } from '../support/backend'
import { BUN, runToEnd } from '../support/process'
import { eventually } from '../support/wait'

testBackend(() => makeBackend('memory'))

const owner: Client = { id: 'owner', groups: [] }
const agent = (): EntityId => ({ uid: randomUUID(), name: null, role: 'agent' })
const soon = () => ({ deadline: Date.now() + 5000 })
/** A retention setting in days that lasts `ms` milliseconds. */
const days = (ms: number) => ms / 86_400_000

function envelope(src: EntityId, dest: EntityId): Envelope {
  const tag = randomUUID()
  const raw = JSON.stringify({ header: { src, dest, tag, label: null, kind: 'request', protocol_version: '1' }, body: { kind: 'ping-request' } })
  return { raw, src, dest, tag, label: null, kind: 'request' }
}

function job(id: string): JobRecord {
  const now = Date.now()
  return { id, agentName: 'voice', roomId: 'room', owner: 'tenant', metadata: null, roomOptions: null, state: 'pending', workerId: null, history: [], createdAt: now, updatedAt: now }
}

describe('memory retention', () => {
  const opened: Backend[] = []
  const open = async (options: Record<string, unknown>) => {
    const backend = await makeBackend('memory', options)
    opened.push(backend)
    return backend
  }
  afterEach(async () => {
    for (const backend of opened.splice(0)) await backend.close()
  })

  it('forgets an idle mailbox with its queue after mailbox_expiration_d, and the counts follow without anyone asking for it', async () => {
    const { mailboxes } = await open({ mailbox_expiration_d: days(300) })
    const [sender, idle] = [agent(), agent()]
    await mailboxes.create(owner, sender, null)
    await mailboxes.create(owner, idle, ['mod.Idle'])
    await mailboxes.put(owner, envelope(sender, idle))
    expect(await mailboxes.counts()).toEqual({ mailboxes: 2, queued: 1 })
    expect(await mailboxes.discover(owner, 'mod.Idle', false)).toEqual([idle.uid])
    // Only the sweep can bring the counts down: nothing reads either mailbox meanwhile.
    await eventually(async () => (await mailboxes.counts()).mailboxes === 0, 5000, 'both mailboxes swept')
    expect(await mailboxes.counts()).toEqual({ mailboxes: 0, queued: 0 })
    expect(await mailboxes.status(owner, idle)).toBe('MISSING')
    expect(await mailboxes.discover(owner, 'mod.Idle', false)).toEqual([])
    expect(await mailboxes.stats(owner, sender)).toEqual({ incoming: 0, outgoing: 0, completed: 0, in_progress: 0, queued: 0 })
    // A new mailbox under the same id starts empty.
    await mailboxes.create(owner, idle, null)
    expect(await mailboxes.take(owner, idle, { deadline: Date.now() + 20 })).toBeNull()
  })

  it('keeps a mailbox and its queue for as long as it is used, however long past the retention', async () => {
    const { mailboxes } = await open({ mailbox_expiration_d: days(300) })
    const [sender, receiver] = [agent(), agent()]
    await mailboxes.create(owner, sender, null)
    await mailboxes.create(owner, receiver, null)
    const kept = envelope(sender, receiver)
    await mailboxes.put(owner, kept)
    const until = Date.now() + 1200
    while (Date.now() < until) {
      // The receiver sends and the sender receives: each one's activity keeps it.
      const reply = envelope(receiver, sender)
      await mailboxes.put(owner, reply)
      expect(await mailboxes.take(owner, sender, { deadline: Date.now() + 100 })).toBe(reply.raw)
    }
    expect(await mailboxes.status(owner, receiver)).toBe('ACTIVE')
    expect(await mailboxes.status(owner, sender)).toBe('ACTIVE')
    expect(await mailboxes.take(owner, receiver, soon())).toBe(kept.raw)
    expect(await mailboxes.counts()).toEqual({ mailboxes: 2, queued: 0 })
  })

  it('remembers a gravestone for gravestone_expiration_d, then forgets it', async () => {
    const { mailboxes } = await open({ gravestone_expiration_d: days(400) })
    const id = agent()
    await mailboxes.create(owner, id, null)
    await mailboxes.terminate(owner, id)
    const terminatedAt = Date.now()
    expect(await mailboxes.status(owner, id)).toBe('TERMINATED')
    await mailboxes.create(owner, id, null)
    await eventually(async () => (await mailboxes.status(owner, id)) === 'MISSING', 5000, 'the gravestone forgotten')
    expect(Date.now() - terminatedAt).toBeGreaterThanOrEqual(390)
    await mailboxes.create(owner, id, null)
    expect(await mailboxes.status(owner, id)).toBe('ACTIVE')
  })

  it('keeps only the newest finished_jobs_kept finished jobs and never drops one that is still running', async () => {
    const { workers } = await open({ finished_jobs_kept: 2 })
    const ids = ['a', 'b', 'c', 'd', 'running']
    for (const id of ids) await workers.createJob(job(id))
    await workers.transitionJob('running', { from: ['pending'], to: 'running' })
    for (const [id, to] of [['a', 'completed'], ['b', 'failed'], ['c', 'cancelled']] as const) {
      expect(await workers.transitionJob(id, { from: ['pending'], to })).not.toBeNull()
    }
    expect(await workers.getJob('a')).toBeNull()
    expect((await workers.getJob('b'))?.state).toBe('failed')
    expect((await workers.getJob('c'))?.state).toBe('cancelled')
    await workers.transitionJob('d', { from: ['pending'], to: 'completed' })
    expect(await workers.getJob('b')).toBeNull()
    expect((await workers.listJobs({})).map((kept) => kept.id).sort()).toEqual(['c', 'd', 'running'])
    expect((await workers.getJob('running'))?.state).toBe('running')
    // A finished job created as such counts too.
    await workers.createJob({ ...job('imported'), state: 'completed' })
    expect(await workers.getJob('c')).toBeNull()
    expect((await workers.listJobs({})).map((kept) => kept.id).sort()).toEqual(['d', 'imported', 'running'])
  })

  it('refuses a finished_jobs_kept below 1, naming the option', async () => {
    const failure = await makeBackend('memory', { finished_jobs_kept: 0 }).catch((error: unknown) => error)
    expect(failure).toBeInstanceOf(PluginError)
    expect((failure as Error).message).toContain('"finished_jobs_kept"')
  })

  it('lets the process exit while the sweep timer is armed', async () => {
    const script = `
      const { createBackend, loadPlugin } = await import('./src/backend/index.ts')
      const { createLogger } = await import('./src/logger.ts')
      const backend = await createBackend(await loadPlugin('memory'), { mailbox_expiration_d: 1 }, { logger: createLogger('silent') })
      await backend.mailboxes.create({ id: 'c', groups: [] }, { uid: 'u', name: null, role: 'agent' }, null)
      console.log('created')
    `
    const started = Date.now()
    const result = await runToEnd([BUN, '-e', script])
    expect(result.stdout.trim()).toBe('created')
    expect(result.code).toBe(0)
    expect(Date.now() - started).toBeLessThan(10_000)
  })
})
