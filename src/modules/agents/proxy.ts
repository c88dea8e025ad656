/**
 * The A2A proxy: normalises a caller's JSON-RPC request, forwards it to the
 * target agent and relays the answer. Event streams are relayed chunk by
 * chunk as they arrive; every other answer is read whole. Each stage has its
 * own deadline (connect, response headers, silence inside the body, the
 * whole call), and a dead or slow agent gets the caller a fast JSON error.
 * A body of declared length must arrive whole within the silence deadline
 * of its headers; a body sent in pieces may take longer, as long as it is
 * never silent that long.
 */
import { randomUUID } from 'node:crypto'
import { connect } from 'node:net'
import { AppError, GatewayTimeoutError, UnavailableError } from '../../errors'
import { webChunks, type Reply } from '../../http/reply'
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
  call: RpcCall
  /** Headers for the agent: caller id, inbound secret, A2A version and extensions. */
  headers: Record<string, string>
  /** Calls its listener when the caller goes away; returns the function that stops listening. */
  onGone(listener: () => void): () => void
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

type AbortCause = 'connect' | 'headers' | 'idle' | 'body' | 'max' | 'caller'

class Aborted extends Error {
  constructor(readonly stage: AbortCause) {
    super(stage)
  }
}

/** Resolves true once a TCP connection to the agent opens, false when it fails or takes longer than `timeoutMs`. */
function canConnect(url: URL, timeoutMs: number): Promise<boolean> {
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80))
  return new Promise((resolve) => {
    const socket = connect({ host: url.hostname.replace(/^\[|\]$/g, ''), port })
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

const seconds = (ms: number) => `${Math.round(ms / 100) / 10} s`

/** Forwards JSON-RPC calls to agents over pooled keep-alive connections. */
export class A2AProxy {
  constructor(private readonly timeouts: ProxyTimeouts) {}

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
    const stopListening = request.onGone(() => abort('caller'))
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
      void canConnect(request.url, timeouts.connectMs).then((reachable) => {
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

    let response: Response
    try {
      response = await fetch(request.url, {
        method: 'POST',
        headers: request.headers,
        body: request.call.body,
        signal: upstream.signal,
        redirect: 'manual',
      })
    } catch (error) {
      return fail(this.failureBefore(causeOf(), error))
    } finally {
      headersArrived = true
      clearTimeout(headerTimer)
    }

    const headers: Record<string, string> = {}
    for (const name of RELAYED_HEADERS) {
      const value = response.headers.get(name)
      if (value !== null) headers[name] = value
    }
    const contentType = response.headers.get('content-type') ?? ''
    // `response.body` is read only for an event stream or an answer sent in pieces: reading it makes a web
    // stream, which an answer of declared length, read whole, does not need.
    if (contentType.includes('text/event-stream') && response.ok && response.body !== null) {
      return {
        status: response.status,
        headers,
        stream: webChunks(this.relayStream(response.body, request.call.id, abort, causeOf, (bytes, error, outcome) => finish({ status: response.status, responseBytes: bytes, error, outcome }))),
      }
    }

    let body: Uint8Array<ArrayBuffer>
    try {
      body = response.headers.has('content-length') ? await this.readDeclared(response, abort) : await this.readWhole(response, abort)
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
    return { status: response.status, headers, body }
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

  /** Reads a body sent in pieces (no declared length), aborting after `idleMs` without one. */
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
        chunks.push(result.value)
        size += result.value.length
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

  /** Relays an event stream chunk by chunk; a stall or the ceiling ends it with a JSON-RPC error event. */
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
            // The agent may have stopped inside an event: the blank lines end whatever it left open, so ours stands alone.
            const event = encoder.encode(`\n\ndata: ${rpcErrorBody(rpcId, -32603, message)}\n\n`)
            bytes += event.length
            controller.enqueue(event)
            controller.close()
            // The caller saw a 200: only this tells that the stream failed.
            done(bytes, message, cause === 'idle' || cause === 'max' ? 'timeout' : 'agent_error')
            return
          } finally {
            clearTimeout(idle)
          }
          if (result.done) {
            controller.close()
            done(bytes, null, 'ok')
            return
          }
          bytes += result.value.length
          controller.enqueue(result.value)
        },
        cancel() {
          abort('caller')
          void reader.cancel().catch(() => {})
          done(bytes, 'caller went away', 'caller_gone')
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
      default: {
        const code = (error as { code?: string })?.code
        return new UnavailableError(`agent unreachable${code ? ` (${code})` : ''}`, 5)
      }
    }
  }

  /** The error for a call whose body stopped arriving. */
  private failureDuring(cause: AbortCause | null, error: unknown): AppError {
    if (cause === 'idle') return new GatewayTimeoutError(`agent response was silent for ${seconds(this.timeouts.idleMs)}`, 5)
    if (cause === 'body') return new GatewayTimeoutError(`agent response of declared length did not arrive whole within ${seconds(this.timeouts.idleMs)} of its headers`, 5)
    if (cause === null) {
      const code = (error as { code?: string })?.code
      return new AppError(502, 'BAD_GATEWAY', `agent response broke off${code ? ` (${code})` : ''}`)
    }
    return this.failureBefore(cause, error)
  }
}
