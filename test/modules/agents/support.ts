/** Switchboard with the agent registry on a real port, plus real A2A agents for it to call. */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Config } from '../../../src/config'
import { startServer, type TestServer } from '../../support/app'

export const ADMIN_TOKEN = 'admin-secret-token'

export interface Registry extends TestServer {
  /** Sends a JSON request with optional bearer token and extra headers. */
  request(method: string, path: string, options?: { token?: string; body?: unknown; headers?: Record<string, string> }): Promise<Response>
  /** Creates a workspace as the operator; returns its id, token and inbound secret. */
  createWorkspace(name: string, parentId?: string | null, role?: string): Promise<Workspace>
  /** Registers an agent URL (and card) for a workspace with its own token. */
  register(workspace: Workspace, url: string, card?: Record<string, unknown>): Promise<void>
}

export interface Workspace {
  id: string
  token: string
  secret: string
}

/** Starts Switchboard with an admin token and private agent URLs allowed (the test agents listen on loopback). */
export async function startRegistry(config: Partial<Config> = {}): Promise<Registry> {
  const server = await startServer({ admin_token: ADMIN_TOKEN, allow_private_agent_urls: true, ...config })
  const request: Registry['request'] = (method, path, options = {}) => {
    const headers: Record<string, string> = { ...options.headers }
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`
    if (options.body !== undefined) headers['content-type'] = 'application/json'
    return fetch(`${server.url}${path}`, { method, headers, body: options.body === undefined ? undefined : typeof options.body === 'string' ? options.body : JSON.stringify(options.body) })
  }
  return {
    ...server,
    request,
    async createWorkspace(name, parentId = null, role) {
      const response = await request('POST', '/workspaces', { token: ADMIN_TOKEN, body: { name, parent_id: parentId, role } })
      if (response.status !== 201) throw new Error(`creating workspace ${name} failed: ${response.status} ${await response.text()}`)
      const body = (await response.json()) as { id: string; auth_token: string; inbound_secret: string }
      return { id: body.id, token: body.auth_token, secret: body.inbound_secret }
    },
    async register(workspace, url, card = { name: 'agent', url }) {
      const response = await request('POST', '/registry/register', { token: workspace.token, body: { id: workspace.id, url, agent_card: card } })
      if (response.status !== 200) throw new Error(`registering ${workspace.id} failed: ${response.status} ${await response.text()}`)
    },
  }
}

/** What a test agent received. */
export interface ReceivedCall {
  headers: http.IncomingHttpHeaders
  body: Record<string, unknown>
  at: number
  /** Resolves when the caller's connection to the agent closed. */
  closed: Promise<void>
}

export interface PlainAgent {
  url: string
  calls: ReceivedCall[]
  /** Resolves with the next call the agent receives. */
  nextCall(): Promise<ReceivedCall>
  close(): Promise<void>
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * A plain JSON-RPC agent on node:http. The first text part steers it:
 * `echo:<text>` answers `<text>`; `sleep:<ms>` waits before answering;
 * `drip:<n>:<ms>` sends its answer in n pieces ms apart; `stallbody` sends
 * its headers and the start of a body, then nothing; `dripsized:<n>:<ms>`
 * and `stallsized` do the same with the answer's length declared
 * (Content-Length) instead of sending it in chunks; `cutsized` declares a
 * length and closes the connection before it is reached;
 * `http:<status>` answers that status with a text body; `stream:<n>:<ms>`
 * (on message/stream) sends n events `ms` apart; `stall` sends one event and
 * then nothing; `break` sends one event and then cuts the connection;
 * anything else is echoed with the caller's id.
 */
export async function startPlainAgent(): Promise<PlainAgent> {
  const calls: ReceivedCall[] = []
  const waiting: ((call: ReceivedCall) => void)[] = []
  const sockets = new Set<import('node:net').Socket>()
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const body = JSON.parse(Buffer.concat(chunks).toString() || '{}') as Record<string, unknown>
    const closed = new Promise<void>((resolve) => res.on('close', () => resolve()))
    const call: ReceivedCall = { headers: req.headers, body, at: Date.now(), closed }
    calls.push(call)
    waiting.shift()?.(call)
    const message = (body.params as { message?: { parts?: { text?: string }[] } } | undefined)?.message
    const text = message?.parts?.[0]?.text ?? ''
    const reply = (answer: string) => {
      res.writeHead(200, { 'content-type': 'application/json', 'a2a-version': String(req.headers['a2a-version'] ?? '') })
      res.end(JSON.stringify({ jsonrpc: '2.0', id: body.id, result: { kind: 'message', role: 'agent', messageId: crypto.randomUUID(), parts: [{ kind: 'text', text: answer }] } }))
    }
    if (text.startsWith('sleep:')) {
      await sleep(Number(text.slice(6)))
      if (!res.destroyed) reply('slept')
      return
    }
    if (text.startsWith('drip:') || text.startsWith('dripsized:')) {
      // drip:<n>:<ms>: the JSON answer in n pieces, ms apart (dripsized: with its length declared).
      const [kind, pieces, gap] = text.split(':')
      const answer = JSON.stringify({ jsonrpc: '2.0', id: body.id, result: { kind: 'message', role: 'agent', messageId: crypto.randomUUID(), parts: [{ kind: 'text', text: 'dripped' }] } })
      const size = Math.ceil(answer.length / Number(pieces))
      res.writeHead(200, kind === 'dripsized' ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(answer)) } : { 'content-type': 'application/json' })
      for (let offset = 0; offset < answer.length; offset += size) {
        if (offset > 0) await sleep(Number(gap))
        if (res.destroyed) return
        res.write(answer.slice(offset, offset + size))
      }
      res.end()
      return
    }
    if (text === 'stallbody' || text === 'stallsized' || text === 'cutsized') {
      res.writeHead(200, text === 'stallbody' ? { 'content-type': 'application/json' } : { 'content-type': 'application/json', 'content-length': '400' })
      res.write('{"jsonrpc": "2.0", ')
      if (text === 'cutsized') setTimeout(() => res.destroy(), 100)
      return
    }
    if (text.startsWith('http:')) {
      res.writeHead(Number(text.slice(5)), { 'content-type': 'text/plain' })
      res.end('agent is unhappy')
      return
    }
    if (body.method === 'message/stream') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
      const event = (i: number) => `data: ${JSON.stringify({ jsonrpc: '2.0', id: body.id, result: { kind: 'status-update', index: i, sentAt: Date.now(), final: false } })}\n\n`
      if (text === 'stall') {
        res.write(event(0))
        return
      }
      if (text === 'break') {
        res.write(event(0), () => res.socket?.destroy())
        return
      }
      const [, count, gap] = text.split(':')
      for (let i = 0; i < Number(count ?? 3); i++) {
        if (res.destroyed) return
        res.write(event(i))
        await sleep(Number(gap ?? 100))
      }
      res.end()
      return
    }
    reply(text.startsWith('echo:') ? text.slice(5) : `from ${req.headers['x-workspace-id'] ?? 'nobody'}`)
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/`,
    calls,
    nextCall: () => new Promise((resolve) => waiting.push(resolve)),
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** A JSON-RPC `message/send` request as Molecule's client builds it. */
export function messageSend(text: string, method = 'message/send') {
  return { jsonrpc: '2.0', id: crypto.randomUUID(), method, params: { message: { role: 'user', messageId: crypto.randomUUID(), parts: [{ kind: 'text', text }] } } }
}

/** A port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = http.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}
