/**
 * Nothing a caller or an agent sends can forge SSE events or response
 * headers: exchange messages are framed line by line, the proxy's own error
 * event always stands alone, and ids that could reach a header are refused.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { agentId, bodies, messageJson, userId } from '../support/academy'
import { startServer, type TestServer } from '../support/app'
import { openStream, rawRequest, sseData } from '../support/http'
import { ADMIN_TOKEN, messageSend, startRegistry, type Registry } from '../modules/agents/support'

describe('exchange listen streams', () => {
  let running: TestServer
  beforeAll(async () => {
    running = await startServer()
  })
  afterAll(() => running?.close())

  const deliver = async (message: string): Promise<string[]> => {
    const inbox = JSON.parse(message).header.dest
    await rawRequest(`${running.url}/mailbox`, { method: 'POST', body: bodies.create(inbox) })
    expect((await rawRequest(`${running.url}/message`, { method: 'PUT', body: bodies.send(message) })).status).toBe(200)
    const stream = await openStream(`${running.url}/mailbox/listen`, { body: bodies.receive(inbox, 0.3) })
    await stream.ended
    return sseData(stream.received())
  }

  it('delivers a message whose strings hold escaped line breaks as one event, byte for byte', async () => {
    const message = messageJson(userId(), agentId(), { body: { kind: 'action-request', action: 'say', pargs: ['line one\nline two\r\n\r\ndata: forged'] } })
    expect(message).toContain('\\r\\n\\r\\ndata: forged')
    expect(await deliver(message)).toEqual([message])
  })

  it('cannot be made to emit a forged event by raw line breaks between JSON tokens', async () => {
    const plain = messageJson(userId(), agentId())
    const smuggled = plain.replace('"body":', '\r\n\r\n"body":\n\n').replace(/}$/, ',\r\n\r\n"data: {\\"forged\\": true}": 1\r}')
    expect(JSON.parse(smuggled)).toMatchObject(JSON.parse(plain))
    const events = await deliver(smuggled)
    expect(events).toHaveLength(1)
    expect(JSON.parse(events[0]!)).toEqual(JSON.parse(smuggled))
  })
})

describe('the A2A proxy relaying an agent stream', () => {
  let registry: Registry
  let agent: http.Server

  beforeAll(async () => {
    registry = await startRegistry({ a2a_idle_timeout_s: 0.3 })
    // An agent that stops in the middle of an event and then says nothing.
    agent = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('data: {"jsonrpc": "2.0", "partial')
    })
    await new Promise<void>((resolve) => agent.listen(0, '127.0.0.1', resolve))
  })
  afterAll(async () => {
    agent?.closeAllConnections()
    agent?.close()
    await registry?.close()
  })

  it('ends a stream the agent left mid-event with an error event of its own', async () => {
    const parent = await registry.createWorkspace('parent')
    const caller = await registry.createWorkspace('caller', parent.id)
    const target = await registry.createWorkspace('target', parent.id)
    await registry.register(target, `http://127.0.0.1:${(agent.address() as AddressInfo).port}/`)
    const stream = await openStream(`${registry.url}/workspaces/${target.id}/a2a`, {
      method: 'POST',
      headers: { authorization: `Bearer ${caller.token}` },
      body: JSON.stringify(messageSend('hello', 'message/stream')),
    })
    await stream.ended
    const last = sseData(stream.received()).at(-1)!
    expect(JSON.parse(last)).toMatchObject({ jsonrpc: '2.0', error: { code: -32603, message: expect.stringContaining('silent') } })
  })

  it('refuses a workspace id that carries a header line break, setting no header from it', async () => {
    const response = await rawRequest(`${registry.url}/workspaces/%0d%0aSet-Cookie:%20a=b/.well-known/agent-card.json`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
    expect(response.status).toBe(400)
    expect(response.headers['set-cookie']).toBeUndefined()
    const header = await rawRequest(`${registry.url}/registry/discover/${crypto.randomUUID()}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'x-workspace-id': 'a\u00e9\u00ff' } })
    expect(header.status).toBeLessThan(500)
    expect(header.headers['set-cookie']).toBeUndefined()
  })
})
