/** Switchboard with the agent registry on a real port, plus real A2A agents for it to call. */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { createGzip } from 'node:zlib'
import type { Config } from '../../../src/config'
import { startServer, type AppExtras, type TestServer } from '../../support/app'

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
export async function startRegistry(config: Partial<Config> = {}, extras: AppExtras = {}): Promise<Registry> {
  const server = await startServer({ admin_token: ADMIN_TOKEN, allow_private_agent_urls: true, ...config }, {}, extras)
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
  /** The request target (path and query) it was sent to. */
  path: string
  /** The body's bytes as text, exactly as received. */
  raw: string
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
 * `http:<status>` answers that status with a text body; `big:<bytes>:sized`
 * and `big:<bytes>:chunked` answer a JSON body of that many bytes, with its
 * length declared or in pieces; `gzip:<bytes>` answers a gzip body that
 * inflates to that many bytes, whatever the caller accepts (a gzip bomb);
 * `stream:<n>:<ms>` (on message/stream) sends n events `ms` apart;
 * `events:<n>:<bytes>` sends n events of about that size at once;
 * `bigevent:<bytes>` sends one event of that size; `stall` sends one event
 * and then nothing; `break` sends one event and then cuts the connection;
 * `task:<state>` answers a v0.3 task in that state; `taskstream` (on
 * message/stream) sends a task's events up to `completed`, in small pieces;
 * anything else is echoed with the caller's id. An HTTP+JSON request
 * (the message at the top of its body) steers it alike; its
 * `.../message:stream` streams as message/stream does.
 */
export async function startPlainAgent(): Promise<PlainAgent> {
  const calls: ReceivedCall[] = []
  const waiting: ((call: ReceivedCall) => void)[] = []
  const sockets = new Set<import('node:net').Socket>()
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const raw = Buffer.concat(chunks).toString()
    let body: Record<string, unknown> = {}
    try {
      body = JSON.parse(raw || '{}') as Record<string, unknown>
    } catch {
      // Kept as received (raw): the proxy forwards bodies it does not read.
    }
    const closed = new Promise<void>((resolve) => res.on('close', () => resolve()))
    const call: ReceivedCall = { headers: req.headers, path: req.url ?? '', raw, body, at: Date.now(), closed }
    calls.push(call)
    waiting.shift()?.(call)
    // A JSON-RPC request carries the message in its params; an HTTP+JSON one at the top of its body.
    const message = ((body.params as { message?: { parts?: { text?: string }[] } } | undefined) ?? (body as { message?: { parts?: { text?: string }[] } })).message
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
    if (text.startsWith('big:')) {
      const [, size, how] = text.split(':')
      const head = `{"jsonrpc": "2.0", "id": ${JSON.stringify(body.id)}, "result": {"kind": "message", "role": "agent", "messageId": "big", "parts": [{"kind": "text", "text": "`
      const tail = '"}]}}'
      const fill = Number(size) - head.length - tail.length
      res.writeHead(200, how === 'sized' ? { 'content-type': 'application/json', 'content-length': String(Number(size)) } : { 'content-type': 'application/json' })
      if (await writeAll(res, head)) if (await writeFiller(res, fill)) res.end(tail)
      return
    }
    if (text.startsWith('gzip:')) {
      const gzipped = await gzipBomb(Number(text.slice(5)))
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': String(gzipped.length) })
      res.end(gzipped)
      return
    }
    if (text.startsWith('http:')) {
      res.writeHead(Number(text.slice(5)), { 'content-type': 'text/plain' })
      res.end('agent is unhappy')
      return
    }
    if (text.startsWith('task:')) {
      // task:<state>: a v0.3 task in that state.
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ jsonrpc: '2.0', id: body.id, result: { kind: 'task', id: 'task-1', contextId: 'context-1', status: { state: text.slice(5) } } }))
      return
    }
    if (text === 'taskstream' && body.method === 'message/stream') {
      // A task submitted, worked on and completed, as v0.3 stream events, then an artifact.
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' })
      const events = [
        { kind: 'task', id: 'task-2', contextId: 'context-2', status: { state: 'submitted' } },
        { kind: 'status-update', taskId: 'task-2', contextId: 'context-2', status: { state: 'working' }, final: false },
        { kind: 'status-update', taskId: 'task-2', contextId: 'context-2', status: { state: 'completed' }, final: true },
        { kind: 'artifact-update', taskId: 'task-2', contextId: 'context-2', artifact: { artifactId: 'a', parts: [] } },
      ]
      // Split mid-event and with CRLF line ends, as any agent may send them.
      const stream = events.map((result) => `data: ${JSON.stringify({ jsonrpc: '2.0', id: body.id, result })}\r\n\r\n`).join('')
      for (let at = 0; at < stream.length; at += 37) {
        if (!(await writeAll(res, stream.slice(at, at + 37)))) return
        await sleep(1)
      }
      res.end()
      return
    }
    if (body.method === 'message/stream' || req.url?.endsWith('/message:stream')) {
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
      if (text.startsWith('bigevent:')) {
        if (await writeAll(res, event(0))) if (await writeAll(res, 'data: ')) if (await writeFiller(res, Number(text.slice(9)))) res.end('\n\n')
        return
      }
      if (text.startsWith('events:')) {
        const [, count, size] = text.split(':')
        const filler = 'x'.repeat(Number(size))
        for (let i = 0; i < Number(count); i++) if (!(await writeAll(res, `data: ${JSON.stringify({ jsonrpc: '2.0', id: body.id, result: { kind: 'status-update', index: i, filler, final: false } })}\n\n`))) return
        res.end()
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

/** Writes `chunk`, waiting while the socket's buffer is full; false once the connection is gone. */
async function writeAll(res: http.ServerResponse, chunk: string | Uint8Array): Promise<boolean> {
  if (res.destroyed) return false
  if (res.write(chunk)) return true
  return new Promise((resolve) => {
    const settle = (ok: boolean) => {
      res.off('drain', drained)
      res.off('close', closed)
      resolve(ok)
    }
    const drained = () => settle(true)
    const closed = () => settle(false)
    res.on('drain', drained)
    res.on('close', closed)
  })
}

const MIB = new Uint8Array(1024 * 1024).fill(0x78)

/** Writes `bytes` filler bytes ('x') in MiB pieces as the socket takes them; false once the connection is gone. */
async function writeFiller(res: http.ServerResponse, bytes: number): Promise<boolean> {
  for (let left = bytes; left > 0; left -= MIB.length) if (!(await writeAll(res, left >= MIB.length ? MIB : MIB.subarray(0, left)))) return false
  return true
}

const bombs = new Map<number, Promise<Buffer>>()

/** A gzip body that inflates to a JSON-RPC answer padded with spaces to `bytes` bytes, made in MiB pieces (kept per size). */
export function gzipBomb(bytes: number): Promise<Buffer> {
  let made = bombs.get(bytes)
  if (made === undefined) {
    made = new Promise<Buffer>((resolve, reject) => {
      const gzip = createGzip({ level: 9 })
      const chunks: Buffer[] = []
      gzip.on('data', (chunk: Buffer) => chunks.push(chunk))
      gzip.on('end', () => resolve(Buffer.concat(chunks)))
      gzip.on('error', reject)
      const head = '{"jsonrpc": "2.0", "id": 1, "result": {"kind": "message", "role": "agent", "messageId": "bomb", "parts": []}}'
      const spaces = Buffer.alloc(1024 * 1024, 0x20)
      void (async () => {
        gzip.write(head)
        for (let left = bytes - head.length; left > 0; left -= spaces.length) {
          if (!gzip.write(left >= spaces.length ? spaces : spaces.subarray(0, left))) await new Promise((resolve) => gzip.once('drain', resolve))
        }
        gzip.end()
      })()
    })
    bombs.set(bytes, made)
  }
  return made
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
