/**
 * The free-form object fields a client stores (a job's metadata and room
 * options, an agent card): an array, which a record schema alone would
 * store as {"0": …}, gets a 400 naming the field, and one larger than
 * max_field_kb a 413 naming it, in each route's own error shape, with
 * nothing stored. And the one caller text an activity record keeps, the
 * JSON-RPC method, is cut to 200 characters.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { startPlainAgent, startRegistry, type PlainAgent, type Registry, type Workspace } from '../modules/agents/support'

const LIMIT_KB = 4
const large = { pad: 'x'.repeat(LIMIT_KB * 1024) }

describe('object fields of jobs and agent cards', () => {
  let server: Registry
  let workspace: Workspace
  beforeAll(async () => {
    server = await startRegistry({ max_field_kb: LIMIT_KB })
    workspace = await server.createWorkspace('fields')
  })
  afterAll(() => server?.close())

  const answer = async (response: Response) => ({ status: response.status, body: (await response.json()) as Record<string, unknown> })
  const job = (fields: Record<string, unknown>) => server.request('POST', '/jobs', { body: { agent_name: 'a', room_id: 'r', timeout_ms: 50, ...fields } })
  const dispatch = (fields: Record<string, unknown>) => server.request('POST', '/v2/agent/dispatch', { body: { meetingId: 'm', agentId: 'a', ...fields } })
  const register = (card: unknown) => server.request('POST', '/registry/register', { token: workspace.token, body: { id: workspace.id, url: 'http://127.0.0.1:9/', agent_card: card } })
  const updateCard = (card: unknown) => server.request('POST', '/registry/update-card', { token: workspace.token, body: { workspace_id: workspace.id, agent_card: card } })

  it('refuses an array where an object is documented, with a 400 naming the field', async () => {
    expect(await answer(await job({ metadata: [1, 2] }))).toEqual({ status: 400, body: { error: { code: 'BAD_REQUEST', message: 'metadata: must be a JSON object' } } })
    expect(await answer(await job({ room_options: ['x'] }))).toEqual({ status: 400, body: { error: { code: 'BAD_REQUEST', message: 'room_options: must be a JSON object' } } })
    expect(await answer(await dispatch({ metadata: [] }))).toEqual({ status: 400, body: { message: 'metadata: must be a JSON object' } })
    expect(await answer(await dispatch({ roomOptions: [{}] }))).toEqual({ status: 400, body: { message: 'roomOptions: must be a JSON object' } })
    for (const send of [register, updateCard]) {
      const refused = await answer(await send([{ name: 'card' }]))
      expect(refused.status).toBe(400)
      expect(JSON.stringify(refused.body)).toContain('agent_card: must be a JSON object')
    }
    expect((await server.request('GET', '/jobs')).status).toBe(200)
    expect(((await (await server.request('GET', '/jobs')).json()) as { jobs: unknown[] }).jobs).toEqual([])
  })

  it('refuses an object larger than max_field_kb with a 413 naming the field, and stores nothing of it', async () => {
    const tooLarge = (field: string, value: object = large) => `${field} takes ${JSON.stringify(value).length} bytes of JSON, more than the ${LIMIT_KB * 1024} of max_field_kb`
    expect(await answer(await job({ metadata: large }))).toEqual({ status: 413, body: { error: { code: 'PAYLOAD_TOO_LARGE', message: tooLarge('metadata') } } })
    expect(await answer(await job({ room_options: large }))).toEqual({ status: 413, body: { error: { code: 'PAYLOAD_TOO_LARGE', message: tooLarge('room_options') } } })
    expect(await answer(await dispatch({ metadata: large }))).toEqual({ status: 413, body: { message: tooLarge('metadata') } })
    expect(await answer(await dispatch({ roomOptions: large }))).toEqual({ status: 413, body: { message: tooLarge('roomOptions') } })
    const card = { name: 'card', ...large }
    for (const send of [register, updateCard]) {
      const refused = await answer(await send(card))
      expect(refused.status).toBe(413)
      expect(JSON.stringify(refused.body)).toContain(tooLarge('agent_card', card))
    }
    expect(((await (await server.request('GET', '/jobs')).json()) as { jobs: unknown[] }).jobs).toEqual([])
    // Within the bound, all of them are taken (the job fails for want of a worker, as any would).
    expect((await job({ metadata: { small: true }, room_options: { also: 1 } })).status).toBe(503)
    expect((await register({ name: 'card' })).status).toBe(200)
    expect((await updateCard({ name: 'card', note: 'y'.repeat(1000) })).status).toBe(200)
  })
})

describe('the activity record of a proxied call', () => {
  let server: Registry
  let agent: PlainAgent
  let workspace: Workspace
  beforeAll(async () => {
    server = await startRegistry()
    agent = await startPlainAgent()
    workspace = await server.createWorkspace('caller')
    await server.register(workspace, agent.url)
  })
  afterAll(async () => {
    await agent?.close()
    await server?.close()
  })

  it('keeps the first 200 characters of a method, however long the caller made it', async () => {
    const method = 'm'.repeat(1024 * 1024)
    const call = await server.request('POST', `/workspaces/${workspace.id}/a2a`, { token: workspace.token, body: { jsonrpc: '2.0', id: 1, method, params: {} } })
    await call.body?.cancel()
    const page = (await (await server.request('GET', `/workspaces/${workspace.id}/activity`, { token: workspace.token })).json()) as { items: { method: string }[] }
    expect(page.items.map((item) => item.method)).toEqual(['m'.repeat(200)])
  })
})
