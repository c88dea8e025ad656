/**
 * One tenant against another, with auth on: every route aimed at another
 * client's mailbox, jobs and workers, or at another workspace family's
 * registry entries and proxy, is refused, and nothing it aimed at changes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { agentId, bodies, idJson, messageJson } from '../support/academy'
import { startServer, writeTokensFile, type TestServer } from '../support/app'
import { rawRequest } from '../support/http'
import { TestWorker } from '../modules/workers/worker'
import { ADMIN_TOKEN, startRegistry, type Registry, type Workspace } from '../modules/agents/support'

const REFUSED = [401, 403, 404]
const tokens = writeTokensFile([
  { token: 'token-alice', client: 'alice' },
  { token: 'token-mallory', client: 'mallory' },
])
const ALICE = { authorization: 'Bearer token-alice' }
const MALLORY = { authorization: 'Bearer token-mallory' }

describe("another client's mailbox, jobs and workers", () => {
  let running: TestServer
  let worker: TestWorker
  const inbox = agentId('Inbox')
  const message = messageJson(agentId(), inbox)
  let jobId: string

  beforeAll(async () => {
    running = await startServer({ auth: 'token', tokens_file: tokens })
    const sender = JSON.parse(message).header.src
    for (const id of [inbox, sender]) expect((await rawRequest(`${running.url}/mailbox`, { method: 'POST', body: bodies.create(id, ['Inbox']), headers: ALICE })).status).toBe(200)
    expect((await rawRequest(`${running.url}/message`, { method: 'PUT', body: bodies.send(message), headers: ALICE })).status).toBe(200)
    worker = await TestWorker.connect(running.url, { token: 'token-alice', agentName: 'alice-agent' })
    const job = await rawRequest(`${running.url}/jobs`, { method: 'POST', body: JSON.stringify({ agent_name: 'alice-agent', room_id: 'room' }), headers: ALICE })
    expect(job.status).toBe(201)
    jobId = JSON.parse(job.text).id
  })
  afterAll(async () => {
    await worker?.close()
    await running?.close()
  })

  it('refuses every exchange route on the mailbox', async () => {
    const attempts: [string, string, string][] = [
      ['GET', '/mailbox', bodies.mailbox(inbox)],
      ['DELETE', '/mailbox', bodies.mailbox(inbox)],
      ['GET', '/message', bodies.receive(inbox, 0.1)],
      ['GET', '/mailbox/listen', bodies.receive(inbox, 0.1)],
      ['GET', '/mailbox/heartbeat', bodies.mailbox(inbox)],
      ['GET', '/mailbox/stats', bodies.mailbox(inbox)],
      ['POST', '/mailbox/share', bodies.share(inbox, 'mallory-group')],
      ['GET', '/mailbox/share', bodies.mailbox(inbox)],
      ['DELETE', '/mailbox/share', bodies.share(inbox, 'mallory-group')],
      ['PUT', '/message', bodies.send(messageJson(inbox, agentId()))],
    ]
    for (const [method, path, body] of attempts) {
      const response = await rawRequest(`${running.url}${path}`, { method, body, headers: MALLORY })
      expect({ route: `${method} ${path}`, status: REFUSED.includes(response.status) }).toEqual({ route: `${method} ${path}`, status: true })
    }
    const discovered = JSON.parse((await rawRequest(`${running.url}/discover`, { body: bodies.discover('Inbox', false), headers: MALLORY })).text)
    expect(discovered.agent_ids).not.toContain(inbox.uid)
  })

  it('refuses every route on the jobs and workers', async () => {
    for (const [method, path] of [
      ['GET', `/workers/${worker.workerId}`],
      ['POST', `/workers/${worker.workerId}/drain`],
      ['GET', `/jobs/${jobId}`],
      ['DELETE', `/jobs/${jobId}`],
    ] as const) {
      const response = await rawRequest(`${running.url}${path}`, { method, headers: MALLORY })
      expect({ route: `${method} ${path}`, status: REFUSED.includes(response.status) }).toEqual({ route: `${method} ${path}`, status: true })
    }
    expect(JSON.parse((await rawRequest(`${running.url}/workers`, { headers: MALLORY })).text).workers).toEqual([])
    expect(JSON.parse((await rawRequest(`${running.url}/jobs`, { headers: MALLORY })).text).jobs).toEqual([])
    // Mallory's dispatch finds no worker of Alice's to take it.
    const dispatched = await rawRequest(`${running.url}/jobs`, { method: 'POST', body: JSON.stringify({ agent_name: 'alice-agent', room_id: 'stolen', timeout_ms: 200 }), headers: MALLORY })
    expect(dispatched.status).toBe(503)
  })

  it('leaves the mailbox, its message, the job and the worker as they were', async () => {
    expect(JSON.parse((await rawRequest(`${running.url}/mailbox`, { body: bodies.mailbox(inbox), headers: ALICE })).text)).toEqual({ status: 'ACTIVE' })
    expect(JSON.parse((await rawRequest(`${running.url}/mailbox/share`, { body: bodies.mailbox(inbox), headers: ALICE })).text)).toEqual({ group_ids: [] })
    const received = await rawRequest(`${running.url}/message`, { body: JSON.stringify({ mailbox: idJson(inbox), timeout: 1 }), headers: ALICE })
    expect(JSON.parse(received.text)).toEqual({ message })
    const job = JSON.parse((await rawRequest(`${running.url}/jobs/${jobId}`, { headers: ALICE })).text)
    expect(job.state).not.toBe('cancelled')
    const mine = JSON.parse((await rawRequest(`${running.url}/workers/${worker.workerId}`, { headers: ALICE })).text)
    expect(mine).toMatchObject({ draining: false, connected: true })
  })
})

describe('what one client can learn or plant through keys it chose', () => {
  let running: TestServer
  beforeAll(async () => {
    running = await startServer({ auth: 'token', tokens_file: tokens })
  })
  afterAll(() => running?.close())
  const call = (method: string, path: string, body: string, headers: Record<string, string>) => rawRequest(`${running.url}${path}`, { method, body, headers })

  it("shows no count of requests sent from a key with no mailbox to anyone but the client that sent them", async () => {
    const [unboxed, inbox] = [agentId(), agentId()]
    expect((await call('POST', '/mailbox', bodies.create(inbox), ALICE)).status).toBe(200)
    for (let i = 0; i < 3; i++) expect((await call('PUT', '/message', bodies.send(messageJson(unboxed, inbox)), ALICE)).status).toBe(200)
    const outgoing = async (headers: Record<string, string>) => JSON.parse((await call('GET', '/mailbox/stats', bodies.mailbox(unboxed), headers)).text).outgoing
    expect(await outgoing(ALICE)).toBe(3)
    expect(await outgoing(MALLORY)).toBe(0)
  })

  it("puts no answer of a terminate into a mailbox another client created later under the request's source", async () => {
    // Mallory sends a request from a uid with no mailbox yet, to a mailbox of its own.
    const [chosen, trap] = [agentId(), agentId()]
    expect((await call('POST', '/mailbox', bodies.create(trap), MALLORY)).status).toBe(200)
    expect((await call('PUT', '/message', bodies.send(messageJson(chosen, trap)), MALLORY)).status).toBe(200)
    // Alice then creates a mailbox under that uid; Mallory terminates its own.
    expect((await call('POST', '/mailbox', bodies.create(chosen), ALICE)).status).toBe(200)
    expect((await call('DELETE', '/mailbox', bodies.mailbox(trap), MALLORY)).status).toBe(200)
    const received = await call('GET', '/message', bodies.receive(chosen, 0.3), ALICE)
    expect({ status: received.status, text: received.text.slice(0, 200) }).toEqual({ status: 408, text: 'Request timeout' })
    // An answer still reaches the mailbox a request really came from.
    const [asker, closing] = [agentId(), agentId()]
    for (const id of [asker, closing]) expect((await call('POST', '/mailbox', bodies.create(id), ALICE)).status).toBe(200)
    expect((await call('PUT', '/message', bodies.send(messageJson(asker, closing)), ALICE)).status).toBe(200)
    expect((await call('DELETE', '/mailbox', bodies.mailbox(closing), ALICE)).status).toBe(200)
    const answer = await call('GET', '/message', bodies.receive(asker, 1), ALICE)
    expect(answer.status).toBe(200)
    expect(JSON.parse(JSON.parse(answer.text).message).body.kind).toBe('academy-error-response')
  })
})

describe("another workspace family's registry entries and proxy", () => {
  let registry: Registry
  let victim: Workspace
  let intruder: Workspace
  const victimUrl = 'http://127.0.0.1:9/victim'

  beforeAll(async () => {
    registry = await startRegistry()
    const home = await registry.createWorkspace('home')
    victim = await registry.createWorkspace('victim', home.id)
    const elsewhere = await registry.createWorkspace('elsewhere')
    intruder = await registry.createWorkspace('intruder', elsewhere.id)
    await registry.register(victim, victimUrl, { name: 'victim', url: victimUrl })
  })
  afterAll(() => registry?.close())

  it('refuses every route aimed at the other workspace', async () => {
    const as = { token: intruder.token }
    const attempts: [string, string, unknown?][] = [
      ['GET', `/workspaces/${victim.id}`],
      ['DELETE', `/workspaces/${victim.id}`],
      ['GET', '/workspaces'],
      ['POST', '/workspaces', { name: 'sneaky' }],
      ['POST', `/workspaces/${victim.id}/tokens`],
      ['GET', `/workspaces/${victim.id}/activity`],
      ['GET', `/workspaces/${victim.id}/.well-known/agent-card.json`],
      ['POST', `/workspaces/${victim.id}/a2a`, { jsonrpc: '2.0', id: 1, method: 'message/send', params: { message: { parts: [{ kind: 'text', text: 'hi' }] } } }],
      ['GET', `/registry/discover/${victim.id}`],
      ['GET', `/registry/${victim.id}/peers`],
      ['POST', '/registry/register', { id: victim.id, url: 'http://127.0.0.1:9/hijacked' }],
      ['POST', '/registry/heartbeat', { workspace_id: victim.id, error_rate: 1 }],
      ['POST', '/registry/update-card', { workspace_id: victim.id, agent_card: { name: 'hijacked' } }],
    ]
    for (const [method, path, body] of attempts) {
      const response = await registry.request(method, path, { ...as, body })
      expect({ route: `${method} ${path}`, status: REFUSED.includes(response.status) }).toEqual({ route: `${method} ${path}`, status: true })
    }
    // Claiming to be the victim in X-Workspace-ID with one's own token is refused too.
    const spoofed = await registry.request('GET', `/registry/discover/${victim.id}`, { ...as, headers: { 'x-workspace-id': victim.id } })
    expect(REFUSED).toContain(spoofed.status)
  })

  it('leaves the other workspace, its card and its token as they were', async () => {
    const seen = (await (await registry.request('GET', `/workspaces/${victim.id}`, { token: victim.token })).json()) as Record<string, unknown>
    expect(seen).toMatchObject({ id: victim.id, url: victimUrl, status: expect.not.stringMatching('removed'), agent_card: { name: 'victim' } })
    const all = (await (await registry.request('GET', '/workspaces', { token: ADMIN_TOKEN })).json()) as unknown[]
    expect(all).toHaveLength(4)
  })
})
