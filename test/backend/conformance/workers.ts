/**
 * The WorkerStore contract: registrations, capacity slots and the job state
 * machine, written once and run against every backend plugin on a fresh
 * backend per test.
 */
import { afterEach, describe, expect, it } from 'bun:test'
import { randomUUID } from 'node:crypto'
import type { Backend, JobRecord, WorkerRecord } from '../../../src/backend/index'
import { reserveAny } from '../../../src/backend/workers'
import type { MakeBackend } from '../conformance'

/** A connected worker record, with `overrides`. */
export function worker(overrides: Partial<WorkerRecord> = {}): WorkerRecord {
  return {
    id: randomUUID(),
    agentName: 'voice-agent',
    owner: 'tenant-a',
    status: 'available',
    draining: false,
    maxProcesses: 4,
    loadThreshold: 1,
    reportedLoad: 0,
    jobs: [],
    reserved: [],
    instance: 'instance-1',
    connection: randomUUID(),
    capabilities: ['room', 'voice'],
    registeredAt: Date.now(),
    disconnectedAt: null,
    ...overrides,
  }
}

/** A pending job record, with `overrides`. */
export function job(overrides: Partial<JobRecord> = {}): JobRecord {
  const now = Date.now()
  return {
    id: randomUUID(),
    agentName: 'voice-agent',
    roomId: 'room-1',
    owner: 'tenant-a',
    metadata: null,
    roomOptions: null,
    state: 'pending',
    workerId: null,
    history: [{ state: 'pending', at: now }],
    createdAt: now,
    updatedAt: now,
    ...overrides,
  }
}

export function workerStoreCases(makeBackend: MakeBackend): void {
  describe('WorkerStore', () => {
    let backend: Backend | null = null
    const open = async (options?: Record<string, unknown>) => (backend = await makeBackend(options)).workers
    afterEach(async () => {
      await backend?.close()
      backend = null
    })

    describe('workers', () => {
      it('stores a worker and returns it field for field', async () => {
        const store = await open()
        const record = worker({ reportedLoad: 0.25, capabilities: ['room', 'stt'], loadThreshold: 0.75 })
        expect(await store.upsertWorker(record)).toBeNull()
        expect(await store.getWorker(record.id)).toEqual(record)
      })

      it('returns null for an unknown worker', async () => {
        const store = await open()
        expect(await store.getWorker('nobody')).toBeNull()
      })

      it('lists every worker, or those of one agent name', async () => {
        const store = await open()
        const a = worker({ agentName: 'a' })
        const b = worker({ agentName: 'b' })
        await store.upsertWorker(a)
        await store.upsertWorker(b)
        expect((await store.listWorkers()).map((w) => w.id).sort()).toEqual([a.id, b.id].sort())
        expect((await store.listWorkers('b')).map((w) => w.id)).toEqual([b.id])
        expect(await store.listWorkers('c')).toEqual([])
      })

      it('lists a worker under its new agent name once it registers under another, and under none once deleted', async () => {
        const store = await open()
        const first = worker({ agentName: 'a' })
        await store.upsertWorker(first)
        const moved = worker({ id: first.id, agentName: 'b' })
        await store.upsertWorker(moved)
        expect(await store.listWorkers('a')).toEqual([])
        expect((await store.listWorkers('b')).map((w) => w.id)).toEqual([first.id])
        await store.deleteWorker(first.id, moved.connection)
        expect(await store.listWorkers('b')).toEqual([])
        expect(await store.listWorkers()).toEqual([])
      })

      it('hands out copies: changing a returned worker changes nothing stored', async () => {
        const store = await open()
        const stored = worker()
        await store.upsertWorker(stored)
        const [listed] = await store.listWorkers(stored.agentName)
        listed!.capabilities.push('changed')
        listed!.jobs.push('not-a-job')
        listed!.status = 'offline'
        const again = (await store.getWorker(stored.id))!
        expect(again.capabilities).toEqual(stored.capabilities)
        expect(again.jobs).toEqual([])
        expect(again.status).toBe('available')
      })

      it('keeps jobs, reservations and the drain flag when a registration is superseded', async () => {
        const store = await open()
        const first = worker()
        await store.upsertWorker(first)
        expect(await store.reserveSlot(first.id, 'job-1')).toBe(true)
        expect(await store.assignSlot(first.id, 'job-1')).toBe(true)
        expect(await store.reserveSlot(first.id, 'job-2')).toBe(true)
        await store.setDraining(first.id, true)
        const second = worker({ id: first.id, connection: 'new-socket', instance: 'instance-2', maxProcesses: 8 })
        const previous = await store.upsertWorker(second)
        expect(previous?.connection).toBe(first.connection)
        const stored = await store.getWorker(first.id)
        expect(stored?.connection).toBe('new-socket')
        expect(stored?.instance).toBe('instance-2')
        expect(stored?.maxProcesses).toBe(8)
        expect(stored?.jobs).toEqual(['job-1'])
        expect(stored?.reserved).toEqual(['job-2'])
        expect(stored?.draining).toBe(true)
      })

      it('patches a worker only while the expected connection holds it', async () => {
        const store = await open()
        const record = worker()
        await store.upsertWorker(record)
        expect(await store.updateWorker(record.id, 'other-socket', { reportedLoad: 0.9 })).toBeNull()
        const patched = await store.updateWorker(record.id, record.connection, { reportedLoad: 0.5, status: 'draining' })
        expect(patched?.reportedLoad).toBe(0.5)
        expect(patched?.status).toBe('draining')
        expect((await store.getWorker(record.id))?.reportedLoad).toBe(0.5)
      })

      it('patches a disconnected worker only when asked for a disconnected one (connection null)', async () => {
        const store = await open()
        const record = worker()
        await store.upsertWorker(record)
        expect(await store.updateWorker(record.id, null, { status: 'offline' })).toBeNull()
        const gone = await store.updateWorker(record.id, record.connection, { connection: null, instance: null, disconnectedAt: 123 })
        expect(gone?.connection).toBeNull()
        expect(gone?.disconnectedAt).toBe(123)
        expect((await store.updateWorker(record.id, null, { status: 'offline' }))?.status).toBe('offline')
      })

      it('returns null when patching an unknown worker', async () => {
        const store = await open()
        expect(await store.updateWorker('nobody', null, { status: 'offline' })).toBeNull()
        expect(await store.setDraining('nobody', true)).toBeNull()
      })

      it('sets and clears the drain flag whatever the connection', async () => {
        const store = await open()
        const record = worker()
        await store.upsertWorker(record)
        expect((await store.setDraining(record.id, true))?.draining).toBe(true)
        expect((await store.getWorker(record.id))?.draining).toBe(true)
        expect((await store.setDraining(record.id, false))?.draining).toBe(false)
      })

      it('deletes a worker only while the expected connection holds it and returns the removed record', async () => {
        const store = await open()
        const record = worker()
        await store.upsertWorker(record)
        expect(await store.deleteWorker(record.id, 'stale-socket')).toBeNull()
        expect(await store.deleteWorker(record.id, null)).toBeNull()
        expect((await store.deleteWorker(record.id, record.connection))?.id).toBe(record.id)
        expect(await store.getWorker(record.id)).toBeNull()
        expect(await store.deleteWorker(record.id, record.connection)).toBeNull()
      })

      it('deletes a disconnected worker with connection null, returning its jobs', async () => {
        const store = await open()
        const record = worker()
        await store.upsertWorker(record)
        await store.reserveSlot(record.id, 'job-1')
        await store.assignSlot(record.id, 'job-1')
        await store.updateWorker(record.id, record.connection, { connection: null, instance: null, disconnectedAt: Date.now() })
        const removed = await store.deleteWorker(record.id, null)
        expect(removed?.jobs).toEqual(['job-1'])
        expect(await store.getWorker(record.id)).toBeNull()
      })
    })

    describe('capacity slots', () => {
      it('reserves slots up to maxProcesses and no further', async () => {
        const store = await open()
        const record = worker({ maxProcesses: 2, loadThreshold: 1 })
        await store.upsertWorker(record)
        expect(await store.reserveSlot(record.id, 'a')).toBe(true)
        expect(await store.reserveSlot(record.id, 'b')).toBe(true)
        expect(await store.reserveSlot(record.id, 'c')).toBe(false)
        expect((await store.getWorker(record.id))?.reserved.sort()).toEqual(['a', 'b'])
      })

      it('counts assigned jobs and reservations together against the load threshold', async () => {
        const store = await open()
        // 4 processes at threshold 0.5: room while held/4 < 0.5, so two slots.
        const record = worker({ maxProcesses: 4, loadThreshold: 0.5 })
        await store.upsertWorker(record)
        expect(await store.reserveSlot(record.id, 'a')).toBe(true)
        expect(await store.assignSlot(record.id, 'a')).toBe(true)
        expect(await store.reserveSlot(record.id, 'b')).toBe(true)
        expect(await store.reserveSlot(record.id, 'c')).toBe(false)
      })

      it('gives a single-process worker exactly one slot whatever its threshold', async () => {
        const store = await open()
        const record = worker({ maxProcesses: 1, loadThreshold: 0.75 })
        await store.upsertWorker(record)
        expect(await store.reserveSlot(record.id, 'a')).toBe(true)
        expect(await store.reserveSlot(record.id, 'b')).toBe(false)
      })

      it('does not reserve the same job twice on one worker', async () => {
        const store = await open()
        const record = worker()
        await store.upsertWorker(record)
        expect(await store.reserveSlot(record.id, 'a')).toBe(true)
        expect(await store.reserveSlot(record.id, 'a')).toBe(false)
        await store.assignSlot(record.id, 'a')
        expect(await store.reserveSlot(record.id, 'a')).toBe(false)
      })

      it('refuses slots on draining, offline, disconnected and unknown workers', async () => {
        const store = await open()
        const drained = worker()
        const offline = worker({ status: 'offline' })
        const selfDraining = worker({ status: 'draining' })
        const disconnected = worker({ connection: null, instance: null, disconnectedAt: Date.now() })
        for (const record of [drained, offline, selfDraining, disconnected]) await store.upsertWorker(record)
        await store.setDraining(drained.id, true)
        for (const record of [drained, offline, selfDraining, disconnected]) expect(await store.reserveSlot(record.id, 'job')).toBe(false)
        expect(await store.reserveSlot('nobody', 'job')).toBe(false)
      })

      it('turns a reservation into an assignment, and refuses without one', async () => {
        const store = await open()
        const record = worker()
        await store.upsertWorker(record)
        expect(await store.assignSlot(record.id, 'a')).toBe(false)
        await store.reserveSlot(record.id, 'a')
        expect(await store.assignSlot(record.id, 'a')).toBe(true)
        const stored = await store.getWorker(record.id)
        expect(stored?.reserved).toEqual([])
        expect(stored?.jobs).toEqual(['a'])
        expect(await store.assignSlot(record.id, 'a')).toBe(false)
        expect(await store.assignSlot('nobody', 'a')).toBe(false)
      })

      it('releases reservations and assignments, freeing capacity', async () => {
        const store = await open()
        const record = worker({ maxProcesses: 2 })
        await store.upsertWorker(record)
        await store.reserveSlot(record.id, 'a')
        await store.assignSlot(record.id, 'a')
        await store.reserveSlot(record.id, 'b')
        expect(await store.reserveSlot(record.id, 'c')).toBe(false)
        await store.releaseSlot(record.id, 'a')
        await store.releaseSlot(record.id, 'b')
        await store.releaseSlot(record.id, 'never-held')
        await store.releaseSlot('nobody', 'a')
        const stored = await store.getWorker(record.id)
        expect(stored?.jobs).toEqual([])
        expect(stored?.reserved).toEqual([])
        expect(await store.reserveSlot(record.id, 'c')).toBe(true)
      })

      it('never grants more slots than capacity to concurrent reservations', async () => {
        const store = await open()
        const record = worker({ maxProcesses: 3, loadThreshold: 1 })
        await store.upsertWorker(record)
        const results = await Promise.all(Array.from({ length: 20 }, (_, i) => store.reserveSlot(record.id, `job-${i}`)))
        expect(results.filter(Boolean).length).toBe(3)
        expect((await store.getWorker(record.id))?.reserved.length).toBe(3)
      })
    })

    // A dispatch's pick: through the store's own reserveAny where it has one (Redis), else by listing and reserving.
    describe('picking a worker for a job', () => {
      const none = new Set<string>()

      it('reserves a slot on a worker of the name and owner that may take the job, and says none had room', async () => {
        const store = await open()
        const drained = worker()
        const unfit = [drained, worker({ status: 'offline' }), worker({ agentName: 'other-agent' }), worker({ owner: 'tenant-b' }), worker({ maxProcesses: 1 })]
        const fit = worker({ maxProcesses: 2 })
        for (const record of [...unfit, fit]) await store.upsertWorker(record)
        await store.setDraining(drained.id, true)
        // The single-process worker is full.
        expect(await store.reserveSlot(unfit[4]!.id, 'earlier')).toBe(true)
        const first = await reserveAny(store, 'voice-agent', 'tenant-a', 'job-1', none)
        expect(first.registered).toBe(true)
        expect(first.worker?.id).toBe(fit.id)
        expect(first.worker?.connection).toBe(fit.connection)
        expect((await store.getWorker(fit.id))?.reserved).toEqual(['job-1'])
        // The same job is not reserved twice; a second job takes the last slot; then no worker has room.
        expect((await reserveAny(store, 'voice-agent', 'tenant-a', 'job-1', none)).worker).toBeNull()
        expect((await reserveAny(store, 'voice-agent', 'tenant-a', 'job-2', none)).worker?.id).toBe(fit.id)
        expect(await reserveAny(store, 'voice-agent', 'tenant-a', 'job-3', none)).toEqual({ worker: null, registered: true })
        expect((await store.getWorker(fit.id))?.reserved.sort()).toEqual(['job-1', 'job-2'])
        for (const record of unfit) expect((await store.getWorker(record.id))?.reserved).toEqual(record === unfit[4] ? ['earlier'] : [])
      })

      it('leaves out the workers asked, and tells no connected worker from none with room', async () => {
        const store = await open()
        const [a, b] = [worker(), worker()]
        const gone = worker({ connection: null, instance: null, disconnectedAt: Date.now() })
        for (const record of [a, b, gone]) await store.upsertWorker(record)
        for (let i = 0; i < 10; i++) {
          const picked = await reserveAny(store, 'voice-agent', 'tenant-a', `job-${i}`, new Set([a.id]))
          expect(picked.worker?.id).toBe(b.id)
          await store.releaseSlot(b.id, `job-${i}`)
        }
        expect(await reserveAny(store, 'voice-agent', 'tenant-a', 'job', new Set([a.id, b.id]))).toEqual({ worker: null, registered: true })
        expect(await reserveAny(store, 'voice-agent', 'tenant-b', 'job', none)).toEqual({ worker: null, registered: false })
        expect(await reserveAny(store, 'nobody-agent', 'tenant-a', 'job', none)).toEqual({ worker: null, registered: false })
        expect((await store.getWorker(gone.id))?.reserved).toEqual([])
      })

      it('picks at random, weighted by free slots', async () => {
        const store = await open()
        // Free slots: 1 (three of four held) and 3 (none of three held).
        const small = worker({ maxProcesses: 4 })
        const large = worker({ maxProcesses: 3 })
        for (const record of [small, large]) await store.upsertWorker(record)
        for (const held of ['x', 'y', 'z']) expect(await store.reserveSlot(small.id, held)).toBe(true)
        let onLarge = 0
        for (let i = 0; i < 400; i++) {
          const picked = await reserveAny(store, 'voice-agent', 'tenant-a', `job-${i}`, none)
          if (picked.worker?.id === large.id) onLarge++
          await store.releaseSlot(picked.worker!.id, `job-${i}`)
        }
        // Expected 300 of 400 (σ ≈ 8.7); an unweighted pick would give 200.
        expect(onLarge).toBeGreaterThan(250)
        expect(onLarge).toBeLessThan(350)
      })
    })

    describe('jobs', () => {
      it('keeps at most finished_jobs_kept finished jobs, the newest, and never drops one that is still running', async () => {
        const store = await open({ finished_jobs_kept: 2 })
        const [a, b, c, d, running] = [job(), job(), job(), job(), job()]
        for (const record of [a, b, c, d, running]) await store.createJob(record)
        await store.transitionJob(running.id, { from: ['pending'], to: 'running' })
        for (const [record, to] of [[a, 'completed'], [b, 'failed'], [c, 'cancelled']] as const) {
          expect(await store.transitionJob(record.id, { from: ['pending'], to })).not.toBeNull()
        }
        expect(await store.getJob(a.id)).toBeNull()
        expect((await store.getJob(b.id))?.state).toBe('failed')
        expect((await store.getJob(c.id))?.state).toBe('cancelled')
        await store.transitionJob(d.id, { from: ['pending'], to: 'completed' })
        expect(await store.getJob(b.id)).toBeNull()
        const ids = async () => (await store.listJobs({})).map((kept) => kept.id).sort()
        expect(await ids()).toEqual([c.id, d.id, running.id].sort())
        expect((await store.getJob(running.id))?.state).toBe('running')
        // A job stored finished counts too.
        const imported = job({ state: 'completed' })
        await store.createJob(imported)
        expect(await store.getJob(c.id)).toBeNull()
        expect(await ids()).toEqual([d.id, imported.id, running.id].sort())
        // A finished job stored again keeps its place: it does not push out the other one kept.
        await store.createJob({ ...imported, metadata: { again: true } })
        expect(await ids()).toEqual([d.id, imported.id, running.id].sort())
        // Lists by state see the same: the dropped ones are in none.
        expect((await store.listJobs({ state: 'completed' })).map((kept) => kept.id).sort()).toEqual([d.id, imported.id].sort())
        expect(await store.listJobs({ state: 'failed' })).toEqual([])
        expect(await store.listJobs({ state: 'cancelled' })).toEqual([])
        expect((await store.listJobs({ state: 'running' })).map((kept) => kept.id)).toEqual([running.id])
      })

      it('keeps the newest finished jobs that fit in finished_jobs_max_mb together, and never drops one still running', async () => {
        const store = await open({ finished_jobs_max_mb: 1 })
        const padded = (state: JobRecord['state']) => job({ metadata: { pad: 'm'.repeat(250 * 1024) }, state, history: [{ state, at: Date.now() }] })
        const running = [padded('running'), padded('running'), padded('running'), padded('running'), padded('running'), padded('running')]
        for (const record of running) await store.createJob(record)
        const finished = Array.from({ length: 10 }, () => padded('pending'))
        for (const record of finished) {
          await store.createJob(record)
          await store.transitionJob(record.id, { from: ['pending'], to: 'failed', reason: 'no worker' })
        }
        // 250 KiB each: four fit in 1 MiB, a fifth would not.
        const kept = await Promise.all(finished.map(async (record) => (await store.getJob(record.id)) !== null))
        expect(kept).toEqual([false, false, false, false, false, false, true, true, true, true])
        for (const record of running) expect((await store.getJob(record.id))?.state).toBe('running')
        // Small finished jobs push out the large ones first, oldest first, by the same sum.
        const small = Array.from({ length: 3 }, () => job({ state: 'completed' }))
        for (const record of small) await store.createJob(record)
        for (const record of small) expect(await store.getJob(record.id)).not.toBeNull()
        expect((await store.listJobs({ state: 'failed' })).length).toBeLessThanOrEqual(4)
      })

      it('stores a job and returns it field for field', async () => {
        const store = await open()
        const record = job({ metadata: { topic: 'support', nested: { n: 1 } }, roomOptions: { vision: true } })
        await store.createJob(record)
        expect(await store.getJob(record.id)).toEqual(record)
        expect(await store.getJob('nothing')).toBeNull()
      })

      it('moves a job through its states and records each move in its history', async () => {
        const store = await open()
        const record = job()
        await store.createJob(record)
        const assigned = await store.transitionJob(record.id, { from: ['pending'], to: 'assigned', workerId: 'w1' })
        expect(assigned?.state).toBe('assigned')
        expect(assigned?.workerId).toBe('w1')
        const running = await store.transitionJob(record.id, { from: ['assigned'], to: 'running', heldBy: 'w1' })
        expect(running?.workerId).toBe('w1')
        const done = await store.transitionJob(record.id, { from: ['assigned', 'running'], to: 'completed', heldBy: 'w1', reason: 'finished' })
        expect(done?.state).toBe('completed')
        expect(done!.updatedAt).toBeGreaterThanOrEqual(record.createdAt)
        expect(done!.history.map((event) => event.state)).toEqual(['pending', 'assigned', 'running', 'completed'])
        expect(done!.history[1]).toMatchObject({ state: 'assigned', workerId: 'w1' })
        expect(done!.history[3]).toMatchObject({ state: 'completed', workerId: 'w1', reason: 'finished' })
        expect(await store.getJob(record.id)).toEqual(done!)
      })

      it('omits the worker from history events of a job no worker holds', async () => {
        const store = await open()
        const record = job()
        await store.createJob(record)
        const cancelled = await store.transitionJob(record.id, { from: ['pending'], to: 'cancelled', reason: 'asked' })
        expect(cancelled!.history[1]).toEqual({ state: 'cancelled', at: cancelled!.history[1]!.at, reason: 'asked' })
      })

      it('refuses a move from a state the job is not in, leaving it untouched', async () => {
        const store = await open()
        const record = job()
        await store.createJob(record)
        expect(await store.transitionJob(record.id, { from: ['running'], to: 'completed' })).toBeNull()
        expect(await store.getJob(record.id)).toEqual(record)
        expect(await store.transitionJob('nothing', { from: ['pending'], to: 'assigned' })).toBeNull()
      })

      it('refuses a move when the job is held by another worker', async () => {
        const store = await open()
        const record = job()
        await store.createJob(record)
        await store.transitionJob(record.id, { from: ['pending'], to: 'assigned', workerId: 'w1' })
        expect(await store.transitionJob(record.id, { from: ['assigned'], to: 'running', heldBy: 'w2' })).toBeNull()
        expect(await store.transitionJob(record.id, { from: ['assigned'], to: 'running', heldBy: null })).toBeNull()
        expect((await store.getJob(record.id))?.state).toBe('assigned')
      })

      it('clears the worker of a job being reassigned', async () => {
        const store = await open()
        const record = job()
        await store.createJob(record)
        await store.transitionJob(record.id, { from: ['pending'], to: 'assigned', workerId: 'w1' })
        const moved = await store.transitionJob(record.id, { from: ['assigned', 'running'], to: 'reassigning', heldBy: 'w1', workerId: null, reason: 'worker lost' })
        expect(moved?.workerId).toBeNull()
        expect(moved?.history.at(-1)).toEqual({ state: 'reassigning', at: moved!.history.at(-1)!.at, reason: 'worker lost' })
      })

      it('lets exactly one of many concurrent identical moves win', async () => {
        const store = await open()
        const record = job()
        await store.createJob(record)
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) => store.transitionJob(record.id, { from: ['pending'], to: 'assigned', workerId: `w${i}` })),
        )
        expect(results.filter((result) => result !== null).length).toBe(1)
        expect((await store.getJob(record.id))?.history.length).toBe(2)
      })

      it('lists the newest jobs up to a limit across many, later insertions first among those created in the same millisecond', async () => {
        const store = await open()
        const now = Date.now()
        // 450 jobs in threes created in the same millisecond, stored in an order unrelated to it.
        const records = Array.from({ length: 450 }, (_, i) => job({ createdAt: now + Math.floor(((i * 7) % 450) / 3), owner: i % 5 === 0 ? 'other' : 'tenant-a' }))
        for (const record of records) await store.createJob(record)
        const expected = records
          .map((record, inserted) => ({ record, inserted }))
          .sort((a, b) => b.record.createdAt - a.record.createdAt || b.inserted - a.inserted)
          .map((entry) => entry.record)
        for (const limit of [1, 3, 250]) expect((await store.listJobs({ limit })).map((found) => found.id)).toEqual(expected.slice(0, limit).map((record) => record.id))
        const theirs = expected.filter((record) => record.owner === 'tenant-a')
        expect((await store.listJobs({ owner: 'tenant-a', limit: 100 })).map((found) => found.id)).toEqual(theirs.slice(0, 100).map((record) => record.id))
        expect((await store.listJobs({ owner: 'other', limit: 500 })).map((found) => found.id)).toEqual(expected.filter((record) => record.owner === 'other').map((record) => record.id))
        // The few oldest of one owner: a list of them reads past every newer job.
        const oldest = Array.from({ length: 4 }, (_, i) => job({ createdAt: now - 1000 + i, owner: 'rare' }))
        for (const record of oldest) await store.createJob(record)
        expect((await store.listJobs({ owner: 'rare', limit: 3 })).map((found) => found.id)).toEqual([oldest[3]!.id, oldest[2]!.id, oldest[1]!.id])
      })

      it('lists no job twice while newer jobs keep being created', async () => {
        const store = await open()
        const now = Date.now()
        // A sparse owner under many newer jobs: a list of its newest reads past several pages of the others.
        for (let i = 0; i < 600; i++) await store.createJob(job({ createdAt: now - 10_000 + i, owner: i % 2 === 0 ? 'other' : 'tenant-a' }))
        let stop = false
        let created = 0
        const writer = (async () => {
          while (!stop) await store.createJob(job({ createdAt: now + created++, owner: 'other' }))
        })()
        try {
          for (let round = 0; round < 20; round++) {
            const ids = (await store.listJobs({ owner: 'tenant-a', limit: 250 })).map((found) => found.id)
            expect(ids).toHaveLength(250)
            expect(new Set(ids).size).toBe(250)
          }
        } finally {
          stop = true
          await writer
        }
      })

      it('among many jobs created in the same millisecond, lists the one stored last first, whatever its id', async () => {
        const store = await open()
        const now = Date.now()
        // Ids that sort the other way from the order they are stored in.
        const records = Array.from({ length: 260 }, (_, i) => job({ id: `job-${String(259 - i).padStart(3, '0')}`, createdAt: now }))
        for (const record of records) await store.createJob(record)
        expect((await store.listJobs({ limit: 2 })).map((found) => found.id)).toEqual(['job-000', 'job-001'])
        expect((await store.listJobs({ owner: 'tenant-a', limit: 1 })).map((found) => found.id)).toEqual(['job-000'])
      })

      it('lists jobs by every filter, newest first, up to a limit', async () => {
        const store = await open()
        const base = Date.now()
        const first = job({ agentName: 'a', owner: 'x', createdAt: base, updatedAt: base })
        const second = job({ agentName: 'a', owner: 'y', createdAt: base + 1, updatedAt: base + 1 })
        const third = job({ agentName: 'b', owner: 'x', createdAt: base + 2, updatedAt: base + 2 })
        for (const record of [first, second, third]) await store.createJob(record)
        await store.transitionJob(second.id, { from: ['pending'], to: 'assigned', workerId: 'w1' })
        expect((await store.listJobs({})).map((j) => j.id)).toEqual([third.id, second.id, first.id])
        expect((await store.listJobs({ agentName: 'a' })).map((j) => j.id)).toEqual([second.id, first.id])
        expect((await store.listJobs({ owner: 'x' })).map((j) => j.id)).toEqual([third.id, first.id])
        expect((await store.listJobs({ state: 'assigned' })).map((j) => j.id)).toEqual([second.id])
        expect((await store.listJobs({ workerId: 'w1' })).map((j) => j.id)).toEqual([second.id])
        expect((await store.listJobs({ agentName: 'a', owner: 'x', state: 'pending' })).map((j) => j.id)).toEqual([first.id])
        expect((await store.listJobs({ limit: 2 })).map((j) => j.id)).toEqual([third.id, second.id])
        expect(await store.listJobs({ agentName: 'none' })).toEqual([])
      })
    })

    describe('job lists by room, time and cursor', () => {
      it('filters by room and creation time, and pages by cursor without repeating or skipping a job, ties included', async () => {
        const store = await open()
        const now = Date.now()
        // 30 jobs, in threes created in the same millisecond, in two rooms.
        const records = Array.from({ length: 30 }, (_, i) => job({ createdAt: now + Math.floor(i / 3), roomId: i % 2 === 0 ? 'room-even' : 'room-odd' }))
        for (const record of records) await store.createJob(record)
        const newestFirst = [...records].reverse()
        expect((await store.listJobs({ roomId: 'room-odd' })).map((found) => found.id)).toEqual(newestFirst.filter((record) => record.roomId === 'room-odd').map((record) => record.id))
        expect((await store.listJobs({ createdFrom: now + 8, createdBefore: now + 9 })).map((found) => found.id)).toEqual(newestFirst.slice(3, 6).map((record) => record.id))
        const paged: string[] = []
        for (let after: JobRecord | undefined, rounds = 0; rounds < 20; rounds++) {
          const page = await store.listJobs({ limit: 4, ...(after ? { after: { createdAt: after.createdAt, id: after.id } } : {}) })
          paged.push(...page.map((found) => found.id))
          if (page.length < 4) break
          after = page.at(-1)
        }
        expect(paged).toEqual(newestFirst.map((record) => record.id))
        // A cursor whose job is gone continues with those created before it.
        expect((await store.listJobs({ after: { createdAt: now + 5, id: 'gone' }, limit: 2 })).map((found) => found.id)).toEqual(newestFirst.slice(15, 17).map((record) => record.id))
      })

      it('keeps the participant identity a transition gives', async () => {
        const store = await open()
        const record = job()
        await store.createJob(record)
        await store.transitionJob(record.id, { from: ['pending'], to: 'assigned', workerId: 'w1' })
        const running = await store.transitionJob(record.id, { from: ['assigned'], to: 'running', participantIdentity: 'agent-w1' })
        expect(running?.participantIdentity).toBe('agent-w1')
        await store.transitionJob(record.id, { from: ['running'], to: 'completed' })
        expect((await store.getJob(record.id))?.participantIdentity).toBe('agent-w1')
      })
    })

    describe('backlog', () => {
      it('queues jobs per tenant and agent name up to the bound, storing nothing past it', async () => {
        const store = await open()
        const queued = Array.from({ length: 3 }, (_, i) => job({ createdAt: Date.now() + i }))
        for (const record of queued) expect(await store.enqueueJob(record, 3, 100)).toBe('queued')
        const refused = job()
        expect(await store.enqueueJob(refused, 3, 100)).toBe('queue full')
        expect(await store.getJob(refused.id)).toBeNull()
        expect(await store.listJobs({ state: 'pending' })).toHaveLength(3)
        // Another tenant's and another agent name's queues have their own bound.
        expect(await store.enqueueJob(job({ owner: 'tenant-b' }), 3, 100)).toBe('queued')
        expect(await store.enqueueJob(job({ agentName: 'other-agent' }), 3, 100)).toBe('queued')
        const queues = (await store.listQueues()).sort((a, b) => (a.owner + a.agentName < b.owner + b.agentName ? -1 : 1))
        expect(queues.map(({ owner, agentName, length }) => ({ owner, agentName, length }))).toEqual([
          { owner: 'tenant-a', agentName: 'other-agent', length: 1 },
          { owner: 'tenant-a', agentName: 'voice-agent', length: 3 },
          { owner: 'tenant-b', agentName: 'voice-agent', length: 1 },
        ])
        expect(queues[1]!.oldestCreatedAt).toBe(queued[0]!.createdAt)
      })

      it("bounds a tenant's queues together, and gives the room back as jobs leave them", async () => {
        const store = await open()
        const [first, second] = [job({ agentName: 'a' }), job({ agentName: 'b' })]
        expect(await store.enqueueJob(first, 10, 2)).toBe('queued')
        expect(await store.enqueueJob(second, 10, 2)).toBe('queued')
        const refused = job({ agentName: 'c' })
        expect(await store.enqueueJob(refused, 10, 2)).toBe('client full')
        expect(await store.getJob(refused.id)).toBeNull()
        expect(await store.enqueueJob(job({ owner: 'tenant-b', agentName: 'c' }), 10, 2)).toBe('queued')
        // Taken out after it was assigned; and dropped by a claim once cancelled without being taken out.
        await store.transitionJob(first.id, { from: ['pending'], to: 'assigned', workerId: 'w1' })
        await store.dequeueJob('tenant-a', 'a', first.id)
        expect(await store.enqueueJob(job({ agentName: 'c' }), 10, 2)).toBe('queued')
        await store.transitionJob(second.id, { from: ['pending'], to: 'cancelled' })
        expect(await store.claimQueuedJob('tenant-a', 'b', 'x', Date.now() + 60_000)).toBeNull()
        expect(await store.enqueueJob(job({ agentName: 'd' }), 10, 2)).toBe('queued')
        expect(await store.enqueueJob(job({ agentName: 'e' }), 10, 2)).toBe('client full')
      })

      it('hands out the oldest unclaimed job first, once per live claim, and takes back a claim or a job that left the queue', async () => {
        const store = await open()
        const [first, second, third] = Array.from({ length: 3 }, (_, i) => job({ createdAt: Date.now() + i }))
        for (const record of [first!, second!, third!]) await store.enqueueJob(record, 10, 100)
        const until = Date.now() + 60_000
        expect((await store.claimQueuedJob('tenant-a', 'voice-agent', 'a', until))?.id).toBe(first!.id)
        expect((await store.claimQueuedJob('tenant-a', 'voice-agent', 'b', until))?.id).toBe(second!.id)
        // A claim given back by someone else's name stays; given back by its holder, the job is the next handed out.
        await store.releaseQueuedJob('tenant-a', 'voice-agent', first!.id, 'b')
        expect((await store.claimQueuedJob('tenant-a', 'voice-agent', 'c', until))?.id).toBe(third!.id)
        await store.releaseQueuedJob('tenant-a', 'voice-agent', first!.id, 'a')
        expect((await store.claimQueuedJob('tenant-a', 'voice-agent', 'c', until))?.id).toBe(first!.id)
        expect(await store.claimQueuedJob('tenant-a', 'voice-agent', 'd', until)).toBeNull()
        // A job that left the backlog (assigned, then taken out) and one moved without being taken out both leave the queue.
        await store.transitionJob(second!.id, { from: ['pending'], to: 'assigned', workerId: 'w1' })
        await store.dequeueJob('tenant-a', 'voice-agent', second!.id)
        await store.transitionJob(third!.id, { from: ['pending'], to: 'cancelled' })
        await store.releaseQueuedJob('tenant-a', 'voice-agent', third!.id, 'c')
        expect(await store.claimQueuedJob('tenant-a', 'voice-agent', 'e', until)).toBeNull()
        expect((await store.listQueues()).map((queue) => queue.length)).toEqual([1])
        await store.dequeueJob('tenant-a', 'voice-agent', first!.id)
        expect(await store.listQueues()).toEqual([])
      })

      it('hands a job out again once its claim ran out', async () => {
        const store = await open()
        const record = job()
        await store.enqueueJob(record, 10, 100)
        expect((await store.claimQueuedJob('tenant-a', 'voice-agent', 'a', Date.now() + 50))?.id).toBe(record.id)
        expect(await store.claimQueuedJob('tenant-a', 'voice-agent', 'b', Date.now() + 50)).toBeNull()
        await Bun.sleep(80)
        expect((await store.claimQueuedJob('tenant-a', 'voice-agent', 'b', Date.now() + 50))?.id).toBe(record.id)
      })

      it('gives each of many concurrent claimants a different job', async () => {
        const store = await open()
        for (let i = 0; i < 10; i++) await store.enqueueJob(job({ createdAt: Date.now() + i }), 10, 100)
        const claimed = await Promise.all(Array.from({ length: 12 }, (_, i) => store.claimQueuedJob('tenant-a', 'voice-agent', `c${i}`, Date.now() + 60_000)))
        const ids = claimed.filter((found) => found !== null).map((found) => found!.id)
        expect(ids).toHaveLength(10)
        expect(new Set(ids).size).toBe(10)
      })
    })

    describe('idempotency keys', () => {
      it('remembers the first dispatch of a key per tenant until it expires, and forgets it only for its own job', async () => {
        const store = await open()
        const later = Date.now() + 60_000
        expect(await store.rememberDispatch('tenant-a', 'key-1', { jobId: 'j1', fingerprint: 'f1' }, later, 100)).toBeNull()
        expect(await store.rememberDispatch('tenant-a', 'key-1', { jobId: 'j2', fingerprint: 'f2' }, later, 100)).toEqual({ jobId: 'j1', fingerprint: 'f1' })
        expect(await store.rememberDispatch('tenant-b', 'key-1', { jobId: 'j3', fingerprint: 'f1' }, later, 100)).toBeNull()
        await store.forgetDispatch('tenant-a', 'key-1', 'j2')
        expect(await store.rememberDispatch('tenant-a', 'key-1', { jobId: 'j4', fingerprint: 'f4' }, later, 100)).toEqual({ jobId: 'j1', fingerprint: 'f1' })
        await store.forgetDispatch('tenant-a', 'key-1', 'j1')
        expect(await store.rememberDispatch('tenant-a', 'key-1', { jobId: 'j5', fingerprint: 'f5' }, later, 100)).toBeNull()
        expect(await store.rememberDispatch('tenant-a', 'short', { jobId: 'j6', fingerprint: 'f6' }, Date.now() + 30, 100)).toBeNull()
        await Bun.sleep(60)
        expect(await store.rememberDispatch('tenant-a', 'short', { jobId: 'j7', fingerprint: 'f7' }, later, 100)).toBeNull()
      })

      it('keeps at most the bound of keys, forgetting the one expiring first', async () => {
        const store = await open()
        const now = Date.now()
        for (let i = 0; i < 3; i++) expect(await store.rememberDispatch('tenant-a', `key-${i}`, { jobId: `j${i}`, fingerprint: 'f' }, now + 60_000 + i, 3)).toBeNull()
        expect(await store.rememberDispatch('tenant-a', 'key-3', { jobId: 'j3', fingerprint: 'f' }, now + 60_003, 3)).toBeNull()
        // key-0 was forgotten to make room; the others are still there.
        expect(await store.rememberDispatch('tenant-a', 'key-0', { jobId: 'new', fingerprint: 'f' }, now + 60_004, 3)).toBeNull()
        expect(await store.rememberDispatch('tenant-a', 'key-3', { jobId: 'other', fingerprint: 'f' }, now + 60_005, 3)).toEqual({ jobId: 'j3', fingerprint: 'f' })
      })
    })
  })
}
