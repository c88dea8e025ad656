import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { createApp } from '../../../src/app'
import type { Backend } from '../../../src/backend/index'
import { serve } from '../../../src/http/node'
import { logger, makeTestBackend } from '../../support/backend'
import { rawRequest } from '../../support/http'
import { ADMIN_TOKEN, startRegistry, type Registry, type Workspace } from './support'

const AGENT_URL = 'http://127.0.0.1:9/'

describe('workspaces (admin API)', () => {
  let registry: Registry
  beforeAll(async () => {
    registry = await startRegistry()
  })
  afterAll(() => registry.close())

  it('creates a workspace and shows its token once, storing only its digest', async () => {
    const response = await registry.request('POST', '/workspaces', { token: ADMIN_TOKEN, body: { name: 'planner', role: 'lead' } })
    expect(response.status).toBe(201)
    const created = (await response.json()) as Record<string, string>
    expect(created.id).toMatch(/^[0-9a-f-]{36}$/)
    expect(created.auth_token!.length).toBeGreaterThanOrEqual(43)
    expect(created.status).toBe('provisioning')
    const info = (await (await registry.request('GET', `/workspaces/${created.id}`, { token: created.auth_token! })).json()) as Record<string, unknown>
    expect(info).toMatchObject({ id: created.id, name: 'planner', role: 'lead', inbound_secret: created.inbound_secret })
    expect(JSON.stringify(info)).not.toContain(created.auth_token!)
    const listed = (await (await registry.request('GET', '/workspaces', { token: ADMIN_TOKEN })).json()) as { id: string }[]
    expect(listed.map((item) => item.id)).toContain(created.id!)
  })

  it('refuses admin routes without the admin token', async () => {
    const worker = await registry.createWorkspace('worker')
    expect((await registry.request('POST', '/workspaces', { body: { name: 'x' } })).status).toBe(401)
    expect((await registry.request('POST', '/workspaces', { token: worker.token, body: { name: 'x' } })).status).toBe(403)
    expect((await registry.request('GET', '/workspaces', { token: 'guess' })).status).toBe(401)
    expect((await registry.request('DELETE', `/workspaces/${worker.id}`, { token: worker.token })).status).toBe(403)
  })

  it('answers bad input with a 400 that names the field', async () => {
    const response = await registry.request('POST', '/workspaces', { token: ADMIN_TOKEN, body: { name: '', parent_id: 'not-a-uuid' } })
    expect(response.status).toBe(400)
    expect(((await response.json()) as { error: { message: string } }).error.message).toMatch(/name|parent_id/)
    const badParent = await registry.request('POST', '/workspaces', { token: ADMIN_TOKEN, body: { name: 'orphan', parent_id: crypto.randomUUID() } })
    expect(badParent.status).toBe(404)
    expect((await registry.request('GET', '/workspaces/..%2F..%2Fetc', { token: ADMIN_TOKEN })).status).toBe(400)
    expect((await registry.request('POST', '/workspaces', { token: ADMIN_TOKEN, body: '{"name":' })).status).toBe(400)
  })

  it('removes a workspace: 410 with id, removed_at and hint, also to its own revoked token', async () => {
    const doomed = await registry.createWorkspace('doomed')
    const removed = await registry.request('DELETE', `/workspaces/${doomed.id}`, { token: ADMIN_TOKEN })
    expect(removed.status).toBe(200)
    for (const token of [doomed.token, ADMIN_TOKEN]) {
      const response = await registry.request('GET', `/workspaces/${doomed.id}`, { token })
      expect(response.status).toBe(410)
      const body = (await response.json()) as Record<string, string>
      expect(body.error).toBe('workspace removed')
      expect(body.id).toBe(doomed.id)
      expect(Number.isNaN(Date.parse(body.removed_at!))).toBe(false)
      expect(body.hint!.length).toBeGreaterThan(10)
    }
    const heartbeat = await registry.request('POST', '/registry/heartbeat', { token: doomed.token, body: { workspace_id: doomed.id } })
    expect(heartbeat.status).toBe(401)
  })

  it('rotating a token revokes the old one', async () => {
    const agent = await registry.createWorkspace('rotator')
    const rotated = await registry.request('POST', `/workspaces/${agent.id}/tokens`, { token: agent.token })
    expect(rotated.status).toBe(201)
    const { auth_token: fresh } = (await rotated.json()) as { auth_token: string }
    expect((await registry.request('GET', `/workspaces/${agent.id}`, { token: agent.token })).status).toBe(401)
    expect((await registry.request('GET', `/workspaces/${agent.id}`, { token: fresh })).status).toBe(200)
  })
})

describe('admin routes without an admin token configured', () => {
  it('fail closed and say why', async () => {
    const registry = await startRegistry({ admin_token: undefined })
    try {
      const response = await registry.request('POST', '/workspaces', { token: ADMIN_TOKEN, body: { name: 'x' } })
      expect(response.status).toBe(403)
      expect(((await response.json()) as { error: { message: string } }).error.message).toContain('no admin_token is configured')
    } finally {
      await registry.close()
    }
  })
})

describe('registration and heartbeats', () => {
  let registry: Registry
  beforeAll(async () => {
    registry = await startRegistry({ heartbeat_ttl_s: 1 })
  })
  afterAll(() => registry.close())

  it('registers a known workspace with its own token and shows it online', async () => {
    const agent = await registry.createWorkspace('registered')
    const response = await registry.request('POST', '/registry/register', { token: agent.token, body: { id: agent.id.toUpperCase(), url: AGENT_URL, agent_card: { name: 'r' }, delivery_mode: 'poll' } })
    expect(response.status).toBe(200)
    expect(await response.json()).toEqual({ status: 'registered', id: agent.id })
    const info = (await (await registry.request('GET', `/workspaces/${agent.id}`, { token: agent.token })).json()) as Record<string, unknown>
    expect(info).toMatchObject({ status: 'online', url: AGENT_URL, agent_card: { name: 'r' }, delivery_mode: 'poll' })
  })

  it('refuses to register an unknown id without open registration, and another workspace\'s id', async () => {
    const agent = await registry.createWorkspace('honest')
    const other = await registry.createWorkspace('other')
    const unknown = await registry.request('POST', '/registry/register', { token: agent.token, body: { id: crypto.randomUUID(), url: AGENT_URL, agent_card: {} } })
    expect(unknown.status).toBe(404)
    expect(await unknown.text()).toContain('open-registration')
    const foreign = await registry.request('POST', '/registry/register', { token: agent.token, body: { id: other.id, url: AGENT_URL, agent_card: {} } })
    expect(foreign.status).toBe(403)
    const anonymous = await registry.request('POST', '/registry/register', { body: { id: other.id, url: AGENT_URL, agent_card: {} } })
    expect(anonymous.status).toBe(401)
  })

  it('marks a workspace degraded at error_rate 0.5 and offline once the heartbeat TTL passes', async () => {
    const agent = await registry.createWorkspace('beating')
    await registry.register(agent, AGENT_URL)
    const beat = await registry.request('POST', '/registry/heartbeat', { token: agent.token, body: { workspace_id: agent.id, error_rate: 0.5, active_tasks: 2, current_task: 'thinking', uptime_seconds: 30 } })
    expect(beat.status).toBe(200)
    expect(await beat.json()).toEqual({ status: 'ok' })
    const status = async () => ((await (await registry.request('GET', `/workspaces/${agent.id}`, { token: agent.token })).json()) as { status: string; active_tasks: number }).status
    expect(await status()).toBe('degraded')
    await registry.request('POST', '/registry/heartbeat', { token: agent.token, body: { workspace_id: agent.id, error_rate: 0 } })
    expect(await status()).toBe('online')
    await Bun.sleep(1300)
    expect(await status()).toBe('offline')
  })

  it('refuses heartbeats with out-of-range fields and for another workspace', async () => {
    const agent = await registry.createWorkspace('strict')
    const other = await registry.createWorkspace('strict-other')
    expect((await registry.request('POST', '/registry/heartbeat', { token: agent.token, body: { workspace_id: agent.id, error_rate: 3 } })).status).toBe(400)
    expect((await registry.request('POST', '/registry/heartbeat', { token: agent.token, body: { workspace_id: other.id } })).status).toBe(403)
  })

  it('replaces the agent card', async () => {
    const agent = await registry.createWorkspace('carded')
    await registry.register(agent, AGENT_URL)
    const response = await registry.request('POST', '/registry/update-card', { token: agent.token, body: { workspace_id: agent.id, agent_card: { name: 'v2', skills: [] } } })
    expect(response.status).toBe(200)
    const info = (await (await registry.request('GET', `/workspaces/${agent.id}`, { token: agent.token })).json()) as { agent_card: unknown }
    expect(info.agent_card).toEqual({ name: 'v2', skills: [] })
  })
})

describe('open registration', () => {
  it('creates a root workspace for an unknown id and returns its token once', async () => {
    const registry = await startRegistry({ open_registration: true })
    try {
      const id = crypto.randomUUID()
      const first = await registry.request('POST', '/registry/register', { body: { id, url: AGENT_URL, agent_card: { name: 'newcomer' } } })
      expect(first.status).toBe(200)
      const body = (await first.json()) as { status: string; auth_token: string }
      expect(body.status).toBe('registered')
      expect(body.auth_token.length).toBeGreaterThan(40)
      const again = await registry.request('POST', '/registry/register', { body: { id, url: AGENT_URL, agent_card: {} } })
      expect(again.status).toBe(401)
      const withToken = await registry.request('POST', '/registry/register', { token: body.auth_token, body: { id, url: AGENT_URL, agent_card: {} } })
      expect(await withToken.json()).toEqual({ status: 'registered', id })
      const info = (await (await registry.request('GET', `/workspaces/${id}`, { token: body.auth_token })).json()) as { name: string; parent_id: null }
      expect(info).toMatchObject({ name: 'newcomer', parent_id: null })
    } finally {
      await registry.close()
    }
  })
})

describe('discovery and the hierarchy', () => {
  let registry: Registry
  // root1 ─┬─ a ─── a1 ─── a1x
  //        └─ b
  // root2 ─── c
  const tree: Record<string, Workspace> = {}
  beforeAll(async () => {
    registry = await startRegistry()
    tree.root1 = await registry.createWorkspace('root1')
    tree.root2 = await registry.createWorkspace('root2')
    tree.a = await registry.createWorkspace('alpha', tree.root1.id, 'writer')
    tree.b = await registry.createWorkspace('beta', tree.root1.id, 'reviewer')
    tree.a1 = await registry.createWorkspace('alpha-one', tree.a.id)
    tree.a1x = await registry.createWorkspace('alpha-one-x', tree.a1.id)
    tree.c = await registry.createWorkspace('gamma', tree.root2.id)
    tree.removed = await registry.createWorkspace('removed', tree.root1.id)
    for (const workspace of Object.values(tree)) await registry.register(workspace, AGENT_URL)
    await registry.request('DELETE', `/workspaces/${tree.removed.id}`, { token: ADMIN_TOKEN })
  })
  afterAll(() => registry.close())

  const discover = (from: string, to: string) =>
    registry.request('GET', `/registry/discover/${tree[to]!.id}`, { token: tree[from]!.token, headers: { 'x-workspace-id': tree[from]!.id } })

  const table: [string, string, boolean, string][] = [
    ['a', 'a', true, 'self'],
    ['a', 'b', true, 'siblings'],
    ['a', 'root1', true, 'child to parent'],
    ['root1', 'a', true, 'parent to child'],
    ['a1x', 'root1', true, 'descendant to ancestor'],
    ['root1', 'a1x', true, 'ancestor to descendant'],
    ['a1', 'b', false, 'nephew to aunt'],
    ['root1', 'root2', false, 'two roots'],
    ['a', 'c', false, 'across trees'],
    ['c', 'root1', false, 'other tree root'],
    ['a', 'removed', false, 'a removed sibling'],
  ]
  for (const [from, to, allowed, relation] of table) {
    it(`${allowed ? 'allows' : 'refuses'} ${from} → ${to} (${relation})`, async () => {
      const response = await discover(from, to)
      expect(response.status).toBe(allowed ? 200 : 403)
      if (allowed) expect(((await response.json()) as { id: string }).id).toBe(tree[to]!.id)
    })
  }

  it('discover answers id, url, name and the proxy URL', async () => {
    const body = (await (await discover('a', 'b')).json()) as Record<string, unknown>
    expect(body).toMatchObject({ id: tree.b!.id, name: 'beta', role: 'reviewer', url: AGENT_URL, parent_id: tree.root1!.id, status: 'online' })
    expect(body.proxy_url).toBe(`${registry.url}/workspaces/${tree.b!.id}/a2a`)
  })

  it('builds the proxy URL from a Host header too short to route by (a proxy on port 80 named "api")', async () => {
    const response = await rawRequest(`${registry.url}/registry/discover/${tree.b!.id}`, {
      headers: { host: 'api', authorization: `Bearer ${tree.a!.token}`, 'x-workspace-id': tree.a!.id },
    })
    expect(response.status).toBe(200)
    expect((JSON.parse(response.text) as { proxy_url: string }).proxy_url).toBe(`http://api/workspaces/${tree.b!.id}/a2a`)
  })

  it('lists peers as siblings, parent and children, without removed ones or itself', async () => {
    const response = await registry.request('GET', `/registry/${tree.a!.id}/peers`, { token: tree.a!.token, headers: { 'x-workspace-id': tree.a!.id } })
    expect(response.status).toBe(200)
    const peers = (await response.json()) as { name: string }[]
    expect(peers.map((peer) => peer.name).sort()).toEqual(['alpha-one', 'beta', 'root1'])
    const filtered = (await (await registry.request('GET', `/registry/${tree.a!.id}/peers?q=REVIEW`, { token: tree.a!.token })).json()) as { name: string }[]
    expect(filtered.map((peer) => peer.name)).toEqual(['beta'])
    const rootPeers = (await (await registry.request('GET', `/registry/${tree.root1!.id}/peers`, { token: tree.root1!.token })).json()) as { name: string }[]
    expect(rootPeers.map((peer) => peer.name).sort()).toEqual(['alpha', 'beta'])
  })

  it('refuses peers and discovery without a token, with a foreign X-Workspace-ID, or for another workspace', async () => {
    expect((await registry.request('GET', `/registry/${tree.a!.id}/peers`)).status).toBe(401)
    const mismatch = await registry.request('GET', `/registry/${tree.a!.id}/peers`, { token: tree.a!.token, headers: { 'x-workspace-id': tree.b!.id } })
    expect(mismatch.status).toBe(401)
    expect(await mismatch.text()).toContain('does not match')
    expect((await registry.request('GET', `/registry/${tree.a!.id}/peers`, { token: tree.b!.token })).status).toBe(403)
    expect((await registry.request('GET', `/registry/discover/${tree.b!.id}`, { token: 'not-a-token' })).status).toBe(401)
    expect((await registry.request('GET', `/registry/discover/not-a-uuid`, { token: tree.a!.token })).status).toBe(400)
  })
})

describe('a store that fails', () => {
  it('refuses discovery (503), never allows it', async () => {
    const backend = await makeTestBackend()
    let broken = false
    const agents = new Proxy(backend.agents, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver)
        if (typeof value !== 'function') return value
        return (...args: unknown[]) => {
          if (broken && property !== 'workspaceOfToken') return Promise.reject(new Error('disk on fire'))
          return (value as (...a: unknown[]) => unknown).apply(target, args)
        }
      },
    })
    const app = createApp({ backend: { ...backend, agents, ready: backend.ready, close: backend.close } as Backend, config: { admin_token: ADMIN_TOKEN, allow_private_agent_urls: true, log_level: 'silent' }, logger })
    const server = await serve(app, { host: '127.0.0.1', port: 0 })
    try {
      const create = async (name: string, parent_id?: string) =>
        (await (await fetch(`${server.url}/workspaces`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ name, parent_id }) })).json()) as { id: string; auth_token: string }
      const parent = await create('p')
      const a = await create('a', parent.id)
      const b = await create('b', parent.id)
      broken = true
      const response = await fetch(`${server.url}/registry/discover/${b.id}`, { headers: { authorization: `Bearer ${a.auth_token}` } })
      expect(response.status).toBe(503)
      expect(response.headers.get('retry-after')).not.toBeNull()
      const proxied = await fetch(`${server.url}/workspaces/${b.id}/a2a`, { method: 'POST', headers: { authorization: `Bearer ${a.auth_token}` }, body: JSON.stringify({ method: 'message/send', params: { message: { parts: [] } } }) })
      expect(proxied.status).toBe(503)
    } finally {
      await server.stop()
      await app.decorator.switchboard.close()
    }
  })
})
