/**
 * Bad input against a real server: every route of the OpenAPI document gets
 * malformed requests (wrong types, missing fields, deep nesting, invalid
 * UTF-8, wrong content types, oversized headers, invalid path ids), raw
 * sockets send bytes no HTTP client would, and a WebSocket client sends
 * frames no worker would. Nothing may answer 5xx, the server must keep
 * answering /healthz, and what existed before must be intact after.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { randomUUID } from 'node:crypto'
import net from 'node:net'
import WebSocket from 'ws'
import { agentId, bodies, idJson, messageJson, userId } from '../support/academy'
import { startServer, type TestServer } from '../support/app'
import { rawRequest, type RawResponse } from '../support/http'
import { TestWorker } from '../modules/workers/worker'

const ADMIN = 'fuzz-admin-token'
const AUTH = { authorization: `Bearer ${ADMIN}` }
const WS_FRAME_KB = 64

interface Operation {
  method: string
  path: string
  bodySchema: { properties?: Record<string, { type?: string }> } | null
  /** Query every attempt carries: an event stream is told to end, so a request it takes ends too. */
  query: string
}

interface Attempt {
  label: string
  method: string
  path: string
  body?: string | Buffer
  headers?: Record<string, string>
}

/** A value of a JSON type other than `type`. */
const wrongTypeFor = (type: string | undefined): unknown[] => {
  switch (type) {
    case 'string':
      return [12345, { nested: 'object' }, ['list'], true]
    case 'number':
    case 'integer':
      return ['not a number', '1e999', null, [1]]
    case 'boolean':
      return ['yes', 1]
    case 'array':
      return ['not a list', { 0: 'a' }]
    case 'object':
      return ['not an object', [1, 2], 7]
    default:
      return [Symbol.for('absent'), 12345]
  }
}

const DEEP_ARRAY = '['.repeat(10_000) + ']'.repeat(10_000)
const DEEP_OBJECT = '{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000)
const UNCLOSED = '['.repeat(10_000)
const INVALID_UTF8 = Buffer.from([0x7b, 0x22, 0x6d, 0x61, 0xff, 0xfe, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0xed, 0xa0, 0x80, 0x22, 0x7d])
const INVALID_IDS = ['not-a-uuid', '%00', '%ff%fe%fd', '..%2f..%2fetc%2fpasswd', 'x'.repeat(4000), '%E2%80%AE', '{"uid":1}', '%0d%0aSet-Cookie:%20a=b']

/** Every malformed request we send to one operation. */
function attemptsFor(operation: Operation): Attempt[] {
  const attempts: Attempt[] = []
  const hasId = operation.path.includes('{id}')
  const paths = hasId ? [...INVALID_IDS, randomUUID()].map((id) => operation.path.replace('{id}', id)) : [operation.path]
  const { method } = operation
  for (const path of paths) attempts.push({ label: 'no body', method, path: `${path}${operation.query}`, headers: AUTH })
  const path = `${paths.at(-1)!}${operation.query}`
  const send = (label: string, body: string | Buffer, contentType = 'application/json') =>
    attempts.push({ label, method, path, body, headers: { ...AUTH, 'content-type': contentType } })
  for (const text of ['', 'not json', '{', '123', 'null', '[]', '"a string"', '{"__proto__": {"polluted": true}}']) send(`body ${JSON.stringify(text)}`, text)
  send('10,000 nested arrays', DEEP_ARRAY)
  send('10,000 nested objects', DEEP_OBJECT)
  send('10,000 unclosed arrays', UNCLOSED)
  send('invalid UTF-8', INVALID_UTF8)
  send('text/plain body', '{"a": 1}', 'text/plain')
  send('form body', 'a=1&b=2', 'application/x-www-form-urlencoded')
  send('multipart body', '--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--x--\r\n', 'multipart/form-data; boundary=x')
  send('bogus content type', '{}', 'application/json; charset=nonsense-42')
  send('missing fields', '{}')
  for (const [field, schema] of Object.entries(operation.bodySchema?.properties ?? {})) {
    for (const wrong of wrongTypeFor(schema.type)) {
      if (typeof wrong === 'symbol') continue
      send(`${field} as ${JSON.stringify(wrong)}`, JSON.stringify({ [field]: wrong }))
    }
    send(`${field} deeply nested`, `{"${field}": ${DEEP_ARRAY}}`)
  }
  attempts.push({ label: '64 KB header', method, path, headers: { ...AUTH, 'x-padding': 'a'.repeat(64 * 1024) } })
  attempts.push({ label: 'garbage authorization', method, path, headers: { authorization: 'Bearer \u00ff\u00fe'.padEnd(2000, '=') } })
  attempts.push({ label: 'query garbage', method, path: `${path}${operation.query === '' ? '?' : '&'}limit=-1&limit=abc&state=%ff&agent_name[]=x&cursor=${'z'.repeat(500)}&q=%00`, headers: AUTH })
  return attempts
}

/** Sends raw bytes on a fresh connection; resolves with the status line's code, or null if the server closed without one. */
function rawExchange(port: number, bytes: Buffer | string, timeoutMs = 3000): Promise<number | null> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    let received = ''
    const done = () => {
      clearTimeout(timer)
      socket.destroy()
      const match = /^HTTP\/1\.[01] (\d{3})/.exec(received)
      resolve(match ? Number(match[1]) : null)
    }
    const timer = setTimeout(done, timeoutMs)
    socket.on('connect', () => socket.write(bytes))
    socket.on('data', (chunk) => {
      received += chunk.toString('latin1')
      if (/^HTTP\/1\.[01] \d{3}/.test(received)) done()
    })
    socket.on('error', done)
    socket.on('close', done)
  })
}

describe('malformed input against a real server', () => {
  let running: TestServer
  const sender = userId()
  const inbox = agentId('Inbox')
  const message = messageJson(sender, inbox)
  let workspaceId: string

  const healthy = async () => (await rawRequest(`${running.url}/healthz`)).status

  beforeAll(async () => {
    running = await startServer({ admin_token: ADMIN, max_body_kb: 1024, a2a_body_limit_kb: 256, max_ws_frame_kb: WS_FRAME_KB })
    expect((await rawRequest(`${running.url}/mailbox`, { method: 'POST', body: bodies.create(inbox, ['Inbox']) })).status).toBe(200)
    expect((await rawRequest(`${running.url}/message`, { method: 'PUT', body: bodies.send(message) })).status).toBe(200)
    const created = await rawRequest(`${running.url}/workspaces`, { method: 'POST', body: JSON.stringify({ name: 'keeper' }), headers: AUTH })
    expect(created.status).toBe(201)
    workspaceId = JSON.parse(created.text).id
  })

  afterAll(() => running?.close())

  it('answers every malformed request to every documented route with a 4xx, never a 5xx', async () => {
    const document = JSON.parse((await rawRequest(`${running.url}/swagger/json`)).text) as {
      paths: Record<string, Record<string, { requestBody?: { content?: Record<string, { schema?: Operation['bodySchema'] }> }; responses?: Record<string, { content?: Record<string, unknown> }> }>>
    }
    const operations: Operation[] = []
    for (const [path, methods] of Object.entries(document.paths)) {
      for (const [method, spec] of Object.entries(methods)) {
        const stream = spec.responses?.['200']?.content?.['text/event-stream'] !== undefined
        operations.push({ method: method.toUpperCase(), path, bodySchema: spec.requestBody?.content?.['application/json']?.schema ?? null, query: stream ? '?timeout=0.05' : '' })
      }
    }
    expect(operations.length).toBeGreaterThan(30)
    const attempts = operations.flatMap(attemptsFor)
    const failures: string[] = []
    const record = (attempt: Attempt, response: RawResponse) => {
      if (response.status >= 500) failures.push(`${attempt.method} ${attempt.path.slice(0, 80)} (${attempt.label}) → ${response.status} ${response.text.slice(0, 200)}`)
    }
    // A few at a time: enough to overlap, not enough to swamp a small machine.
    for (let i = 0; i < attempts.length; i += 8) {
      await Promise.all(
        attempts.slice(i, i + 8).map(async (attempt) => {
          const url = `${running.url}${attempt.path}`
          record(attempt, await rawRequest(url, { method: attempt.method, body: attempt.body, headers: attempt.headers }))
        }),
      )
    }
    expect(failures).toEqual([])
    expect(await healthy()).toBe(200)
  }, 15_000)

  it('answers bytes no HTTP client would send with a 4xx', async () => {
    const port = running.server.port
    const cases: (string | Buffer)[] = [
      Buffer.concat([Buffer.from('GET /mailbox'), Buffer.from([0xff, 0x00, 0xfe]), Buffer.from(' HTTP/1.1\r\nHost: x\r\n\r\n')]),
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(64 * 1024)}\r\n\r\n`,
      Buffer.concat([Buffer.from('GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bytes: '), Buffer.from([0xc3, 0x28, 0xff, 0x01, 0x7f]), Buffer.from('\r\n\r\n')]),
      'POST /mailbox HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}',
      'POST /mailbox HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}',
      'POST /mailbox HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}',
      'POST /mailbox HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n',
      'POST /mailbox HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\n{}\r\n0\r\n\r\n',
      `POST /workspaces HTTP/1.1\r\nHost: x\r\nContent-Length: ${2 * 1024 * 1024}\r\n\r\n{}`,
      'GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n',
      'BREW /healthz HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET\r\n\r\n',
      'GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header Name: 1\r\n\r\n',
      'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Split: a\rb\r\n\r\n',
      Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 131) % 256)),
    ]
    const statuses = await Promise.all(cases.map((bytes) => rawExchange(port, bytes)))
    for (const status of statuses) {
      expect(status).toBeGreaterThanOrEqual(400)
      expect(status).toBeLessThan(500)
    }
    expect(await healthy()).toBe(200)
  })

  it('refuses request bodies over max_body_kb with 413 on every surface', async () => {
    const big = JSON.stringify({ message: 'x'.repeat(1100 * 1024) })
    for (const [method, path] of [['PUT', '/message'], ['POST', '/jobs'], ['POST', '/workspaces']] as const) {
      const response = await rawRequest(`${running.url}${path}`, { method, body: big, headers: AUTH })
      expect(response.status).toBe(413)
    }
  })

  it('refuses proxied bodies over a2a_body_limit_kb with a JSON-RPC 413', async () => {
    const body = JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'message/send', params: { message: { parts: [{ kind: 'text', text: 'x'.repeat(300 * 1024) }] } } })
    const response = await rawRequest(`${running.url}/workspaces/${workspaceId}/a2a`, { method: 'POST', body, headers: AUTH })
    expect(response.status).toBe(413)
    expect(JSON.parse(response.text)).toMatchObject({ jsonrpc: '2.0', error: { data: { status: 413 } } })
  })

  it('survives malformed WebSocket frames and still registers a good worker', async () => {
    const url = `${running.url.replace(/^http/, 'ws')}/agent`
    const closedAfter = async (send: (ws: WebSocket) => void): Promise<number> => {
      const ws = new WebSocket(url)
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve())
        ws.once('error', reject)
      })
      const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)))
      ws.on('error', () => {})
      send(ws)
      return closed
    }
    const frames: (string | Buffer)[] = [
      Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0xff]),
      'not json at all',
      '[',
      'null',
      '[1, 2, 3]',
      '{"type": "job_update", "job_id": 5}',
      '{"type": "register", "agent_name": 42, "max_processes": "many"}',
      '{"type": "register", "agent_name": "", "load_threshold": -1}',
      `{"type": "register", "agent_name": "deep", "capabilities": ${DEEP_ARRAY}}`,
    ]
    const codes = await Promise.all(frames.map((frame) => closedAfter((ws) => ws.send(frame))))
    for (const code of codes) expect(code).toBe(1008)
    // One frame past max_ws_frame_kb: ws closes with 1009 (message too big).
    expect(await closedAfter((ws) => ws.send('x'.repeat((WS_FRAME_KB + 1) * 1024)))).toBe(1009)

    // A registered worker that then sends nonsense keeps its session.
    const worker = await TestWorker.connect(running.url, { agentName: 'fuzzed' })
    for (const frame of ['garbage', '{"type": "nope"}', '{"type": "job_update"}', '[]', '{"type": "status_update", "load": "heavy"}']) worker.sendRaw(frame)
    worker.ws.send(Buffer.from([0x00, 0x01, 0x02]))
    expect(await healthy()).toBe(200)
    const good = await TestWorker.connect(running.url, { agentName: 'good-after-fuzz' })
    const listed = JSON.parse((await rawRequest(`${running.url}/workers`, { headers: AUTH })).text) as { workers: { agent_name: string; connected: boolean }[] }
    expect(listed.workers.filter((entry) => entry.connected).map((entry) => entry.agent_name).sort()).toEqual(['fuzzed', 'good-after-fuzz'])
    await good.close()
    await worker.close()
  })

  it('leaves the mailbox, its message and the workspace intact', async () => {
    expect(await healthy()).toBe(200)
    const status = await rawRequest(`${running.url}/mailbox`, { body: bodies.mailbox(inbox) })
    expect(JSON.parse(status.text)).toEqual({ status: 'ACTIVE' })
    const received = await rawRequest(`${running.url}/message`, { body: bodies.receive(inbox, 1) })
    expect(JSON.parse(received.text)).toEqual({ message })
    const nothingElse = await rawRequest(`${running.url}/message`, { body: JSON.stringify({ mailbox: idJson(inbox), timeout: 0.05 }) })
    expect(nothingElse.status).toBe(408)
    const workspace = await rawRequest(`${running.url}/workspaces/${workspaceId}`, { headers: AUTH })
    expect(workspace.status).toBe(200)
    expect(JSON.parse(workspace.text)).toMatchObject({ id: workspaceId, name: 'keeper' })
    const all = JSON.parse((await rawRequest(`${running.url}/workspaces`, { headers: AUTH })).text) as unknown[]
    expect(all).toHaveLength(1)
  })
})
