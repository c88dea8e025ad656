import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { openStream, sseData } from '../../support/http'
import { eventually } from '../../support/wait'
import { ADMIN_TOKEN, closedPort, messageSend, startPlainAgent, startRegistry, type PlainAgent, type Registry, type Workspace } from './support'

interface RpcAnswer {
  id?: unknown
  result?: { parts: { text: string }[] }
  error?: { code: number; message: string; data?: Record<string, unknown> }
}

describe('the A2A proxy', () => {
  let registry: Registry
  let agent: PlainAgent
  let parent: Workspace
  let caller: Workspace
  let target: Workspace
  let stranger: Workspace
  beforeAll(async () => {
    registry = await startRegistry({ a2a_body_limit_kb: 64, a2a_header_timeout_s: 1, a2a_idle_timeout_s: 1 })
    agent = await startPlainAgent()
    parent = await registry.createWorkspace('parent')
    caller = await registry.createWorkspace('caller', parent.id)
    target = await registry.createWorkspace('target', parent.id)
    stranger = await registry.createWorkspace('stranger')
    for (const workspace of [parent, caller, target, stranger]) await registry.register(workspace, agent.url)
  })
  afterAll(async () => {
    await registry.close()
    await agent.close()
  })

  const send = (from: Workspace, to: Workspace, body: unknown, headers: Record<string, string> = {}) =>
    registry.request('POST', `/workspaces/${to.id}/a2a`, { token: from.token, body, headers })

  it('answers alike over a socket (the plain route) and through app.handle (its Elysia wrapper)', async () => {
    const message = { jsonrpc: '2.0', id: 'same-id', method: 'message/send', params: { message: { role: 'user', messageId: 'same-message', parts: [{ kind: 'text', text: 'echo:both ways' }] } } }
    const asCaller = { authorization: `Bearer ${caller.token}` }
    const cases: [string, string, Record<string, string>][] = [
      [target.id, JSON.stringify(message), asCaller],
      [target.id, JSON.stringify(message), { ...asCaller, 'x-workspace-id': caller.id, 'a2a-version': '0.3' }],
      [target.id, JSON.stringify({ id: 'bare-id', method: 'message/send', params: { message: { role: 'user', messageId: 'm', parts: [{ kind: 'text', text: 'echo:bare' }] } } }), asCaller],
      [target.id, JSON.stringify({ ...message, params: { message: { role: 'user', parts: [] } } }).replace(/"messageId":"[^"]+",?/, ''), asCaller],
      [target.id, JSON.stringify({ ...message, params: { message: { role: 'user' } } }), asCaller],
      [target.id, '{"jsonrpc": "2.0", ', asCaller],
      [target.id, '[1, 2]', asCaller],
      [target.id, JSON.stringify(message), {}],
      [target.id, JSON.stringify(message), { ...asCaller, 'x-workspace-id': stranger.id }],
      [target.id, JSON.stringify(message), { authorization: `Bearer ${stranger.token}` }],
      [target.id, JSON.stringify({ ...message, params: { message: { ...message.params.message, parts: [{ kind: 'text', text: 'http:500' }] } } }), asCaller],
      ['not-a-workspace', JSON.stringify(message), asCaller],
      ['%E0%A4%A', JSON.stringify(message), asCaller],
      [crypto.randomUUID(), JSON.stringify(message), asCaller],
    ]
    // The agent gives each answer a fresh messageId, and fills one for a message without: everything else must match.
    const answer = async (response: Response) => ({
      status: response.status,
      type: response.headers.get('content-type'),
      retry: response.headers.get('retry-after'),
      body: (await response.text()).replace(/"messageId":"[^"]+"/g, '"messageId":"…"'),
    })
    for (const [id, sent, headers] of cases) {
      const init = { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: sent }
      const socket = await answer(await fetch(`${registry.url}/workspaces/${id}/a2a`, init))
      const handled = await answer(await registry.app.handle(new Request(`http://localhost/workspaces/${id}/a2a`, init)))
      expect({ id, sent, ...socket }).toEqual({ id, sent, ...handled })
    }
  })

  it('forwards message/send and returns the agent\'s answer', async () => {
    const response = await send(caller, target, messageSend('echo:hello there'))
    expect(response.status).toBe(200)
    const answer = (await response.json()) as RpcAnswer
    expect(answer.result!.parts[0]!.text).toBe('hello there')
  })

  it('sends the caller id and the target\'s inbound secret, never the caller\'s Authorization', async () => {
    const received = agent.nextCall()
    await send(caller, target, messageSend('echo:x'), { 'x-workspace-id': caller.id, 'a2a-version': '0.3', 'a2a-extensions': 'https://example.com/ext/v1', origin: 'http://platform.example' })
    const call = await received
    expect(call.headers['x-workspace-id']).toBe(caller.id)
    expect(call.headers['x-switchboard-secret']).toBe(target.secret)
    expect(call.headers.authorization).toBeUndefined()
    expect(call.headers['a2a-version']).toBe('0.3')
    expect(call.headers['a2a-extensions']).toBe('https://example.com/ext/v1')
  })

  it('wraps a bare {method, params} into a JSON-RPC envelope and fills messageId', async () => {
    const received = agent.nextCall()
    const response = await send(caller, target, { method: 'message/send', params: { message: { role: 'user', parts: [{ kind: 'text', text: 'echo:bare' }] } } })
    const call = await received
    expect(call.body.jsonrpc).toBe('2.0')
    expect(typeof call.body.id).toBe('string')
    expect((call.body.params as { message: { messageId: string } }).message.messageId).toMatch(/^[0-9a-f-]{36}$/)
    expect(((await response.json()) as RpcAnswer).result!.parts[0]!.text).toBe('bare')
  })

  it('converts A2A v0.2 content into parts, and forwards a message with neither as sent, for the agent to judge', async () => {
    const received = agent.nextCall()
    await send(caller, target, { jsonrpc: '2.0', id: 7, method: 'message/send', params: { message: { role: 'user', content: 'echo:old style' } } })
    const call = await received
    expect((call.body.params as { message: { parts: unknown[]; content?: unknown } }).message).toMatchObject({ parts: [{ kind: 'text', text: 'echo:old style' }] })
    expect((call.body.params as { message: { content?: unknown } }).message.content).toBeUndefined()
    expect((call.body.params as { message: { messageId: string } }).message.messageId).toMatch(/^[0-9a-f-]{36}$/)
    const sent = JSON.stringify({ jsonrpc: '2.0', id: 8, method: 'message/send', params: { message: { role: 'user' } } })
    const forwarded = agent.nextCall()
    const response = await send(caller, target, sent)
    expect(response.status).toBe(200)
    expect((await forwarded).raw).toBe(sent)
  })

  it('answers a body it cannot route as the JSON-RPC binding does: HTTP 200 with -32700 or -32600, and the request id when it has one', async () => {
    const before = agent.calls.length
    const cases: [string, number, unknown][] = [
      ['{"method": ', -32700, null],
      ['', -32700, null],
      ['[{"jsonrpc": "2.0", "id": 1, "method": "message/send"}]', -32600, null],
      ['"message/send"', -32600, null],
      ['{"jsonrpc": "2.0", "id": 5, "params": {}}', -32600, 5],
      ['{"jsonrpc": "2.0", "id": "x", "method": 42}', -32600, 'x'],
    ]
    for (const [body, code, id] of cases) {
      const response = await send(caller, target, body)
      expect({ body, status: response.status }).toEqual({ body, status: 200 })
      const answer = (await response.json()) as RpcAnswer & { jsonrpc: string }
      expect({ body, jsonrpc: answer.jsonrpc, id: answer.id, code: answer.error!.code }).toEqual({ body, jsonrpc: '2.0', id, code })
    }
    expect(agent.calls.length).toBe(before)
  })

  it('refuses a body over a2a_body_limit_kb with 413', async () => {
    const response = await send(caller, target, messageSend('x'.repeat(70 * 1024)))
    expect(response.status).toBe(413)
    expect(((await response.json()) as RpcAnswer).error!.message).toContain('a2a_body_limit_kb')
  })

  it('refuses a token that does not match X-Workspace-ID (401) and an unreachable target (403)', async () => {
    const mismatch = await send(caller, target, messageSend('echo:x'), { 'x-workspace-id': stranger.id })
    expect(mismatch.status).toBe(401)
    const forbidden = await send(stranger, target, messageSend('echo:x'))
    expect(forbidden.status).toBe(403)
    const anonymous = await registry.request('POST', `/workspaces/${target.id}/a2a`, { body: messageSend('echo:x') })
    expect(anonymous.status).toBe(401)
  })

  it('checks the token before what the claimed workspace may reach, and the request before the access rules', async () => {
    const before = agent.calls.length
    const asStranger = { authorization: `Bearer ${stranger.token}` }
    const status = async (to: string, headers: Record<string, string>, body: unknown = messageSend('echo:x')) =>
      (await registry.request('POST', `/workspaces/${to}/a2a`, { body, headers })).status
    // The stranger claims to be the caller, who may reach the target: its token decides, and it is not the caller's.
    expect(await status(target.id, { ...asStranger, 'x-workspace-id': caller.id })).toBe(401)
    expect(await status(target.id, { authorization: 'Bearer not-a-token', 'x-workspace-id': caller.id })).toBe(401)
    expect(await status(crypto.randomUUID(), { authorization: 'Bearer not-a-token', 'x-workspace-id': caller.id })).toBe(401)
    // A proven claim: a body that is no JSON-RPC request is answered (HTTP 200, -32700) before the access rules are applied.
    expect(await status(target.id, { ...asStranger, 'x-workspace-id': stranger.id }, '{"jsonrpc": ')).toBe(200)
    expect(await status(target.id, { ...asStranger, 'x-workspace-id': stranger.id })).toBe(403)
    // An unknown target is out of reach like any other: a workspace learns nothing of ids it may not reach.
    expect(await status(crypto.randomUUID(), { authorization: `Bearer ${caller.token}`, 'x-workspace-id': caller.id })).toBe(403)
    expect(agent.calls.length).toBe(before)
    // The claim in another spelling of the same id (upper case, spaces around) is the caller's too.
    expect(await status(target.id, { authorization: `Bearer ${caller.token}`, 'x-workspace-id': ` ${caller.id.toUpperCase()} ` })).toBe(200)
    // The operator reaches every workspace, whatever workspace it names.
    expect(await status(target.id, { authorization: `Bearer ${ADMIN_TOKEN}`, 'x-workspace-id': stranger.id })).toBe(200)
    expect(agent.calls.length).toBe(before + 2)
  })

  it('answers 410 for a removed target', async () => {
    const doomed = await registry.createWorkspace('doomed', parent.id)
    await registry.register(doomed, agent.url)
    await registry.request('DELETE', `/workspaces/${doomed.id}`, { token: ADMIN_TOKEN })
    const response = await registry.request('POST', `/workspaces/${doomed.id}/a2a`, { token: ADMIN_TOKEN, body: messageSend('echo:x') })
    expect(response.status).toBe(410)
    expect(((await response.json()) as RpcAnswer).error!.data).toMatchObject({ id: doomed.id })
  })

  it('passes agent HTTP errors through with their status and a JSON error', async () => {
    const response = await send(caller, target, messageSend('http:502'))
    expect(response.status).toBe(502)
    const body = (await response.json()) as RpcAnswer
    expect(body.error!.message).toContain('agent answered HTTP 502')
  })

  it('answers 503 with Retry-After quickly when the agent is down', async () => {
    const down = await registry.createWorkspace('down', parent.id)
    await registry.register(down, `http://127.0.0.1:${await closedPort()}/`)
    const started = Date.now()
    const response = await send(caller, down, messageSend('echo:x'))
    expect(response.status).toBe(503)
    expect(response.headers.get('retry-after')).not.toBeNull()
    expect(((await response.json()) as RpcAnswer).error!.message).toContain('agent unreachable')
    expect(Date.now() - started).toBeLessThan(3000)
  })

  it('answers 504 when the agent sends no headers within a2a_header_timeout_s', async () => {
    const started = Date.now()
    const response = await send(caller, target, messageSend('sleep:4000'))
    expect(response.status).toBe(504)
    expect(response.headers.get('retry-after')).not.toBeNull()
    expect(Date.now() - started).toBeLessThan(3500)
  })

  it('waits for an answer whose pieces keep coming, however long it takes in all', async () => {
    // Four pieces 0.4 s apart: 1.2 s in all, past a2a_idle_timeout_s (1 s), never silent for 1 s.
    const started = Date.now()
    const response = await send(caller, target, messageSend('drip:4:400'))
    expect(response.status).toBe(200)
    expect(((await response.json()) as RpcAnswer).result!.parts[0]!.text).toBe('dripped')
    expect(Date.now() - started).toBeGreaterThanOrEqual(1100)
  })

  it.each([
    ['sent in pieces', 'stallbody', 'silent'],
    ['of declared length', 'stallsized', 'did not arrive whole'],
  ])('answers 504 when an answer %s stops arriving for a2a_idle_timeout_s', async (_, mode, words) => {
    const started = Date.now()
    const response = await send(caller, target, messageSend(mode))
    expect(response.status).toBe(504)
    expect(((await response.json()) as RpcAnswer).error!.message).toContain(words)
    expect(Date.now() - started).toBeLessThan(3000)
  })

  it('waits for an answer of declared length whose pieces all arrive within a2a_idle_timeout_s', async () => {
    // Three pieces 0.3 s apart: 0.6 s in all, under a2a_idle_timeout_s (1 s).
    const response = await send(caller, target, messageSend('dripsized:3:300'))
    expect(response.status).toBe(200)
    expect(((await response.json()) as RpcAnswer).result!.parts[0]!.text).toBe('dripped')
  })

  it('answers 504 when an answer of declared length is not whole a2a_idle_timeout_s after its headers', async () => {
    // Four pieces 0.4 s apart, never silent for 1 s, but 1.2 s in all: a body of declared length gets one deadline.
    const started = Date.now()
    const response = await send(caller, target, messageSend('dripsized:4:400'))
    expect(response.status).toBe(504)
    expect(((await response.json()) as RpcAnswer).error!.message).toBe('agent response of declared length did not arrive whole within 1 s of its headers')
    expect(Date.now() - started).toBeLessThan(3000)
  })

  it('answers 502 when the agent closes the connection before an answer of declared length is whole', async () => {
    const response = await send(caller, target, messageSend('cutsized'))
    expect(response.status).toBe(502)
    expect(((await response.json()) as RpcAnswer).error!.message).toContain('agent response broke off')
  })

  it('relays streamed events as they arrive, before the stream ends', async () => {
    const stream = await openStream(`${registry.url}/workspaces/${target.id}/a2a`, {
      method: 'POST',
      headers: { authorization: `Bearer ${caller.token}` },
      body: JSON.stringify(messageSend('stream:4:400', 'message/stream')),
    })
    expect(stream.status).toBe(200)
    expect(stream.headers['content-type']).toContain('text/event-stream')
    await stream.waitFor('"index":0', 3000)
    const firstSeenAt = Date.now()
    await stream.ended
    const endedAt = Date.now()
    const events = sseData(stream.received()).map((data) => JSON.parse(data) as { result: { index: number; sentAt: number } })
    expect(events.map((event) => event.result.index)).toEqual([0, 1, 2, 3])
    // The first event reached the caller while the agent was still producing the rest.
    expect(endedAt - firstSeenAt).toBeGreaterThan(900)
    expect(firstSeenAt - events[0]!.result.sentAt).toBeLessThan(300)
  })

  it('ends a silent stream with a JSON-RPC error event after a2a_idle_timeout_s', async () => {
    const stream = await openStream(`${registry.url}/workspaces/${target.id}/a2a`, {
      method: 'POST',
      headers: { authorization: `Bearer ${caller.token}` },
      body: JSON.stringify(messageSend('stall', 'message/stream')),
    })
    await stream.ended
    const events = sseData(stream.received()).map((data) => JSON.parse(data) as RpcAnswer)
    expect(events).toHaveLength(2)
    expect(events[1]!.error!.message).toContain('silent')
  })

  it('cancels the agent request when the caller disconnects mid-stream', async () => {
    const received = agent.nextCall()
    const stream = await openStream(`${registry.url}/workspaces/${target.id}/a2a`, {
      method: 'POST',
      headers: { authorization: `Bearer ${caller.token}` },
      body: JSON.stringify(messageSend('stream:100:200', 'message/stream')),
    })
    await stream.waitFor('"index":0', 3000)
    stream.close()
    const call = await received
    await Promise.race([call.closed, Bun.sleep(5000).then(() => Promise.reject(new Error('agent connection stayed open')))])
  })

  it('attributes every call of a 100-call burst to its caller', async () => {
    const burstParent = await registry.createWorkspace('burst-parent')
    const sink = await registry.createWorkspace('sink', burstParent.id)
    await registry.register(sink, agent.url)
    const senders = await Promise.all(Array.from({ length: 5 }, (_, i) => registry.createWorkspace(`sender-${i}`, burstParent.id)))
    const answers = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const from = senders[i % senders.length]!
        const response = await send(from, sink, messageSend(`who am i ${i}`))
        return { from: from.id, text: ((await response.json()) as RpcAnswer).result!.parts[0]!.text }
      }),
    )
    for (const answer of answers) expect(answer.text).toBe(`from ${answer.from}`)
    const seen: { source_id: string; status: number; method: string }[] = []
    let cursor: string | null = null
    do {
      const page = (await (await registry.request('GET', `/workspaces/${sink.id}/activity?limit=40${cursor ? `&cursor=${cursor}` : ''}`, { token: sink.token })).json()) as {
        items: { source_id: string; status: number; method: string }[]
        next_cursor: string | null
      }
      seen.push(...page.items)
      cursor = page.next_cursor
    } while (cursor !== null)
    expect(seen).toHaveLength(100)
    for (const sender of senders) expect(seen.filter((item) => item.source_id === sender.id)).toHaveLength(20)
    expect(seen.every((item) => item.status === 200 && item.method === 'message/send')).toBe(true)
    const own = (await (await registry.request('GET', `/workspaces/${senders[0]!.id}/activity`, { token: senders[0]!.token })).json()) as { items: unknown[] }
    expect(own.items).toHaveLength(20)
    expect((await registry.request('GET', `/workspaces/${sink.id}/activity`, { token: senders[0]!.token })).status).toBe(403)
  })
})

describe('agent URLs and SSRF', () => {
  it('refuses link-local, metadata, multicast and private URLs on register', async () => {
    const registry = await startRegistry({ allow_private_agent_urls: false })
    try {
      const workspace = await registry.createWorkspace('ssrf')
      const cases: [string, string][] = [
        ['http://169.254.169.254/latest/meta-data/', 'link-local'],
        ['http://[::ffff:169.254.169.254]/', 'link-local'],
        ['http://224.0.0.1/', 'multicast'],
        ['http://[fe80::1]/', 'link-local'],
        ['http://0.0.0.0:8080/', 'unspecified'],
        ['http://127.0.0.1:8080/', 'loopback'],
        ['http://localhost:8080/', 'loopback'],
        ['http://10.1.2.3/', 'private'],
        ['file:///etc/passwd', 'http or https'],
        ['http://user:pw@example.com/', 'credentials'],
      ]
      for (const [url, reason] of cases) {
        const response = await registry.request('POST', '/registry/register', { token: workspace.token, body: { id: workspace.id, url, agent_card: {} } })
        expect(response.status).toBe(400)
        expect(await response.text()).toContain(reason)
      }
    } finally {
      await registry.close()
    }
  })

  it('keeps refusing metadata addresses when private URLs are allowed', async () => {
    const registry = await startRegistry({ allow_private_agent_urls: true })
    try {
      const workspace = await registry.createWorkspace('ssrf-private')
      const response = await registry.request('POST', '/registry/register', { token: workspace.token, body: { id: workspace.id, url: 'http://169.254.169.254/', agent_card: {} } })
      expect(response.status).toBe(400)
    } finally {
      await registry.close()
    }
  })

  it('forwards each call to the URL stored at that moment, and refuses a bad URL every time it is sent', async () => {
    const registry = await startRegistry({ allow_private_agent_urls: true })
    const [first, second] = [await startPlainAgent(), await startPlainAgent()]
    try {
      const parent = await registry.createWorkspace('p')
      const from = await registry.createWorkspace('from', parent.id)
      const to = await registry.createWorkspace('to', parent.id)
      await registry.register(to, first.url)
      expect((await registry.request('POST', `/workspaces/${to.id}/a2a`, { token: from.token, body: messageSend('echo:one') })).status).toBe(200)
      await registry.register(to, second.url)
      expect((await registry.request('POST', `/workspaces/${to.id}/a2a`, { token: from.token, body: messageSend('echo:two') })).status).toBe(200)
      expect([first.calls.length, second.calls.length]).toEqual([1, 1])
      for (let attempt = 0; attempt < 2; attempt++) {
        const response = await registry.request('POST', '/registry/register', { token: to.token, body: { id: to.id, url: 'http://user:pw@127.0.0.1:9/', agent_card: {} } })
        expect(response.status).toBe(400)
        expect(await response.text()).toContain('credentials')
      }
    } finally {
      await registry.close()
      await first.close()
      await second.close()
    }
  })

  it('checks the stored URL again before every forward', async () => {
    const registry = await startRegistry({ allow_private_agent_urls: false })
    const agent = await startPlainAgent()
    try {
      const parent = await registry.createWorkspace('p')
      const from = await registry.createWorkspace('from', parent.id)
      const to = await registry.createWorkspace('to', parent.id)
      // Written straight into the store, as if allowed by an earlier configuration.
      await registry.app.decorator.switchboard.backend.agents.updateWorkspace(to.id, { url: agent.url })
      const response = await registry.request('POST', `/workspaces/${to.id}/a2a`, { token: from.token, body: messageSend('echo:x') })
      expect(response.status).toBe(502)
      expect(((await response.json()) as RpcAnswer).error!.message).toContain('loopback')
      expect(agent.calls).toHaveLength(0)
    } finally {
      await registry.close()
      await agent.close()
    }
  })
})

describe('A2A call outcomes in /metrics', () => {
  const siblings = siblingsOnOneAgent({ a2a_idle_timeout_s: 0.3 })

  const outcomes = async () => {
    const text = await (await fetch(`${siblings.registry.url}/metrics`)).text()
    const counts: Record<string, number> = {}
    for (const match of text.matchAll(/^switchboard_a2a_calls_total\{outcome="([a-z_]+)"\} (\d+)$/gm)) counts[match[1]!] = Number(match[2])
    return counts
  }
  const stream = (text: string) =>
    openStream(`${siblings.registry.url}/workspaces/${siblings.target.id}/a2a`, { method: 'POST', headers: { authorization: `Bearer ${siblings.caller.token}` }, body: JSON.stringify(messageSend(text, 'message/stream')) })

  it('counts a stream by how it ended, not by the 200 its caller saw first', async () => {
    const send = (text: string) => siblings.registry.request('POST', `/workspaces/${siblings.target.id}/a2a`, { token: siblings.caller.token, body: messageSend(text) })
    expect((await send('echo:fine')).status).toBe(200)
    expect((await send('http:500')).status).toBe(500)
    expect((await siblings.registry.request('POST', '/workspaces/ws-nobody/a2a', { token: siblings.caller.token, body: messageSend('echo:x') })).status).toBe(400)

    const complete = await stream('stream:2:10')
    await complete.ended
    expect(complete.status).toBe(200)

    const broken = await stream('break')
    await broken.ended
    expect(broken.status).toBe(200)
    expect(sseData(broken.received()).at(-1)).toContain('agent closed the stream abruptly')

    const silent = await stream('stall')
    await silent.ended
    expect(silent.status).toBe(200)

    const left = await stream('stream:50:100')
    await left.waitFor('"index":0', 3000)
    left.close()

    let counts: Record<string, number> = {}
    await eventually(async () => {
      counts = await outcomes()
      return counts.caller_gone === 1
    }, 5000, 'the left stream counted')
    expect(counts).toEqual({ ok: 2, agent_error: 2, rejected: 1, timeout: 1, caller_gone: 1 })
  })
})

describe('A2A answers bounded by a2a_response_limit_kb', () => {
  const siblings = siblingsOnOneAgent({ a2a_response_limit_kb: 64 })
  const send = (text: string) => siblings.registry.request('POST', `/workspaces/${siblings.target.id}/a2a`, { token: siblings.caller.token, body: messageSend(text) })
  const stream = (text: string) =>
    openStream(`${siblings.registry.url}/workspaces/${siblings.target.id}/a2a`, { method: 'POST', headers: { authorization: `Bearer ${siblings.caller.token}` }, body: JSON.stringify(messageSend(text, 'message/stream')) })
  const closedWithin = (call: Promise<{ closed: Promise<void> }>, ms: number) =>
    call.then(({ closed }) => Promise.race([closed.then(() => 'closed'), Bun.sleep(ms).then(() => 'still open')]))

  it('refuses an answer of declared length over the limit before reading it (502), and closes the connection to the agent', async () => {
    const received = siblings.agent.nextCall()
    const response = await send('big:2000000:sized')
    expect(response.status).toBe(502)
    const answer = (await response.json()) as RpcAnswer
    expect(answer.error!.message).toBe('agent response of 2000000 bytes is larger than the limit of 65536 bytes (a2a_response_limit_kb)')
    expect(answer.error!.data).toMatchObject({ status: 502, code: 'RESPONSE_TOO_LARGE', limit_bytes: 65536 })
    expect(await closedWithin(received, 2000)).toBe('closed')
  })

  it('cuts an answer sent in pieces once it passes the limit (502), and relays one just under it', async () => {
    const received = siblings.agent.nextCall()
    const response = await send('big:2000000:chunked')
    expect(response.status).toBe(502)
    expect(((await response.json()) as RpcAnswer).error!.message).toBe('agent response is larger than the limit of 65536 bytes (a2a_response_limit_kb)')
    expect(await closedWithin(received, 2000)).toBe('closed')
    for (const how of ['sized', 'chunked']) {
      const under = await send(`big:65000:${how}`)
      expect(under.status).toBe(200)
      expect((await under.bytes()).length).toBe(65000)
    }
  })

  it('asks the agent for identity encoding and refuses a compressed answer instead of inflating it (502)', async () => {
    const received = siblings.agent.nextCall()
    const response = await send('gzip:1000000')
    expect((await received).headers['accept-encoding']).toBe('identity')
    expect(response.status).toBe(502)
    expect(((await response.json()) as RpcAnswer).error!.message).toContain('Content-Encoding "gzip"')
  })

  it('ends a stream with an error event at an event over the limit, and relays any number of events under it', async () => {
    const big = await stream('bigevent:2000000')
    expect(big.status).toBe(200)
    await big.ended
    expect(big.received().length).toBeLessThan(200_000)
    const events = sseData(big.received())
    expect(JSON.parse(events[0]!)).toMatchObject({ result: { index: 0 } })
    expect((JSON.parse(events.at(-1)!) as RpcAnswer).error!.message).toBe('agent stream sent an event larger than the limit of 65536 bytes (a2a_response_limit_kb)')

    // 200 events of 1 KB: 200 KB in all, past the limit, each well under it.
    const many = await stream('events:200:1000')
    await many.ended
    const relayed = sseData(many.received()).map((data) => JSON.parse(data) as RpcAnswer & { result?: { index: number } })
    expect(relayed.map((event) => event.result?.index)).toEqual(Array.from({ length: 200 }, (_, i) => i))
  })
})

describe('the A2A proxy with a connect timeout shorter than the header timeout', () => {
  const siblings = siblingsOnOneAgent({ a2a_connect_timeout_ms: 200, a2a_header_timeout_s: 1 })
  const send = (text: string) => siblings.registry.request('POST', `/workspaces/${siblings.target.id}/a2a`, { token: siblings.caller.token, body: messageSend(text) })

  it('lets an agent that was reached think past the connect timeout, within the header timeout', async () => {
    const started = Date.now()
    const response = await send('sleep:600')
    expect(response.status).toBe(200)
    expect(Date.now() - started).toBeGreaterThanOrEqual(600)
  })

  it('still answers 504 at the header timeout once the connect probe found the agent', async () => {
    const started = Date.now()
    const response = await send('sleep:4000')
    expect(response.status).toBe(504)
    expect(((await response.json()) as RpcAnswer).error!.message).toContain('did not answer within 1 s')
    const elapsed = Date.now() - started
    expect(elapsed).toBeGreaterThanOrEqual(900)
    expect(elapsed).toBeLessThan(2500)
  })
})

/** For the describe block it is called in: a registry with `config`, one plain agent, and two sibling workspaces (caller, target) registered to it. */
function siblingsOnOneAgent(config: Parameters<typeof startRegistry>[0]) {
  const siblings = {} as { registry: Registry; agent: PlainAgent; caller: Workspace; target: Workspace }
  beforeAll(async () => {
    siblings.registry = await startRegistry(config)
    siblings.agent = await startPlainAgent()
    const parent = await siblings.registry.createWorkspace('parent')
    siblings.caller = await siblings.registry.createWorkspace('caller', parent.id)
    siblings.target = await siblings.registry.createWorkspace('target', parent.id)
    for (const workspace of [parent, siblings.caller, siblings.target]) await siblings.registry.register(workspace, siblings.agent.url)
  })
  afterAll(async () => {
    await siblings.registry.close()
    await siblings.agent.close()
  })
  return siblings
}
