/**
 * The serving layer. Academy sends JSON bodies on GET and DELETE, which
 * Bun.serve drops; node:http (as Bun implements it) delivers them. So each
 * request is read here, turned into a web Request (any method may carry a
 * body) and given to `app.handle`; WebSocket upgrades go to the handlers the
 * modules registered by path. A route the app also offers as a plain route
 * (src/plain.ts: the exchange's and the A2A proxy) is called directly with
 * the headers, path parameters and body, without the web Request, the router
 * or a web Response in between.
 */
import http from 'node:http'
import https from 'node:https'
import { readFileSync } from 'node:fs'
import type { Duplex } from 'node:stream'
import type { SwitchboardRuntime } from './app'
import { paramsOf, ReceivedRequest, type PlainReply, type PlainRoute, type PlainStream } from './plain'
import { servedRequests, type GoneReason, type ServedRequest } from './served'
import { corsPolicy } from './cors'
import { A2A_ROUTE, observeRequests, requestIdOf } from './observability'

/** Takes over an upgrade request for one path (e.g. a `ws` WebSocketServer's handleUpgrade). */
export type UpgradeHandler = (request: http.IncomingMessage, socket: Duplex, head: Buffer) => void

export interface ServableApp {
  handle(request: Request): Promise<Response>
  decorator: { switchboard: SwitchboardRuntime }
  /** The route templates, to label metrics and logs by route rather than raw path. */
  routes: readonly { method: string; path: string }[]
}

export interface ServeOptions {
  host: string
  port: number
  tlsCert?: string
  tlsKey?: string
  /** Largest request body accepted, in bytes. */
  bodyLimitBytes: number
}

export interface RunningServer {
  readonly port: number
  readonly host: string
  /** Base URL, e.g. http://127.0.0.1:8700 */
  readonly url: string
  /**
   * Stop accepting and report not ready; long-polls get their timeout answer
   * and event streams end at once, A2A calls get up to shutdown_timeout_s.
   */
  stop(): Promise<void>
}

const jsonError = (status: number, code: string, message: string) => JSON.stringify({ error: { code, message } })

const EMPTY = Buffer.alloc(0)

/** Set on a connection each time it is heard from or answered on; the idle sweep reads and clears it. */
const HEARD = Symbol('heard')
/** The request a connection is being answered for, if any. */
const ANSWERING = Symbol('answering')

/** A client connection, with what the serving layer keeps on it: a request costs a few property writes, no map lookups. */
interface Connection extends Duplex {
  [HEARD]?: boolean
  [ANSWERING]?: InFlight
}

/**
 * A request being answered: its route template, its caller's socket, and
 * whether the caller went away. The abort signal handlers see is made only
 * when one asks for it (a long-poll): most requests never do, and a relayed
 * event stream or an A2A call listens with `onGone`, which needs no signal.
 */
export class InFlight implements ServedRequest {
  clientGone = false
  private controller: AbortController | null = null
  private listeners: ((reason: GoneReason) => void)[] | null = null
  private aborted: GoneReason | null = null

  constructor(
    readonly route: string,
    readonly requestId: string,
    private readonly socket: { readonly remoteAddress?: string },
  ) {}

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress
  }

  get signal(): AbortSignal {
    if (this.controller === null) {
      this.controller = new AbortController()
      // Asked for only after the request was ended (shutdown began first): aborted from the start.
      if (this.aborted) this.controller.abort()
    }
    return this.controller.signal
  }

  onGone(listener: (reason: GoneReason) => void): () => void {
    if (this.aborted) {
      listener(this.aborted)
      return () => {}
    }
    ;(this.listeners ??= []).push(listener)
    return () => {
      const at = this.listeners?.indexOf(listener) ?? -1
      if (at !== -1) this.listeners!.splice(at, 1)
    }
  }

  /** Ends the request: its caller went away, or shutdown cuts it (an A2A call then answers 503, not 499). */
  abort(reason: GoneReason): void {
    if (this.aborted) return
    this.aborted = reason
    this.controller?.abort()
    const listeners = this.listeners
    this.listeners = null
    if (listeners !== null) for (const listener of listeners) listener(reason)
  }
}

/**
 * Reads the whole body, or null once it exceeds `limit` bytes; `heard` is told of the socket each chunk came on.
 * A request that declares no body is not read at all.
 */
function readBody(request: http.IncomingMessage, limit: number, heard: ((socket: Duplex) => void) | null): Promise<Buffer | null> {
  if (request.headers['content-length'] === undefined && request.headers['transfer-encoding'] === undefined) return Promise.resolve(EMPTY)
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    request.on('data', (chunk: Buffer) => {
      heard?.(request.socket)
      size += chunk.length
      if (size > limit) {
        request.removeAllListeners('data')
        request.resume()
        resolve(null)
        return
      }
      chunks.push(chunk)
    })
    request.on('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)))
    request.on('error', reject)
  })
}

/**
 * The host part of the URL the app sees. Elysia finds the path as the first
 * '/' from the URL's 12th character on, so a Host shorter than four
 * characters ("api", "db" behind a proxy on port 80) would hide the path and
 * route every request to 404: such a host is replaced here. Handlers that
 * need the caller's host read the Host header, which is passed unchanged.
 */
function routableHost(host: string | undefined): string {
  return host !== undefined && host.length >= 4 ? host : 'localhost'
}

/** The request's headers as a plain record: node:http has already lower-cased the names and joined repeated values. */
function headersOf(headers: http.IncomingHttpHeaders): Record<string, string> {
  const record: Record<string, string> = {}
  for (const name in headers) {
    const value = headers[name]
    if (value !== undefined) record[name] = typeof value === 'string' ? value : value.join(', ')
  }
  return record
}

export async function serve(app: ServableApp, options: ServeOptions): Promise<RunningServer> {
  const runtime = app.decorator.switchboard
  const observer = observeRequests(runtime, app.routes)
  const cors = corsPolicy(runtime.config.cors_origins)
  const inFlight = new Set<InFlight>()
  // A client that drops is seen through one close listener per connection, which aborts the request the
  // connection is being answered for (socket[ANSWERING]): a listener per response costs a fifth of a small request's time.
  let onIdle: (() => void) | null = null
  const scheme = options.tlsCert ? 'https' : 'http'
  // Each open connection (upgraded ones are the WebSocket endpoints' own) and when the idle sweep last found it
  // heard from or answered on. One that is silent for connection_idle_timeout_s while none of its requests is being
  // answered is closed: an idle keep-alive connection, a client gone without a word, or a body that stopped arriving
  // would otherwise hold it forever. A request only flags its connection (socket[HEARD]); each sweep turns the flag
  // into the sweep's time, so a connection is closed after the timeout of silence and at most one sweep interval more.
  const lastHeard = new Map<Connection, number>()
  const idleTimeoutMs = runtime.config.connection_idle_timeout_s * 1000
  /** Notes that `socket` was heard from or answered on. */
  const heard = (socket: Connection) => {
    socket[HEARD] = true
  }

  const onRequest = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const startedAt = performance.now()
    const requestId = requestIdOf(req.headers['x-request-id'])
    const method = req.method ?? 'GET'
    const target = req.url ?? '/'
    const query = target.indexOf('?')
    const route = observer.routeOf(method, query === -1 ? target : target.slice(0, query))
    const entry = new InFlight(route, requestId, req.socket)
    inFlight.add(entry)
    heard(req.socket)
    try {
      if (cors !== null && typeof req.headers.origin === 'string') {
        const preflight = method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined
        if (cors.apply(req.headers.origin, res) && preflight) {
          res.writeHead(204, { 'content-length': '0', 'x-request-id': requestId })
          res.end()
          return
        }
      }
      if (runtime.draining) {
        res.setHeader('connection', 'close')
        // Shutdown has begun: a new long-poll or stream answers at once; an A2A call still gets the deadline.
        if (route !== A2A_ROUTE) entry.abort('shutdown')
      }
      await respond(req, res, entry, target, query === -1 ? target : target.slice(0, query))
    } finally {
      heard(req.socket)
      inFlight.delete(entry)
      if (inFlight.size === 0) onIdle?.()
      observer.finish({
        method,
        route,
        status: entry.clientGone && !res.headersSent ? 499 : res.statusCode,
        startedAt,
        requestId,
        authorization: req.headers.authorization,
      })
    }
  }

  const respond = async (req: http.IncomingMessage, res: http.ServerResponse, entry: InFlight, target: string, path: string) => {
    const declared = Number(req.headers['content-length'] ?? 0)
    if (declared > options.bodyLimitBytes) {
      res.writeHead(413, { 'content-type': 'application/json', connection: 'close', 'x-request-id': entry.requestId })
      res.end(jsonError(413, 'PAYLOAD_TOO_LARGE', `request body of ${declared} bytes is larger than the limit of ${options.bodyLimitBytes} bytes`))
      return
    }
    let body: Buffer | null
    try {
      body = await readBody(req, options.bodyLimitBytes, idleTimeoutMs > 0 ? heard : null)
    } catch {
      res.destroy()
      return
    }
    if (body === null) {
      res.writeHead(413, { 'content-type': 'application/json', connection: 'close', 'x-request-id': entry.requestId })
      res.end(jsonError(413, 'PAYLOAD_TOO_LARGE', `request body is larger than the limit of ${options.bodyLimitBytes} bytes`))
      return
    }
    const connection: Connection = req.socket
    connection[ANSWERING] = entry
    const plain = runtime.plainRoutes.get(`${req.method} ${entry.route}`)
    await (plain === undefined ? throughApp(req, res, entry, target, body) : throughPlainRoute(plain, req, res, entry, body, path))
    if (connection[ANSWERING] === entry) connection[ANSWERING] = undefined
  }

  /** Answers through a plain route: its reply is written as it is, its stream chunk by chunk, a web Response relayed. */
  const throughPlainRoute = async (plain: PlainRoute, req: http.IncomingMessage, res: http.ServerResponse, entry: InFlight, body: Buffer, path: string) => {
    let reply: PlainReply | Response
    try {
      reply = await plain(new ReceivedRequest((name) => headerOf(req.headers, name), paramsOf(entry.route, path), body, entry))
    } catch (error) {
      runtime.logger.error('plain route failed', { error: String((error as Error)?.stack ?? error) })
      reply = { status: 500, headers: { 'content-type': 'application/json' }, body: jsonError(500, 'INTERNAL', 'Internal Server Error') }
    }
    if (reply instanceof Response) await writeResponse(reply, res, entry)
    else if (reply.stream) await writeStream(reply.status, reply.headers ?? {}, reply.stream, res, entry)
    else writeReply(reply, res, entry)
  }

  /** Answers through the app: the request as a web Request to `app.handle`, its Response written back. */
  const throughApp = async (req: http.IncomingMessage, res: http.ServerResponse, entry: InFlight, target: string, body: Buffer) => {
    const url = `${scheme}://${routableHost(req.headers.host)}${target}`
    let response: Response
    try {
      const hasBody = body.length > 0 && req.method !== 'HEAD'
      const request = new Request(url, { method: req.method, headers: headersOf(req.headers), body: hasBody ? (body as unknown as BodyInit) : undefined })
      servedRequests.set(request, entry)
      response = await app.handle(request)
    } catch (error) {
      const invalid = error instanceof TypeError
      if (!invalid) runtime.logger.error('request failed before routing', { error: String(error) })
      if (!res.headersSent && !res.destroyed) {
        res.writeHead(invalid ? 400 : 500, { 'content-type': 'application/json', 'x-request-id': entry.requestId })
        res.end(invalid ? jsonError(400, 'BAD_REQUEST', 'Malformed request') : jsonError(500, 'INTERNAL', 'Internal Server Error'))
      }
      return
    }
    await writeResponse(response, res, entry)
  }

  /** Resolves once no request is in flight, or after `ms`. */
  const settled = (ms: number) =>
    new Promise<void>((resolve) => {
      if (inFlight.size === 0) return resolve()
      const done = () => {
        clearTimeout(timer)
        onIdle = null
        resolve()
      }
      const timer = setTimeout(done, ms)
      onIdle = done
    })

  const server = options.tlsCert
    ? https.createServer({ cert: readFileSync(options.tlsCert), key: readFileSync(options.tlsKey!) }, onRequest)
    : http.createServer(onRequest)
  // Past the limit, node:http closes a new connection as soon as it is accepted: the ones open keep being served.
  if (runtime.config.max_connections > 0) server.maxConnections = runtime.config.max_connections
  server.on(options.tlsCert ? 'secureConnection' : 'connection', (socket: Connection) => {
    runtime.connections++
    if (idleTimeoutMs > 0) lastHeard.set(socket, Date.now())
    socket.once('close', () => {
      runtime.connections--
      lastHeard.delete(socket)
      const entry = socket[ANSWERING]
      if (!entry) return
      socket[ANSWERING] = undefined
      entry.clientGone = true
      entry.abort('caller')
    })
  })

  server.on('upgrade', (req: http.IncomingMessage, socket: Connection, head: Buffer) => {
    lastHeard.delete(socket)
    const path = (req.url ?? '/').split('?')[0]!
    const handler = runtime.upgrades.get(path)
    if (runtime.draining) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
      return
    }
    if (!handler) {
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
      return
    }
    handler(req, socket, head)
  })
  server.on('clientError', (_error, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
    else socket.destroy()
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port, options.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const sweeper =
    idleTimeoutMs > 0
      ? setInterval(
          () => {
            const now = Date.now()
            for (const [socket, at] of lastHeard) {
              if (socket[HEARD]) {
                socket[HEARD] = false
                lastHeard.set(socket, now)
              } else if (now - at >= idleTimeoutMs && socket[ANSWERING] === undefined) socket.destroy()
            }
          },
          Math.min(idleTimeoutMs / 2, 5000),
        )
      : null
  sweeper?.unref()
  const address = server.address()
  const port = typeof address === 'object' && address ? address.port : options.port
  const hostForUrl = options.host.includes(':') ? `[${options.host}]` : options.host === '0.0.0.0' ? '127.0.0.1' : options.host
  return {
    port,
    host: options.host,
    url: `${scheme}://${hostForUrl}:${port}`,
    async stop() {
      runtime.draining = true
      if (sweeper !== null) clearInterval(sweeper)
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeIdleConnections?.()
      // WebSocket endpoints close while HTTP requests finish: upgraded sockets would otherwise be cut without a close frame.
      const socketsClosed = runtime.drain()
      for (const entry of inFlight) if (entry.route !== A2A_ROUTE) entry.abort('shutdown')
      await settled(runtime.config.shutdown_timeout_s * 1000)
      for (const entry of inFlight) entry.abort('shutdown')
      await settled(1000)
      await socketsClosed
      server.closeIdleConnections?.()
      const timer = setTimeout(() => server.closeAllConnections?.(), 1000)
      await closed
      clearTimeout(timer)
    },
  }
}

/** A request header as plain routes read it: node:http has lower-cased the names; repeated values are joined. */
function headerOf(headers: http.IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name]
  return typeof value === 'object' ? value.join(', ') : value
}

/** Writes a plain route's reply: its headers, the request id and the body's length. */
function writeReply(reply: PlainReply, res: http.ServerResponse, entry: InFlight): void {
  if (res.destroyed) return
  const body = reply.body ?? ''
  const length = typeof body === 'string' ? Buffer.byteLength(body) : body.length
  res.writeHead(reply.status, { ...reply.headers, 'content-length': String(length), 'x-request-id': entry.requestId })
  res.end(length === 0 ? undefined : body)
}

/** What `writeStream` writes: a plain route's stream, or a web stream read through (`webChunks`). */
type Chunks = Omit<PlainStream, 'next'> & { next(): Promise<string | Uint8Array | null> }

/** A web stream's chunks as `writeStream` asks for them. */
function webChunks(body: ReadableStream<Uint8Array>): Chunks {
  const reader = body.getReader()
  return {
    next: async () => {
      const { done, value } = await reader.read()
      return done ? null : value
    },
    cancel: () => reader.cancel().catch(() => {}),
  }
}

/**
 * Writes a stream: the status, its headers and the request id, then each
 * chunk as the stream gives it, the next asked for once the write went
 * through. A caller that leaves, or a write that fails, cancels the stream;
 * the request is done once that cancel is.
 */
async function writeStream(status: number, headers: Record<string, string | string[]>, stream: Chunks, res: http.ServerResponse, entry: InFlight): Promise<void> {
  let cancelled: Promise<void> | null = null
  const cancel = () => (cancelled ??= stream.cancel().catch(() => {}))
  // Told when the client leaves or shutdown ends the stream: the pending `next` then settles.
  const stopListening = entry.onGone(cancel)
  const dropped = new Promise<boolean>((resolve) => res.once('close', () => resolve(false)))
  try {
    if (res.destroyed) return void cancel()
    res.writeHead(status, { ...headers, 'x-request-id': entry.requestId })
    res.flushHeaders()
    for (;;) {
      const chunk = await stream.next()
      // Ended by the stream, or cancelled (shutdown, a caller gone): a response still writable is ended cleanly.
      if (chunk === null || cancelled !== null) break
      if (res.destroyed || entry.clientGone) return void cancel()
      // A write to a socket the client has dropped may never call back: the close settles it instead.
      const written = await Promise.race([new Promise<boolean>((resolve) => res.write(chunk, (error) => resolve(!error))), dropped])
      if (!written || res.destroyed) return void cancel()
    }
    if (!res.destroyed) res.end()
  } catch {
    cancel()
    res.destroy()
  } finally {
    stopListening()
    if (cancelled !== null) await cancelled
  }
}

/** Writes a web Response to a node response; event streams are relayed chunk by chunk as they come. */
async function writeResponse(response: Response, res: http.ServerResponse, entry: InFlight): Promise<void> {
  // One record, every Set-Cookie kept a line of its own (as an array).
  const headers: Record<string, string | string[]> = response.headers.toJSON()
  headers['x-request-id'] = entry.requestId
  const type = headers['content-type']
  // Reading `response.body` makes a ReadableStream for any body: only an event stream is relayed through one.
  const streaming = typeof type === 'string' && type.includes('text/event-stream') && response.body !== null
  if (!streaming) {
    const payload = await response.bytes()
    if (res.destroyed) return
    // 204 and 304 carry no body, so no length either; node:http then sends none.
    if (payload.length > 0 || (response.status !== 204 && response.status !== 304)) headers['content-length'] = String(payload.length)
    res.writeHead(response.status, headers)
    res.end(payload.length > 0 ? payload : undefined)
    return
  }
  await writeStream(response.status, headers, webChunks(response.body!), res, entry)
}
