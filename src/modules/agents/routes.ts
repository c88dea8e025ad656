/**
 * The agent registry's routes (Molecule's wire protocol, the `native`
 * surface, where a removed workspace answers Molecule's 410 body) and the
 * A2A proxy (the `a2a` surface: JSON-RPC errors carrying the HTTP status of
 * what went wrong).
 */
import { createHash, randomUUID } from 'node:crypto'
import * as v from 'valibot'
import type { Caller, CardSignatureCheck, WorkspaceRecord } from '../../backend/agents'
import { AppError } from '../../errors'
import { json, type Reply } from '../../http/reply'
import { route, type AnyRoute, type ChannelDoc, type RouteRequest } from '../../http/route'
import { renderError, rpcErrorBody } from '../../http/surfaces'
import type { GoneReason } from '../../http/served'
import type { Logger } from '../../ops/logger'
import { checkFieldSize } from '../fields'
import * as model from './model'
import { interfaceUrlOf, servedAgentCard, type Binding } from './interfaces'
import { A2AProxy, jsonRpcWording, outcomeOfStatus, readRpcRequest, RpcRequestError, type AnswerWording, type CallOutcome, type ProxyTimeouts, type PushUrl, type TaskFacts } from './proxy'
import { readRestRequest, REST_OPERATIONS, restWording, type RestOperation } from './rest'
import type { AgentsService } from './service'
import type { CardSigner } from './signing'
import type { AgentUrlGuard } from './ssrf'
import { traceContextOf } from './trace'

export interface AgentsRoutesOptions {
  service: AgentsService
  urls: AgentUrlGuard
  logger: Logger
  /** Largest proxied request body, in bytes. */
  a2aBodyLimitBytes: number
  /** Largest agent answer read, and largest event of a relayed stream, in bytes. */
  a2aResponseLimitBytes: number
  timeouts: ProxyTimeouts
  /** Told once how each proxied call ended (for metrics). */
  onCallEnded: (outcome: CallOutcome) => void
  /** Base URL callers reach Switchboard at (agent cards and proxy URLs point there); default: the request's origin. */
  publicUrl?: string
  /** Largest JSON of an agent card, in bytes (max_field_kb). */
  maxFieldBytes: number
  /** Signs the cards served. */
  signer: CardSigner
}

/** Header carrying the target's inbound secret on every proxied call, so an agent can refuse calls that bypass Switchboard. */
export const INBOUND_SECRET_HEADER = 'x-switchboard-secret'

const JSON_HEADERS = { 'content-type': 'application/json' }
const iso = (at: number | null) => (at === null ? null : new Date(at).toISOString())
const cardSignatureInfo = (check: CardSignatureCheck | null | undefined) =>
  check ? { status: check.status, kid: check.kid, jku: check.jku, reason: check.reason, checked_at: iso(check.checkedAt)! } : null

const IdParams = v.object({ id: model.WorkspaceId })

const errors = {
  400: { description: 'Invalid parameter or body (the message names it)' },
  401: { description: 'No bearer token, or one that is unknown or revoked' },
  403: { description: 'The caller may not reach this workspace' },
  404: { description: 'No such workspace' },
  410: { description: 'The workspace was removed', schema: model.RemovedBody },
  503: { description: 'The registry cannot be reached right now (Retry-After)' },
}
/** What registering a card may be refused for beyond the shared errors. */
const cardRefused = {
  400: { description: 'Invalid body, or an agent card whose signature does not verify (CARD_SIGNATURE_INVALID, naming why; taken with allow_unverified_cards)' },
  413: { description: 'Request body larger than max_body_kb, or agent_card larger than max_field_kb' },
}

/** The JSON-RPC methods that answer the extended card (v0.3 and v1.0 names). */
const EXTENDED_CARD_METHODS = new Set(['agent/getAuthenticatedExtendedCard', 'GetExtendedAgentCard'])

/** Where Switchboard publishes the key set that verifies the cards it serves. */
const JWKS_PATH = '/.well-known/jwks.json'

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)

/**
 * An interface URL with a REST operation's path appended and the caller's
 * query in place of its own. A path whose dot segments (`..`, `%2e%2e`)
 * would climb out of the interface is refused: it would reach whatever else
 * the agent's host serves.
 */
function joinedUrl(base: string, tail: { path: string; search: string }): string {
  const url = new URL(base)
  const root = url.pathname.replace(/\/+$/, '')
  // URLs read a backslash as a slash, and %2e as a dot.
  const climbs = tail.path.split(/[/\\]/).some((segment) => /^(?:\.|%2e){1,2}$/i.test(segment))
  url.pathname = root + tail.path
  if (climbs || !url.pathname.startsWith(`${root}/`)) throw new AppError(400, 'INVALID_PATH', `path ${JSON.stringify(tail.path.slice(0, 200))} has dot segments: it would leave the agent's HTTP+JSON interface`)
  url.search = tail.search
  return url.href
}

/** The path parameters an HTTP+JSON route may have; each route's schema holds those of its path. */
const REST_PARAMS = {
  id: model.WorkspaceId,
  tenant: v.pipe(v.string(), v.description("The tenant the agent's card declares for the interface (opaque; passed on as sent)"), v.examples(['acme'])),
  taskId: v.pipe(v.string(), v.description("A task id (the agent's)"), v.examples(['3f1c9a52-6d0e-4b7a-9c2d-8e5f1a2b3c4d'])),
  configId: v.pipe(v.string(), v.description("A push-notification config id (the agent's)"), v.examples(['webhook-1'])),
}
type RestParams = { id: string; tenant?: string; taskId?: string; configId?: string }

/** The params schema of an HTTP+JSON route's path. */
const restParamsOf = (path: string) => v.object(Object.fromEntries(Object.entries(REST_PARAMS).filter(([name]) => path.includes(`/:${name}`)))) as unknown as v.GenericSchema<unknown, RestParams>

/** Example bodies of the HTTP+JSON routes that take one, for the OpenAPI document. */
const REST_EXAMPLES: Record<string, Record<string, unknown>> = {
  SendMessage: { message: { messageId: '9b2f4c1e-1d2a-4e6b-8f3c-5a7d9e0b1c2d', role: 'ROLE_USER', parts: [{ text: 'Hello' }] } },
  SendStreamingMessage: { message: { messageId: '9b2f4c1e-1d2a-4e6b-8f3c-5a7d9e0b1c2d', role: 'ROLE_USER', parts: [{ text: 'Hello' }] } },
  CreateTaskPushNotificationConfig: { url: 'https://hooks.example.com/a2a', token: 'webhook-token' },
}

export function agentsRoutes(options: AgentsRoutesOptions): AnyRoute[] {
  const { service, logger, urls } = options
  const proxy = new A2AProxy(options.timeouts, options.a2aResponseLimitBytes)
  type AnyRequest = RouteRequest<unknown, unknown, unknown, unknown>
  const baseUrl = (request: AnyRequest) => (options.publicUrl ? options.publicUrl.replace(/\/+$/, '') : request.origin)
  const proxyUrlOf = (request: AnyRequest, id: string) => `${baseUrl(request)}/workspaces/${id}/a2a`

  /**
   * A card as Switchboard serves it, signed with Switchboard's key (the key set named at /.well-known/jwks.json);
   * a card whose own signature did not verify (taken with allow_unverified_cards) is served unsigned.
   */
  const signedCard = async (request: AnyRequest, id: string, card: Record<string, unknown>, check: CardSignatureCheck | null | undefined) => {
    const served = servedAgentCard(card, proxyUrlOf(request, id))
    if (check?.status !== 'invalid') return options.signer.sign(served, `${baseUrl(request)}${JWKS_PATH}`)
    delete served.signatures
    return served
  }

  const peerInfo = (request: AnyRequest, workspace: WorkspaceRecord) => ({
    id: workspace.id,
    name: workspace.name,
    role: workspace.role,
    status: service.statusOf(workspace),
    url: workspace.url,
    proxy_url: proxyUrlOf(request, workspace.id),
    parent_id: workspace.parentId,
    agent_card: workspace.agentCard,
    delivery_mode: workspace.deliveryMode,
    last_heartbeat_at: iso(workspace.lastHeartbeatAt),
    active_tasks: workspace.activeTasks,
    current_task: workspace.currentTask,
  })
  const workspaceInfo = (request: AnyRequest, workspace: WorkspaceRecord, withSecret: boolean) => ({
    ...peerInfo(request, workspace),
    created_at: iso(workspace.createdAt)!,
    error_rate: workspace.errorRate,
    uptime_seconds: workspace.uptimeSeconds,
    card_signature: cardSignatureInfo(workspace.cardSignature),
    ...(withSecret ? { inbound_secret: workspace.inboundSecret } : {}),
  })
  const seesSecret = (caller: Caller, id: string) => caller.kind === 'admin' || caller.id === id

  /**
   * Refuses a push-notification webhook the URL guard would not let
   * Switchboard call itself (the agent will call it), with the error
   * `refuse` words for the binding.
   */
  const checkPushUrls = async (pushUrls: PushUrl[], refuse: (message: string, field: string) => AppError): Promise<void> => {
    for (const { field, url } of pushUrls) {
      if (typeof url !== 'string') throw refuse(`push-notification url at ${field} must be a string`, field)
      await urls.checkForAgent(url, 'push-notification url').catch((error: AppError) => {
        throw refuse(`${error.message} (${field})`, field)
      })
    }
  }

  /** A call read from a caller's request, as either binding hands it to `relay`. */
  interface Outbound {
    binding: Binding
    method: string
    v1: boolean
    streaming: boolean
    facts: TaskFacts
    pushUrls: PushUrl[]
    verb: 'GET' | 'POST' | 'DELETE'
    body: Uint8Array<ArrayBuffer> | null
    /** Appended to the interface URL: the REST operation's path and query as sent (null on JSON-RPC). */
    tail: { path: string; search: string } | null
    wording: AnswerWording
    /** The binding's error for a refused push-notification URL. */
    refusePush(message: string, field: string): AppError
    /** Rewrites a whole answer before it is relayed (an extended card). */
    rewrite?: (answer: unknown) => Promise<unknown>
  }

  /**
   * Forwards a call to the target agent's interface for its binding, relays
   * the answer and records the call: one way for both bindings, so access,
   * caller headers, timeouts, limits, trace context and activity records are
   * the same. `read` reads the call; `render` answers an error in the
   * binding's shape.
   */
  const relay = async (
    request: RouteRequest<{ id: string }, unknown, unknown, Caller>,
    read: () => Outbound,
    render: (error: unknown) => Reply,
  ): Promise<Reply> => {
    const started = performance.now()
    const { caller } = request
    const targetId = request.params.id
    const trace = traceContextOf(request.header('traceparent'), request.header('tracestate'))
    const traceHeaders: Record<string, string> = trace.tracestate === null ? { traceparent: trace.traceparent } : { traceparent: trace.traceparent, tracestate: trace.tracestate }
    let call: Outbound | null = null
    let counted = false
    const count = (outcome: CallOutcome) => {
      if (counted) return
      counted = true
      options.onCallEnded(outcome)
    }
    const record = (status: number, responseBytes: number, error: string | null, facts: TaskFacts | null) =>
      service.recordCall({
        id: randomUUID(),
        source: caller.kind === 'workspace' ? caller.id : null,
        target: targetId,
        method: call?.method ?? null,
        status,
        durationMs: Math.round((performance.now() - started) * 100) / 100,
        requestBytes: request.bytes.length,
        responseBytes,
        error,
        at: Date.now(),
        traceparent: trace.traceparent,
        taskId: facts?.taskId ?? call?.facts.taskId ?? null,
        contextId: facts?.contextId ?? call?.facts.contextId ?? null,
        taskState: facts?.state ?? null,
      })
    // Set once the proxy told how the call ended (and it was recorded): a failure it then throws is not recorded again.
    let outcome: Promise<void> | undefined
    try {
      call = read()
      const target = await service.discover(caller, targetId)
      if (call.pushUrls.length > 0) await checkPushUrls(call.pushUrls, call.refusePush)
      // Molecule registers the URL it answers JSON-RPC at; an HTTP+JSON interface is only known from the card.
      const agentUrl = interfaceUrlOf(target.agentCard, call.binding, call.v1) ?? (call.binding === 'JSONRPC' ? target.url : null)
      if (agentUrl === null) {
        if (call.binding === 'JSONRPC') throw new AppError(503, 'UNAVAILABLE', `workspace ${targetId} has not registered an agent URL yet`)
        throw new AppError(501, 'NO_HTTP_JSON_INTERFACE', `workspace ${targetId}'s agent card declares no HTTP+JSON interface: call it over JSON-RPC at ${proxyUrlOf(request, targetId)}`)
      }
      const { url, address } = await urls.target(call.tail === null ? agentUrl : joinedUrl(agentUrl, call.tail)).catch((error: AppError) => {
        throw new AppError(502, 'AGENT_URL_REFUSED', error.message)
      })
      const headers: Record<string, string> = { [INBOUND_SECRET_HEADER]: target.inboundSecret, ...traceHeaders }
      if (call.binding === 'JSONRPC') {
        headers['content-type'] = 'application/json'
        headers.accept = call.streaming ? 'text/event-stream, application/json' : 'application/json, text/event-stream'
      } else {
        // HTTP+JSON agents may read application/a2a+json: the caller's own media types reach them.
        if (call.body !== null) headers['content-type'] = request.header('content-type') ?? 'application/json'
        headers.accept = request.header('accept') ?? (call.streaming ? 'text/event-stream' : 'application/json')
      }
      if (caller.kind === 'workspace') headers['x-workspace-id'] = caller.id
      for (const name of ['a2a-version', 'a2a-extensions']) {
        const value = request.header(name)
        if (value !== undefined) headers[name] = value
      }
      const forwarded = { url, address, method: call.verb, body: call.body, wording: call.wording, rewrite: call.rewrite, headers, onGone: (listener: (reason: GoneReason) => void) => request.onGone(listener) }
      const reply = await proxy.forward(forwarded, (ended) => {
        count(ended.outcome)
        outcome = record(ended.status, ended.responseBytes, ended.error, ended.facts)
      })
      // A whole answer is recorded before it is returned; a stream is recorded when it ends.
      await outcome
      reply.headers = { ...reply.headers, ...traceHeaders }
      return reply
    } catch (error) {
      const reply = render(error)
      count(error instanceof RpcRequestError ? 'rejected' : outcomeOfStatus(reply.status))
      if (outcome !== undefined) await outcome
      else if (!(error instanceof AppError && error.status === 499)) await record(reply.status, 0, error instanceof Error ? error.message : String(error), null)
      reply.headers = { ...reply.headers, ...traceHeaders }
      return reply
    }
  }

  /**
   * An extended card's answer with the card served as the public one is (JSON-RPC: under `result`). Its own
   * signature is checked as a registered card's is; one that does not verify is refused (502), or with
   * allow_unverified_cards served unsigned.
   */
  const servedCardOf = (request: AnyRequest, id: string, jsonRpc: boolean) => async (answer: unknown) => {
    const card = jsonRpc ? (isObject(answer) ? answer.result : undefined) : answer
    if (!isObject(card)) return undefined
    const check = await service.checkCard(id, card, (message) => new AppError(502, 'CARD_SIGNATURE_INVALID', `extended card: ${message}`))
    const served = await signedCard(request, id, card, check)
    return jsonRpc ? { ...(answer as object), result: served } : served
  }

  /** POST /workspaces/:id/a2a: a JSON-RPC call. */
  const forwardJsonRpc = (request: RouteRequest<{ id: string }, unknown, unknown, Caller>): Promise<Reply> => {
    let rpcId: unknown = null
    return relay(
      request,
      () => {
        const call = readRpcRequest(request.bytes as Uint8Array<ArrayBuffer>, request.header('a2a-version'))
        rpcId = call.id
        return {
          binding: 'JSONRPC',
          method: call.method,
          v1: call.v1,
          streaming: call.streaming,
          facts: call.facts,
          pushUrls: call.pushUrls,
          verb: 'POST',
          body: call.body,
          tail: null,
          wording: jsonRpcWording(call.id),
          refusePush: (message, field) => new RpcRequestError(message, call.id, -32602, { code: 'PUSH_URL_REFUSED', field }),
          rewrite: EXTENDED_CARD_METHODS.has(call.method) ? servedCardOf(request, request.params.id, true) : undefined,
        }
      },
      (error) => {
        const reply = renderError('a2a', error, { requestId: request.requestId, logger, rpcId })
        // Answered for what the request held: a JSON-RPC error with HTTP 200, as an agent answers it.
        if (error instanceof RpcRequestError) reply.body = rpcErrorBody(error.rpcId, error.rpcCode, error.message, error.details)
        return reply
      },
    )
  }

  /** An HTTP+JSON operation under /workspaces/:id/a2a[/{tenant}]. */
  const forwardRest = (operation: RestOperation) => (request: RouteRequest<RestParams, unknown, unknown, Caller>): Promise<Reply> =>
    relay(
      request,
      () => {
        const call = readRestRequest(operation, request.params.taskId, request.bytes as Uint8Array<ArrayBuffer>, request.header('a2a-version'))
        return {
          binding: 'HTTP+JSON',
          method: operation.method,
          v1: call.v1,
          streaming: operation.streaming === true,
          facts: call.facts,
          pushUrls: call.pushUrls,
          verb: operation.verb,
          body: call.body,
          // Everything after /workspaces/{id}/a2a, as sent: the tenant, the operation and its query.
          tail: { path: `/${request.path.split('/').slice(4).join('/')}`, search: request.search },
          wording: restWording,
          refusePush: (message, field) => new AppError(400, 'PUSH_URL_REFUSED', message, { field }),
          rewrite: operation.method === 'GetExtendedAgentCard' ? servedCardOf(request, request.params.id, false) : undefined,
        }
      },
      (error) => renderError('a2a-rest', error, { requestId: request.requestId, logger }),
    )

  /** The A2A proxy's errors of its own, on either binding. */
  const proxyErrors = {
    401: { description: 'No bearer token, or one that is unknown or revoked' },
    403: { description: 'The caller may not reach this workspace' },
    404: { description: 'No such workspace' },
    410: { description: 'The workspace was removed' },
    413: { description: 'Request body larger than a2a_body_limit_kb' },
    502: { description: 'The agent failed, or its URL is refused' },
    503: { description: 'The agent cannot be reached (Retry-After)' },
    504: { description: 'The agent did not answer in time (Retry-After)' },
  }

  /** The HTTP+JSON binding's routes: every operation, then every operation under a `/{tenant}` prefix (tried in that order). */
  const restRoutes = (): AnyRoute[] => {
    const forms = [...REST_OPERATIONS.map((operation) => ({ operation, prefix: '' })), ...REST_OPERATIONS.filter((operation) => operation.tenantForm).map((operation) => ({ operation, prefix: '/:tenant' }))]
    return forms.map(({ operation, prefix }) =>
      route({
        surface: 'a2a-rest',
        tag: 'agents',
        access: 'workspace',
        method: operation.verb,
        path: `/workspaces/:id/a2a${prefix}${operation.path}`,
        summary: `${operation.summary}: A2A HTTP+JSON through the proxy${prefix === '' ? '' : ', under the tenant the card declares'}`,
        description:
          "The agent's HTTP+JSON interface (by its card) gets the request as sent: method, path after /workspaces/{id}/a2a (tenant included), query and body, with the caller's A2A-Version, A2A-Extensions, Content-Type and Accept, the caller's workspace id and the agent's inbound secret, never the caller's token. Its answer is relayed as it came (an event stream event by event). A push-notification URL the URL guard refuses is answered 400; Switchboard's own refusals are REST error bodies (google.rpc.Status with an ErrorInfo of domain switchboard). 501 when the card declares no HTTP+JSON interface.",
        params: restParamsOf(`/workspaces/:id/a2a${prefix}${operation.path}`),
        body: 'raw',
        rawExample: REST_EXAMPLES[operation.method],
        bodyLimit: { bytes: options.a2aBodyLimitBytes, setting: 'a2a_body_limit_kb' },
        outlivesDrain: true,
        onRefused: (status) => options.onCallEnded(outcomeOfStatus(status)),
        responses: {
          200: { description: operation.streaming ? "The agent's event stream (text/event-stream), relayed event by event" : "The agent's answer", schema: v.record(v.string(), v.unknown()), contentType: operation.streaming ? 'text/event-stream' : undefined },
          400: { description: 'Invalid path parameter, a refused push-notification URL, or a body that should hold one and is not JSON' },
          ...proxyErrors,
          501: { description: "The agent's card declares no HTTP+JSON interface" },
        },
        handle: forwardRest(operation),
      }),
    )
  }

  const registry = { surface: 'native', tag: 'agents' } as const
  return [
    route({
      ...registry,
      access: 'none',
      method: 'GET',
      path: JWKS_PATH,
      summary: 'The key set (RFC 7517) that verifies the signatures of the agent cards Switchboard serves',
      description: "Each card Switchboard serves (public and extended, on both bindings) carries one signature (A2A §8.4: a JWS over the card's RFC 8785 canonical form) whose protected header names this key (kid) and this URL (jku).",
      responses: {
        200: { description: 'The key set', schema: v.object({ keys: v.array(v.record(v.string(), v.unknown())) }), contentType: 'application/jwk-set+json' },
        503: { description: 'The card-signing key cannot be read from the backend right now (Retry-After)' },
      },
      handle: async () => ({ status: 200, headers: { 'content-type': 'application/jwk-set+json', 'cache-control': 'public, max-age=300' }, body: JSON.stringify(await options.signer.jwks()) }),
    }),
    route({
      ...registry,
      access: 'admin',
      method: 'POST',
      path: '/workspaces',
      summary: 'Create a workspace (admin); its bearer token is shown once',
      body: model.CreateWorkspaceBody,
      responses: { 201: { description: 'The workspace, with its token and inbound secret', schema: model.CreatedWorkspace }, ...errors, 409: { description: 'A workspace with this id exists' } },
      handle: async (request) => {
        const { body } = request
        const { workspace, token } = await service.createWorkspace({ id: body.id, name: body.name, role: body.role, parentId: body.parent_id })
        return json({ ...workspaceInfo(request, workspace, true), auth_token: token }, 201)
      },
    }),
    route({
      ...registry,
      access: 'admin',
      method: 'GET',
      path: '/workspaces',
      summary: 'List every workspace, removed ones included (admin)',
      responses: { 200: { description: 'Every workspace', schema: v.array(model.WorkspaceInfo) }, ...errors },
      handle: async (request) => json((await service.listWorkspaces()).map((workspace) => workspaceInfo(request, workspace, true))),
    }),
    route({
      ...registry,
      access: 'workspace',
      // A removed workspace learns why (410) even asking with its revoked token.
      verify: 'handler',
      method: 'GET',
      path: '/workspaces/:id',
      summary: 'A workspace: itself, a peer it may reach, or any (admin); 410 once removed',
      params: IdParams,
      responses: { 200: { description: 'The workspace', schema: model.WorkspaceInfo }, ...errors },
      handle: async (request) => {
        const { id } = request.params
        const { workspace, caller } = await service.workspaceFor(request.credentials.token, request.credentials.workspaceId, id)
        return json(workspaceInfo(request, workspace, seesSecret(caller, id)))
      },
    }),
    route({
      ...registry,
      access: 'admin',
      method: 'DELETE',
      path: '/workspaces/:id',
      summary: 'Remove a workspace and revoke its tokens (admin)',
      params: IdParams,
      responses: { 200: { description: 'Removed', schema: v.object({ id: v.string(), status: v.literal('removed'), removed_at: v.nullable(v.string()) }) }, ...errors },
      handle: async ({ params }) => {
        const removed = await service.removeWorkspace(params.id)
        return json({ id: removed.id, status: 'removed', removed_at: iso(removed.removedAt) })
      },
    }),
    route({
      ...registry,
      access: 'workspace',
      method: 'POST',
      path: '/workspaces/:id/tokens',
      summary: 'Issue a new token and revoke the old ones (admin or the workspace itself)',
      params: IdParams,
      responses: { 201: { description: 'The new token', schema: model.TokenBody }, ...errors },
      handle: async ({ caller, params }) => json({ id: params.id, auth_token: await service.rotateToken(caller, params.id) }, 201),
    }),
    route({
      ...registry,
      access: 'workspace',
      method: 'GET',
      path: '/workspaces/:id/activity',
      summary: 'Calls the workspace made or received, newest first (the workspace itself or admin); page with ?limit=&cursor=',
      params: IdParams,
      query: model.ActivityQuery,
      responses: { 200: { description: 'A page of calls', schema: model.ActivityResponse }, ...errors },
      handle: async ({ caller, params, query }) => {
        const page = await service.activity(caller, params.id, query.limit as unknown as number, query.cursor ?? null)
        return json({
          items: page.items.map((item) => ({
            id: item.id,
            source_id: item.source,
            target_id: item.target,
            method: item.method,
            status: item.status,
            duration_ms: item.durationMs,
            request_bytes: item.requestBytes,
            response_bytes: item.responseBytes,
            error: item.error,
            at: iso(item.at)!,
            traceparent: item.traceparent ?? null,
            task_id: item.taskId ?? null,
            context_id: item.contextId ?? null,
            task_state: item.taskState ?? null,
          })),
          next_cursor: page.next,
        })
      },
    }),
    route({
      ...registry,
      access: 'workspace',
      method: 'GET',
      path: '/workspaces/:id/.well-known/agent-card.json',
      summary: "The agent card, its endpoints rewritten to point at this proxy and signed with Switchboard's key (ETag, If-None-Match)",
      params: IdParams,
      responses: { 200: { description: 'A2A agent card', schema: v.record(v.string(), v.unknown()) }, 304: { description: 'Not modified' }, ...errors },
      handle: async (request) => {
        const { id } = request.params
        const workspace = await service.discover(request.caller, id)
        if (workspace.agentCard === null) throw new AppError(404, 'NOT_FOUND', `workspace ${id} has not registered an agent card`)
        const card = await signedCard(request, id, workspace.agentCard, workspace.cardSignature)
        const body = JSON.stringify(card)
        // Of the card and its signature's header, not the signature's bytes: ECDSA makes them anew on each instance.
        const { signatures, ...unsigned } = card
        const signedBy = Array.isArray(signatures) ? signatures.map((entry: { protected?: unknown }) => entry.protected) : null
        const etag = `"${createHash('sha256').update(JSON.stringify(unsigned)).update(JSON.stringify(signedBy)).digest('base64url').slice(0, 27)}"`
        const headers = { etag, 'cache-control': 'private, max-age=60' }
        const wanted = request.header('if-none-match')
        if (wanted !== undefined && wanted.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag || tag.trim() === '*')) return { status: 304, headers }
        return { status: 200, headers: { ...headers, ...JSON_HEADERS }, body }
      },
    }),
    route({
      surface: 'a2a',
      tag: 'agents',
      access: 'workspace',
      method: 'POST',
      path: '/workspaces/:id/a2a',
      summary: 'Call an agent through the proxy (A2A JSON-RPC; streams relayed as server-sent events)',
      description:
        "Bearer token of the calling workspace (X-Workspace-ID optional, must match). The request reaches the agent as sent, at the JSON-RPC interface its card declares (else its registered URL); only Molecule's older shapes are rewritten: a bare {method, params} is wrapped into a JSON-RPC envelope, v0.2 content becomes parts, and either gets a messageId when it has none (never a v1.0 request: A2A-Version 1.0 or a v1.0 method name). A body that is not one JSON-RPC request with a method, or a push-notification webhook URL the URL guard refuses, is answered with a JSON-RPC error and HTTP 200, as the agent would answer it; refusals of Switchboard's own are JSON-RPC errors with the HTTP status of what went wrong (401, 403, 404, 410, 413, 502, 503, 504). traceparent/tracestate are forwarded (a new traceparent when the caller sent no valid one) and echoed on the answer.",
      params: IdParams,
      body: 'raw',
      rawExample: { jsonrpc: '2.0', id: 1, method: 'message/send', params: { message: { role: 'user', messageId: '9b2f4c1e-1d2a-4e6b-8f3c-5a7d9e0b1c2d', parts: [{ kind: 'text', text: 'Hello' }] } } },
      bodyLimit: { bytes: options.a2aBodyLimitBytes, setting: 'a2a_body_limit_kb' },
      outlivesDrain: true,
      onRefused: (status) => options.onCallEnded(outcomeOfStatus(status)),
      responses: {
        200: { description: "The agent's JSON-RPC response, or its event stream (text/event-stream); or a JSON-RPC error for a body that is no routable request or a refused push-notification URL", schema: v.record(v.string(), v.unknown()) },
        400: { description: 'Invalid path parameter' },
        ...proxyErrors,
      },
      handle: forwardJsonRpc,
    }),
    ...restRoutes(),
    route({
      ...registry,
      access: 'workspace',
      // Open registration takes agents with no token yet; the service checks the token of a known workspace.
      verify: 'handler',
      method: 'POST',
      path: '/registry/register',
      summary: "Register an agent's URL and card",
      body: model.RegisterBody,
      responses: { 200: { description: 'Registered (a new workspace gets its token and inbound secret)', schema: model.RegisterResponse }, ...errors, ...cardRefused },
      handle: async ({ body, credentials }) => {
        checkFieldSize('agent_card', body.agent_card, options.maxFieldBytes)
        const { workspace, token } = await service.register(credentials.token, credentials.workspaceId, {
          id: body.id,
          url: body.url,
          agentCard: body.agent_card,
          deliveryMode: body.delivery_mode,
        })
        return json({ status: 'registered', id: workspace.id, ...(token === undefined ? {} : { auth_token: token, inbound_secret: workspace.inboundSecret }) })
      },
    }),
    route({
      ...registry,
      access: 'workspace',
      method: 'POST',
      path: '/registry/heartbeat',
      summary: 'Report liveness (every 30 s; offline after heartbeat_ttl_s; degraded when error_rate >= 0.5)',
      body: model.HeartbeatBody,
      responses: { 200: { description: 'Recorded', schema: model.OkBody }, ...errors },
      handle: async ({ caller, body }) => {
        await service.heartbeat(caller, {
          workspaceId: body.workspace_id,
          errorRate: body.error_rate,
          activeTasks: body.active_tasks,
          currentTask: body.current_task,
          uptimeSeconds: body.uptime_seconds,
        })
        return json({ status: 'ok' })
      },
    }),
    route({
      ...registry,
      access: 'workspace',
      method: 'POST',
      path: '/registry/update-card',
      summary: "Replace the workspace's agent card",
      body: model.UpdateCardBody,
      responses: { 200: { description: 'Updated', schema: model.OkBody }, ...errors, ...cardRefused },
      handle: async ({ caller, body }) => {
        checkFieldSize('agent_card', body.agent_card, options.maxFieldBytes)
        await service.updateCard(caller, body.workspace_id, body.agent_card)
        return json({ status: 'updated' })
      },
    }),
    route({
      ...registry,
      access: 'workspace',
      method: 'GET',
      path: '/registry/discover/:id',
      summary: 'Find a workspace the caller may reach',
      params: IdParams,
      responses: { 200: { description: 'The workspace', schema: model.PeerInfo }, ...errors },
      handle: async (request) => json(peerInfo(request, await service.discover(request.caller, request.params.id))),
    }),
    route({
      ...registry,
      access: 'workspace',
      method: 'GET',
      path: '/registry/:id/peers',
      summary: 'Siblings, parent and children of a workspace (?q= filters by name or role)',
      params: IdParams,
      query: model.PeersQuery,
      responses: { 200: { description: 'Peers', schema: v.array(model.PeerInfo) }, ...errors },
      handle: async (request) => json((await service.peers(request.caller, request.params.id, request.query.q)).map((peer) => peerInfo(request, peer))),
    }),
  ]
}

/** The A2A proxy's relayed event streams, for the AsyncAPI document. */
export const a2aStreamChannel: ChannelDoc = {
  id: 'a2aStream',
  address: '/workspaces/{id}/a2a',
  protocol: 'sse',
  description:
    "An agent's event stream (message/stream, tasks/resubscribe and their v1.0 names), relayed event by event as the agent writes it: each `data:` line a JSON-RPC response. A stream the agent breaks off, lets go silent past a2a_idle_timeout_s or past a2a_max_duration_s ends with one more event carrying a JSON-RPC error.",
  messages: [{ name: 'a2aEvent', direction: 'send', summary: 'A JSON-RPC response of the agent, or the closing error event', schema: v.pipe(v.string(), v.description('text/event-stream; each `data:` line a JSON-RPC 2.0 response')), contentType: 'text/event-stream' }],
}

/** The HTTP+JSON binding's relayed event streams, for the AsyncAPI document. */
export const a2aRestStreamChannel: ChannelDoc = {
  id: 'a2aRestStream',
  address: '/workspaces/{id}/a2a/message:stream',
  protocol: 'sse',
  description:
    "An agent's HTTP+JSON event stream (POST message:stream; tasks/{taskId}:subscribe streams alike, each also under a /{tenant} prefix), relayed event by event as the agent writes it: each `data:` line a StreamResponse. A stream the agent breaks off, lets go silent past a2a_idle_timeout_s or past a2a_max_duration_s ends with one more event, `event: error`, whose data is a REST error body.",
  messages: [{ name: 'a2aRestEvent', direction: 'send', summary: 'A StreamResponse of the agent, or the closing error event', schema: v.pipe(v.string(), v.description('text/event-stream; each `data:` line a StreamResponse, the closing `event: error` a google.rpc.Status')), contentType: 'text/event-stream' }],
}
