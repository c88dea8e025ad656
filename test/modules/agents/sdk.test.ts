/** The official A2A SDK on both ends: an express agent behind the proxy, and the SDK client calling through it with the rewritten card. */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import type { AddressInfo } from 'node:net'
import type { Server } from 'node:http'
import express from 'express'
import { AGENT_CARD_PATH, Role, TaskState, type AgentCard } from '@a2a-js/sdk'
import { AgentEvent, DefaultRequestHandler, InMemoryTaskStore, type AgentExecutor } from '@a2a-js/sdk/server'
import { agentCardHandler, jsonRpcHandler, restHandler, UserBuilder } from '@a2a-js/sdk/server/express'
import { ClientFactory, DefaultAgentCardResolver, JsonRpcTransportFactory, RestTransportFactory, type Client } from '@a2a-js/sdk/client'
import { openStream, sseData } from '../../support/http'
import { eventually } from '../../support/wait'
import { startPlainAgent, startRegistry, type PlainAgent, type Registry, type Workspace } from './support'

const STREAM_GAP_MS = 300
const now = () => new Date().toISOString()

/** Tasks of "slow" messages waiting to be cancelled, by task id. */
const waitingForCancel = new Map<string, () => void>()

/**
 * Echoes text messages; "stream" answers with a task and three status
 * updates STREAM_GAP_MS apart; "slow" answers with a working task that
 * ends only when it is cancelled.
 */
const executor: AgentExecutor = {
  async execute(context, bus) {
    const text = context.userMessage.parts.map((part) => (part.content?.$case === 'text' ? part.content.value : '')).join('')
    if (text === 'slow') {
      bus.publish(AgentEvent.task({ id: context.taskId, contextId: context.contextId, status: { state: TaskState.TASK_STATE_WORKING, timestamp: now(), message: undefined }, artifacts: [], history: [context.userMessage], metadata: {} }))
      // cancelTask publishes the end of the task; the wait is bounded so a test that fails cannot leave it behind.
      await new Promise<void>((resolve) => {
        waitingForCancel.set(context.taskId, resolve)
        setTimeout(resolve, 15_000)
      })
      return
    }
    if (text === 'stream') {
      bus.publish(AgentEvent.task({ id: context.taskId, contextId: context.contextId, status: { state: TaskState.TASK_STATE_SUBMITTED, timestamp: now(), message: undefined }, artifacts: [], history: [context.userMessage], metadata: {} }))
      for (let i = 0; i < 3; i++) {
        await Bun.sleep(STREAM_GAP_MS)
        const state = i === 2 ? TaskState.TASK_STATE_COMPLETED : TaskState.TASK_STATE_WORKING
        bus.publish(AgentEvent.statusUpdate({ taskId: context.taskId, contextId: context.contextId, status: { state, timestamp: now(), message: undefined }, metadata: { sentAt: Date.now() } }))
      }
    } else {
      bus.publish(
        AgentEvent.message({
          role: Role.ROLE_AGENT,
          messageId: crypto.randomUUID(),
          parts: [{ content: { $case: 'text', value: `sdk echo: ${text}` }, metadata: undefined, filename: '', mediaType: 'text/plain' }],
          contextId: context.contextId,
          taskId: '',
          extensions: [],
          metadata: {},
          referenceTaskIds: [],
        }),
      )
    }
    bus.finished()
  },
  async cancelTask(taskId, bus) {
    const wake = waitingForCancel.get(taskId)
    if (wake === undefined) return
    waitingForCancel.delete(taskId)
    bus.publish(AgentEvent.statusUpdate({ taskId, contextId: '', status: { state: TaskState.TASK_STATE_CANCELED, timestamp: now(), message: undefined }, metadata: {} }))
    bus.finished()
    wake()
  },
}

/** What the agent received: the path and headers of each request. */
interface SeenRequest {
  path: string
  headers: Record<string, string | string[] | undefined>
}

/**
 * An SDK agent serving JSON-RPC at /a2a/jsonrpc and HTTP+JSON at /a2a/rest,
 * as its card says, with push notifications and an extended card (the
 * public one plus a skill); it keeps the path and headers of every request.
 */
async function startSdkAgent(): Promise<{ url: string; base: string; card: AgentCard; seen: SeenRequest[]; close(): Promise<void> }> {
  const app = express()
  const seen: SeenRequest[] = []
  app.use((req, _res, next) => {
    seen.push({ path: req.originalUrl, headers: req.headers })
    next()
  })
  const server: Server = app.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const card: AgentCard = {
    name: 'sdk agent',
    description: 'echoes and streams',
    version: '1.0.0',
    supportedInterfaces: [
      { url: `${base}/a2a/jsonrpc`, protocolBinding: 'JSONRPC', tenant: '', protocolVersion: '1.0' },
      { url: `${base}/a2a/rest`, protocolBinding: 'HTTP+JSON', tenant: '', protocolVersion: '1.0' },
    ],
    provider: undefined,
    capabilities: { streaming: true, pushNotifications: true, extensions: [], extendedAgentCard: true },
    securitySchemes: {},
    securityRequirements: [],
    defaultInputModes: ['text'],
    defaultOutputModes: ['text'],
    skills: [],
    signatures: [],
  }
  const extendedSkill = { id: 'extended', name: 'extended skill', description: 'only on the extended card', tags: [], examples: [], inputModes: [], outputModes: [], securityRequirements: [] }
  const extendedCard = async (): Promise<AgentCard> => ({ ...card, skills: [extendedSkill] })
  const handler = new DefaultRequestHandler(card, new InMemoryTaskStore(), executor, undefined, undefined, undefined, extendedCard)
  app.use(`/${AGENT_CARD_PATH}`, agentCardHandler({ agentCardProvider: handler }))
  app.use('/a2a/jsonrpc', express.json(), jsonRpcHandler({ requestHandler: handler, userBuilder: UserBuilder.noAuthentication }))
  app.use('/a2a/rest', restHandler({ requestHandler: handler, userBuilder: UserBuilder.noAuthentication }))
  return {
    url: `${base}/a2a/jsonrpc`,
    base,
    card,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/** A registry and an SDK agent registered as a workspace that a sibling, the caller, may reach. */
async function sdkSiblings() {
  const registry = await startRegistry()
  const agent = await startSdkAgent()
  const parent = await registry.createWorkspace('sdk-parent')
  const caller = await registry.createWorkspace('sdk-caller', parent.id)
  const target = await registry.createWorkspace('sdk-target', parent.id)
  await registry.register(target, agent.url, agent.card as unknown as Record<string, unknown>)
  return { registry, agent, parent, caller, target }
}


/** A fetch that sends `caller`'s credentials on every request the SDK makes (card and calls). */
function fetchAs(caller: Workspace): typeof fetch {
  return ((input: RequestInfo | URL, init?: RequestInit) => {
    const headers = new Headers(init?.headers)
    headers.set('authorization', `Bearer ${caller.token}`)
    headers.set('x-workspace-id', caller.id)
    return fetch(input, { ...init, headers })
  }) as typeof fetch
}

describe('the A2A SDK through the proxy', () => {
  let registry: Registry
  let agent: Awaited<ReturnType<typeof startSdkAgent>>
  let caller: Workspace
  let target: Workspace
  let factory: ClientFactory
  beforeAll(async () => {
    ;({ registry, agent, caller, target } = await sdkSiblings())
    // The caller's credentials ride on every request the SDK makes (card and calls).
    const fetchImpl = fetchAs(caller)
    factory = new ClientFactory({ transports: [new JsonRpcTransportFactory({ fetchImpl })], cardResolver: new DefaultAgentCardResolver({ fetchImpl }) })
  })
  afterAll(async () => {
    await registry.close()
    await agent.close()
  })

  const cardUrl = () => `${registry.url}/workspaces/${target.id}/${AGENT_CARD_PATH}`

  it('serves the card with its JSON-RPC and HTTP+JSON endpoints rewritten to the proxy, an ETag, and 304 on If-None-Match', async () => {
    const headers = { authorization: `Bearer ${caller.token}` }
    const response = await fetch(cardUrl(), { headers })
    expect(response.status).toBe(200)
    const card = (await response.json()) as AgentCard
    const proxyUrl = `${registry.url}/workspaces/${target.id}/a2a`
    expect(card.supportedInterfaces).toEqual([
      { url: proxyUrl, protocolBinding: 'JSONRPC', tenant: '', protocolVersion: '1.0' },
      { url: proxyUrl, protocolBinding: 'HTTP+JSON', tenant: '', protocolVersion: '1.0' },
    ])
    expect(response.headers.get('cache-control')).toContain('max-age')
    const etag = response.headers.get('etag')
    expect(etag).toMatch(/^".+"$/)
    const again = await fetch(cardUrl(), { headers: { ...headers, 'if-none-match': etag! } })
    expect(again.status).toBe(304)
    expect(await again.text()).toBe('')
    expect((await fetch(cardUrl())).status).toBe(401)
  })

  it('sends a message with the SDK client and gets the agent\'s answer', async () => {
    const client = await factory.createFromUrl(`${registry.url}/workspaces/${target.id}/`)
    const result = await client.sendMessage({ message: { messageId: crypto.randomUUID(), role: Role.ROLE_USER, parts: [{ content: { $case: 'text', value: 'ping' } }] } } as never)
    expect(JSON.stringify(result)).toContain('sdk echo: ping')
  })

  it('streams with the SDK client, each event arriving before the agent sends the next', async () => {
    const client = await factory.createFromUrl(`${registry.url}/workspaces/${target.id}/`)
    const arrivals: { at: number; event: string }[] = []
    for await (const event of client.sendMessageStream({ message: { messageId: crypto.randomUUID(), role: Role.ROLE_USER, parts: [{ content: { $case: 'text', value: 'stream' } }] } } as never)) {
      arrivals.push({ at: Date.now(), event: JSON.stringify(event) })
    }
    expect(arrivals).toHaveLength(4)
    expect(arrivals[0]!.event).toContain('"$case":"task"')
    expect(arrivals[3]!.event).toContain('statusUpdate')
    // Events were spread out as the agent produced them, not delivered in one batch at the end.
    expect(arrivals[3]!.at - arrivals[0]!.at).toBeGreaterThan(STREAM_GAP_MS * 2)
    expect(arrivals[2]!.at - arrivals[1]!.at).toBeGreaterThan(STREAM_GAP_MS / 2)
  })
})

describe('the A2A SDK agent answers through the proxy as it answers directly', () => {
  let registry: Registry
  let agent: Awaited<ReturnType<typeof startSdkAgent>>
  let caller: Workspace
  let target: Workspace
  let atBase: Workspace
  beforeAll(async () => {
    const siblings = await sdkSiblings()
    ;({ registry, agent, caller, target } = siblings)
    const { parent } = siblings
    // Registered at the agent's base URL: only its card says where it answers JSON-RPC.
    atBase = await registry.createWorkspace('sdk-at-base', parent.id)
    await registry.register(atBase, `${agent.base}/`, agent.card as unknown as Record<string, unknown>)
  })
  afterAll(async () => {
    await registry.close()
    await agent.close()
  })

  /** The same request sent to the agent directly and through the proxy: the status and body of each answer. */
  const both = async (body: string, headers: Record<string, string> = {}) => {
    const answer = async (response: Response) => ({ status: response.status, body: (await response.json()) as { id?: unknown; result?: unknown; error?: { code: number; message: string } } })
    const direct = await answer(await fetch(agent.url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body }))
    const proxied = await answer(await registry.request('POST', `/workspaces/${target.id}/a2a`, { token: caller.token, body, headers }))
    return { direct, proxied }
  }

  it('SendMessage with params the agent rejects reaches the agent, and its answer (HTTP 200, -32602) is relayed', async () => {
    for (const params of ['{"message":{"kind":"message"}}', '{"message":{"role":"ROLE_USER"}}', '{"message":{"role":"ROLE_USER","parts":[{"text":"no messageId"}]}}', '{}']) {
      const { direct, proxied } = await both(`{"jsonrpc":"2.0","id":"tck-1","method":"SendMessage","params":${params}}`, { 'a2a-version': '1.0' })
      expect({ params, ...proxied }).toEqual({ params, ...direct })
      expect({ params, status: proxied.status, error: typeof proxied.body.error?.code }).toEqual({ params, status: 200, error: 'number' })
    }
  })

  it('a v1.0 message without messageId is not given one: the agent answers it as it would directly', async () => {
    const body = JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'SendMessage', params: { message: { role: 'ROLE_USER', parts: [{ text: 'ping' }] } } })
    const { direct, proxied } = await both(body, { 'a2a-version': '1.0' })
    expect(proxied.status).toBe(direct.status)
    expect(proxied.body.error).toEqual(direct.body.error)
    expect(proxied.body.error).toBeDefined()
  })

  it('calls the JSON-RPC interface the card declares, not the registered base URL', async () => {
    const fetchImpl = ((input: RequestInfo | URL, init?: RequestInit) => {
      const headers = new Headers(init?.headers)
      headers.set('authorization', `Bearer ${caller.token}`)
      return fetch(input, { ...init, headers })
    }) as typeof fetch
    const factory = new ClientFactory({ transports: [new JsonRpcTransportFactory({ fetchImpl })], cardResolver: new DefaultAgentCardResolver({ fetchImpl }) })
    const client = await factory.createFromUrl(`${registry.url}/workspaces/${atBase.id}/`)
    const result = await client.sendMessage({ message: { messageId: crypto.randomUUID(), role: Role.ROLE_USER, parts: [{ content: { $case: 'text', value: 'at base' } }] } } as never)
    expect(JSON.stringify(result)).toContain('sdk echo: at base')
  })

  it("keeps the stream's X-Accel-Buffering and Cache-Control, and records the task's final state from its last status event", async () => {
    const body = JSON.stringify({ jsonrpc: '2.0', id: 'stream-1', method: 'SendStreamingMessage', params: { message: { messageId: crypto.randomUUID(), role: 'ROLE_USER', parts: [{ text: 'stream' }] } } })
    const stream = await openStream(`${registry.url}/workspaces/${target.id}/a2a`, { method: 'POST', headers: { authorization: `Bearer ${caller.token}`, 'a2a-version': '1.0' }, body })
    expect(stream.status).toBe(200)
    expect(stream.headers['x-accel-buffering']).toBe('no')
    expect(stream.headers['cache-control']).toBe('no-cache')
    await stream.ended
    const events = sseData(stream.received()).map((data) => JSON.parse(data) as { result: { task?: { id: string; contextId: string } } })
    const task = events[0]!.result.task!
    let item: Record<string, unknown> | undefined
    for (let attempt = 0; attempt < 100 && item?.method !== 'SendStreamingMessage'; attempt++) {
      if (attempt > 0) await Bun.sleep(10)
      item = ((await (await registry.request('GET', `/workspaces/${target.id}/activity?limit=1`, { token: target.token })).json()) as { items: Record<string, unknown>[] }).items[0]
    }
    expect(item).toMatchObject({ method: 'SendStreamingMessage', task_id: task.id, context_id: task.contextId, task_state: 'TASK_STATE_COMPLETED' })
  })
})

describe.each(['JSONRPC', 'HTTP+JSON'] as const)('the A2A SDK client over %s through the proxy', (binding) => {
  let registry: Registry
  let agent: Awaited<ReturnType<typeof startSdkAgent>>
  let caller: Workspace
  let target: Workspace
  let webhook: PlainAgent
  let client: Client
  /** The card as the SDK's resolver read it from Switchboard. */
  let card: AgentCard
  /** The path the agent serves this binding under. */
  const agentPath = binding === 'JSONRPC' ? '/a2a/jsonrpc' : '/a2a/rest'
  const message = (text: string) => ({ messageId: crypto.randomUUID(), role: Role.ROLE_USER, parts: [{ content: { $case: 'text', value: text } }] })
  beforeAll(async () => {
    ;({ registry, agent, caller, target } = await sdkSiblings())
    webhook = await startPlainAgent()
    const fetchImpl = fetchAs(caller)
    const cardResolver = new DefaultAgentCardResolver({ fetchImpl })
    const factory = new ClientFactory({ transports: [new JsonRpcTransportFactory({ fetchImpl }), new RestTransportFactory({ fetchImpl })], cardResolver, preferredTransports: [binding] })
    card = await cardResolver.resolve(`${registry.url}/workspaces/${target.id}/`)
    client = await factory.createFromAgentCard(card)
  })
  afterAll(async () => {
    await registry.close()
    await agent.close()
    await webhook.close()
  })

  /** What the agent saw since `from`: every request on this binding's path, with the caller's id and its own secret, never the caller's token. */
  const expectSeenSince = (from: number, path: RegExp) => {
    const requests = agent.seen.slice(from)
    expect(requests.length).toBeGreaterThan(0)
    for (const request of requests) {
      expect({ path: request.path, matches: path.test(request.path) }).toEqual({ path: request.path, matches: true })
      expect(request.headers['x-workspace-id']).toBe(caller.id)
      expect(request.headers['x-switchboard-secret']).toBe(target.secret)
      expect(request.headers.authorization).toBeUndefined()
    }
  }

  it('resolves the card through Switchboard and picks the binding, at the proxy URL, with the security the proxy requires', () => {
    expect(card.supportedInterfaces.map((entry) => [entry.protocolBinding, entry.url])).toEqual([
      ['JSONRPC', `${registry.url}/workspaces/${target.id}/a2a`],
      ['HTTP+JSON', `${registry.url}/workspaces/${target.id}/a2a`],
    ])
    expect(Object.keys(card.securitySchemes).sort()).toEqual(['switchboardBearer', 'switchboardWorkspaceId'])
    expect(card.securitySchemes.switchboardBearer?.scheme).toMatchObject({ $case: 'httpAuthSecurityScheme', value: { scheme: 'Bearer' } })
    expect(card.securitySchemes.switchboardWorkspaceId?.scheme).toMatchObject({ $case: 'apiKeySecurityScheme', value: { location: 'header', name: 'X-Workspace-ID' } })
    expect(card.securityRequirements.map((requirement) => Object.keys(requirement.schemes).sort())).toEqual([['switchboardBearer', 'switchboardWorkspaceId'], ['switchboardBearer']])
    expect((client as unknown as { transport: { protocolName: string } }).transport.protocolName).toBe(binding)
  })

  it('sends, and streams each event as the agent sends it', async () => {
    const from = agent.seen.length
    expect(JSON.stringify(await client.sendMessage({ message: message('ping') } as never))).toContain('sdk echo: ping')
    const arrivals: { at: number; event: string }[] = []
    for await (const event of client.sendMessageStream({ message: message('stream') } as never)) arrivals.push({ at: Date.now(), event: JSON.stringify(event) })
    expect(arrivals).toHaveLength(4)
    expect(arrivals[3]!.event).toContain('statusUpdate')
    expect(arrivals[3]!.at - arrivals[0]!.at).toBeGreaterThan(STREAM_GAP_MS * 2)
    expectSeenSince(from, binding === 'JSONRPC' ? /^\/a2a\/jsonrpc$/ : /^\/a2a\/rest\/message:(send|stream)$/)
  })

  it('gets and lists a task, manages its push-notification configs, resubscribes to it and cancels it', async () => {
    const from = agent.seen.length
    const sent = (await client.sendMessage({ message: message('slow'), configuration: { returnImmediately: true, acceptedOutputModes: [] } } as never)) as { id?: string }
    const taskId = sent.id!
    expect(typeof taskId).toBe('string')
    expect((await client.getTask({ id: taskId } as never)).id).toBe(taskId)
    expect((await client.listTasks({ tenant: '', contextId: '', status: TaskState.TASK_STATE_UNSPECIFIED } as never)).tasks.map((task) => task.id)).toContain(taskId)

    const config = { taskId, id: 'hook-1', url: `${webhook.url}hook`, token: 'webhook-token' }
    const created = await client.createTaskPushNotificationConfig(config as never)
    expect(created).toMatchObject({ taskId, id: 'hook-1', url: config.url })
    expect(await client.getTaskPushNotificationConfig({ taskId, id: 'hook-1' } as never)).toMatchObject({ id: 'hook-1', url: config.url })
    expect(JSON.stringify(await client.listTaskPushNotificationConfig({ taskId } as never))).toContain(config.url)
    // A webhook at the cloud metadata address is the proxy's to refuse: the agent would call it.
    const refused = await client.createTaskPushNotificationConfig({ taskId, id: 'hook-2', url: 'http://169.254.169.254/latest/meta-data' } as never).catch((error: Error) => error)
    expect(refused).toBeInstanceOf(Error)
    expect((refused as Error).message).toContain('169.254.169.254')
    await client.deleteTaskPushNotificationConfig({ taskId, id: 'hook-1' } as never)
    expect(JSON.stringify(await client.listTaskPushNotificationConfig({ taskId } as never))).not.toContain(config.url)

    const events: string[] = []
    const subscribed = (async () => {
      for await (const event of client.resubscribeTask({ id: taskId } as never)) events.push(JSON.stringify(event))
    })()
    await eventually(() => events.length > 0, 5000, 'the first event of the resubscribed stream')
    const cancelled = await client.cancelTask({ id: taskId } as never)
    expect(cancelled.status?.state).toBe(TaskState.TASK_STATE_CANCELED)
    await subscribed
    expect(events[0]).toContain(taskId)
    expect(events.at(-1)).toContain('statusUpdate')
    expectSeenSince(from, binding === 'JSONRPC' ? /^\/a2a\/jsonrpc$/ : /^\/a2a\/rest\/(message:send|tasks(\?.*)?|tasks\/[^/]+(:cancel|:subscribe|\/pushNotificationConfigs(\/hook-1)?)?)$/)
    // The refused config never reached the agent.
    expect(agent.seen.slice(from).some((request) => request.path.includes('hook-2'))).toBe(false)
  })

  it('gets the extended card with its interfaces rewritten to the proxy and the proxy\'s security', async () => {
    const from = agent.seen.length
    const card = await client.getAgentCard()
    expect(card.skills.map((skill) => skill.id)).toEqual(['extended'])
    expect(card.supportedInterfaces.map((entry) => entry.url)).toEqual([`${registry.url}/workspaces/${target.id}/a2a`, `${registry.url}/workspaces/${target.id}/a2a`])
    expect(JSON.stringify(card)).not.toContain(agent.base)
    expect(Object.keys(card.securitySchemes).sort()).toEqual(['switchboardBearer', 'switchboardWorkspaceId'])
    expectSeenSince(from, binding === 'JSONRPC' ? /^\/a2a\/jsonrpc$/ : /^\/a2a\/rest\/extendedAgentCard$/)
  })

  it('carries the tenant a card declares for the interface, in the path on HTTP+JSON and in the params on JSON-RPC', async () => {
    const tenanted = await registry.createWorkspace(`sdk-tenant-${binding}`, (await registry.request('GET', `/workspaces/${target.id}`, { token: target.token }).then((response) => response.json()) as { parent_id: string }).parent_id)
    const interfaces = agent.card.supportedInterfaces.map((entry) => ({ ...entry, tenant: 'acme' }))
    await registry.register(tenanted, agent.url, { ...agent.card, supportedInterfaces: interfaces } as unknown as Record<string, unknown>)
    const fetchImpl = ((input: RequestInfo | URL, init?: RequestInit) => {
      const headers = new Headers(init?.headers)
      headers.set('authorization', `Bearer ${caller.token}`)
      return fetch(input, { ...init, headers })
    }) as typeof fetch
    const factory = new ClientFactory({ transports: [new JsonRpcTransportFactory({ fetchImpl }), new RestTransportFactory({ fetchImpl })], cardResolver: new DefaultAgentCardResolver({ fetchImpl }), preferredTransports: [binding] })
    const tenantClient = await factory.createFromUrl(`${registry.url}/workspaces/${tenanted.id}/`)
    const from = agent.seen.length
    expect(JSON.stringify(await tenantClient.sendMessage({ message: message('tenant') } as never))).toContain('sdk echo: tenant')
    expect(agent.seen.slice(from).map((request) => request.path)).toEqual([binding === 'JSONRPC' ? '/a2a/jsonrpc' : '/a2a/rest/acme/message:send'])
  })

  it('records each call in the activity with its A2A method, whichever the binding', async () => {
    const response = await registry.request('GET', `/workspaces/${target.id}/activity?limit=100`, { token: target.token })
    const methods = new Set(((await response.json()) as { items: { method: string }[] }).items.map((item) => item.method))
    for (const method of ['SendMessage', 'SendStreamingMessage', 'GetTask', 'ListTasks', 'CancelTask', 'SubscribeToTask', 'CreateTaskPushNotificationConfig', 'GetTaskPushNotificationConfig', 'ListTaskPushNotificationConfigs', 'DeleteTaskPushNotificationConfig', 'GetExtendedAgentCard']) {
      expect({ method, recorded: methods.has(method) }).toEqual({ method, recorded: true })
    }
  })
})
