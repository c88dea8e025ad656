import { afterEach, describe, expect, it } from 'bun:test'
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import type { Backend, Client, EntityId, Envelope, JobRecord } from '../../src/backend/index'
import { PluginError } from '../../src/backend/index'
import { ExchangeFullError, StoreFullError } from '../../src/errors'
import { agentId, bodies, messageJson, userId } from '../support/academy'
import { serveBackend } from '../support/app'
import { rawRequest } from '../support/http'
import { testBackend } from './conformance'
import { activity, digest, workspace } from './conformance/agents'
import { tempDir } from '../support/temp'
import { makeBackend } from '../support/backend'
import { BUN, runToEnd } from '../support/process'
import { eventually } from '../support/wait'

testBackend((options) => makeBackend('memory', options))

const owner: Client = { id: 'owner', groups: [] }
const agent = (): EntityId => ({ uid: randomUUID(), name: null, role: 'agent' })
const soon = () => ({ deadline: Date.now() + 5000 })
/** A retention setting in days that lasts `ms` milliseconds. */
const days = (ms: number) => ms / 86_400_000

/** A request from `src` to `dest`; with `padding`, its body carries that many characters more. */
function envelope(src: EntityId, dest: EntityId, padding = 0): Envelope {
  const tag = randomUUID()
  const raw = JSON.stringify({ header: { src, dest, tag, label: null, kind: 'request', protocol_version: '1' }, body: { kind: 'ping-request', pad: 'x'.repeat(padding) } })
  return { raw, src, dest, tag, label: null, kind: 'request' }
}

describe('memory retention', () => {
  it('refuses a finished_jobs_kept below 1, naming the option', async () => {
    const failure = await makeBackend('memory', { finished_jobs_kept: 0 }).catch((error: unknown) => error)
    expect(failure).toBeInstanceOf(PluginError)
    expect((failure as Error).message).toContain('"finished_jobs_kept"')
  })

  // SQLite sweeps its file on a timer as well.
  it.each([
    ['memory', {}],
    ['sqlite', { db: join(tempDir('sweep'), 'sweep.db') }],
  ])('lets the process exit while the %s sweep timer is armed', async (name, options) => {
    const script = `
      const { createBackend } = await import('./src/backend/index.ts')
      const { loadPlugin } = await import('./plugins/index.ts')
      const { createLogger } = await import('./src/ops/logger.ts')
      const options = { mailbox_expiration_d: 1, ...${JSON.stringify(options)} }
      const backend = await createBackend(await loadPlugin('${name}'), options, { logger: createLogger('silent') })
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

describe('memory finished-job bound (finished_jobs_max_mb; the bound itself is a conformance case)', () => {
  it('refuses a finished_jobs_max_mb below 1, naming the option', async () => {
    const failure = await makeBackend('memory', { finished_jobs_max_mb: 0 }).catch((error: unknown) => error)
    expect(failure).toBeInstanceOf(PluginError)
    expect((failure as Error).message).toContain('"finished_jobs_max_mb"')
  })
})

describe('memory queue bound (max_queued_mb)', () => {
  const opened: Backend[] = []
  afterEach(async () => {
    for (const backend of opened.splice(0)) await backend.close()
  })
  const MIB = 1024 * 1024

  it('refuses a client\'s message past the bound and changes nothing; room comes back as messages leave', async () => {
    const backend = await makeBackend('memory', { max_queued_mb: 1 })
    opened.push(backend)
    const { mailboxes } = backend
    const [sender, full, other] = [agent(), agent(), agent()]
    for (const id of [sender, full, other]) await mailboxes.create(owner, id, null)
    // Three messages of 0.3 MiB fit in 1 MiB, a fourth does not, whichever mailbox it is for.
    const kept = [0, 1, 2].map(() => envelope(sender, full, 0.3 * MIB))
    for (const message of kept) await mailboxes.put(owner, message)
    for (const dest of [full, other]) {
      const refused = await mailboxes.put(owner, envelope(sender, dest, 0.3 * MIB)).catch((error: unknown) => error)
      expect(refused).toBeInstanceOf(ExchangeFullError)
      expect((refused as ExchangeFullError).status).toBe(507)
      expect((refused as Error).message).toBe('Exchange is full: it holds 0.9 MiB of queued messages, pending requests and mailboxes (limit 1 MiB, max_queued_mb of the memory backend); the message was not stored')
    }
    // Nothing of the refused requests was recorded: no pending request, no outgoing count, no message.
    expect(await mailboxes.counts()).toEqual({ mailboxes: 3, queued: 3 })
    expect(await mailboxes.stats(owner, full)).toEqual({ incoming: 3, outgoing: 0, completed: 0, in_progress: 0, queued: 3 })
    expect(await mailboxes.stats(owner, other)).toEqual({ incoming: 0, outgoing: 0, completed: 0, in_progress: 0, queued: 0 })
    expect((await mailboxes.stats(owner, sender)).outgoing).toBe(3)
    // A small message still fits; one taken makes room for another large one.
    await mailboxes.put(owner, envelope(sender, other))
    expect(await mailboxes.take(owner, full, soon())).toBe(kept[0]!.raw)
    const next = envelope(sender, other, 0.3 * MIB)
    await mailboxes.put(owner, next)
    // Switchboard's own puts and a message given back are never refused: they were accepted once already.
    await mailboxes.put(null, envelope(other, full, 0.3 * MIB))
    await mailboxes.restore(full, kept[0]!.raw)
    expect(await mailboxes.counts()).toEqual({ mailboxes: 3, queued: 6 })
    expect(await mailboxes.put(owner, envelope(sender, other)).catch((error: unknown) => error)).toBeInstanceOf(ExchangeFullError)
    // Terminating the mailbox that holds the most gives its room back.
    await mailboxes.terminate(owner, full)
    await mailboxes.put(owner, envelope(sender, other, 0.3 * MIB))
    expect(await mailboxes.counts()).toEqual({ mailboxes: 2, queued: 3 })
    expect(await mailboxes.take(owner, other, soon())).not.toBeNull()
  })

  it('gives the room of an expired mailbox back', async () => {
    const backend = await makeBackend('memory', { max_queued_mb: 1, mailbox_expiration_d: days(300) })
    opened.push(backend)
    const { mailboxes } = backend
    const [sender, idle] = [agent(), agent()]
    await mailboxes.create(owner, sender, null)
    await mailboxes.create(owner, idle, null)
    for (let i = 0; i < 3; i++) await mailboxes.put(owner, envelope(sender, idle, 0.3 * MIB))
    expect(await mailboxes.put(owner, envelope(sender, idle, 0.3 * MIB)).catch((error: unknown) => error)).toBeInstanceOf(ExchangeFullError)
    await eventually(async () => (await mailboxes.counts()).mailboxes === 0, 5000, 'both mailboxes expired')
    const fresh = agent()
    await mailboxes.create(owner, fresh, null)
    for (let i = 0; i < 3; i++) await mailboxes.put(owner, envelope(sender, fresh, 0.3 * MIB))
    expect(await mailboxes.counts()).toEqual({ mailboxes: 1, queued: 3 })
  })

  it('answers a send past the bound with 507 and its reason in text, and delivers what was accepted', async () => {
    const backend = await makeBackend('memory', { max_queued_mb: 1 })
    const server = await serveBackend(backend)
    try {
      const [user, agent] = [userId(), agentId()]
      const send = (padding: number) =>
        fetch(`${server.url}/message`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: bodies.send(messageJson(user, agent, { body: { kind: 'action-request', pargs: 'x'.repeat(padding) } })) })
      expect((await fetch(`${server.url}/mailbox`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: bodies.create(agent) })).status).toBe(200)
      expect((await send(600_000)).status).toBe(200)
      const refused = await send(600_000)
      expect(refused.status).toBe(507)
      expect(refused.headers.get('content-type')).toStartWith('text/plain')
      expect(await refused.text()).toStartWith('Exchange is full: it holds 0.6 MiB of queued messages, pending requests and mailboxes (limit 1 MiB')
      // Academy receives with a body on GET, which fetch will not send.
      const received = await rawRequest(`${server.url}/message`, { method: 'GET', headers: { 'content-type': 'application/json' }, body: bodies.receive(agent, 1) })
      expect(received.status).toBe(200)
      expect((JSON.parse(received.text) as { message: string }).message).toContain('x'.repeat(600_000))
      expect((await send(600_000)).status).toBe(200)
    } finally {
      await server.close()
    }
  })

  it('counts the requests still pending, with the names they carry, after their messages were taken', async () => {
    const backend = await makeBackend('memory', { max_queued_mb: 1 })
    opened.push(backend)
    const { mailboxes } = backend
    const [dest, other] = [agent(), agent()]
    await mailboxes.create(owner, dest, null)
    await mailboxes.create(owner, other, null)
    // Requests from a uid with no mailbox, named with 100 KiB, each taken at once: no message stays queued.
    const named = (): EntityId => ({ uid: randomUUID(), name: 'n'.repeat(100 * 1024), role: 'agent' })
    let accepted = 0
    let refused: unknown = null
    while (refused === null && accepted < 100) {
      refused = await mailboxes.put(owner, envelope(named(), dest)).then(
        () => null,
        (error: unknown) => error,
      )
      if (refused === null) {
        accepted++
        expect(await mailboxes.take(owner, dest, soon())).not.toBeNull()
      }
    }
    expect(refused).toBeInstanceOf(ExchangeFullError)
    expect((refused as Error).message).toEndWith('the message was not stored')
    expect(accepted).toBeGreaterThanOrEqual(8)
    expect(accepted).toBeLessThanOrEqual(10)
    expect(await mailboxes.counts()).toEqual({ mailboxes: 2, queued: 0 })
    // Terminating the mailbox they wait on gives their room back.
    expect((await mailboxes.terminate(owner, dest)).length).toBe(accepted)
    await mailboxes.put(owner, envelope(named(), other))
  })

  it('counts message text in UTF-8 bytes: CJK text takes three bytes a character', async () => {
    const backend = await makeBackend('memory', { max_queued_mb: 1 })
    opened.push(backend)
    const { mailboxes } = backend
    const [sender, dest] = [agent(), agent()]
    await mailboxes.create(owner, sender, null)
    await mailboxes.create(owner, dest, null)
    // 200,000 characters: 0.57 MiB in UTF-8, one fits and a second does not (counted in characters, three would).
    const cjk = (): Envelope => {
      const tag = randomUUID()
      const raw = JSON.stringify({ header: { src: sender, dest, tag, label: null, kind: 'response' }, body: { text: '漢'.repeat(200_000) } })
      return { raw, src: sender, dest, tag, label: null, kind: 'response' }
    }
    await mailboxes.put(owner, cjk())
    expect(await mailboxes.put(owner, cjk()).catch((error: unknown) => error)).toBeInstanceOf(ExchangeFullError)
    expect(await mailboxes.counts()).toEqual({ mailboxes: 2, queued: 1 })
  })

  it('counts mailboxes with their names and classes; a gravestone keeps neither', async () => {
    const backend = await makeBackend('memory', { max_queued_mb: 1 })
    opened.push(backend)
    const { mailboxes } = backend
    const named = (): EntityId => ({ uid: randomUUID(), name: 'n'.repeat(250 * 1024), role: 'agent' })
    const created: EntityId[] = []
    let refused: unknown = null
    while (refused === null && created.length < 20) {
      const id = named()
      refused = await mailboxes.create(owner, id, ['mod.' + 'c'.repeat(20)]).then(
        () => null,
        (error: unknown) => error,
      )
      if (refused === null) created.push(id)
    }
    expect(refused).toBeInstanceOf(ExchangeFullError)
    expect((refused as Error).message).toEndWith('the mailbox was not created')
    expect(created.length).toBe(4)
    expect(await mailboxes.counts()).toEqual({ mailboxes: 4, queued: 0 })
    await mailboxes.terminate(owner, created[0]!)
    await mailboxes.create(owner, named(), null)
    expect(await mailboxes.status(owner, created[0]!)).toBe('TERMINATED')
  })

  it('refuses a max_queued_mb below 1 or not a whole number, naming the option', async () => {
    for (const value of [0, 1.5, '64']) {
      const failure = await makeBackend('memory', { max_queued_mb: value }).catch((error: unknown) => error)
      expect(failure).toBeInstanceOf(PluginError)
      expect((failure as Error).message).toContain('"max_queued_mb"')
    }
  })
})

describe('memory registry bound (max_registry_mb)', () => {
  const opened: Backend[] = []
  afterEach(async () => {
    for (const backend of opened.splice(0)) await backend.close()
  })
  const KIB = 1024
  /** A workspace whose card holds about `kib` KiB. */
  const withCard = (kib: number) => workspace({ agentCard: { name: 'agent', pad: 'c'.repeat(kib * KIB) } })

  it('refuses a workspace created or grown past the bound with 507, storing nothing of it', async () => {
    const backend = await makeBackend('memory', { max_registry_mb: 1 })
    opened.push(backend)
    const { agents } = backend
    // Three cards of 300 KiB fit in 1 MiB; a fourth does not.
    const kept = [withCard(300), withCard(300), withCard(300)]
    for (const record of kept) expect(await agents.createWorkspace(record, digest())).toBe(true)
    const refused = withCard(300)
    const token = digest()
    const error = await agents.createWorkspace(refused, token).catch((thrown: unknown) => thrown)
    expect(error).toBeInstanceOf(StoreFullError)
    expect((error as StoreFullError).status).toBe(507)
    expect((error as Error).message).toMatch(/^The registry is full: its workspaces take 0\.9 MiB \(limit 1\.0 MiB, max_registry_mb of the memory backend\); workspace [0-9a-f-]{36} was not stored$/)
    expect(await agents.getWorkspace(refused.id)).toBeNull()
    expect(await agents.workspaceOfToken(token)).toBeNull()
    expect(await agents.listWorkspaces()).toHaveLength(3)
    // A card grown past the bound is refused and the record stays as it was; a smaller change goes through.
    const grown = await agents.updateWorkspace(kept[0]!.id, { agentCard: { pad: 'g'.repeat(500 * KIB) } }).catch((thrown: unknown) => thrown)
    expect(grown).toBeInstanceOf(StoreFullError)
    expect((await agents.getWorkspace(kept[0]!.id))!.agentCard).toEqual(kept[0]!.agentCard)
    expect((await agents.updateWorkspace(kept[0]!.id, { agentCard: { name: 'small' } }))!.agentCard).toEqual({ name: 'small' })
    // Room came back with the smaller card.
    expect(await agents.createWorkspace(withCard(250), digest())).toBe(true)
  })

  it('pushes out the oldest activity of any workspace past the bound, and activity gives way to a new workspace', async () => {
    const backend = await makeBackend('memory', { max_registry_mb: 1 })
    opened.push(backend)
    const { agents } = backend
    const [first, second] = [workspace(), workspace()]
    for (const record of [first, second]) await agents.createWorkspace(record, digest())
    // Records of about 800 bytes (a 600-character method): 1 MiB holds some 1,300 of them.
    const method = 'm'.repeat(600)
    for (let i = 0; i < 1000; i++) await agents.recordActivity(activity(null, first.id, { method, at: i }))
    for (let i = 0; i < 1000; i++) await agents.recordActivity(activity(null, second.id, { method, at: 1000 + i }))
    const ofFirst = (await agents.listActivity(first.id, 1000, null)).items
    const ofSecond = (await agents.listActivity(second.id, 1000, null)).items
    // The second workspace's activity is all there; the first lost its oldest, and kept its newest.
    expect(ofSecond).toHaveLength(1000)
    expect(ofFirst.length).toBeGreaterThan(100)
    expect(ofFirst.length).toBeLessThan(600)
    expect(ofFirst[0]!.at).toBe(999)
    expect(ofFirst.at(-1)!.at).toBe(1000 - ofFirst.length)
    // A workspace of 500 KiB still fits: activity is pushed out to make room for it, oldest first.
    expect(await agents.createWorkspace(withCard(500), digest())).toBe(true)
    expect((await agents.listActivity(first.id, 1000, null)).items).toHaveLength(0)
    const left = (await agents.listActivity(second.id, 1000, null)).items
    expect(left.length).toBeLessThan(1000)
    expect(left[0]!.at).toBe(1999)
  })

  it('refuses a max_registry_mb below 1, naming the option', async () => {
    const error = await makeBackend('memory', { max_registry_mb: 0 }).catch((thrown: unknown) => thrown)
    expect(error).toBeInstanceOf(PluginError)
    expect(String((error as Error).message)).toContain('max_registry_mb')
  })
})

describe('memory event log across processes', () => {
  it("gives ids above an earlier process's, and tells a reader resuming from one that it missed what that process held", async () => {
    const earlier = await makeBackend('memory')
    const old = await earlier.eventLog.append('{"n":0}')
    await earlier.close()
    await Bun.sleep(2)
    const later = await makeBackend('memory')
    try {
      const id = await later.eventLog.append('{"n":1}')
      expect(Number(id)).toBeGreaterThan(Number(old))
      expect(await later.eventLog.read(old, 10)).toEqual({ events: [{ id, body: '{"n":1}' }], missed: true })
      expect(await later.eventLog.read(id, 10)).toEqual({ events: [], missed: false })
    } finally {
      await later.close()
    }
  })
})
