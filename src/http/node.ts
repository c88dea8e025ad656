/**
 * The node:http adapter: every request goes from the socket straight into
 * the pipeline, with no web Request in between, and its Reply is written
 * back as it is (whole, or chunk by chunk for a stream). Academy sends JSON
 * bodies on GET and DELETE, which Bun.serve drops; node:http (as Bun
 * implements it) delivers them. WebSocket upgrades go to the handlers the
 * modules registered by path.
 */
import http from 'node:http'
import https from 'node:https'
import { readFileSync } from 'node:fs'
import type { Duplex } from 'node:stream'
import type { SwitchboardRuntime } from './runtime'
import { observeRequests, requestIdOf } from '../ops/observability'
import { routeLabel, type Incoming } from './pipeline'
import type { Chunks, Reply } from './reply'
import { InFlight } from './served'
import { BadRequestError, RequestTimeoutError } from '../errors'
import { credentialOf } from './auth'
import { rateLimitHeaders, tooManyRequests } from './limits'

export interface ServableApp {
  decorator: { switchboard: SwitchboardRuntime }
}

export interface ServeOptions {
  host: string
  port: number
  tlsCert?: string
  tlsKey?: string
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

const EMPTY = new Uint8Array(0)

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
 * A request read from node:http for the pipeline. Its body is read only when
 * the pipeline asks (once), bounded by the route's limit; a request that
 * declares no body is not read at all.
 */
class NodeIncoming implements Incoming {
  readonly path: string
  readonly search: string
  /** Set when the body passed its limit: the rest is unread, so the connection is closed after the answer. */
  overLimit = false
  /** Set when the body did not arrive whole within request_body_timeout_s: the connection is closed after the answer too. */
  timedOut = false
  private read: Promise<Uint8Array | null> | null = null

  constructor(
    private readonly req: http.IncomingMessage,
    readonly served: InFlight,
    readonly scheme: 'http' | 'https',
    private readonly heard: ((socket: Duplex) => void) | null,
    /** Told once the body has arrived whole: from then on the request is being answered. */
    private readonly onBody: () => void,
    /** How long the whole body may take to arrive once reading starts (0: no deadline). */
    private readonly bodyTimeoutMs: number,
  ) {
    const target = req.url ?? '/'
    const query = target.indexOf('?')
    this.path = query === -1 ? target : target.slice(0, query)
    this.search = query === -1 ? '' : target.slice(query + 1)
  }

  get method(): string {
    return this.req.method ?? 'GET'
  }

  header(name: string): string | undefined {
    const value = this.req.headers[name]
    return typeof value === 'object' ? value.join(', ') : value
  }

  body(limit: number): Promise<Uint8Array | null> {
    this.read ??= this.readBody(limit).then((bytes) => {
      if (bytes !== null) this.onBody()
      return bytes
    })
    return this.read
  }

  /** True when the request has a body nobody read (an error answered before the body step): the connection cannot be reused. */
  get unread(): boolean {
    return this.read === null && (this.req.headers['content-length'] !== undefined || this.req.headers['transfer-encoding'] !== undefined)
  }

  /**
   * Reads the whole body, or null once it exceeds `limit` bytes; `heard` is told of the socket each chunk came on.
   * A body still incomplete `bodyTimeoutMs` after reading starts is refused with 408: a deadline rather than a
   * silence timeout, since a client sending one byte every few seconds is never silent for long.
   */
  private readBody(limit: number): Promise<Uint8Array | null> {
    const { req } = this
    if (req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined) return Promise.resolve(EMPTY)
    let deadline: ReturnType<typeof setTimeout> | undefined
    return new Promise<Uint8Array | null>((resolve, reject) => {
      const chunks: Buffer[] = []
      let size = 0
      if (this.bodyTimeoutMs > 0) {
        deadline = setTimeout(() => {
          this.timedOut = true
          req.removeAllListeners('data')
          req.pause()
          reject(new RequestTimeoutError(`request body did not arrive whole within ${this.bodyTimeoutMs / 1000} s (request_body_timeout_s)`))
        }, this.bodyTimeoutMs)
      }
      req.on('data', (chunk: Buffer) => {
        this.heard?.(req.socket)
        size += chunk.length
        if (size > limit) {
          this.overLimit = true
          req.removeAllListeners('data')
          req.resume()
          resolve(null)
          return
        }
        chunks.push(chunk)
      })
      req.on('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)))
      // The caller went away mid-body: nobody is left to answer.
      const broken = () => reject(new BadRequestError('request body could not be read'))
      req.on('error', broken)
      req.on('aborted', broken)
    }).finally(() => clearTimeout(deadline))
  }
}

export async function serve(app: ServableApp, options: ServeOptions): Promise<RunningServer> {
  const runtime = app.decorator.switchboard
  const { pipeline } = runtime
  const observer = observeRequests(runtime)
  /** Requests being answered, each with whether shutdown lets it finish (A2A calls) rather than ending it at once. */
  const inFlight = new Map<InFlight, boolean>()
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
  const bodyTimeoutMs = runtime.config.request_body_timeout_s * 1000
  /** Notes that `socket` was heard from or answered on. */
  const heard = (socket: Connection) => {
    socket[HEARD] = true
  }

  const onRequest = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const startedAt = performance.now()
    const entry = new InFlight(requestIdOf(req.headers['x-request-id']), req.socket.remoteAddress)
    const connection: Connection = req.socket
    // A connection counts as being answered (the idle sweep leaves it, its close aborts the request) once the
    // body is in: a body that stops arriving leaves the connection to the sweep.
    const incoming = new NodeIncoming(
      req,
      entry,
      scheme,
      idleTimeoutMs > 0 ? heard : null,
      () => {
        connection[ANSWERING] = entry
      },
      bodyTimeoutMs,
    )
    const matched = pipeline.match(incoming.method, incoming.path)
    const route = routeLabel(matched)
    inFlight.set(entry, matched?.route.outlivesDrain === true)
    heard(req.socket)
    let status = 500
    let traceparent: string | undefined
    try {
      if (runtime.draining) res.setHeader('connection', 'close')
      const reply = await pipeline.handle(incoming, matched)
      status = reply.status
      traceparent = reply.headers?.traceparent
      if (incoming.overLimit || incoming.timedOut || incoming.unread) res.setHeader('connection', 'close')
      if (reply.stream) await writeStream(reply, reply.stream, res, entry)
      else writeReply(reply, res, incoming.method === 'HEAD')
    } catch (error) {
      // The pipeline answers every error itself; what reaches here is a broken socket.
      runtime.logger.warn('request could not be answered', { request_id: entry.requestId, error: String(error) })
      res.destroy()
    } finally {
      if (connection[ANSWERING] === entry) connection[ANSWERING] = undefined
      heard(req.socket)
      inFlight.delete(entry)
      if (inFlight.size === 0) onIdle?.()
      observer.finish({
        method: incoming.method,
        route,
        status: entry.clientGone && !res.headersSent ? 499 : status,
        startedAt,
        requestId: entry.requestId,
        authorization: req.headers.authorization,
        traceparent,
      })
    }
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
    const handler = pipeline.upgradeOf(path)
    if (runtime.draining) return refuseUpgrade(socket, '503 Service Unavailable')
    if (!handler) return refuseUpgrade(socket, '404 Not Found')
    // An upgrade counts against its caller's rate limit as a request does, and is refused before any handshake.
    const decision = pipeline.rateLimit(credentialOf(req.headers.authorization), req.socket.remoteAddress)
    if (decision !== null && !decision.allowed) return refuseUpgrade(socket, '429 Too Many Requests', rateLimitHeaders(decision), tooManyRequests(decision).message)
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
      if (sweeper !== null) clearInterval(sweeper)
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeIdleConnections?.()
      // WebSocket endpoints close while HTTP requests finish: upgraded sockets would otherwise be cut without a close frame.
      const socketsClosed = runtime.drain()
      for (const [entry, outlivesDrain] of inFlight) if (!outlivesDrain) entry.abort('shutdown')
      await settled(runtime.config.shutdown_timeout_s * 1000)
      for (const entry of inFlight.keys()) entry.abort('shutdown')
      await settled(1000)
      await socketsClosed
      server.closeIdleConnections?.()
      const timer = setTimeout(() => server.closeAllConnections?.(), 1000)
      await closed
      clearTimeout(timer)
    },
  }
}

/** Answers an upgrade request with a plain HTTP status (no WebSocket handshake) and closes the connection. */
function refuseUpgrade(socket: Duplex, status: string, headers: Record<string, string> = {}, text = ''): void {
  const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`)
  const type = text === '' ? '' : 'Content-Type: text/plain; charset=utf-8\r\n'
  socket.end(`HTTP/1.1 ${status}\r\n${lines.join('')}${type}Content-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`)
}

/** Writes a whole reply with its length (none on 204 and 304, which carry no body). */
function writeReply(reply: Reply, res: http.ServerResponse, head: boolean): void {
  if (res.destroyed) return
  const body = reply.body ?? ''
  const length = typeof body === 'string' ? Buffer.byteLength(body) : body.length
  const headers: Record<string, string> = { ...reply.headers }
  if (length > 0 || (reply.status !== 204 && reply.status !== 304)) headers['content-length'] = String(length)
  res.writeHead(reply.status, headers)
  res.end(length === 0 || head ? undefined : body)
}

/**
 * Writes a stream: the status and headers, then each chunk as the stream
 * gives it, the next asked for once the write went through. A caller that
 * leaves, or a write that fails, cancels the stream; the request is done
 * once that cancel is.
 */
async function writeStream(reply: Reply, stream: Chunks, res: http.ServerResponse, entry: InFlight): Promise<void> {
  let cancelled: Promise<void> | null = null
  const cancel = () => (cancelled ??= stream.cancel().catch(() => {}))
  // Told when the client leaves or shutdown ends the stream: the pending `next` then settles.
  const stopListening = entry.onGone(cancel)
  const dropped = new Promise<boolean>((resolve) => res.once('close', () => resolve(false)))
  try {
    if (res.destroyed) return void cancel()
    res.writeHead(reply.status, reply.headers)
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
