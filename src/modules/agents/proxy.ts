/**
 * The A2A proxy: normalises a caller's JSON-RPC request, forwards it to the
 * target agent and relays the answer. Event streams are relayed chunk by
 * chunk as they arrive; every other answer is read whole. Each stage has its
 * own deadline (connect, response headers, silence inside the body, the
 * whole call), and a dead or slow agent gets the caller a fast JSON error.
 * A body of declared length must arrive whole within the silence deadline
 * of its headers; a body sent in pieces may take longer, as long as it is
 * never silent that long.
 *
 * What an agent can make Switchboard hold is bounded: a whole answer by the
 * response limit (a declared length over it is refused before a byte is
 * read), each event of a stream by the same limit (a stream may run for
 * hours, so its total is not). Agents are asked for `identity` encoding and
 * nothing is decompressed, so a small compressed body cannot inflate here.
 * A call connects to the address the URL guard checked (AgentTarget), not
 * to a second resolution of the agent's name.
 */
import { randomUUID } from 'node:crypto'
import { connect, isIP } from 'node:net'
import { AppError, GatewayTimeoutError, UnavailableError } from '../../errors'
import { webChunks, type Reply } from '../../http/reply'
import type { GoneReason } from '../../http/served'
import { rpcErrorBody, RpcError } from '../../http/surfaces'

/** Methods whose `params.message` is normalised (v0.3 and v1.0 names). */
const MESSAGE_METHODS = new Set(['message/send', 'message/stream', 'SendMessage', 'SendStreamingMessage'])
/** Methods answered with an event stream. */
const STREAM_METHODS = new Set(['message/stream', 'SendStreamingMessage', 'tasks/resubscribe', 'SubscribeToTask'])

/** Response headers of the agent that reach the caller. */
const RELAYED_HEADERS = ['content-type', 'cache-control', 'a2a-version', 'a2a-extensions']

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** A JSON-RPC request ready to forward. */
export interface RpcCall {
  /** The bytes to send (the caller's own bytes when nothing had to change). */
  body: Uint8Array<ArrayBuffer>
  /** The request's JSON-RPC id, echoed in errors the proxy answers itself. */
  id: unknown
  method: string
  streaming: boolean
}

/** A request the proxy cannot forward: a 400 that keeps the request's JSON-RPC id and error code. */
export class RpcRequestError extends RpcError {
  constructor(message: string, rpcId: unknown = null, rpcCode = -32600) {
    super(400, 'BAD_REQUEST', message, rpcCode, rpcId)
  }
}

/** Converts an A2A v0.2 `content` (a string or a list of parts) into v0.3 `parts`. */
function partsFromContent(content: unknown): unknown[] | null {
  if (typeof content === 'string') return [{ kind: 'text', text: content }]
  if (!Array.isArray(content)) return null
  return content.map((part) => {
    if (typeof part === 'string') return { kind: 'text', text: part }
    if (typeof part === 'object' && part !== null && 'type' in part && !('kind' in part)) {
      const { type, ...rest } = part as Record<string, unknown>
      return { kind: type, ...rest }
    }
    return part
  })
}

/**
 * Reads a caller's request: a JSON-RPC 2.0 envelope, or a bare `{method,
 * params}` which is wrapped into one; a message gets a `messageId` when it
 * has none and v0.2 `content` becomes `parts`.
 */
export function normaliseRpcRequest(bytes: Uint8Array<ArrayBuffer>): RpcCall {
  let data: unknown
  try {
    data = JSON.parse(decoder.decode(bytes))
  } catch (error) {
    throw new RpcRequestError(`request body is not valid JSON (${(error as Error).message})`, null, -32700)
  }
  if (Array.isArray(data)) throw new RpcRequestError('JSON-RPC batch requests are not supported: send one request per call')
  if (typeof data !== 'object' || data === null) throw new RpcRequestError('request body must be a JSON-RPC request object {"jsonrpc": "2.0", "id", "method", "params"}')
  let request = data as Record<string, unknown>
  let changed = false
  const id = request.id ?? null
  if (typeof request.method !== 'string' || request.method === '') throw new RpcRequestError('request has no "method" (a non-empty string)', id)
  if (request.jsonrpc === undefined) {
    request = { jsonrpc: '2.0', id: request.id ?? randomUUID(), method: request.method, params: request.params ?? {} }
    changed = true
  } else if (request.jsonrpc !== '2.0') {
    throw new RpcRequestError(`"jsonrpc" must be "2.0", not ${JSON.stringify(request.jsonrpc)}`, id)
  }
  const method = request.method as string
  if (MESSAGE_METHODS.has(method)) {
    const params = request.params
    if (typeof params !== 'object' || params === null || typeof (params as Record<string, unknown>).message !== 'object' || (params as Record<string, unknown>).message === null) {
      throw new RpcRequestError(`${method} needs params.message (an object)`, id)
    }
    const message = (params as Record<string, unknown>).message as Record<string, unknown>
    if (typeof message.messageId !== 'string' || message.messageId === '') {
      message.messageId = randomUUID()
      changed = true
    }
    if (!Array.isArray(message.parts)) {
      const parts = partsFromContent(message.content)
      if (parts === null) throw new RpcRequestError(`${method}: params.message needs "parts" (A2A v0.3+) or "content" (v0.2)`, id)
      message.parts = parts
      delete message.content
      changed = true
    }
  }
  return { body: changed ? encoder.encode(JSON.stringify(request)) : bytes, id: request.id ?? null, method, streaming: STREAM_METHODS.has(method) }
}

export interface ProxyTimeouts {
  /** How long establishing a connection to the agent may take. */
  connectMs: number
  /** How long until the agent's response headers. */
  headerMs: number
  /** Longest silence while the response body arrives (a body of declared length: longest wait for all of it after the headers). */
  idleMs: number
  /** Ceiling of the whole call. */
  maxMs: number
}

export interface ForwardRequest {
  url: URL
  /** The address the URL guard checked the URL's host at: the call connects there and nowhere else. */
  address: string
  call: RpcCall
  /** Headers for the agent: caller id, inbound secret, A2A version and extensions. */
  headers: Record<string, string>
  /** Calls its listener when the caller goes away or shutdown cuts the call; returns the function that stops listening. */
  onGone(listener: (reason: GoneReason) => void): () => void
}

/**
 * How a proxied call ended, for metrics: ok; rejected (4xx: refused by
 * Switchboard or by the agent); agent_error (the agent failed: 5xx, refused
 * URL, or a stream it broke off after its 200); unavailable (no agent to
 * reach); timeout (no answer in time, or a stream that went silent or hit
 * the ceiling); caller_gone (the caller left first); error (anything else).
 */
export type CallOutcome = 'ok' | 'rejected' | 'agent_error' | 'unavailable' | 'timeout' | 'caller_gone' | 'error'

/** The outcome of a call that ended with an HTTP status (a whole answer, or an error before any answer). */
export function outcomeOfStatus(status: number): CallOutcome {
  if (status === 499) return 'caller_gone'
  if (status < 400) return 'ok'
  if (status < 500) return 'rejected'
  if (status === 503) return 'unavailable'
  if (status === 504) return 'timeout'
  if (status === 502 || status < 600) return 'agent_error'
  return 'error'
}

/** How a forwarded call ended, for the activity record and metrics. */
export interface ForwardOutcome {
  status: number
  responseBytes: number
  error: string | null
  outcome: CallOutcome
}

/** Why the call to the agent was aborted: a deadline, the caller leaving, shutdown, or an answer refused after its headers. */
type AbortCause = 'connect' | 'headers' | 'idle' | 'body' | 'max' | 'caller' | 'shutdown' | 'limit' | 'refused'

class Aborted extends Error {
  constructor(readonly stage: AbortCause) {
    super(stage)
  }
}

/** What a call is sent to: the URL with the checked address for its host, and what keeps the agent's name. */
interface Destination {
  href: string
  /** The Host header (the URL's own host) when the URL names the agent by name. */
  host?: string
  /** The name an https agent's certificate is checked against (and sent as SNI), when the URL names it by name. */
  serverName?: string
}

/**
 * The URL to fetch for a checked target. A URL that names its agent by an
 * address is fetched as it is; one that names it by a name is fetched at the
 * checked address, with the name as Host and, over https, as the TLS server
 * name, so the certificate is still checked against the name.
 */
function destinationOf(url: URL, address: string): Destination {
  if (isIP(url.hostname.replace(/^\[|\]$/g, '')) !== 0) return { href: url.href }
  const host = isIP(address) === 6 ? `[${address}]` : address
  const href = `${url.protocol}//${host}${url.port === '' ? '' : `:${url.port}`}${url.pathname}${url.search}`
  return { href, host: url.host, serverName: url.protocol === 'https:' ? url.hostname : undefined }
}

/** Resolves true once a TCP connection to the agent's checked address opens, false when it fails or takes longer than `timeoutMs`. */
function canConnect(url: URL, address: string, timeoutMs: number): Promise<boolean> {
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80))
  return new Promise((resolve) => {
    const socket = connect({ host: address, port })
    const finish = (ok: boolean) => {
      clearTimeout(timer)
      socket.destroy()
      resolve(ok)
    }
    const timer = setTimeout(() => finish(false), timeoutMs)
    socket.once('connect', () => finish(true))
    socket.once('error', () => finish(false))
  })
}

const SHUTDOWN_MESSAGE = 'Switchboard is shutting down: the call was cut'

const seconds = (ms: number) => `${Math.round(ms / 100) / 10} s`

/** Line feed and carriage return, the bytes that end lines in an event stream. */
const LF = 10
const CR = 13

/**
 * Counts the bytes of an event stream since its last event ended, across
 * chunks. An event ends at a blank line: two line ends in a row, where a
 * line ends with CRLF, LF or CR (the event-stream format).
 */
class EventSizer {
  /** Bytes since the last blank line. */
  open = 0
  /** Line ends in a row at the end of what was fed. */
  private ends = 0
  /** Whether the last byte fed was a CR (a LF right after it belongs to the same line end). */
  private cr = false
  /** Where in the last chunk fed its last blank line ended (0: none in it). */
  ended = 0

  /** Feeds a chunk; answers the bytes since the last blank line. */
  feed(chunk: Uint8Array): number {
    let { open, ends, cr } = this
    let ended = 0
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i]!
      if (byte === LF && cr) cr = false
      else if (byte === LF || byte === CR) {
        ends++
        cr = byte === CR
      } else {
        ends = 0
        cr = false
      }
      if (ends >= 2) {
        open = 0
        ended = i + 1
      } else open++
    }
    this.ended = ended
    this.open = open
    this.ends = ends
    this.cr = cr
    return open
  }
}

/** Forwards JSON-RPC calls to agents over pooled keep-alive connections. */
export class A2AProxy {
  /**
   * @param responseLimitBytes largest answer read from an agent, and largest event of a relayed stream
   */
  constructor(
    private readonly timeouts: ProxyTimeouts,
    private readonly responseLimitBytes: number,
  ) {}

  /**
   * Forwards one call. Resolves with the response for the caller as soon as
   * the agent's headers arrive (a stream keeps flowing after that); `onDone`
   * is told how the call ended, once.
   */
  async forward(request: ForwardRequest, onDone: (outcome: ForwardOutcome) => void): Promise<Reply> {
    const { timeouts } = this
    const upstream = new AbortController()
    const abort = (cause: AbortCause) => {
      if (!upstream.signal.aborted) upstream.abort(new Aborted(cause))
    }
    const causeOf = (): AbortCause | null => (upstream.signal.reason instanceof Aborted ? upstream.signal.reason.stage : null)
    const stopListening = request.onGone((reason) => abort(reason === 'shutdown' ? 'shutdown' : 'caller'))
    const maxTimer = setTimeout(() => abort('max'), timeouts.maxMs)
    let headersArrived = false
    // fetch reports no connection phase, so a slow call is checked with a
    // probe: an agent that cannot even be connected to fails fast, one that
    // is merely thinking keeps its full header budget. One timer covers the
    // wait for headers: at connectMs it starts the probe and is set again
    // for the rest of headerMs.
    const headersDue = () => abort('headers')
    const probe = () => {
      headerTimer = setTimeout(headersDue, timeouts.headerMs - timeouts.connectMs)
      void canConnect(request.url, request.address, timeouts.connectMs).then((reachable) => {
        if (!reachable && !headersArrived) abort('connect')
      })
    }
    let headerTimer = timeouts.connectMs < timeouts.headerMs ? setTimeout(probe, timeouts.connectMs) : setTimeout(headersDue, timeouts.headerMs)
    let finished = false
    const finish = (outcome: ForwardOutcome) => {
      if (finished) return
      finished = true
      clearTimeout(maxTimer)
      clearTimeout(headerTimer)
      stopListening()
      onDone(outcome)
    }
    const fail = (error: AppError): never => {
      finish({ status: error.status, responseBytes: 0, error: error.message, outcome: outcomeOfStatus(error.status) })
      throw error
    }

    const destination = destinationOf(request.url, request.address)
    // Identity only, and nothing decompressed: a compressed answer would be inflated here without bound.
    const headers: Record<string, string> = { ...request.headers, 'accept-encoding': 'identity' }
    if (destination.host !== undefined) headers.host = destination.host
    let response: Response
    try {
      response = await fetch(destination.href, {
        method: 'POST',
        headers,
        body: request.call.body,
        signal: upstream.signal,
        redirect: 'manual',
        decompress: false,
        tls: destination.serverName === undefined ? undefined : { serverName: destination.serverName },
      })
    } catch (error) {
      return fail(this.failureBefore(causeOf(), error))
    } finally {
      headersArrived = true
      clearTimeout(headerTimer)
    }

    const refuse = (cause: 'limit' | 'refused', error: AppError): never => {
      // Aborted, not read to its end: the connection is closed rather than drained.
      abort(cause)
      return fail(error)
    }
    const encoding = response.headers.get('content-encoding')
    if (encoding !== null && encoding.trim() !== '' && encoding.trim().toLowerCase() !== 'identity') {
      return refuse('refused', new AppError(502, 'BAD_GATEWAY', `agent answered with Content-Encoding ${JSON.stringify(encoding.slice(0, 40))}, though it was asked for identity: Switchboard does not decompress agent answers`))
    }
    const relayed: Record<string, string> = {}
    for (const name of RELAYED_HEADERS) {
      const value = response.headers.get(name)
      if (value !== null) relayed[name] = value
    }
    const contentType = response.headers.get('content-type') ?? ''
    // `response.body` is read only for an event stream or an answer sent in pieces: reading it makes a web
    // stream, which an answer of declared length, read whole, does not need.
    if (contentType.includes('text/event-stream') && response.ok && response.body !== null) {
      return {
        status: response.status,
        headers: relayed,
        stream: webChunks(this.relayStream(response.body, request.call.id, abort, causeOf, (bytes, error, outcome) => finish({ status: response.status, responseBytes: bytes, error, outcome }))),
      }
    }

    const declared = response.headers.get('content-length')
    if (declared !== null && Number(declared) > this.responseLimitBytes) return refuse('limit', this.tooLarge(`of ${declared} bytes `))
    let body: Uint8Array<ArrayBuffer>
    try {
      body = declared !== null ? await this.readDeclared(response, abort) : await this.readWhole(response, abort)
    } catch (error) {
      return fail(this.failureDuring(causeOf(), error))
    }
    if (response.status >= 300 && !this.isJson(body)) {
      const text = decoder.decode(body.subarray(0, 200)).trim()
      const message = `agent answered HTTP ${response.status}${text ? `: ${text}` : ''}`
      const wrapped = encoder.encode(rpcErrorBody(request.call.id, -32603, message, { status: response.status }))
      finish({ status: response.status, responseBytes: wrapped.length, error: message, outcome: outcomeOfStatus(response.status) })
      return { status: response.status, headers: { 'content-type': 'application/json' }, body: wrapped }
    }
    finish({ status: response.status, responseBytes: body.length, error: response.status >= 300 ? `agent answered HTTP ${response.status}` : null, outcome: outcomeOfStatus(response.status) })
    return { status: response.status, headers: relayed, body }
  }

  /** The error for an answer over the response limit; `size` says how large it is when that is known. */
  private tooLarge(size = ''): AppError {
    const limit = this.responseLimitBytes
    return new AppError(502, 'RESPONSE_TOO_LARGE', `agent response ${size}is larger than the limit of ${limit} bytes (a2a_response_limit_kb)`, { limit_bytes: limit })
  }

  private isJson(body: Uint8Array<ArrayBuffer>): boolean {
    try {
      JSON.parse(decoder.decode(body))
      return true
    } catch {
      return false
    }
  }

  /**
   * Reads a body of declared length, which must arrive whole within `idleMs`
   * of the headers: its sender had it all before it sent them, so its bytes
   * follow at once (and usually came with the headers).
   */
  private async readDeclared(response: Response, abort: (cause: AbortCause) => void): Promise<Uint8Array<ArrayBuffer>> {
    const deadline = setTimeout(() => abort('body'), this.timeouts.idleMs)
    try {
      return (await response.bytes()) as Uint8Array<ArrayBuffer>
    } finally {
      clearTimeout(deadline)
    }
  }

  /** Reads a body sent in pieces (no declared length), aborting after `idleMs` without one, or once it is over the response limit. */
  private async readWhole(response: Response, abort: (cause: AbortCause) => void): Promise<Uint8Array<ArrayBuffer>> {
    if (response.body === null) return new Uint8Array(0)
    const reader = response.body.getReader()
    const chunks: Uint8Array<ArrayBuffer>[] = []
    let size = 0
    // One timer for the whole read, pushed back by every chunk.
    const idle = setTimeout(() => abort('idle'), this.timeouts.idleMs)
    try {
      for (;;) {
        const result = await reader.read()
        if (result.done) break
        idle.refresh()
        size += result.value.length
        if (size > this.responseLimitBytes) {
          abort('limit')
          throw this.tooLarge()
        }
        chunks.push(result.value)
      }
    } finally {
      clearTimeout(idle)
    }
    if (chunks.length === 1) return chunks[0]!
    const whole = new Uint8Array(size)
    let offset = 0
    for (const chunk of chunks) {
      whole.set(chunk, offset)
      offset += chunk.length
    }
    return whole
  }

  /** Relays an event stream chunk by chunk; a stall, the ceiling or an event over the response limit ends it with a JSON-RPC error event. */
  private relayStream(
    body: ReadableStream<Uint8Array>,
    rpcId: unknown,
    abort: (cause: AbortCause) => void,
    causeOf: () => AbortCause | null,
    done: (bytes: number, error: string | null, outcome: CallOutcome) => void,
  ): ReadableStream<Uint8Array> {
    const reader = body.getReader()
    let bytes = 0
    const idleMs = this.timeouts.idleMs
    const maxMs = this.timeouts.maxMs
    const limit = this.responseLimitBytes
    const sizer = new EventSizer()
    /** Ends the stream the caller sees with a JSON-RPC error event. */
    const endWith = (controller: ReadableStreamDefaultController<Uint8Array>, message: string, outcome: CallOutcome) => {
      // The agent may have stopped inside an event: the blank lines end whatever it left open, so ours stands alone.
      const event = encoder.encode(`\n\ndata: ${rpcErrorBody(rpcId, -32603, message)}\n\n`)
      bytes += event.length
      controller.enqueue(event)
      controller.close()
      // The caller saw a 200: only this tells that the stream failed.
      done(bytes, message, outcome)
    }
    return new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          const idle = setTimeout(() => abort('idle'), idleMs)
          let result: Awaited<ReturnType<typeof reader.read>>
          try {
            result = await reader.read()
          } catch {
            const cause = causeOf()
            if (cause === 'caller') {
              done(bytes, 'caller went away', 'caller_gone')
              return
            }
            const message = cause === 'idle' ? `agent stream was silent for ${seconds(idleMs)}` : cause === 'max' ? `call exceeded the ceiling of ${seconds(maxMs)}` : 'agent closed the stream abruptly'
            endWith(controller, message, cause === 'idle' || cause === 'max' ? 'timeout' : 'agent_error')
            return
          } finally {
            clearTimeout(idle)
          }
          if (result.done) {
            controller.close()
            done(bytes, null, 'ok')
            return
          }
          // Each event is bounded, not the stream: a stream may run for hours. The events the chunk ends are relayed, not
          // what it holds of the event too large.
          if (sizer.feed(result.value) > limit) {
            if (sizer.ended > 0) {
              bytes += sizer.ended
              controller.enqueue(result.value.subarray(0, sizer.ended))
            }
            abort('limit')
            void reader.cancel().catch(() => {})
            endWith(controller, `agent stream sent an event larger than the limit of ${limit} bytes (a2a_response_limit_kb)`, 'agent_error')
            return
          }
          bytes += result.value.length
          controller.enqueue(result.value)
        },
        cancel() {
          // Cancelled by the serving layer: the caller left, or shutdown ended the stream (the proxy heard that first).
          const shutdown = causeOf() === 'shutdown'
          abort('caller')
          void reader.cancel().catch(() => {})
          done(bytes, shutdown ? SHUTDOWN_MESSAGE : 'caller went away', shutdown ? 'unavailable' : 'caller_gone')
        },
      },
      { highWaterMark: 0 },
    )
  }

  /** The error for a call that failed before the agent's headers arrived. */
  private failureBefore(cause: AbortCause | null, error: unknown): AppError {
    const { timeouts } = this
    switch (cause) {
      case 'connect':
        return new UnavailableError(`agent unreachable: no connection within ${timeouts.connectMs} ms`, 5)
      case 'headers':
        return new GatewayTimeoutError(`agent did not answer within ${seconds(timeouts.headerMs)}`, 5)
      case 'max':
        return new GatewayTimeoutError(`call exceeded the ceiling of ${seconds(timeouts.maxMs)}`, 5)
      case 'caller':
        return new AppError(499, 'CLIENT_CLOSED', 'caller went away before the agent answered')
      case 'shutdown':
        return new UnavailableError(`${SHUTDOWN_MESSAGE} before the agent answered`, 5)
      default: {
        const code = (error as { code?: string })?.code
        return new UnavailableError(`agent unreachable${code ? ` (${code})` : ''}`, 5)
      }
    }
  }

  /** The error for a call whose body stopped arriving. */
  private failureDuring(cause: AbortCause | null, error: unknown): AppError {
    if (cause === 'limit') return error instanceof AppError ? error : this.tooLarge()
    if (cause === 'shutdown') return new UnavailableError(`${SHUTDOWN_MESSAGE} while the agent's answer arrived`, 5)
    if (cause === 'idle') return new GatewayTimeoutError(`agent response was silent for ${seconds(this.timeouts.idleMs)}`, 5)
    if (cause === 'body') return new GatewayTimeoutError(`agent response of declared length did not arrive whole within ${seconds(this.timeouts.idleMs)} of its headers`, 5)
    if (cause === null) {
      const code = (error as { code?: string })?.code
      return new AppError(502, 'BAD_GATEWAY', `agent response broke off${code ? ` (${code})` : ''}`)
    }
    return this.failureBefore(cause, error)
  }
}
