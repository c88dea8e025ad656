/**
 * The A2A proxy: reads a caller's JSON-RPC request, forwards it to the
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

/** Methods that carry `params.message` (v0.3 and v1.0 names). */
const MESSAGE_METHODS = new Set(['message/send', 'message/stream', 'SendMessage', 'SendStreamingMessage'])
/** Methods answered with an event stream. */
const STREAM_METHODS = new Set(['message/stream', 'SendStreamingMessage', 'tasks/resubscribe', 'SubscribeToTask'])
/** A2A v1.0 method names: a request using one is forwarded untouched. */
const V1_METHODS = new Set([
  'SendMessage',
  'SendStreamingMessage',
  'GetTask',
  'ListTasks',
  'CancelTask',
  'SubscribeToTask',
  'CreateTaskPushNotificationConfig',
  'GetTaskPushNotificationConfig',
  'ListTaskPushNotificationConfigs',
  'DeleteTaskPushNotificationConfig',
  'GetExtendedAgentCard',
])
/** Methods whose params are a push-notification config (v0.3 and v1.0 names). */
const PUSH_CONFIG_METHODS = new Set(['tasks/pushNotificationConfig/set', 'CreateTaskPushNotificationConfig'])
/**
 * Where a push-notification config sits, in every spelling an agent's parser
 * may accept: v0.3, v1.0 and its drafts, camelCase and the proto field names.
 */
const PUSH_CONFIG_KEYS = ['pushNotificationConfig', 'push_notification_config', 'taskPushNotificationConfig', 'task_push_notification_config', 'config']
/** Methods whose `params.id` names a task. */
const TASK_ID_METHODS = new Set(['tasks/get', 'tasks/cancel', 'tasks/resubscribe', 'GetTask', 'CancelTask', 'SubscribeToTask'])

/** Response headers of the agent that reach the caller (X-Accel-Buffering keeps a proxy in front of Switchboard from holding events back). */
const RELAYED_HEADERS = ['content-type', 'cache-control', 'x-accel-buffering', 'a2a-version', 'a2a-extensions']

const encoder = new TextEncoder()
const decoder = new TextDecoder()

type JsonObject = Record<string, unknown>
const isObject = (value: unknown): value is JsonObject => typeof value === 'object' && value !== null && !Array.isArray(value)
const text = (value: unknown): string | null => (typeof value === 'string' && value !== '' ? value : null)

/** The task a call concerns, as far as its request and answer tell. */
export interface TaskFacts {
  taskId: string | null
  contextId: string | null
  /** The task's state as the agent wrote it (v0.3 `completed`, v1.0 `TASK_STATE_COMPLETED`). */
  state: string | null
}

/** A webhook URL found in a push-notification config, and where in the request it was. */
export interface PushUrl {
  field: string
  url: unknown
}

/** A JSON-RPC request ready to forward. */
export interface RpcCall {
  /** The bytes to send (the caller's own bytes when nothing had to change). */
  body: Uint8Array<ArrayBuffer>
  /** The request's JSON-RPC id, echoed in errors the proxy answers itself. */
  id: unknown
  method: string
  streaming: boolean
  /** Whether the request is A2A v1.0 (by its A2A-Version header or its method name). */
  v1: boolean
  /** What the request itself says of its task. */
  facts: TaskFacts
  /** Webhook URLs of the push-notification configs it carries. */
  pushUrls: PushUrl[]
}

/**
 * A request the proxy answers itself for what it holds: a JSON-RPC error
 * with HTTP 200, as the A2A JSON-RPC binding answers (Molecule's client
 * reads the body, not the status).
 */
export class RpcRequestError extends RpcError {
  constructor(message: string, rpcId: unknown = null, rpcCode = -32600, details?: Record<string, unknown>) {
    super(200, 'INVALID_REQUEST', message, rpcCode, rpcId, details)
  }
}

/** A JSON-RPC id as it may be echoed: a string or number, else null. */
const echoableId = (id: unknown) => (typeof id === 'string' || typeof id === 'number' ? id : null)

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

/** The webhook URLs of the push-notification configs a request's params carry (a config may nest one more); `root` names the params in the field paths. */
export function pushUrlsOf(method: string, params: unknown, root = 'params'): PushUrl[] {
  const found: PushUrl[] = []
  const visit = (config: unknown, field: string, depth: number) => {
    if (!isObject(config)) return
    if (config.url !== undefined && config.url !== null) found.push({ field: `${field}.url`, url: config.url })
    if (depth < 2) for (const key of PUSH_CONFIG_KEYS) visit(config[key], `${field}.${key}`, depth + 1)
  }
  if (PUSH_CONFIG_METHODS.has(method)) visit(params, root, 0)
  else if (MESSAGE_METHODS.has(method) && isObject(params) && isObject(params.configuration)) {
    for (const key of PUSH_CONFIG_KEYS) visit(params.configuration[key], `${root}.configuration.${key}`, 1)
  }
  return found
}

/** What a request says of its task: the message's task and context, or the task a task method names. */
export function requestFacts(method: string, params: unknown): TaskFacts {
  const facts: TaskFacts = { taskId: null, contextId: null, state: null }
  if (!isObject(params)) return facts
  if (isObject(params.message)) {
    facts.taskId = text(params.message.taskId)
    facts.contextId = text(params.message.contextId)
  } else if (TASK_ID_METHODS.has(method)) facts.taskId = text(params.id)
  else facts.taskId = text(params.taskId)
  return facts
}

/** Whether an `A2A-Version` header names version 1 or later. */
export const declaresV1 = (version: string | undefined) => version !== undefined && Number.parseInt(version.trim(), 10) >= 1

/**
 * Reads a caller's request. The proxy answers itself only what it cannot
 * route (not JSON, not one request object, no method); whatever the params
 * hold is the agent's to judge and reaches it as sent. Two older shapes
 * Molecule's client sends are rewritten, and only they: a bare `{method,
 * params}` is wrapped into a JSON-RPC envelope, and a v0.2 message
 * (`content`, no `parts`) gets `parts`; either gets a `messageId` when its
 * message has none. A v1.0 request (its `A2A-Version`, or its method name)
 * is never rewritten.
 */
export function readRpcRequest(bytes: Uint8Array<ArrayBuffer>, a2aVersion?: string): RpcCall {
  let data: unknown
  try {
    data = JSON.parse(decoder.decode(bytes))
  } catch (error) {
    throw new RpcRequestError(`request body is not valid JSON (${(error as Error).message})`, null, -32700)
  }
  if (Array.isArray(data)) throw new RpcRequestError('JSON-RPC batch requests are not supported: send one request per call')
  if (!isObject(data)) throw new RpcRequestError('request body must be a JSON-RPC request object {"jsonrpc": "2.0", "id", "method", "params"}')
  let request = data
  const id = echoableId(request.id)
  if (typeof request.method !== 'string' || request.method === '') throw new RpcRequestError('request has no "method" (a non-empty string)', id)
  const method = request.method
  const v1 = V1_METHODS.has(method) || declaresV1(a2aVersion)
  let changed = false
  if (!v1) {
    const bare = request.jsonrpc === undefined
    if (bare) {
      request = { jsonrpc: '2.0', id: request.id ?? randomUUID(), method, params: request.params ?? {} }
      changed = true
    }
    const message = MESSAGE_METHODS.has(method) && isObject(request.params) ? request.params.message : undefined
    if (isObject(message)) {
      let legacy = bare
      if (!Array.isArray(message.parts) && message.content !== undefined) {
        const parts = partsFromContent(message.content)
        if (parts !== null) {
          message.parts = parts
          delete message.content
          legacy = changed = true
        }
      }
      if (legacy && (typeof message.messageId !== 'string' || message.messageId === '')) {
        message.messageId = randomUUID()
        changed = true
      }
    }
  }
  const pushUrls = pushUrlsOf(method, request.params)
  // A request whose webhook URLs were checked is sent as it was read, so the agent reads the URLs that were checked
  // (a parser of its own might read duplicate keys otherwise).
  if (pushUrls.length > 0) changed = true
  return {
    body: changed ? encoder.encode(JSON.stringify(request)) : bytes,
    id: echoableId(request.id),
    method,
    streaming: STREAM_METHODS.has(method),
    v1,
    facts: requestFacts(method, request.params),
    pushUrls,
  }
}

/** Notes what an answer's result (a whole answer's, or one event's of a stream) tells of its task: later results override earlier ones. */
export function noteTaskFacts(facts: TaskFacts, result: unknown): void {
  if (!isObject(result)) return
  // v1.0 wraps what it answers (SendMessage, stream events); v0.3 answers it bare, with a `kind`.
  const wrapped = [result.task, result.message, result.statusUpdate, result.status_update, result.artifactUpdate, result.artifact_update].find(isObject)
  const node = wrapped ?? result
  const isTask = node === result.task || node.kind === 'task' || (node.kind === undefined && typeof node.id === 'string' && isObject(node.status))
  const taskId = text(isTask ? node.id : (node.taskId ?? node.task_id))
  const contextId = text(node.contextId ?? node.context_id)
  const state = isObject(node.status) ? text(node.status.state) : null
  if (taskId !== null) facts.taskId = taskId
  if (contextId !== null) facts.contextId = contextId
  if (state !== null) facts.state = state
}

/** The JSON a body holds, or undefined when it holds none. */
function parseJson(body: Uint8Array): unknown {
  try {
    return JSON.parse(decoder.decode(body))
  } catch {
    return undefined
  }
}

/** Answers larger than this are not read for their task (the time a parse takes grows with the size). */
const FACTS_READ_MAX = 1024 * 1024

/**
 * Reads the events of a stream as they pass, for the task they speak of:
 * each event's data is parsed when it ends, so the last status event names
 * the task's final state. Holds at most one event's data (FACTS_READ_MAX).
 */
class StreamFacts {
  private readonly decoder = new TextDecoder()
  /** The line not yet ended. */
  private line = ''
  /** The data lines of the event not yet ended, and their length. */
  private data: string[] = []
  private size = 0
  /** The last text ended with CR: a LF starting the next belongs to the same line end. */
  private skipLf = false

  constructor(
    readonly facts: TaskFacts,
    private readonly wording: AnswerWording,
  ) {}

  feed(chunk: Uint8Array): void {
    let text = this.decoder.decode(chunk, { stream: true })
    if (text === '') return
    if (this.skipLf && text.startsWith('\n')) text = text.slice(1)
    this.skipLf = text.endsWith('\r')
    const lines = text.split(/\r\n|\r|\n/)
    if (lines.length === 1) {
      // A line longer than is ever read: its event is not read, and the line is not kept.
      if (this.line.length + text.length > FACTS_READ_MAX) this.size = FACTS_READ_MAX + 1
      else this.line += text
      return
    }
    lines[0] = this.line + lines[0]
    this.line = lines.pop()!
    for (const line of lines) this.onLine(line)
  }

  private onLine(line: string): void {
    if (line === '') {
      if (this.data.length > 0 && this.size <= FACTS_READ_MAX) {
        try {
          noteTaskFacts(this.facts, this.wording.resultOf(JSON.parse(this.data.join('\n'))))
        } catch {
          // Not JSON: the caller sees it as the agent sent it; it tells nothing of the task.
        }
      }
      this.data = []
      this.size = 0
      return
    }
    if (!line.startsWith('data:')) return
    const value = line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5)
    this.size += value.length
    if (this.size <= FACTS_READ_MAX) this.data.push(value)
  }
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

/**
 * What differs between the bindings in an answer: where its result sits, and
 * how an error the proxy writes into it is worded.
 */
export interface AnswerWording {
  /** The A2A result an answer (or one event of a stream) carries. */
  resultOf(answer: unknown): unknown
  /** The body that stands for an agent's error answer that holds no JSON. */
  errorBody(status: number, message: string): string
  /** The event that ends a stream the proxy has to cut, with the status the failure would have had. */
  errorEvent(status: number, message: string): string
}

/** The JSON-RPC binding's wording: results under `result`, errors as JSON-RPC errors echoing the request's id. */
export function jsonRpcWording(rpcId: unknown): AnswerWording {
  return {
    resultOf: (answer) => (isObject(answer) ? answer.result : undefined),
    errorBody: (status, message) => rpcErrorBody(rpcId, -32603, message, { status }),
    errorEvent: (_status, message) => `data: ${rpcErrorBody(rpcId, -32603, message)}\n\n`,
  }
}

export interface ForwardRequest {
  url: URL
  /** The address the URL guard checked the URL's host at: the call connects there and nowhere else. */
  address: string
  method: 'GET' | 'POST' | 'DELETE'
  /** The bytes to send, or null for none. */
  body: Uint8Array<ArrayBuffer> | null
  wording: AnswerWording
  /** Rewrites a whole 2xx JSON answer before it is relayed (an extended card's interfaces); undefined keeps it as it came. */
  rewrite?: (answer: unknown) => unknown
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
  /** What the answer told of its task (a stream: its events, the last status event last). */
  facts: TaskFacts
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
export function destinationOf(url: URL, address: string): Destination {
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
    const facts: TaskFacts = { taskId: null, contextId: null, state: null }
    const fail = (error: AppError): never => {
      finish({ status: error.status, responseBytes: 0, error: error.message, outcome: outcomeOfStatus(error.status), facts })
      throw error
    }

    const destination = destinationOf(request.url, request.address)
    // Identity only, and nothing decompressed: a compressed answer would be inflated here without bound.
    const headers: Record<string, string> = { ...request.headers, 'accept-encoding': 'identity' }
    if (destination.host !== undefined) headers.host = destination.host
    let response: Response
    try {
      response = await fetch(destination.href, {
        method: request.method,
        headers,
        body: request.body,
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
        stream: webChunks(
          this.relayStream(response.body, request.wording, new StreamFacts(facts, request.wording), abort, causeOf, (bytes, error, outcome) => finish({ status: response.status, responseBytes: bytes, error, outcome, facts })),
        ),
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
    // An answer to rewrite is read whatever its size (the response limit bounds it): one left as it came would show what the rewrite hides.
    const answer = body.length <= FACTS_READ_MAX || response.status >= 300 || request.rewrite !== undefined ? parseJson(body) : undefined
    if (response.status >= 300 && answer === undefined) {
      const text = decoder.decode(body.subarray(0, 200)).trim()
      const message = `agent answered HTTP ${response.status}${text ? `: ${text}` : ''}`
      const wrapped = encoder.encode(request.wording.errorBody(response.status, message))
      finish({ status: response.status, responseBytes: wrapped.length, error: message, outcome: outcomeOfStatus(response.status), facts })
      return { status: response.status, headers: { 'content-type': 'application/json' }, body: wrapped }
    }
    noteTaskFacts(facts, request.wording.resultOf(answer))
    if (request.rewrite !== undefined && response.ok && answer !== undefined) {
      const rewritten = request.rewrite(answer)
      if (rewritten !== undefined) body = encoder.encode(JSON.stringify(rewritten))
    }
    finish({ status: response.status, responseBytes: body.length, error: response.status >= 300 ? `agent answered HTTP ${response.status}` : null, outcome: outcomeOfStatus(response.status), facts })
    return { status: response.status, headers: relayed, body }
  }

  /** The error for an answer over the response limit; `size` says how large it is when that is known. */
  private tooLarge(size = ''): AppError {
    const limit = this.responseLimitBytes
    return new AppError(502, 'RESPONSE_TOO_LARGE', `agent response ${size}is larger than the limit of ${limit} bytes (a2a_response_limit_kb)`, { limit_bytes: limit })
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
    wording: AnswerWording,
    facts: StreamFacts,
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
      const event = encoder.encode(`\n\n${wording.errorEvent(outcome === 'timeout' ? 504 : 502, message)}`)
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
              facts.feed(result.value.subarray(0, sizer.ended))
              controller.enqueue(result.value.subarray(0, sizer.ended))
            }
            abort('limit')
            void reader.cancel().catch(() => {})
            endWith(controller, `agent stream sent an event larger than the limit of ${limit} bytes (a2a_response_limit_kb)`, 'agent_error')
            return
          }
          bytes += result.value.length
          facts.feed(result.value)
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
