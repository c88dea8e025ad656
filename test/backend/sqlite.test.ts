import { afterAll, afterEach, describe, expect, it } from 'bun:test'
import { Database } from 'bun:sqlite'
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Backend, Client, EntityId, Envelope, JobRecord } from '../../src/backend/index'
import { PluginError } from '../../src/backend/index'
import { AppError, UnknownMailboxError } from '../../src/errors'
import { MIGRATIONS, SCHEMA_VERSION } from '../../plugins/sqlite/database'
import { testBackend } from './conformance'
import { makeBackend } from '../support/backend'
import { eventually } from '../support/wait'

testBackend((options) => makeBackend('sqlite', options))

const dir = mkdtempSync(join(tmpdir(), 'switchboard-sqlite-test-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const owner: Client = { id: 'owner', groups: ['lab'] }
const agent = (): EntityId => ({ uid: randomUUID(), name: null, role: 'agent' })
const user = (): EntityId => ({ uid: randomUUID(), name: null, role: 'user' })
const soon = () => ({ deadline: Date.now() + 5000 })
/** A retention setting in days that lasts `ms` milliseconds. */
const days = (ms: number) => ms / 86_400_000

function envelope(src: EntityId, dest: EntityId, text: string, kind: 'request' | 'response' = 'request', tag: string = randomUUID()): Envelope {
  const raw = JSON.stringify({ header: { src, dest, tag, label: null, kind, protocol_version: '1' }, body: { kind: 'ping-request', text } })
  return { raw, src, dest, tag, label: null, kind }
}
const textOf = (raw: string | null) => (raw === null ? null : (JSON.parse(raw) as { body: { text: string } }).body.text)

/** Fails the test unless `promise` rejects with a PluginError; returns its message. */
async function refusal(promise: Promise<unknown>): Promise<string> {
  try {
    await promise
  } catch (error) {
    expect(error).toBeInstanceOf(PluginError)
    return (error as Error).message
  }
  throw new Error('expected the backend to be refused')
}

describe('the sqlite backend on one file', () => {
  const opened: Backend[] = []
  const open = async (file: string, options: Record<string, unknown> = {}) => {
    const backend = await makeBackend('sqlite', { db: file, ...options })
    opened.push(backend)
    return backend
  }
  afterEach(async () => {
    for (const backend of opened.splice(0)) await backend.close()
  })

  it('keeps mailboxes, queued messages in order, stats, shares, gravestones and discovery across a restart', async () => {
    const file = join(dir, `${randomUUID()}.db`)
    const [sender, receiver, closed, older] = [user(), agent(), agent(), agent()]
    let backend = await open(file)
    await backend.mailboxes.create(owner, sender, null)
    await backend.mailboxes.create(owner, older, ['mod.Worker', 'mod.Base'])
    await backend.mailboxes.create(owner, receiver, ['mod.Worker', 'mod.Base'])
    await backend.mailboxes.create(owner, closed, ['mod.Worker'])
    await backend.mailboxes.share(owner, receiver, 'lab')
    await backend.mailboxes.terminate(owner, closed)
    for (const text of ['one', 'two', 'three']) await backend.mailboxes.put(owner, envelope(sender, receiver, text))
    expect(textOf(await backend.mailboxes.take(owner, receiver, soon()))).toBe('one')
    await backend.close()

    backend = await open(file)
    expect(await backend.mailboxes.status(owner, receiver)).toBe('ACTIVE')
    expect(await backend.mailboxes.status(owner, closed)).toBe('TERMINATED')
    await backend.mailboxes.create(owner, closed, ['mod.Worker'])
    expect(await backend.mailboxes.status(owner, closed)).toBe('TERMINATED')
    expect(await backend.mailboxes.shares(owner, receiver)).toEqual(['lab'])
    expect(await backend.mailboxes.discover(owner, 'mod.Base', true)).toEqual([older.uid, receiver.uid])
    expect(await backend.mailboxes.stats(owner, receiver)).toEqual({ incoming: 3, outgoing: 0, completed: 0, in_progress: 1, queued: 2 })
    expect(await backend.mailboxes.stats(owner, sender)).toMatchObject({ outgoing: 3 })
    expect(typeof (await backend.mailboxes.heartbeat(owner, receiver))).toBe('number')
    expect(textOf(await backend.mailboxes.take(owner, receiver, soon()))).toBe('two')
    expect(textOf(await backend.mailboxes.take(owner, receiver, soon()))).toBe('three')
  })

  it('reads its counts from the file when it opens, then keeps them with every change', async () => {
    const file = join(dir, `${randomUUID()}.db`)
    const [sender, receiver, closed] = [user(), agent(), agent()]
    let backend = await open(file, { redelivery_window_ms: 60_000 })
    for (const id of [sender, receiver, closed]) await backend.mailboxes.create(owner, id, null)
    for (const text of ['one', 'two', 'three']) await backend.mailboxes.put(owner, envelope(sender, receiver, text))
    await backend.mailboxes.put(owner, envelope(sender, closed, 'dropped'))
    await backend.mailboxes.terminate(owner, closed)
    expect(textOf(await backend.mailboxes.take(owner, receiver, soon()))).toBe('one')
    expect(await backend.mailboxes.counts()).toEqual({ mailboxes: 2, queued: 2 })
    await backend.close()

    backend = await open(file)
    expect(await backend.mailboxes.counts()).toEqual({ mailboxes: 2, queued: 2 })
    await backend.mailboxes.put(owner, envelope(sender, receiver, 'four'))
    expect(await backend.mailboxes.counts()).toEqual({ mailboxes: 2, queued: 3 })
  })

  it('does not deliver again after a clean stop what it handed out before', async () => {
    const file = join(dir, `${randomUUID()}.db`)
    const [sender, receiver] = [user(), agent()]
    let backend = await open(file, { redelivery_window_ms: 60_000 })
    await backend.mailboxes.create(owner, sender, null)
    await backend.mailboxes.create(owner, receiver, null)
    await backend.mailboxes.put(owner, envelope(sender, receiver, 'once'))
    expect(textOf(await backend.mailboxes.take(owner, receiver, soon()))).toBe('once')
    await backend.close()

    backend = await open(file)
    expect(await backend.mailboxes.take(owner, receiver, { deadline: Date.now() + 50 })).toBeNull()
  })

  it('puts a message whose delivery failed back at the head, once, and keeps it there across a restart', async () => {
    const file = join(dir, `${randomUUID()}.db`)
    const [sender, receiver] = [user(), agent()]
    let backend = await open(file, { redelivery_window_ms: 60_000 })
    await backend.mailboxes.create(owner, sender, null)
    await backend.mailboxes.create(owner, receiver, null)
    for (const text of ['a', 'b', 'c']) await backend.mailboxes.put(owner, envelope(sender, receiver, text))
    const first = await backend.mailboxes.take(owner, receiver, soon())
    const second = await backend.mailboxes.take(owner, receiver, soon())
    await backend.mailboxes.restore(receiver, second!)
    await backend.mailboxes.restore(receiver, first!)
    expect((await backend.mailboxes.stats(owner, receiver)).queued).toBe(3)
    await backend.close()

    backend = await open(file)
    const order: (string | null)[] = []
    for (let i = 0; i < 3; i++) order.push(textOf(await backend.mailboxes.take(owner, receiver, soon())))
    expect(order).toEqual(['a', 'b', 'c'])
    expect(await backend.mailboxes.take(owner, receiver, { deadline: Date.now() + 50 })).toBeNull()
  })

  it('keeps request tracking across a restart, so a later response completes it', async () => {
    const file = join(dir, `${randomUUID()}.db`)
    const [client, server] = [user(), agent()]
    let backend = await open(file)
    await backend.mailboxes.create(owner, client, null)
    await backend.mailboxes.create(owner, server, null)
    const request = envelope(client, server, 'question')
    await backend.mailboxes.put(owner, request)
    await backend.close()

    backend = await open(file)
    await backend.mailboxes.put(owner, envelope(server, client, 'answer', 'response', request.tag))
    expect(await backend.mailboxes.stats(owner, server)).toMatchObject({ completed: 1, incoming: 1 })
    expect(await backend.mailboxes.terminate(owner, server)).toEqual([])
  })

  it('keeps workers, jobs, workspaces, tokens and activity across a restart', async () => {
    const file = join(dir, `${randomUUID()}.db`)
    let backend = await open(file)
    const now = Date.now()
    const workspace = { id: randomUUID(), name: 'w', role: null, parentId: null, url: null, agentCard: null, deliveryMode: 'push' as const, inboundSecret: 's', createdAt: now, removedAt: null, lastHeartbeatAt: null, errorRate: 0, activeTasks: 0, currentTask: null, uptimeSeconds: null }
    await backend.agents.createWorkspace(workspace, 'digest')
    await backend.agents.recordActivity({ id: randomUUID(), source: null, target: workspace.id, method: 'message/send', status: 200, durationMs: 1, requestBytes: 1, responseBytes: 1, error: null, at: now })
    const worker = { id: 'w1', agentName: 'voice', owner: 'o', status: 'available' as const, draining: false, maxProcesses: 2, loadThreshold: 1, reportedLoad: 0, jobs: [], reserved: [], instance: 'i', connection: 'c', capabilities: [], registeredAt: now, disconnectedAt: null }
    await backend.workers.upsertWorker(worker)
    expect(await backend.workers.reserveSlot('w1', 'job-1')).toBe(true)
    await backend.workers.createJob({ id: 'job-1', agentName: 'voice', roomId: 'r', owner: 'o', metadata: null, roomOptions: null, state: 'pending', workerId: null, history: [], createdAt: now, updatedAt: now })
    await backend.close()

    backend = await open(file)
    expect(await backend.agents.getWorkspace(workspace.id)).toEqual(workspace)
    expect(await backend.agents.workspaceOfToken('digest')).toBe(workspace.id)
    expect((await backend.agents.listActivity(workspace.id, 10, null)).items).toHaveLength(1)
    expect((await backend.workers.getWorker('w1'))?.reserved).toEqual(['job-1'])
    expect((await backend.workers.listJobs({ agentName: 'voice' })).map((job) => job.id)).toEqual(['job-1'])
  })

  it('brings a file of schema version 1 under retention: its mailboxes expire from the start, its finished jobs are numbered by when they last changed', async () => {
    const file = join(dir, `${randomUUID()}.db`)
    const now = Date.now()
    const stored = (id: string, state: JobRecord['state'], updatedAt: number): JobRecord => ({
      id, agentName: 'voice', roomId: 'room', owner: 'tenant', metadata: null, roomOptions: null, state, workerId: null, history: [], createdAt: now, updatedAt,
    })
    const [idle, gone] = [agent(), agent()]
    // The file as a Switchboard of schema version 1 left it.
    const v1 = new Database(file, { create: true })
    v1.run(MIGRATIONS[0]!)
    v1.run('CREATE TABLE schema_version (version INTEGER NOT NULL)')
    v1.run('INSERT INTO schema_version (version) VALUES (1)')
    // Stored out of the order they finished in: `late` finished last, `early` first.
    for (const job of [stored('late', 'completed', now + 3), stored('early', 'failed', now + 1), stored('middle', 'cancelled', now + 2), stored('open', 'pending', now)]) {
      v1.run('INSERT INTO jobs (id, agent_name, state, worker_id, owner, created_at, record) VALUES (?, ?, ?, ?, ?, ?, ?)', [job.id, job.agentName, job.state, null, job.owner, job.createdAt, JSON.stringify(job)])
    }
    v1.run("INSERT INTO mailboxes (role, uid, owner) VALUES ('agent', ?, ?)", [idle.uid, owner.id])
    v1.run("INSERT INTO messages (mailbox_id, position, raw) VALUES (1, 1, '{}')")
    v1.run("INSERT INTO mailboxes (role, uid, owner, terminated) VALUES ('agent', ?, ?, 1)", [gone.uid, owner.id])
    v1.close()

    let backend = await open(file, { finished_jobs_kept: 3, mailbox_expiration_d: days(400), gravestone_expiration_d: days(400) })
    const ids = async () => (await backend.workers.listJobs({})).map((job) => job.id).sort()
    expect(await ids()).toEqual(['early', 'late', 'middle', 'open'])
    await backend.workers.transitionJob('open', { from: ['pending'], to: 'completed' })
    expect(await ids()).toEqual(['late', 'middle', 'open'])
    // The mailboxes it held are counted, then expire as if they had been active when the file was opened.
    expect(await backend.mailboxes.counts()).toEqual({ mailboxes: 1, queued: 1 })
    expect(await backend.mailboxes.status(owner, idle)).toBe('ACTIVE')
    expect(await backend.mailboxes.status(owner, gone)).toBe('TERMINATED')
    await eventually(async () => (await backend.mailboxes.counts()).mailboxes === 0, 5000, 'the old mailbox expired')
    expect(await backend.mailboxes.counts()).toEqual({ mailboxes: 0, queued: 0 })
    expect(await backend.mailboxes.status(owner, idle)).toBe('MISSING')
    await eventually(async () => (await backend.mailboxes.status(owner, gone)) === 'MISSING', 5000, 'the old gravestone forgotten')
    await backend.close()

    // The finished numbering goes on across a restart.
    backend = await open(file, { finished_jobs_kept: 3 })
    await backend.workers.createJob(stored('next', 'completed', Date.now()))
    expect(await ids()).toEqual(['late', 'next', 'open'])
    await backend.close()
    const migrated = new Database(file, { readonly: true })
    expect(migrated.query<{ version: number }, []>('SELECT version FROM schema_version').get()?.version).toBe(SCHEMA_VERSION)
    expect(migrated.query<{ count: number }, []>('SELECT COUNT(*) AS count FROM mailboxes').get()?.count).toBe(0)
    expect(migrated.query<{ count: number }, []>('SELECT COUNT(*) AS count FROM messages').get()?.count).toBe(0)
    migrated.close()
  })

  it('lets a mailbox expire while no process has the file: it is gone, and out of the counts, at the next start', async () => {
    const file = join(dir, `${randomUUID()}.db`)
    const retention = { mailbox_expiration_d: days(300) }
    const [sender, idle, kept] = [user(), agent(), agent()]
    let backend = await open(file, retention)
    for (const id of [sender, idle]) await backend.mailboxes.create(owner, id, ['mod.Idle'])
    await backend.mailboxes.put(owner, envelope(sender, idle, 'waiting'))
    await backend.close()
    await Bun.sleep(400)

    backend = await open(file, retention)
    expect(await backend.mailboxes.counts()).toEqual({ mailboxes: 0, queued: 0 })
    expect(await backend.mailboxes.status(owner, idle)).toBe('MISSING')
    expect(await backend.mailboxes.discover(owner, 'mod.Idle', false)).toEqual([])
    expect(await backend.mailboxes.stats(owner, sender)).toEqual({ incoming: 0, outgoing: 0, completed: 0, in_progress: 0, queued: 0 })
    // One made now is kept by a longer retention across the next restart.
    await backend.close()
    backend = await open(file, { mailbox_expiration_d: 1 })
    await backend.mailboxes.create(owner, kept, null)
    await backend.close()
    backend = await open(file, { mailbox_expiration_d: 1 })
    expect(await backend.mailboxes.status(owner, kept)).toBe('ACTIVE')
    await backend.close()
  })

  it('keeps the card-signing key across a restart: a file opened again signs with the key it holds', async () => {
    const file = join(dir, `${randomUUID()}.db`)
    let backend = await open(file)
    expect(await backend.agents.cardSigningKey('{"k":"first"}')).toBe('{"k":"first"}')
    await backend.close()
    backend = await open(file)
    expect(await backend.agents.cardSigningKey('{"k":"second"}')).toBe('{"k":"first"}')
  })

  it('records the schema version it wrote', async () => {
    const file = join(dir, `${randomUUID()}.db`)
    await (await open(file)).close()
    const db = new Database(file, { readonly: true })
    expect(db.query<{ version: number }, []>('SELECT version FROM schema_version').get()?.version).toBe(SCHEMA_VERSION)
    expect(db.query<{ journal_mode: string }, []>('PRAGMA journal_mode').get()?.journal_mode).toBe('wal')
    db.close()
  })

  it('refuses a second backend on a file another one holds, saying so', async () => {
    const file = join(dir, `${randomUUID()}.db`)
    await open(file)
    expect(await refusal(open(file))).toContain('in use by another Switchboard process')
  })

  it('refuses a database written by a newer Switchboard', async () => {
    const file = join(dir, `${randomUUID()}.db`)
    await (await open(file)).close()
    const db = new Database(file)
    db.run('UPDATE schema_version SET version = ?', [SCHEMA_VERSION + 1])
    db.close()
    expect(await refusal(open(file))).toContain(`schema version ${SCHEMA_VERSION + 1}, newer than this Switchboard understands`)
  })

  it('refuses a file that is not a database and a path it cannot create', async () => {
    const garbage = join(dir, `${randomUUID()}.db`)
    writeFileSync(garbage, 'not a database, just text. '.repeat(200))
    expect(await refusal(open(garbage))).toContain('is not a SQLite database')
    expect(await refusal(open(join(dir, 'no-such-folder', 'x.db')))).toContain('cannot open database')
  })

  it('refuses an unknown synchronous level, naming the option', async () => {
    const message = await refusal(open(join(dir, `${randomUUID()}.db`), { synchronous: 'sometimes' }))
    expect(message).toContain('"synchronous"')
  })

  it('counts the failures of a closed database and passes on its own error unchanged, but not the refusals of callers', async () => {
    const backend = await open(join(dir, `${randomUUID()}.db`))
    expect(await backend.mailboxes.heartbeat(owner, agent()).catch((error: unknown) => error)).toBeInstanceOf(UnknownMailboxError)
    expect(backend.failures).toEqual({ unavailable: 0, error: 0 })
    await backend.close()
    const failure = await backend.mailboxes.status(owner, agent()).catch((error: unknown) => error)
    expect(failure).not.toBeInstanceOf(AppError)
    expect((failure as Error).message).toBe('Database has closed')
    await backend.workers.getJob('job').catch(() => {})
    expect(backend.failures).toEqual({ unavailable: 0, error: 2 })
  })

  it('refuses each bad send among concurrent ones alone, stores the rest, and keeps every queue in order across a restart', async () => {
    const file = join(dir, `${randomUUID()}.db`)
    let backend = await open(file)
    const [sender, first, second] = [user(), agent(), agent()]
    for (const id of [sender, first, second]) await backend.mailboxes.create(owner, id, null)
    const nowhere = agent()
    const sends = Array.from({ length: 60 }, (_, index) => {
      const dest = index % 3 === 0 ? first : index % 3 === 1 ? second : nowhere
      return backend.mailboxes.put(owner, envelope(sender, dest, `m${index}`)).then(
        () => 'stored',
        (error: unknown) => error,
      )
    })
    const outcomes = await Promise.all(sends)
    outcomes.forEach((outcome, index) => {
      if (index % 3 === 2) expect(outcome).toBeInstanceOf(UnknownMailboxError)
      else expect(outcome).toBe('stored')
    })
    expect(await backend.mailboxes.counts()).toEqual({ mailboxes: 3, queued: 40 })
    await backend.close()
    backend = await open(file)
    for (const [id, offset] of [[first, 0], [second, 1]] as const) {
      const texts: (string | null)[] = []
      for (let index = 0; index < 20; index++) texts.push(textOf(await backend.mailboxes.take(owner, id, soon())))
      expect(texts).toEqual(Array.from({ length: 20 }, (_, index) => `m${index * 3 + offset}`))
    }
    expect((await backend.mailboxes.stats(owner, first)).incoming).toBe(20)
  })

  it('commits a send still queued when it closes, before the file closes', async () => {
    const file = join(dir, `${randomUUID()}.db`)
    let backend = await open(file)
    const [sender, receiver] = [user(), agent()]
    await backend.mailboxes.create(owner, sender, null)
    await backend.mailboxes.create(owner, receiver, null)
    const sent = backend.mailboxes.put(owner, envelope(sender, receiver, 'last words'))
    await backend.close()
    await sent
    backend = await open(file)
    expect(textOf(await backend.mailboxes.take(owner, receiver, soon()))).toBe('last words')
  })

  it('reports not ready once closed', async () => {
    const backend = await open(join(dir, `${randomUUID()}.db`))
    expect(await backend.ready()).toBe(true)
    await backend.close()
    expect(await backend.ready()).toBe(false)
  })
})
