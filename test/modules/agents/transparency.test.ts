/**
 * What the proxy leaves to the agent, and what it adds: requests forwarded as
 * sent (only Molecule's older shapes rewritten), the card's JSON-RPC
 * interface called, trace context passed on and recorded, the task a call
 * concerned in its activity record, push-notification webhooks held to the
 * URL guard.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { createLogger } from '../../../src/ops/logger'
import { openStream } from '../../support/http'
import { eventually } from '../../support/wait'
import { messageSend, startPlainAgent, startRegistry, type PlainAgent, type Registry, type Workspace } from './support'

interface RpcAnswer {
  id?: unknown
  result?: Record<string, unknown>
  error?: { code: number; message: string; data?: Record<string, unknown> }
}

interface ActivityItem {
  method: string | null
  status: number
  error: string | null
  traceparent: string | null
  task_id: string | null
  context_id: string | null
  task_state: string | null
}

/** A registry, one plain agent, and two siblings (caller, target) on it; `lines` holds the registry's log lines. */
function siblings(config: Parameters<typeof startRegistry>[0] = {}, extras: Parameters<typeof startRegistry>[1] = {}) {
  const state = { lines: [] as string[] } as { registry: Registry; agent: PlainAgent; caller: Workspace; target: Workspace; lines: string[] }
  beforeAll(async () => {
    state.registry = await startRegistry({ log_level: 'info', ...config }, { logger: createLogger('info', (line) => state.lines.push(line)), ...extras })
    state.agent = await startPlainAgent()
    const parent = await state.registry.createWorkspace('parent')
    state.caller = await state.registry.createWorkspace('caller', parent.id)
    state.target = await state.registry.createWorkspace('target', parent.id)
    await state.registry.register(state.target, state.agent.url)
  })
  afterAll(async () => {
    await state.registry.close()
    await state.agent.close()
  })
  return state
}

describe('requests reach the agent as sent', () => {
  const s = siblings()
  const send = (body: string, headers: Record<string, string> = {}) => s.registry.request('POST', `/workspaces/${s.target.id}/a2a`, { token: s.caller.token, body, headers })
  const forwarded = async (body: string, headers: Record<string, string> = {}) => {
    const before = s.agent.calls.length
    const response = await send(body, headers)
    expect({ body, status: response.status, reached: s.agent.calls.length }).toEqual({ body, status: 200, reached: before + 1 })
    return s.agent.calls[before]!.raw
  }

  it('a v1.0 SendMessage whose params the agent will reject, byte for byte', async () => {
    for (const params of ['{"message":{"kind":"message"}}', '{"message":{"role":"ROLE_USER","parts":[{"text":"x"}]}}', '{}', '[]', '"text"', '{"message":{"role":"user","content":"v0.2 words"}}']) {
      const body = `{"jsonrpc":"2.0","id":"v1","method":"SendMessage","params":${params}}`
      expect(await forwarded(body)).toBe(body)
    }
  })

  it('a message without messageId in a JSON-RPC envelope: v0.3 and v1.0 alike, nothing filled in', async () => {
    const v03 = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'message/send', params: { message: { role: 'user', parts: [{ kind: 'text', text: 'hi' }] } } })
    expect(await forwarded(v03)).toBe(v03)
    const v1 = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'SendMessage', params: { message: { role: 'ROLE_USER', parts: [{ text: 'hi' }] } } })
    expect(await forwarded(v1)).toBe(v1)
  })

  it('a request declaring A2A-Version 1.0, even in the older shapes Molecule\'s client sends', async () => {
    for (const body of [
      JSON.stringify({ method: 'message/send', params: { message: { role: 'user', parts: [{ kind: 'text', text: 'bare' }] } } }),
      JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'message/send', params: { message: { role: 'user', content: 'v0.2 words' } } }),
      JSON.stringify({ method: 'SendMessage', params: { message: { role: 'ROLE_USER', parts: [{ text: 'bare v1' }] } } }),
    ]) {
      expect(await forwarded(body, { 'a2a-version': '1.0' })).toBe(body)
    }
  })

  it('a request in another envelope version, or a notification, for the agent to answer', async () => {
    for (const body of ['{"jsonrpc":"1.0","id":4,"method":"message/send","params":{}}', '{"jsonrpc":"2.0","method":"tasks/get","params":{"id":"t"}}']) expect(await forwarded(body)).toBe(body)
  })
})

describe('the interface the card declares', () => {
  const s = siblings()
  const base = () => s.agent.url.replace(/\/$/, '')
  const callWith = async (card: Record<string, unknown>, body: unknown, headers: Record<string, string> = {}) => {
    await s.registry.register(s.target, s.agent.url, card)
    const before = s.agent.calls.length
    const response = await s.registry.request('POST', `/workspaces/${s.target.id}/a2a`, { token: s.caller.token, body, headers })
    return { response, path: s.agent.calls.length > before ? s.agent.calls.at(-1)!.path : null }
  }

  it('v0.3: the card\'s url, or its JSON-RPC additional interface when it prefers another transport', async () => {
    expect((await callWith({ name: 'a', url: `${base()}/v03/rpc` }, messageSend('echo:x'))).path).toBe('/v03/rpc')
    const rest = { name: 'a', url: `${base()}/rest`, preferredTransport: 'HTTP+JSON', additionalInterfaces: [{ url: `${base()}/rest`, transport: 'HTTP+JSON' }, { url: `${base()}/jsonrpc`, transport: 'JSONRPC' }] }
    expect((await callWith(rest, messageSend('echo:x'))).path).toBe('/jsonrpc')
  })

  it('v1.0: the JSON-RPC interface of the request\'s version, else the first JSON-RPC one', async () => {
    const card = {
      name: 'a',
      supportedInterfaces: [
        { url: `${base()}/rest`, protocolBinding: 'HTTP+JSON', protocolVersion: '1.0' },
        { url: `${base()}/legacy`, protocolBinding: 'JSONRPC', protocolVersion: '0.3' },
        { url: `${base()}/v1`, protocolBinding: 'JSONRPC', protocolVersion: '1.0' },
      ],
    }
    expect((await callWith(card, messageSend('echo:x'))).path).toBe('/legacy')
    expect((await callWith(card, messageSend('echo:x', 'SendMessage'))).path).toBe('/v1')
    expect((await callWith(card, messageSend('echo:x'), { 'a2a-version': '1.0' })).path).toBe('/v1')
    const one = { name: 'a', supportedInterfaces: [{ url: `${base()}/only`, protocolBinding: 'JSONRPC', protocolVersion: '1.0' }] }
    expect((await callWith(one, messageSend('echo:x'))).path).toBe('/only')
    // No JSON-RPC interface declared: the registered URL.
    const restOnly = { name: 'a', supportedInterfaces: [{ url: `${base()}/rest`, protocolBinding: 'HTTP+JSON', protocolVersion: '1.0' }] }
    expect((await callWith(restOnly, messageSend('echo:x'))).path).toBe('/')
    expect((await callWith({ name: 'no interfaces' }, messageSend('echo:x'))).path).toBe('/')
  })

  it('refuses an interface URL the URL guard refuses (502, naming the rule), without calling anybody', async () => {
    const card = { name: 'a', supportedInterfaces: [{ url: 'http://169.254.169.254/latest/meta-data/', protocolBinding: 'JSONRPC', protocolVersion: '1.0' }] }
    const { response, path } = await callWith(card, messageSend('echo:x', 'SendMessage'))
    expect(response.status).toBe(502)
    expect(((await response.json()) as RpcAnswer).error!.message).toContain('169.254.169.254 resolves to 169.254.169.254, a link-local (cloud metadata) address')
    expect(path).toBeNull()
  })
})

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736'
const TRACEPARENT = `00-${TRACE_ID}-00f067aa0ba902b7-01`
const NEW_TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/

describe('trace context', () => {
  const s = siblings()
  const activity = async (): Promise<ActivityItem[]> => ((await (await s.registry.request('GET', `/workspaces/${s.target.id}/activity?limit=1`, { token: s.target.token })).json()) as { items: ActivityItem[] }).items
  const logLine = (traceId: string) => s.lines.map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => line.msg === 'request' && line.trace_id === traceId)

  it("passes the caller's traceparent and tracestate to the agent, echoes them, and writes the trace into the activity record and the log line", async () => {
    const received = s.agent.nextCall()
    const response = await s.registry.request('POST', `/workspaces/${s.target.id}/a2a`, { token: s.caller.token, body: messageSend('echo:traced'), headers: { traceparent: TRACEPARENT, tracestate: 'vendor=abc,other=1' } })
    expect(response.status).toBe(200)
    const call = await received
    expect(call.headers.traceparent).toBe(TRACEPARENT)
    expect(call.headers.tracestate).toBe('vendor=abc,other=1')
    expect(response.headers.get('traceparent')).toBe(TRACEPARENT)
    expect(response.headers.get('tracestate')).toBe('vendor=abc,other=1')
    expect((await activity())[0]!.traceparent).toBe(TRACEPARENT)
    await eventually(() => logLine(TRACE_ID) !== undefined, 2000, 'the request log line with the trace id')
    expect(logLine(TRACE_ID)).toMatchObject({ route: '/workspaces/:id/a2a', status: 200 })
  })

  it('creates a new traceparent when the caller sent none or an invalid one, and drops the tracestate that came with an invalid one', async () => {
    const invalid = [
      undefined,
      `00-${TRACE_ID.toUpperCase()}-00f067aa0ba902b7-01`,
      `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`,
      `00-${TRACE_ID}-${'0'.repeat(16)}-01`,
      `ff-${TRACE_ID}-00f067aa0ba902b7-01`,
      `00-${TRACE_ID}-00f067aa0ba902b7-01-extra`,
      `00-${TRACE_ID}-00f067aa0ba902b7`,
      'garbage',
    ]
    const seen = new Set<string>()
    for (const traceparent of invalid) {
      const received = s.agent.nextCall()
      const headers: Record<string, string> = { tracestate: 'vendor=abc' }
      if (traceparent !== undefined) headers.traceparent = traceparent
      const response = await s.registry.request('POST', `/workspaces/${s.target.id}/a2a`, { token: s.caller.token, body: messageSend('echo:x'), headers })
      const call = await received
      const sent = call.headers.traceparent as string
      expect({ traceparent, sent: NEW_TRACEPARENT.test(sent) }).toEqual({ traceparent, sent: true })
      expect(call.headers.tracestate).toBeUndefined()
      expect(response.headers.get('traceparent')).toBe(sent)
      expect((await activity())[0]!.traceparent).toBe(sent)
      seen.add(sent)
    }
    expect(seen.size).toBe(invalid.length)
  })

  it('keeps a later version\'s traceparent with its extra fields, and cuts a long tracestate down to 512 characters', async () => {
    const later = `01-${TRACE_ID}-00f067aa0ba902b7-01-what-comes-next`
    const long = Array.from({ length: 20 }, (_, i) => `k${i}=${'v'.repeat(40)}`).join(',')
    const received = s.agent.nextCall()
    await s.registry.request('POST', `/workspaces/${s.target.id}/a2a`, { token: s.caller.token, body: messageSend('echo:x'), headers: { traceparent: later, tracestate: long } })
    const call = await received
    expect(call.headers.traceparent).toBe(later)
    const kept = call.headers.tracestate as string
    expect(kept.length).toBeLessThanOrEqual(512)
    expect(long.startsWith(kept)).toBe(true)
  })

  it('echoes and records the trace of a call the proxy refuses or the agent fails', async () => {
    const refused = await s.registry.request('POST', `/workspaces/${s.target.id}/a2a`, { token: s.caller.token, body: '{"jsonrpc": ', headers: { traceparent: TRACEPARENT } })
    expect(refused.headers.get('traceparent')).toBe(TRACEPARENT)
    expect((await activity())[0]).toMatchObject({ traceparent: TRACEPARENT, status: 200 })
    const failed = await s.registry.request('POST', `/workspaces/${s.target.id}/a2a`, { token: s.caller.token, body: messageSend('http:500'), headers: { traceparent: TRACEPARENT } })
    expect(failed.status).toBe(500)
    expect(failed.headers.get('traceparent')).toBe(TRACEPARENT)
    expect((await activity())[0]).toMatchObject({ traceparent: TRACEPARENT, status: 500 })
  })
})

describe('the task in the activity record', () => {
  const s = siblings()
  const latest = async (): Promise<ActivityItem> => ((await (await s.registry.request('GET', `/workspaces/${s.target.id}/activity?limit=1`, { token: s.target.token })).json()) as { items: ActivityItem[] }).items[0]!

  it('from the answer: task id, context id, state and method', async () => {
    expect((await s.registry.request('POST', `/workspaces/${s.target.id}/a2a`, { token: s.caller.token, body: messageSend('task:input-required') })).status).toBe(200)
    expect(await latest()).toMatchObject({ method: 'message/send', task_id: 'task-1', context_id: 'context-1', task_state: 'input-required' })
  })

  it("from a stream: the last status event's state, read across pieces and CRLF line ends", async () => {
    const stream = await openStream(`${s.registry.url}/workspaces/${s.target.id}/a2a`, { method: 'POST', headers: { authorization: `Bearer ${s.caller.token}` }, body: JSON.stringify(messageSend('taskstream', 'message/stream')) })
    expect(stream.status).toBe(200)
    expect(stream.headers['x-accel-buffering']).toBe('no')
    expect(stream.headers['cache-control']).toBe('no-cache')
    await stream.ended
    await eventually(async () => (await latest()).method === 'message/stream', 2000, 'the stream recorded')
    expect(await latest()).toMatchObject({ method: 'message/stream', task_id: 'task-2', context_id: 'context-2', task_state: 'completed' })
  })

  it('from the request, when the answer tells nothing of the task', async () => {
    const body = { jsonrpc: '2.0', id: 1, method: 'tasks/get', params: { id: 'asked-task' } }
    expect((await s.registry.request('POST', `/workspaces/${s.target.id}/a2a`, { token: s.caller.token, body })).status).toBe(200)
    expect(await latest()).toMatchObject({ method: 'tasks/get', task_id: 'asked-task', task_state: null })
    const message = messageSend('echo:x')
    const withTask = { ...message, params: { message: { ...message.params.message, taskId: 'my-task', contextId: 'my-context' } } }
    await s.registry.request('POST', `/workspaces/${s.target.id}/a2a`, { token: s.caller.token, body: withTask })
    expect(await latest()).toMatchObject({ task_id: 'my-task', context_id: 'my-context' })
  })

  it('keeps at most 200 characters of what the agent names its task', async () => {
    const message = messageSend('echo:x')
    await s.registry.request('POST', `/workspaces/${s.target.id}/a2a`, { token: s.caller.token, body: { ...message, params: { message: { ...message.params.message, taskId: 't'.repeat(5000) } } } })
    expect((await latest()).task_id).toBe('t'.repeat(200))
  })
})

/** Every place a push-notification config's webhook URL may sit, as the method that carries it. */
const PUSH_SPELLINGS: [string, (url: unknown) => unknown][] = [
  ['tasks/pushNotificationConfig/set', (url) => ({ taskId: 't', pushNotificationConfig: { url } })],
  ['CreateTaskPushNotificationConfig', (url) => ({ taskId: 't', url })],
  ['CreateTaskPushNotificationConfig', (url) => ({ taskId: 't', config: { url } })],
  ['CreateTaskPushNotificationConfig', (url) => ({ task_id: 't', push_notification_config: { url } })],
  ['message/send', (url) => ({ ...messageSend('echo:x').params, configuration: { pushNotificationConfig: { url } } })],
  ['message/stream', (url) => ({ ...messageSend('echo:x').params, configuration: { pushNotificationConfig: { url } } })],
  ['SendMessage', (url) => ({ ...messageSend('echo:x').params, configuration: { taskPushNotificationConfig: { url } } })],
  ['SendMessage', (url) => ({ ...messageSend('echo:x').params, configuration: { task_push_notification_config: { url } } })],
  ['SendStreamingMessage', (url) => ({ ...messageSend('echo:x').params, configuration: { pushNotificationConfig: { url } } })],
  ['SendMessage', (url) => ({ ...messageSend('echo:x').params, configuration: { taskPushNotificationConfig: { pushNotificationConfig: { url } } } })],
]

/** Webhook URLs in the spellings of the agent URL tests, and why each is refused by default. */
const REFUSED_HOOKS: [unknown, string][] = [
  ['http://127.0.0.1:9/hook', 'loopback'],
  ['http://localhost:9/hook', 'loopback'],
  ['http://[::1]/hook', 'loopback'],
  ['http://2130706433/hook', 'loopback'],
  ['http://0x7f.1/hook', 'loopback'],
  ['http://[::ffff:127.0.0.1]/hook', 'loopback'],
  ['http://169.254.169.254/latest/meta-data/', 'link-local (cloud metadata)'],
  ['http://[::ffff:169.254.169.254]/', 'link-local (cloud metadata) address (169.254.169.254 in IPv4-mapped form)'],
  ['http://[64:ff9b::a9fe:a9fe]/', '169.254.169.254 in NAT64 form'],
  ['http://[fe80::1]/', 'link-local'],
  ['http://10.1.2.3/', 'private'],
  ['http://[fd00::1]/', 'unique local (private)'],
  ['http://0.0.0.0:8080/', 'unspecified'],
  ['http://224.0.0.1/', 'multicast'],
  ['file:///etc/passwd', 'must use http or https'],
  ['http://user:pw@8.8.8.8/', 'must not carry credentials'],
  ['not a url', 'not a valid absolute URL'],
  [['http://127.0.0.1/'], 'must be a string'],
  [42, 'must be a string'],
]

describe('push-notification webhook URLs', () => {
  // The default policy: private ranges refused. The agent's own URL is written straight into the store, as if
  // allowed by an earlier configuration, so a request whose webhook passes is refused next for the agent's URL.
  const s = { lines: [] } as unknown as { registry: Registry; agent: PlainAgent; caller: Workspace; target: Workspace }
  beforeAll(async () => {
    s.registry = await startRegistry({ allow_private_agent_urls: false })
    s.agent = await startPlainAgent()
    const parent = await s.registry.createWorkspace('parent')
    s.caller = await s.registry.createWorkspace('caller', parent.id)
    s.target = await s.registry.createWorkspace('target', parent.id)
    await s.registry.app.decorator.switchboard.backend.agents.updateWorkspace(s.target.id, { url: s.agent.url })
  })
  afterAll(async () => {
    await s.registry.close()
    await s.agent.close()
  })
  const send = (method: string, params: unknown) => s.registry.request('POST', `/workspaces/${s.target.id}/a2a`, { token: s.caller.token, body: { jsonrpc: '2.0', id: 'push', method, params } })

  it('are refused by default in every spelling, with a JSON-RPC error naming the rule, before the agent is called; public ones pass', async () => {
    for (const [method, params] of PUSH_SPELLINGS) {
      for (const [url, reason] of REFUSED_HOOKS) {
        const response = await send(method, params(url))
        const answer = (await response.json()) as RpcAnswer
        expect({ method, url, status: response.status, code: answer.error?.code, id: answer.id }).toEqual({ method, url, status: 200, code: -32602, id: 'push' })
        expect({ method, url, message: answer.error!.message }).toEqual({ method, url, message: expect.stringContaining(reason) })
        expect(answer.error!.message).toContain('push-notification url')
        expect(answer.error!.data).toMatchObject({ field: expect.stringMatching(/^params\..*url$/) })
      }
    }
    expect(s.agent.calls).toHaveLength(0)
    // A public webhook passes: the request then meets the check of the agent's own URL.
    for (const [method, params] of PUSH_SPELLINGS) {
      const response = await send(method, params('https://8.8.8.8/hook'))
      expect({ method, status: response.status }).toEqual({ method, status: 502 })
      expect(((await response.json()) as RpcAnswer).error!.message).toContain('agent url')
    }
  })
})

describe('push-notification webhook URLs with --allow-private-agent-urls', () => {
  const s = siblings({ allow_private_agent_urls: true })

  it('allows private and loopback webhooks, forwarded as sent, and still refuses metadata and link-local ones', async () => {
    const params = { taskId: 't', pushNotificationConfig: { url: 'http://127.0.0.1:9/hook', token: 'secret' } }
    const received = s.agent.nextCall()
    const response = await s.registry.request('POST', `/workspaces/${s.target.id}/a2a`, { token: s.caller.token, body: { jsonrpc: '2.0', id: 1, method: 'tasks/pushNotificationConfig/set', params } })
    expect(response.status).toBe(200)
    expect((await received).body.params).toEqual(params)
    for (const url of ['http://169.254.169.254/', 'http://[fe80::1]/', 'http://[::ffff:169.254.169.254]/']) {
      const refused = await s.registry.request('POST', `/workspaces/${s.target.id}/a2a`, { token: s.caller.token, body: { jsonrpc: '2.0', id: 2, method: 'CreateTaskPushNotificationConfig', params: { taskId: 't', url } } })
      expect(((await refused.json()) as RpcAnswer).error).toMatchObject({ code: -32602, data: { code: 'PUSH_URL_REFUSED' } })
    }
  })
})

describe('push-notification webhook hosts that do not resolve here', () => {
  // A stub resolver: one name that does not resolve (as a public name does on a host without DNS), one that resolves to
  // the metadata address.
  const resolve = async (host: string) => {
    if (host === 'meta.example.test') return ['169.254.169.254']
    throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' })
  }
  const s = siblings({ allow_private_agent_urls: true }, { resolve })

  it('are left to the agent, which resolves them when it calls; a name that resolves is judged by its addresses', async () => {
    const params = { taskId: 't', url: 'https://hooks.example.test/webhook', id: 'cfg-1' }
    const received = s.agent.nextCall()
    const response = await s.registry.request('POST', `/workspaces/${s.target.id}/a2a`, { token: s.caller.token, body: { jsonrpc: '2.0', id: 1, method: 'CreateTaskPushNotificationConfig', params } })
    expect(response.status).toBe(200)
    expect((await received).body.params).toEqual(params)
    const refused = await s.registry.request('POST', `/workspaces/${s.target.id}/a2a`, { token: s.caller.token, body: { jsonrpc: '2.0', id: 2, method: 'CreateTaskPushNotificationConfig', params: { ...params, url: 'https://meta.example.test/webhook' } } })
    expect(((await refused.json()) as RpcAnswer).error).toMatchObject({ code: -32602, data: { code: 'PUSH_URL_REFUSED' }, message: expect.stringContaining('169.254.169.254') })
  })

  it('still refuse an agent URL that does not resolve: Switchboard calls that one itself', async () => {
    const other = await s.registry.createWorkspace('other')
    const response = await s.registry.request('POST', '/registry/register', { token: other.token, body: { id: other.id, url: 'https://hooks.example.test/a2a', agent_card: { name: 'other' } } })
    expect(response.status).toBe(400)
    expect(await response.text()).toContain('does not resolve')
  })
})
