/**
 * A2A's HTTP+JSON binding through the proxy against a plain agent: what
 * reaches the agent (path, tenant, query, method, body and headers as sent),
 * Switchboard's own refusals in the binding's error body, push-notification
 * URLs, relayed errors and streams, and the cards it serves for v1.0 and
 * v0.3 agents.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { openStream, rawRequest, sseData } from '../../support/http'
import { closedPort, startPlainAgent, startRegistry, type PlainAgent, type Registry, type Workspace } from './support'

/** A REST error body as A2A's spec writes it (§11.6). */
interface RestError {
  error: { code: number; status: string; message: string; details: { '@type': string; reason?: string; domain?: string; metadata?: Record<string, string>; fieldViolations?: { field: string }[] }[] }
}

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'

describe('the HTTP+JSON binding through the proxy', () => {
  let registry: Registry
  let agent: PlainAgent
  let caller: Workspace
  let target: Workspace
  let jsonRpcOnly: Workspace
  let down: Workspace
  let stranger: Workspace
  beforeAll(async () => {
    registry = await startRegistry({ a2a_body_limit_kb: 64, a2a_header_timeout_s: 1, a2a_idle_timeout_s: 1 })
    agent = await startPlainAgent()
    const parent = await registry.createWorkspace('parent')
    caller = await registry.createWorkspace('caller', parent.id)
    target = await registry.createWorkspace('target', parent.id)
    jsonRpcOnly = await registry.createWorkspace('json-rpc only', parent.id)
    down = await registry.createWorkspace('down', parent.id)
    stranger = await registry.createWorkspace('stranger')
    const card = (base: string) => ({
      name: 'rest agent',
      supportedInterfaces: [
        { url: `${base}jsonrpc`, protocolBinding: 'JSONRPC', protocolVersion: '1.0' },
        { url: `${base}rest`, protocolBinding: 'HTTP+JSON', protocolVersion: '1.0' },
        { url: `${base}grpc`, protocolBinding: 'GRPC', protocolVersion: '1.0' },
      ],
    })
    await registry.register(target, agent.url, card(agent.url))
    await registry.register(jsonRpcOnly, agent.url, { name: 'json-rpc agent', url: agent.url, protocolVersion: '0.3.0' })
    const closed = `http://127.0.0.1:${await closedPort()}/`
    await registry.register(down, closed, card(closed))
  })
  afterAll(async () => {
    await registry.close()
    await agent.close()
  })

  const rest = (method: string, path: string, options: { to?: Workspace; token?: string; body?: string; headers?: Record<string, string> } = {}) =>
    fetch(`${registry.url}/workspaces/${(options.to ?? target).id}/a2a${path}`, {
      method,
      headers: { ...(options.token === undefined ? { authorization: `Bearer ${caller.token}` } : options.token === '' ? {} : { authorization: `Bearer ${options.token}` }), ...(options.body === undefined ? {} : { 'content-type': 'application/json' }), ...options.headers },
      body: options.body,
    })
  const sendBody = (text: string) => JSON.stringify({ message: { messageId: crypto.randomUUID(), role: 'ROLE_USER', parts: [{ text }] } })
  const errorOf = async (response: Response) => (await response.json()) as RestError

  it('reaches the agent\'s HTTP+JSON interface with the path after the proxy URL, tenant and query included, as sent', async () => {
    const cases: [string, string, string | undefined][] = [
      ['POST', '/message:send', sendBody('echo:hello')],
      ['GET', '/acme/tasks?contextId=c%201&pageSize=5', undefined],
      ['GET', '/tasks/task%2F1?historyLength=2', undefined],
      ['POST', '/acme/tasks/task-1:cancel', undefined],
      ['DELETE', '/tasks/task-1/pushNotificationConfigs/config-1', undefined],
      ['GET', '/extendedAgentCard', undefined],
    ]
    for (const [method, path, body] of cases) {
      const next = agent.nextCall()
      const response = await rest(method, path, { body, headers: { 'a2a-version': '1.0', traceparent: TRACEPARENT, 'content-type': 'application/a2a+json', accept: 'application/a2a+json' } })
      expect({ path, status: response.status }).toEqual({ path, status: 200 })
      const call = await next
      expect({ path, reached: call.path, raw: call.raw }).toEqual({ path, reached: `/rest${path}`, raw: body ?? '' })
      expect(call.headers['a2a-version']).toBe('1.0')
      expect(call.headers['content-type']).toBe(body === undefined ? undefined : 'application/a2a+json')
      expect(call.headers.accept).toBe('application/a2a+json')
      expect(call.headers['x-workspace-id']).toBe(caller.id)
      expect(call.headers['x-switchboard-secret']).toBe(target.secret)
      expect(call.headers.authorization).toBeUndefined()
      expect(call.headers.traceparent).toBe(TRACEPARENT)
      expect(response.headers.get('traceparent')).toBe(TRACEPARENT)
    }
  })

  it("refuses a path whose dot segments would climb out of the agent's HTTP+JSON interface, however spelled", async () => {
    const before = agent.calls.length
    for (const tail of ['/../message:send', '/%2e%2e/message:send', '/.%2E/tasks', '/tasks/..', '/tasks/%2E%2e?x=1', '/..\\/message:send']) {
      const response = await rawRequest(registry.url, { method: tail.includes('message') ? 'POST' : 'GET', path: `/workspaces/${target.id}/a2a${tail}`, headers: { authorization: `Bearer ${caller.token}` }, body: tail.includes('message') ? sendBody('x') : undefined })
      expect({ tail, status: response.status }).toEqual({ tail, status: 400 })
      expect((JSON.parse(response.text) as RestError).error.details[0]!.reason).toBe('INVALID_PATH')
    }
    expect(agent.calls.length).toBe(before)
  })

  it('records a REST call in the activity with its A2A method and task', async () => {
    await rest('GET', '/tasks/task-77')
    const response = await registry.request('GET', `/workspaces/${target.id}/activity?limit=1`, { token: target.token })
    const [item] = ((await response.json()) as { items: Record<string, unknown>[] }).items
    expect(item).toMatchObject({ method: 'GetTask', source_id: caller.id, target_id: target.id, status: 200, task_id: 'task-77' })
  })

  it("answers Switchboard's own refusals in the binding's error body, with the status and a google.rpc code name", async () => {
    const noToken = await rest('POST', '/message:send', { token: '', body: sendBody('x') })
    expect(noToken.status).toBe(401)
    expect(await errorOf(noToken)).toMatchObject({ error: { code: 401, status: 'UNAUTHENTICATED', details: [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', domain: 'switchboard' }] } })
    const notReachable = await rest('GET', '/tasks/t', { to: stranger })
    expect(notReachable.status).toBe(403)
    expect((await errorOf(notReachable)).error.status).toBe('PERMISSION_DENIED')
    const tooLarge = await rest('POST', '/message:send', { body: sendBody('x'.repeat(65 * 1024)) })
    expect(tooLarge.status).toBe(413)
    expect((await errorOf(tooLarge)).error.message).toContain('a2a_body_limit_kb')
    const agentDown = await rest('GET', '/tasks/t', { to: down })
    expect(agentDown.status).toBe(503)
    expect(agentDown.headers.get('retry-after')).not.toBeNull()
    expect((await errorOf(agentDown)).error).toMatchObject({ code: 503, status: 'UNAVAILABLE' })
    const slow = await rest('POST', '/message:send', { body: sendBody('sleep:3000') })
    expect(slow.status).toBe(504)
    expect(slow.headers.get('retry-after')).not.toBeNull()
    expect((await errorOf(slow)).error).toMatchObject({ code: 504, status: 'DEADLINE_EXCEEDED' })
  })

  it('answers 501 when the card declares no HTTP+JSON interface, pointing at the JSON-RPC URL', async () => {
    const before = agent.calls.length
    const response = await rest('POST', '/message:send', { to: jsonRpcOnly, body: sendBody('x') })
    expect(response.status).toBe(501)
    const { error } = await errorOf(response)
    expect(error).toMatchObject({ code: 501, status: 'UNIMPLEMENTED', details: [{ reason: 'NO_HTTP_JSON_INTERFACE' }] })
    expect(error.message).toContain(`/workspaces/${jsonRpcOnly.id}/a2a`)
    expect(agent.calls.length).toBe(before)
  })

  it('refuses a push-notification URL the URL guard refuses (400, naming the field), in a config or a message, before the agent sees it', async () => {
    const before = agent.calls.length
    const config = await rest('POST', '/tasks/task-1/pushNotificationConfigs', { body: JSON.stringify({ url: 'http://169.254.169.254/latest', token: 't' }) })
    expect(config.status).toBe(400)
    const { error } = await errorOf(config)
    expect(error).toMatchObject({ code: 400, status: 'INVALID_ARGUMENT', details: [{ reason: 'PUSH_URL_REFUSED', metadata: { field: 'body.url' } }, { '@type': 'type.googleapis.com/google.rpc.BadRequest', fieldViolations: [{ field: 'body.url' }] }] })
    expect(error.message).toContain('169.254.169.254')
    const inMessage = await rest('POST', '/acme/message:send', { body: JSON.stringify({ message: { messageId: 'm', role: 'ROLE_USER', parts: [{ text: 'x' }] }, configuration: { taskPushNotificationConfig: { url: 'http://[::ffff:169.254.169.254]/' } } }) })
    expect(inMessage.status).toBe(400)
    expect((await errorOf(inMessage)).error.details[0]!.metadata).toEqual({ field: 'body.configuration.taskPushNotificationConfig.url' })
    const unreadable = await rest('POST', '/tasks/task-1/pushNotificationConfigs', { body: '{"url": "http://169.254.169.254/", ' })
    expect(unreadable.status).toBe(400)
    expect((await errorOf(unreadable)).error.message).toContain('not valid JSON')
    expect(agent.calls.length).toBe(before)
  })

  it("relays the agent's own error answers: JSON as it came, anything else as a REST error body with the agent's status", async () => {
    const plain = await rest('POST', '/message:send', { body: sendBody('http:500') })
    expect(plain.status).toBe(500)
    expect((await errorOf(plain)).error).toMatchObject({ code: 500, status: 'INTERNAL', message: 'agent answered HTTP 500: agent is unhappy' })
    const answered = await rest('POST', '/message:send', { body: sendBody('echo:fine') })
    expect(answered.status).toBe(200)
    expect(JSON.stringify(await answered.json())).toContain('fine')
  })

  it('relays a stream event by event, and ends one the agent breaks off with an error event in the binding\'s shape', async () => {
    const whole = await openStream(`${registry.url}/workspaces/${target.id}/a2a/message:stream`, { method: 'POST', headers: { authorization: `Bearer ${caller.token}`, 'content-type': 'application/json' }, body: sendBody('stream:3:50') })
    expect(whole.status).toBe(200)
    await whole.ended
    expect(sseData(whole.received())).toHaveLength(3)
    const broken = await openStream(`${registry.url}/workspaces/${target.id}/a2a/message:stream`, { method: 'POST', headers: { authorization: `Bearer ${caller.token}`, 'content-type': 'application/json' }, body: sendBody('break') })
    await broken.ended
    // The closing event is an `error` event, as the SDK's REST client reads one.
    expect(broken.received()).toMatch(/\n\nevent: error\ndata: [^\n]+\n\n$/)
    expect(JSON.parse(sseData(broken.received()).at(-1)!) as RestError).toMatchObject({ error: { code: 502, status: 'UNAVAILABLE', message: 'agent closed the stream abruptly' } })
  })

  it('serves the card with JSON-RPC and HTTP+JSON at the proxy URL, gRPC left out, and the proxy\'s security in v1.0 form', async () => {
    const response = await registry.request('GET', `/workspaces/${target.id}/.well-known/agent-card.json`, { token: caller.token })
    const card = (await response.json()) as Record<string, unknown>
    const proxyUrl = `${registry.url}/workspaces/${target.id}/a2a`
    expect(card.supportedInterfaces).toEqual([
      { url: proxyUrl, protocolBinding: 'JSONRPC', protocolVersion: '1.0' },
      { url: proxyUrl, protocolBinding: 'HTTP+JSON', protocolVersion: '1.0' },
    ])
    expect(card.securitySchemes).toMatchObject({ switchboardBearer: { httpAuthSecurityScheme: { scheme: 'Bearer' } }, switchboardWorkspaceId: { apiKeySecurityScheme: { location: 'header', name: 'X-Workspace-ID' } } })
    expect(card.securityRequirements).toEqual([{ schemes: { switchboardBearer: { list: [] }, switchboardWorkspaceId: { list: [] } } }, { schemes: { switchboardBearer: { list: [] } } }])
  })
})

describe('v0.3 cards through the proxy', () => {
  let registry: Registry
  let agent: PlainAgent
  let caller: Workspace
  let restFirst: Workspace
  let grpcFirst: Workspace
  beforeAll(async () => {
    registry = await startRegistry()
    agent = await startPlainAgent()
    const parent = await registry.createWorkspace('parent')
    caller = await registry.createWorkspace('caller', parent.id)
    restFirst = await registry.createWorkspace('rest first', parent.id)
    grpcFirst = await registry.createWorkspace('grpc first', parent.id)
    await registry.register(restFirst, agent.url, {
      name: 'v0.3 rest agent',
      protocolVersion: '0.3.0',
      url: `${agent.url}rest03`,
      preferredTransport: 'HTTP+JSON',
      additionalInterfaces: [
        { url: `${agent.url}rest03`, transport: 'HTTP+JSON' },
        { url: `${agent.url}rpc03`, transport: 'JSONRPC' },
      ],
      securitySchemes: { agentKey: { type: 'apiKey', in: 'header', name: 'X-Agent-Key' } },
      security: [{ agentKey: [] }],
      skills: [{ id: 'skill', name: 'skill', security: [{ agentKey: [] }] }],
    })
    await registry.register(grpcFirst, agent.url, {
      name: 'v0.3 grpc agent',
      protocolVersion: '0.3.0',
      url: 'https://grpc.example.com:443',
      preferredTransport: 'GRPC',
      additionalInterfaces: [
        { url: 'https://grpc.example.com:443', transport: 'GRPC' },
        { url: `${agent.url}rpc03`, transport: 'JSONRPC' },
      ],
    })
  })
  afterAll(async () => {
    await registry.close()
    await agent.close()
  })

  const cardOf = async (workspace: Workspace) => (await (await registry.request('GET', `/workspaces/${workspace.id}/.well-known/agent-card.json`, { token: caller.token })).json()) as Record<string, unknown>

  it("keeps a v0.3 card's shape: url and interfaces at the proxy, its preferred binding kept when the proxy carries it, the proxy's security in v0.3 form", async () => {
    const card = await cardOf(restFirst)
    const proxyUrl = `${registry.url}/workspaces/${restFirst.id}/a2a`
    expect(card).toMatchObject({ url: proxyUrl, preferredTransport: 'HTTP+JSON', additionalInterfaces: [{ url: proxyUrl, transport: 'HTTP+JSON' }, { url: proxyUrl, transport: 'JSONRPC' }] })
    expect(card.securitySchemes).toEqual({
      switchboardBearer: { type: 'http', scheme: 'bearer', description: expect.any(String) },
      switchboardWorkspaceId: { type: 'apiKey', in: 'header', name: 'X-Workspace-ID', description: expect.any(String) },
    })
    expect(card.security).toEqual([{ switchboardBearer: [], switchboardWorkspaceId: [] }, { switchboardBearer: [] }])
    expect(card.skills).toEqual([{ id: 'skill', name: 'skill' }])
    expect(JSON.stringify(card)).not.toContain(agent.url)
  })

  it('leaves a gRPC interface out, and a preferred gRPC gives way to a binding the proxy carries', async () => {
    const card = await cardOf(grpcFirst)
    const proxyUrl = `${registry.url}/workspaces/${grpcFirst.id}/a2a`
    expect(card).toMatchObject({ url: proxyUrl, preferredTransport: 'JSONRPC', additionalInterfaces: [{ url: proxyUrl, transport: 'JSONRPC' }] })
    expect(JSON.stringify(card)).not.toContain('grpc.example.com')
  })

  it("carries v0.3's HTTP+JSON paths (/v1/...) to the card's HTTP+JSON interface, and JSON-RPC to its JSON-RPC one", async () => {
    const next = agent.nextCall()
    const response = await fetch(`${registry.url}/workspaces/${restFirst.id}/a2a/v1/message:send`, {
      method: 'POST',
      headers: { authorization: `Bearer ${caller.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ message: { messageId: 'm', role: 'user', parts: [{ kind: 'text', text: 'echo:v0.3' }] } }),
    })
    expect(response.status).toBe(200)
    expect((await next).path).toBe('/rest03/v1/message:send')
    const card = agent.nextCall()
    expect((await fetch(`${registry.url}/workspaces/${restFirst.id}/a2a/v1/card`, { headers: { authorization: `Bearer ${caller.token}` } })).status).toBe(200)
    expect((await card).path).toBe('/rest03/v1/card')
    const rpc = agent.nextCall()
    const answered = await registry.request('POST', `/workspaces/${restFirst.id}/a2a`, { token: caller.token, body: { jsonrpc: '2.0', id: 1, method: 'message/send', params: { message: { messageId: 'm', role: 'user', parts: [{ kind: 'text', text: 'echo:rpc' }] } } } })
    expect(answered.status).toBe(200)
    expect((await rpc).path).toBe('/rpc03')
  })
})
