/**
 * Events end to end, on a real port over the test backend (TEST_BACKEND):
 * GET /events resumed with Last-Event-ID, tenants kept apart, webhooks signed,
 * retried, dead-lettered, and refused for metadata addresses.
 */
import { afterEach, describe, expect, it } from 'bun:test'
import { startServer, writeTokensFile, type TestServer } from '../../support/app'
import { openStream, sseEvents, type EventStream, type SseEvent } from '../../support/http'
import { eventually } from '../../support/wait'
import { TestWorker } from '../workers/worker'
import { Receiver } from './receiver'

const SECRET = 'test-secret-0123456789'
const tokens = writeTokensFile([
  { token: 'token-acme', client: 'acme' },
  { token: 'token-globex', client: 'globex' },
])
const as = (token: string) => ({ authorization: `Bearer ${token}` })

let server: TestServer | null = null
const streams: EventStream[] = []
const receivers: Receiver[] = []
afterEach(async () => {
  for (const stream of streams.splice(0)) stream.close()
  for (const receiver of receivers.splice(0)) await receiver.stop()
  await server?.close()
  server = null
})

const start = async (config: Record<string, unknown> = {}, backendOptions: Record<string, unknown> = {}) =>
  (server = await startServer({ auth: 'token', tokens_file: tokens, allow_private_agent_urls: true, ...config }, backendOptions))
const receiver = () => {
  const made = new Receiver(SECRET).start()
  receivers.push(made)
  return made
}

/** Creates a mailbox as `token`'s client (one mailbox.created event); returns its uid. */
async function createMailbox(token: string): Promise<string> {
  const uid = crypto.randomUUID()
  const response = await fetch(`${server!.url}/mailbox`, { method: 'POST', headers: { 'content-type': 'application/json', ...as(token) }, body: JSON.stringify({ mailbox: JSON.stringify({ uid, name: null, role: 'agent' }) }) })
  expect(response.status).toBe(200)
  return uid
}

async function open(token: string, query = '', headers: Record<string, string> = {}): Promise<EventStream> {
  const stream = await openStream(`${server!.url}/events${query}`, { headers: { ...as(token), ...headers } })
  expect(stream.status).toBe(200)
  streams.push(stream)
  return stream
}

/** The complete events of a stream (comments and the retry field left out). */
const eventsOf = (stream: EventStream): SseEvent[] => sseEvents(stream.received())
const uidsOf = (events: SseEvent[]) => events.filter((event) => event.event === 'mailbox.created').map((event) => JSON.parse(event.data).resource.id as string)

async function subscribe(token: string, url: string, types?: string[]): Promise<{ id: string; secret: string }> {
  const response = await fetch(`${server!.url}/webhooks`, { method: 'POST', headers: { 'content-type': 'application/json', ...as(token) }, body: JSON.stringify({ url, secret: SECRET, ...(types ? { types } : {}) }) })
  expect(response.status).toBe(201)
  return (await response.json()) as { id: string; secret: string }
}

describe('GET /events', () => {
  it('resumes with Last-Event-ID: a reader that reconnects misses no event and sees none twice', async () => {
    await start()
    const first = await open('token-acme')
    const created: string[] = []
    for (let n = 0; n < 5; n++) created.push(await createMailbox('token-acme'))
    await eventually(() => eventsOf(first).length === 5, 5000, 'five events on the first stream')
    first.close()
    const seen = eventsOf(first)
    // Emitted while nobody reads: the log keeps them.
    for (let n = 0; n < 5; n++) created.push(await createMailbox('token-acme'))
    const resumed = await open('token-acme', '', { 'last-event-id': seen.at(-1)!.idText! })
    for (let n = 0; n < 5; n++) created.push(await createMailbox('token-acme'))
    await eventually(() => eventsOf(resumed).length >= 10, 5000, 'ten events on the resumed stream')
    await Bun.sleep(100)
    const all = [...seen, ...eventsOf(resumed)]
    expect(uidsOf(all)).toEqual(created)
    expect(new Set(all.map((event) => event.idText)).size).toBe(15)
    for (const event of all) expect(JSON.parse(event.data).id).toBe(event.idText)
  }, 20000)

  it('starts a stream resumed from an id older than the retained log with an events.missed event', async () => {
    await start({}, { events_retained: 3 })
    const first = await open('token-acme')
    await createMailbox('token-acme')
    await eventually(() => eventsOf(first).length === 1)
    const old = eventsOf(first)[0]!.idText!
    for (let n = 0; n < 5; n++) await createMailbox('token-acme')
    const resumed = await open('token-acme', '', { 'last-event-id': old })
    await eventually(() => eventsOf(resumed).length === 4, 5000, 'the missed notice and the three kept events')
    const events = eventsOf(resumed)
    expect(events[0]!.event).toBe('events.missed')
    expect(JSON.parse(events[0]!.data)).toMatchObject({ last_event_id: old })
    expect(events.slice(1).every((event) => event.event === 'mailbox.created')).toBe(true)
  })

  it('filters by type and by resource', async () => {
    await start()
    const uid = crypto.randomUUID()
    const byResource = await open('token-acme', `?resource=${uid}`)
    const byType = await open('token-acme', '?types=mailbox.terminated')
    await createMailbox('token-acme')
    const body = JSON.stringify({ mailbox: JSON.stringify({ uid, name: null, role: 'agent' }) })
    await fetch(`${server!.url}/mailbox`, { method: 'POST', headers: { 'content-type': 'application/json', ...as('token-acme') }, body })
    await fetch(`${server!.url}/mailbox`, { method: 'DELETE', headers: { 'content-type': 'application/json', ...as('token-acme') }, body })
    await eventually(() => eventsOf(byResource).length === 2 && eventsOf(byType).length === 1)
    await Bun.sleep(100)
    expect(eventsOf(byResource).map((event) => event.event)).toEqual(['mailbox.created', 'mailbox.terminated'])
    expect(eventsOf(byType).map((event) => [event.event, JSON.parse(event.data).resource.id])).toEqual([['mailbox.terminated', uid]])
  })

  it('refuses an unknown type and a malformed Last-Event-ID naming what is wrong', async () => {
    await start()
    const unknown = await fetch(`${server!.url}/events?types=job.created,job.exploded`, { headers: as('token-acme') })
    expect(unknown.status).toBe(400)
    expect(((await unknown.json()) as { error: { message: string } }).error.message).toContain('job.exploded')
    const badId = await fetch(`${server!.url}/events`, { headers: { ...as('token-acme'), 'last-event-id': 'yesterday' } })
    expect(badId.status).toBe(400)
    expect(((await badId.json()) as { error: { message: string } }).error.message).toContain('Last-Event-ID')
    expect((await fetch(`${server!.url}/events`)).status).toBe(401)
    const badTimeout = await fetch(`${server!.url}/events?timeout=soon`, { headers: as('token-acme') })
    expect(badTimeout.status).toBe(400)
    expect(((await badTimeout.json()) as { error: { message: string } }).error.message).toContain('timeout')
  })

  it('counts open streams toward max_waiting_per_client, refusing one more with 429', async () => {
    await start({ max_waiting_per_client: 2 })
    const first = await open('token-acme')
    await open('token-acme')
    const refused = await fetch(`${server!.url}/events`, { headers: as('token-acme') })
    expect(refused.status).toBe(429)
    expect(((await refused.json()) as { error: { message: string } }).error.message).toContain('max_waiting_per_client')
    // Another client has its own count; a closed stream gives its slot back.
    await open('token-globex')
    first.close()
    await eventually(async () => {
      const again = await fetch(`${server!.url}/events?timeout=0.05`, { headers: as('token-acme') })
      await again.text()
      return again.status === 200
    })
  })

  it('ends a stream after ?timeout= seconds', async () => {
    await start()
    const started = Date.now()
    const stream = await open('token-acme', '?timeout=0.3')
    await stream.ended
    expect(Date.now() - started).toBeGreaterThanOrEqual(250)
    expect(Date.now() - started).toBeLessThan(3000)
  })

  it('never shows a tenant the events of another, live or resumed', async () => {
    await start()
    const acme = await open('token-acme')
    const globex = await open('token-globex')
    const acmeUids = [await createMailbox('token-acme'), await createMailbox('token-acme')]
    const globexUid = await createMailbox('token-globex')
    await eventually(() => eventsOf(acme).length === 2 && eventsOf(globex).length === 1)
    const resumed = await open('token-globex', '', { 'last-event-id': '0' })
    await eventually(() => eventsOf(resumed).length >= 1)
    await Bun.sleep(150)
    expect(uidsOf(eventsOf(acme))).toEqual(acmeUids)
    expect(uidsOf(eventsOf(globex))).toEqual([globexUid])
    expect(uidsOf(eventsOf(resumed))).toEqual([globexUid])
    // A resumed stream may open with events.missed (the memory backend's log starts with its process), which names no tenant.
    for (const event of [...eventsOf(globex), ...eventsOf(resumed)].filter((item) => item.event !== 'events.missed')) expect(JSON.parse(event.data).tenant).toBe('globex')
  })
})

describe('webhooks', () => {
  it('delivers every event signed, and retries those made while the receiver was down', async () => {
    await start({ webhook_backoff_ms: 50 })
    const hook = receiver()
    await subscribe('token-acme', hook.url)
    const early = [await createMailbox('token-acme'), await createMailbox('token-acme')]
    await eventually(() => hook.deliveries.length === 2, 5000, 'two deliveries')
    await hook.stop()
    const late = [await createMailbox('token-acme'), await createMailbox('token-acme')]
    await Bun.sleep(300)
    hook.start()
    await eventually(() => hook.deliveries.length === 4, 10000, 'the deliveries made while the receiver was down')
    expect(hook.deliveries.map((delivery) => delivery.event.resource.id).sort()).toEqual([...early, ...late].sort())
    expect(hook.deliveries.every((delivery) => delivery.verified)).toBe(true)
    expect(hook.deliveries.every((delivery) => delivery.eventId === delivery.event.id)).toBe(true)
    expect(Math.max(...hook.deliveries.map((delivery) => delivery.attempt))).toBeGreaterThan(1)
  }, 20000)

  it('dead-letters a delivery after webhook_attempts failures, with its last error; a retry delivers it, a drop forgets it', async () => {
    await start({ webhook_attempts: 2, webhook_backoff_ms: 20 })
    const hook = receiver()
    hook.status = 500
    const { id } = await subscribe('token-acme', hook.url)
    const [first, second] = [await createMailbox('token-acme'), await createMailbox('token-acme')]
    const deadLetters = async () => ((await (await fetch(`${server!.url}/webhooks/${id}/dead-letters`, { headers: as('token-acme') })).json()) as { dead_letters: { id: string; attempts: number; last_error: string; event: { resource: { id: string } } }[] }).dead_letters
    await eventually(async () => (await deadLetters()).length === 2, 10000, 'two dead letters')
    const dead = await deadLetters()
    expect(dead.map((letter) => letter.event.resource.id).sort()).toEqual([first, second].sort())
    for (const letter of dead) expect(letter).toMatchObject({ attempts: 2, last_error: 'HTTP 500: receiver is failing on purpose' })
    expect(hook.calls).toBe(4)
    hook.status = 204
    const retried = dead.find((letter) => letter.event.resource.id === first)!
    const dropped = dead.find((letter) => letter.event.resource.id === second)!
    expect((await fetch(`${server!.url}/webhooks/${id}/dead-letters/${retried.id}/retry`, { method: 'POST', headers: as('token-acme') })).status).toBe(202)
    expect((await fetch(`${server!.url}/webhooks/${id}/dead-letters/${dropped.id}`, { method: 'DELETE', headers: as('token-acme') })).status).toBe(204)
    await eventually(() => hook.deliveries.length === 1, 5000, 'the retried dead letter')
    expect(hook.deliveries[0]!.event.resource.id).toBe(first)
    expect(await deadLetters()).toEqual([])
    const metrics = await (await fetch(`${server!.url}/metrics`)).text()
    const count = (outcome: string) => Number(new RegExp(`^switchboard_webhook_deliveries_total\\{outcome="${outcome}"\\} (\\d+)`, 'm').exec(metrics)?.[1])
    expect([count('retried'), count('dead_lettered'), count('delivered')]).toEqual([2, 2, 1])
    // Another tenant cannot see or touch them.
    expect((await fetch(`${server!.url}/webhooks/${id}/dead-letters`, { headers: as('token-globex') })).status).toBe(404)
  }, 20000)

  it("never delivers one tenant's events to another's webhook", async () => {
    await start()
    const [acmeHook, globexHook] = [receiver(), receiver()]
    await subscribe('token-acme', acmeHook.url)
    await subscribe('token-globex', globexHook.url)
    const acmeUid = await createMailbox('token-acme')
    const globexUid = await createMailbox('token-globex')
    await eventually(() => acmeHook.deliveries.length === 1 && globexHook.deliveries.length === 1)
    await Bun.sleep(200)
    expect(acmeHook.deliveries.map((delivery) => delivery.event.resource.id)).toEqual([acmeUid])
    expect(globexHook.deliveries.map((delivery) => delivery.event.resource.id)).toEqual([globexUid])
    const listed = (await (await fetch(`${server!.url}/webhooks`, { headers: as('token-globex') })).json()) as { webhooks: { url: string; secret?: string }[] }
    expect(listed.webhooks).toEqual([expect.objectContaining({ url: globexHook.url })])
    expect(listed.webhooks[0]!.secret).toBeUndefined()
  })

  it('delivers only the types a subscription names', async () => {
    await start()
    const hook = receiver()
    await subscribe('token-acme', hook.url, ['mailbox.terminated'])
    const uid = await createMailbox('token-acme')
    const body = JSON.stringify({ mailbox: JSON.stringify({ uid, name: null, role: 'agent' }) })
    await fetch(`${server!.url}/mailbox`, { method: 'DELETE', headers: { 'content-type': 'application/json', ...as('token-acme') }, body })
    await eventually(() => hook.deliveries.length === 1)
    await Bun.sleep(200)
    expect(hook.deliveries.map((delivery) => delivery.event.type)).toEqual(['mailbox.terminated'])
  })

  it('refuses a URL to a metadata or link-local address, and a private one without allow_private_agent_urls, without calling it', async () => {
    await start({ allow_private_agent_urls: false })
    const hook = receiver()
    for (const url of ['http://169.254.169.254/latest/meta-data', 'http://[fe80::1]/hook', 'http://[::ffff:169.254.169.254]/', hook.url]) {
      const response = await fetch(`${server!.url}/webhooks`, { method: 'POST', headers: { 'content-type': 'application/json', ...as('token-acme') }, body: JSON.stringify({ url }) })
      expect(response.status).toBe(400)
      expect(((await response.json()) as { error: { message: string } }).error.message).toContain('webhook url')
    }
    expect(hook.calls).toBe(0)
    expect(((await (await fetch(`${server!.url}/webhooks`, { headers: as('token-acme') })).json()) as { webhooks: unknown[] }).webhooks).toEqual([])
  })

  it("reads no more than a KiB of a receiver's answer, and gives up on one that does not answer within webhook_timeout_ms", async () => {
    await start({ webhook_attempts: 1, webhook_timeout_ms: 200 })
    const [loud, silent] = [receiver(), receiver()]
    loud.status = 500
    loud.failureBody = 'x'.repeat(4 * 1024 * 1024)
    silent.silent = true
    const loudHook = await subscribe('token-acme', loud.url)
    const silentHook = await subscribe('token-acme', silent.url)
    await createMailbox('token-acme')
    const deadLetters = async (id: string) => ((await (await fetch(`${server!.url}/webhooks/${id}/dead-letters`, { headers: as('token-acme') })).json()) as { dead_letters: { last_error: string }[] }).dead_letters
    await eventually(async () => (await deadLetters(loudHook.id)).length === 1 && (await deadLetters(silentHook.id)).length === 1, 5000, 'both dead-lettered')
    const [loudError] = await deadLetters(loudHook.id)
    expect(loudError!.last_error.startsWith('HTTP 500: xxx')).toBe(true)
    expect(loudError!.last_error.length).toBeLessThanOrEqual('HTTP 500: '.length + 1024)
    expect((await deadLetters(silentHook.id))[0]!.last_error).toContain('webhook_timeout_ms')
  })

  it('holds at most webhook_backlog deliveries for a subscription whose receiver is down, and delivers those', async () => {
    await start({ webhook_backlog: 2, webhook_backoff_ms: 50 })
    const hook = receiver()
    await subscribe('token-acme', hook.url)
    await hook.stop()
    const uids = [await createMailbox('token-acme'), await createMailbox('token-acme'), await createMailbox('token-acme')]
    await Bun.sleep(200)
    hook.start()
    await eventually(() => hook.deliveries.length === 2, 5000, 'the two held deliveries')
    await Bun.sleep(300)
    expect(hook.deliveries.map((delivery) => delivery.event.resource.id).sort()).toEqual(uids.slice(0, 2).sort())
  }, 10000)

  it('refuses subscriptions with 403 when webhooks_per_tenant is 0', async () => {
    await start({ webhooks_per_tenant: 0 })
    const response = await fetch(`${server!.url}/webhooks`, { method: 'POST', headers: { 'content-type': 'application/json', ...as('token-acme') }, body: JSON.stringify({ url: 'http://127.0.0.1:9/hook' }) })
    expect(response.status).toBe(403)
    expect(((await response.json()) as { error: { message: string } }).error.message).toContain('webhooks_per_tenant')
  })

  it('holds at most webhooks_per_tenant subscriptions per tenant, and a secret of bounded length', async () => {
    await start({ webhooks_per_tenant: 2 })
    const hook = receiver()
    await subscribe('token-acme', hook.url)
    await subscribe('token-acme', hook.url)
    const third = await fetch(`${server!.url}/webhooks`, { method: 'POST', headers: { 'content-type': 'application/json', ...as('token-acme') }, body: JSON.stringify({ url: hook.url }) })
    expect(third.status).toBe(409)
    expect(((await third.json()) as { error: { message: string } }).error.message).toContain('webhooks_per_tenant')
    await subscribe('token-globex', hook.url)
    const long = await fetch(`${server!.url}/webhooks`, { method: 'POST', headers: { 'content-type': 'application/json', ...as('token-globex') }, body: JSON.stringify({ url: hook.url, secret: 'x'.repeat(257) }) })
    expect(long.status).toBe(400)
    expect(((await long.json()) as { error: { message: string } }).error.message).toContain('secret')
  })
})

describe('what is emitted', () => {
  const workers: TestWorker[] = []
  afterEach(async () => {
    for (const worker of workers.splice(0)) await worker.kill()
  })

  it("tells a job's life and its worker's: registered, created, assigned, running, completed, drained, lost", async () => {
    await start()
    const stream = await open('token-acme', '?types=job.*,worker.*')
    const other = await open('token-globex')
    const worker = await TestWorker.connect(server!.url, { agentName: `events-${crypto.randomUUID()}`, token: 'token-acme' })
    workers.push(worker)
    const created = await fetch(`${server!.url}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json', ...as('token-acme') }, body: JSON.stringify({ agent_name: worker.options.agentName, room_id: 'room-e' }) })
    expect(created.status).toBe(201)
    const job = (await created.json()) as { id: string }
    await worker.waitForAssignment(job.id)
    worker.update(job.id, 'running')
    await eventually(() => eventsOf(stream).some((event) => event.event === 'job.running'))
    worker.update(job.id, 'completed')
    await eventually(() => eventsOf(stream).some((event) => event.event === 'job.completed'))
    expect((await fetch(`${server!.url}/workers/${worker.workerId}/drain`, { method: 'POST', headers: as('token-acme') })).status).toBe(200)
    await worker.close()
    await eventually(() => eventsOf(stream).some((event) => event.event === 'worker.lost'))
    const events = eventsOf(stream).map((event) => ({ type: event.event, ...JSON.parse(event.data) }))
    expect(events.map((event) => event.type)).toEqual(['worker.registered', 'job.created', 'job.assigned', 'job.running', 'job.completed', 'worker.drained', 'worker.lost'])
    for (const event of events.filter((item) => item.type.startsWith('job.'))) expect(event).toMatchObject({ tenant: 'acme', resource: { kind: 'job', id: job.id }, data: { agent_name: worker.options.agentName, room_id: 'room-e' } })
    expect(events.find((event) => event.type === 'job.assigned').data.worker_id).toBe(worker.workerId)
    expect(eventsOf(other)).toEqual([])
  }, 20000)

  it('tells a job that waited in the backlog and one that expired there', async () => {
    await start({ job_queue_max: 5, job_pending_ttl_s: 1, instance_heartbeat_s: 0.2 })
    const stream = await open('token-acme', '?types=job.*')
    const created = await fetch(`${server!.url}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json', ...as('token-acme') }, body: JSON.stringify({ agent_name: `nobody-${crypto.randomUUID()}`, room_id: 'r' }) })
    expect(created.status).toBe(202)
    await eventually(() => eventsOf(stream).some((event) => event.event === 'job.expired'), 8000, 'job.expired')
    expect(eventsOf(stream).map((event) => event.event)).toEqual(['job.created', 'job.pending', 'job.expired'])
    expect(JSON.parse(eventsOf(stream)[2]!.data).data).toMatchObject({ state: 'failed', reason: expect.stringContaining('job_pending_ttl_s') })
  }, 20000)

  it('tells the operator every workspace, and a workspace its own subtree: registered, online, offline, removed', async () => {
    await start({ admin_token: 'admin-token', heartbeat_ttl_s: 1, instance_heartbeat_s: 0.2 })
    const admin = { 'content-type': 'application/json', ...as('admin-token') }
    const make = async (body: Record<string, unknown>) => (await (await fetch(`${server!.url}/workspaces`, { method: 'POST', headers: admin, body: JSON.stringify(body) })).json()) as { id: string; auth_token: string }
    const parent = await make({ name: 'parent' })
    const child = await make({ name: 'child', parent_id: parent.id })
    const stranger = await make({ name: 'stranger' })
    const operator = await open('admin-token', '?types=workspace.*')
    const parentView = await open(parent.auth_token, '?types=workspace.*')
    const childView = await open(child.auth_token)
    const acme = await open('token-acme')
    const register = (workspace: { id: string; auth_token: string }) =>
      fetch(`${server!.url}/registry/register`, { method: 'POST', headers: { 'content-type': 'application/json', ...as(workspace.auth_token) }, body: JSON.stringify({ id: workspace.id, url: 'http://127.0.0.1:9/a2a' }) })
    expect((await register(child)).status).toBe(200)
    expect((await register(stranger)).status).toBe(200)
    await eventually(() => eventsOf(childView).some((event) => event.event === 'workspace.offline'), 5000, 'the child goes offline')
    expect((await fetch(`${server!.url}/workspaces/${child.id}`, { method: 'DELETE', headers: as('admin-token') })).status).toBe(200)
    await eventually(() => eventsOf(parentView).some((event) => event.event === 'workspace.removed'))
    const typesFor = (events: SseEvent[], id: string) => events.filter((event) => JSON.parse(event.data).resource.id === id).map((event) => event.event)
    expect(typesFor(eventsOf(parentView), child.id)).toEqual(['workspace.registered', 'workspace.online', 'workspace.offline', 'workspace.removed'])
    expect(typesFor(eventsOf(parentView), stranger.id)).toEqual([])
    expect(eventsOf(childView).every((event) => JSON.parse(event.data).resource.id === child.id)).toBe(true)
    await eventually(() => typesFor(eventsOf(operator), stranger.id).includes('workspace.offline'), 5000, 'the operator sees the stranger go offline')
    expect(JSON.parse(eventsOf(parentView)[0]!.data)).toMatchObject({ tenant: parent.id, workspaces: [child.id, parent.id] })
    expect(eventsOf(acme)).toEqual([])
  }, 20000)
})
