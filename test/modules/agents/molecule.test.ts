/**
 * The requests Molecule's agent-side client (a2a_client.py) makes, byte for
 * byte in what matters: bearer + X-Workspace-ID + Origin on every call, ids
 * lower-cased in URLs (but X-Workspace-ID sent as configured), JSON bodies,
 * and the answers it parses.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { ADMIN_TOKEN, closedPort, startPlainAgent, startRegistry, type PlainAgent, type Registry, type Workspace } from './support'

const PLATFORM_URL = 'http://host.docker.internal:8080'

describe('Molecule a2a_client.py against Switchboard', () => {
  let registry: Registry
  let agent: PlainAgent
  let parent: Workspace
  let me: Workspace
  let peer: Workspace
  beforeAll(async () => {
    registry = await startRegistry()
    agent = await startPlainAgent()
    parent = await registry.createWorkspace('pm', null, 'manager')
    me = await registry.createWorkspace('dev', parent.id, 'developer')
    peer = await registry.createWorkspace('qa', parent.id, 'tester')
    for (const workspace of [parent, me, peer]) await registry.register(workspace, agent.url, { name: 'molecule agent' })
  })
  afterAll(async () => {
    await registry.close()
    await agent.close()
  })

  /** auth_headers(src) + Origin, with WORKSPACE_ID as the operator typed it (upper case). */
  const clientHeaders = () => ({ 'X-Workspace-ID': me.id.toUpperCase(), Authorization: `Bearer ${me.token}`, Origin: PLATFORM_URL, 'User-Agent': 'python-httpx/0.28.1' })

  it('discover_peer: GET /registry/discover/{id} answers 200 with id, url and name, well inside the 2 s budget', async () => {
    const started = performance.now()
    const response = await fetch(`${registry.url}/registry/discover/${peer.id.toLowerCase()}`, { headers: clientHeaders() })
    expect(performance.now() - started).toBeLessThan(2000)
    expect(response.status).toBe(200)
    const body = (await response.json()) as Record<string, unknown>
    expect(body).toMatchObject({ id: peer.id, url: agent.url, name: 'qa', role: 'tester', status: 'online' })
  })

  it('get_peers_with_diagnostic: GET /registry/{src}/peers answers a JSON list', async () => {
    const response = await fetch(`${registry.url}/registry/${me.id.toUpperCase()}/peers`, { headers: clientHeaders() })
    expect(response.status).toBe(200)
    const peers = (await response.json()) as { id: string; name: string; role: string; status: string; url: string; parent_id: string; agent_card: unknown }[]
    expect(Array.isArray(peers)).toBe(true)
    expect(peers.map((item) => item.name).sort()).toEqual(['pm', 'qa'])
    for (const item of peers) expect(Object.keys(item)).toEqual(expect.arrayContaining(['id', 'name', 'role', 'status', 'url', 'parent_id', 'agent_card']))
  })

  it('get_peers_with_diagnostic: a bad token is 401 and an unregistered id is 404 (the two cases it words)', async () => {
    const bad = await fetch(`${registry.url}/registry/${me.id}/peers`, { headers: { ...clientHeaders(), Authorization: 'Bearer revoked' } })
    expect(bad.status).toBe(401)
    const unknown = await fetch(`${registry.url}/registry/${crypto.randomUUID()}/peers`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, Origin: PLATFORM_URL } })
    expect(unknown.status).toBe(404)
  })

  it('send_a2a_message: result.parts[0].text is the peer\'s answer', async () => {
    const response = await fetch(`${registry.url}/workspaces/${peer.id.toLowerCase()}/a2a`, {
      method: 'POST',
      headers: { ...clientHeaders(), 'Content-Type': 'application/json' },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: crypto.randomUUID(),
        method: 'message/send',
        params: { message: { role: 'user', messageId: crypto.randomUUID(), parts: [{ kind: 'text', text: 'echo:done' }] } },
      }),
    })
    const data = (await response.json()) as { result: { parts: { text: string }[] } }
    expect(data.result.parts[0]!.text).toBe('done')
    expect(agent.calls.at(-1)!.headers['x-workspace-id']).toBe(me.id)
  })

  it('send_a2a_message: a dead peer is a fast JSON error with message and code, not a dropped connection', async () => {
    const dead = await registry.createWorkspace('dead', parent.id)
    await registry.register(dead, `http://127.0.0.1:${await closedPort()}/`)
    const response = await fetch(`${registry.url}/workspaces/${dead.id}/a2a`, {
      method: 'POST',
      headers: { ...clientHeaders(), 'Content-Type': 'application/json' },
      body: JSON.stringify({ method: 'message/send', params: { message: { role: 'user', parts: [{ kind: 'text', text: 'hello' }] } } }),
    })
    expect(response.status).toBe(503)
    const data = (await response.json()) as { error: { message: string; code: number } }
    expect(data.error.message.length).toBeGreaterThan(0)
    expect(typeof data.error.code).toBe('number')
  })

  it('get_workspace_info: 200 while alive, then 410 with id, removed_at and hint asked with its own revoked token', async () => {
    const doomed = await registry.createWorkspace('doomed-dev', parent.id)
    const headers = { Authorization: `Bearer ${doomed.token}`, Origin: PLATFORM_URL }
    expect((await fetch(`${registry.url}/workspaces/${doomed.id}`, { headers })).status).toBe(200)
    await registry.request('DELETE', `/workspaces/${doomed.id}`, { token: ADMIN_TOKEN })
    const response = await fetch(`${registry.url}/workspaces/${doomed.id}`, { headers })
    expect(response.status).toBe(410)
    const body = (await response.json()) as Record<string, unknown>
    expect(body).toMatchObject({ error: 'workspace removed', id: doomed.id })
    expect(typeof body.removed_at).toBe('string')
    expect(typeof body.hint).toBe('string')
  })
})
