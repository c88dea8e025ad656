/** Graceful shutdown of a real Switchboard process. */
import { afterEach, describe, expect, it } from 'bun:test'
import { TestWorker } from '../modules/workers/worker'
import { messageSend, startPlainAgent, type PlainAgent } from '../modules/agents/support'
import { agentId, bodies } from '../support/academy'
import { openStream, rawRequest } from '../support/http'
import { BUN, startProcess, type RunningProcess } from '../support/process'

const ADMIN = 'operator-token'
let child: RunningProcess | null = null
let agent: PlainAgent | null = null
afterEach(async () => {
  if (child && child.process.exitCode === null) child.process.kill('SIGKILL')
  child = null
  await agent?.close()
  agent = null
})

const start = (extra: string[] = []) =>
  startProcess([BUN, 'src/main.ts', '--port', '0', '--log-level', 'warn', '--admin-token', ADMIN, '--allow-private-agent-urls', ...extra])

/** Creates a workspace whose agent is `url`; returns its id and token. */
async function agentWorkspace(base: string, url: string): Promise<{ id: string; token: string }> {
  const created = await fetch(`${base}/workspaces`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'slow' }) })
  const { id, auth_token: token } = (await created.json()) as { id: string; auth_token: string }
  const registered = await fetch(`${base}/registry/register`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ id, url, agent_card: { name: 'slow', url } }) })
  expect(registered.status).toBe(200)
  return { id, token }
}

const callAgent = (base: string, workspace: { id: string; token: string }, text: string) =>
  fetch(`${base}/workspaces/${workspace.id}/a2a`, { method: 'POST', headers: { authorization: `Bearer ${workspace.token}`, 'content-type': 'application/json' }, body: JSON.stringify(messageSend(text)) })

describe('shutdown on SIGTERM', () => {
  it('ends event streams, answers long-polls, closes worker sockets with 1001, lets an A2A call finish, then exits 0', async () => {
    child = await start()
    const base = child.url
    const mailbox = agentId()
    expect((await rawRequest(`${base}/mailbox`, { method: 'POST', body: bodies.create(mailbox) })).status).toBe(200)
    const stream = await openStream(`${base}/mailbox/listen`, { body: bodies.receive(mailbox, 30) })
    await stream.waitFor('retry: 0')
    const poll = rawRequest(`${base}/message`, { method: 'GET', body: bodies.receive(mailbox, 30) })
    const worker = await TestWorker.connect(base)
    agent = await startPlainAgent()
    const workspace = await agentWorkspace(base, agent.url)
    const calling = callAgent(base, workspace, 'sleep:700')
    await agent.nextCall()

    const startedAt = Date.now()
    const exited = child.stop('SIGTERM')
    await stream.ended
    expect((await worker.closed).code).toBe(1001)
    expect((await poll).status).toBe(408)
    const answer = await calling
    expect(answer.status).toBe(200)
    expect(JSON.stringify(await answer.json())).toContain('slept')
    expect(await exited).toBe(0)
    expect(Date.now() - startedAt).toBeLessThan(5000)
  }, 20_000)

  it('cuts an A2A call still running at shutdown_timeout_s with 503 and Retry-After, and still exits 0', async () => {
    child = await start(['--shutdown-timeout-s', '0.3'])
    agent = await startPlainAgent()
    const workspace = await agentWorkspace(child.url, agent.url)
    const calling = callAgent(child.url, workspace, 'sleep:10000').then(
      async (response) => ({ status: response.status, retryAfter: response.headers.get('retry-after'), body: (await response.json()) as { error?: { message: string } } }),
      () => 'dropped',
    )
    const received = await agent.nextCall()
    const startedAt = Date.now()
    expect(await child.stop('SIGTERM')).toBe(0)
    expect(Date.now() - startedAt).toBeLessThan(4000)
    await received.closed
    // Not 499: the caller is still there, and may try again elsewhere.
    expect(await calling).toMatchObject({ status: 503, retryAfter: '5', body: { error: { message: 'Switchboard is shutting down: the call was cut before the agent answered' } } })
  }, 20_000)

  it('refuses new connections once shutdown has started', async () => {
    child = await start(['--shutdown-timeout-s', '2'])
    agent = await startPlainAgent()
    const workspace = await agentWorkspace(child.url, agent.url)
    const calling = callAgent(child.url, workspace, 'sleep:800')
    await agent.nextCall()
    const exited = child.stop('SIGTERM')
    await Bun.sleep(200)
    const late = await fetch(`${child.url}/healthz`).then(
      (response) => response.status,
      () => 'refused',
    )
    expect(late).toBe('refused')
    expect((await calling).status).toBe(200)
    expect(await exited).toBe(0)
  }, 20_000)
})
