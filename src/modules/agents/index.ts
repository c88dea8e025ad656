/**
 * The agent registry's routes (Molecule's wire protocol) and the A2A proxy.
 * Registry errors are `{"error": {"code", "message"}}` except a removed
 * workspace, which is Molecule's 410 body; proxy errors are JSON-RPC errors
 * carrying the HTTP status of what went wrong.
 */
import { createHash, randomUUID } from 'node:crypto'
import { Elysia } from 'elysia'
import * as v from 'valibot'
import type { WorkspaceRecord } from '../../backend/agents'
import { AppError, GoneError, PayloadTooLargeError } from '../../errors'
import { documentedBody, errorResponse, ErrorBody, parseWith, readJsonBody } from '../../http'
import type { Logger } from '../../logger'
import { A2A_ROUTE } from '../../observability'
import { plainHandler, type PlainReply, type PlainRequest, type PlainRoute, type PlainRoutes } from '../../plain'
import * as model from './model'
import { A2AProxy, normaliseRpcRequest, outcomeOfStatus, rpcErrorBody, RpcRequestError, type CallOutcome, type ProxyTimeouts, type RpcCall } from './proxy'
import type { AgentsService, Caller } from './service'
import type { AgentUrlGuard } from './ssrf'

export interface AgentsModuleOptions {
  service: AgentsService
  urls: AgentUrlGuard
  logger: Logger
  /** Largest registry request body, in bytes. */
  bodyLimitBytes: number
  /** Largest proxied request body, in bytes. */
  a2aBodyLimitBytes: number
  /** Largest agent answer read, and largest event of a relayed stream, in bytes. */
  a2aResponseLimitBytes: number
  timeouts: ProxyTimeouts
  /** Told once how each proxied call ended (for metrics). */
  onCallEnded?: (outcome: CallOutcome) => void
  /** Base URL callers reach Switchboard at (agent cards and proxy URLs point there); default: the request's origin. */
  publicUrl?: string
  /** Filled with the module's plain routes (the A2A proxy), for the serving layer to call directly (src/plain.ts). */
  plainRoutes?: PlainRoutes
}

/** Header carrying the target's inbound secret on every proxied call, so an agent can refuse calls that bypass Switchboard. */
export const INBOUND_SECRET_HEADER = 'x-switchboard-secret'

const JSON_HEADERS = { 'content-type': 'application/json' }
const iso = (at: number | null) => (at === null ? null : new Date(at).toISOString())

/** Renders a registry error: Molecule's 410 body for a removed workspace, the native shape otherwise. */
function registryError(error: unknown, logger: Logger): Response {
  if (error instanceof GoneError && error.details) {
    return new Response(JSON.stringify({ error: error.message, ...error.details }), { status: 410, headers: JSON_HEADERS })
  }
  if (error instanceof AppError) {
    const retry = (error as { retryAfterSeconds?: number }).retryAfterSeconds
    return errorResponse(error.status, error.code, error.message, retry === undefined ? {} : { 'retry-after': String(Math.ceil(retry)) })
  }
  if ((error as { code?: unknown })?.code === 'NOT_FOUND') return errorResponse(404, 'NOT_FOUND', 'No such route')
  logger.error('unexpected error in agents route', { error: String((error as Error)?.stack ?? error) })
  return errorResponse(500, 'INTERNAL', 'Internal Server Error')
}

/** Renders a proxy error as a JSON-RPC error with the HTTP status of what went wrong. */
function proxyError(error: unknown, rpcId: unknown, logger: Logger): PlainReply {
  if (!(error instanceof AppError)) {
    logger.error('unexpected error in the A2A proxy', { error: String((error as Error)?.stack ?? error) })
    return { status: 500, headers: JSON_HEADERS, body: rpcErrorBody(rpcId, -32603, 'Internal Server Error') }
  }
  const code = error instanceof RpcRequestError ? error.rpcCode : error.status < 500 ? -32600 : -32603
  const id = error instanceof RpcRequestError && error.rpcId !== null ? error.rpcId : rpcId
  const headers: Record<string, string> = { ...JSON_HEADERS }
  const retry = (error as { retryAfterSeconds?: number }).retryAfterSeconds
  if (retry !== undefined) headers['retry-after'] = String(Math.ceil(retry))
  return { status: error.status, headers, body: rpcErrorBody(id, code, error.message, { status: error.status, code: error.code, ...error.details }) }
}

/** The card with every JSON-RPC endpoint pointing at the proxy; interfaces the proxy cannot carry (gRPC, REST) are left out. */
export function rewriteAgentCard(card: Record<string, unknown>, proxyUrl: string): Record<string, unknown> {
  const rewritten: Record<string, unknown> = { ...card }
  const isJsonRpc = (entry: unknown, key: 'protocolBinding' | 'transport') => {
    const binding = (entry as Record<string, unknown>)?.[key]
    return binding === undefined || (typeof binding === 'string' && binding.toUpperCase() === 'JSONRPC')
  }
  if ('url' in card) rewritten.url = proxyUrl
  if (Array.isArray(card.supportedInterfaces)) {
    rewritten.supportedInterfaces = card.supportedInterfaces.filter((entry) => isJsonRpc(entry, 'protocolBinding')).map((entry) => ({ ...(entry as object), url: proxyUrl }))
  }
  if (Array.isArray(card.additionalInterfaces)) {
    rewritten.additionalInterfaces = card.additionalInterfaces.filter((entry) => isJsonRpc(entry, 'transport')).map((entry) => ({ ...(entry as object), url: proxyUrl }))
  }
  if (typeof card.preferredTransport === 'string') rewritten.preferredTransport = 'JSONRPC'
  return rewritten
}

export function agentsModule(options: AgentsModuleOptions) {
  const { service, logger, urls } = options
  const proxy = new A2AProxy(options.timeouts, options.a2aResponseLimitBytes)
  const read = <S extends v.GenericSchema>(request: Request, schema: S) => readJsonBody(request, schema, options.bodyLimitBytes)
  const baseUrl = (request: Request) => {
    if (options.publicUrl) return options.publicUrl.replace(/\/+$/, '')
    // The Host header, not the request URL: the serving layer stands in for a host too short to route by.
    const url = new URL(request.url)
    const host = request.headers.get('host')
    if (host !== null) {
      try {
        return new URL(`${url.protocol}//${host}`).origin
      } catch {
        // Not a host: the URL's own origin below.
      }
    }
    return url.origin
  }
  const proxyUrlOf = (request: Request, id: string) => `${baseUrl(request)}/workspaces/${id}/a2a`
  const callerOf = (request: Request): Promise<Caller> => service.authenticate(request.headers.get('authorization'), request.headers.get('x-workspace-id'))

  const peerInfo = (request: Request, workspace: WorkspaceRecord) => ({
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
  const workspaceInfo = (request: Request, workspace: WorkspaceRecord, withSecret: boolean) => ({
    ...peerInfo(request, workspace),
    created_at: iso(workspace.createdAt)!,
    error_rate: workspace.errorRate,
    uptime_seconds: workspace.uptimeSeconds,
    ...(withSecret ? { inbound_secret: workspace.inboundSecret } : {}),
  })
  const seesSecret = (caller: Caller, id: string) => caller.kind === 'admin' || caller.id === id

  const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 410: model.RemovedBody, 503: ErrorBody }

  /** Checks the proxied body against its own limit. */
  const a2aBody = (request: PlainRequest): Uint8Array<ArrayBuffer> => {
    const limit = options.a2aBodyLimitBytes
    const declared = Number(request.header('content-length') ?? 0)
    if (declared > limit) throw new PayloadTooLargeError(`request body of ${declared} bytes is larger than the A2A limit of ${limit} bytes (a2a_body_limit_kb)`)
    const { bytes } = request
    if (bytes.length > limit) throw new PayloadTooLargeError(`request body of ${bytes.length} bytes is larger than the A2A limit of ${limit} bytes (a2a_body_limit_kb)`)
    return bytes as Uint8Array<ArrayBuffer>
  }

  /** POST /workspaces/:id/a2a: checks, forwards, relays, records. */
  const forwardA2A: PlainRoute = async (request) => {
    const started = performance.now()
    let rpcId: unknown = null
    let call: RpcCall | null = null
    let caller: Caller | null = null
    let targetId: string | null = null
    let requestBytes = 0
    let counted = false
    const count = (outcome: CallOutcome) => {
      if (counted) return
      counted = true
      options.onCallEnded?.(outcome)
    }
    const record = (status: number, responseBytes: number, error: string | null) => {
      if (caller === null || targetId === null) return
      return service.recordCall({
        id: randomUUID(),
        source: caller.kind === 'workspace' ? caller.id : null,
        target: targetId,
        method: call?.method ?? null,
        status,
        durationMs: Math.round((performance.now() - started) * 100) / 100,
        requestBytes,
        responseBytes,
        error,
        at: Date.now(),
      })
    }
    try {
      targetId = service.parseId(request.params.id ?? null)
      const bytes = a2aBody(request)
      requestBytes = bytes.length
      const claimed = request.header('x-workspace-id') ?? null
      // The target is read for the workspace the caller claims to be while its token is checked.
      const early = service.discoverEarly(claimed, targetId)
      caller = await service.authenticate(request.header('authorization') ?? null, claimed)
      call = normaliseRpcRequest(bytes)
      rpcId = call.id
      const target = await service.discover(caller, targetId, early)
      if (target.url === null) throw new AppError(503, 'UNAVAILABLE', `workspace ${targetId} has not registered an agent URL yet`)
      const { url, address } = await urls.target(target.url).catch((error: AppError) => {
        throw new AppError(502, 'AGENT_URL_REFUSED', error.message)
      })
      const headers: Record<string, string> = {
        'content-type': 'application/json',
        accept: call.streaming ? 'text/event-stream, application/json' : 'application/json, text/event-stream',
        [INBOUND_SECRET_HEADER]: target.inboundSecret,
      }
      if (caller.kind === 'workspace') headers['x-workspace-id'] = caller.id
      for (const name of ['a2a-version', 'a2a-extensions']) {
        const value = request.header(name)
        if (value !== undefined) headers[name] = value
      }
      let outcome: Promise<void> | undefined
      const response = await proxy.forward({ url, address, call, headers, onGone: (listener) => request.onGone(listener) }, (ended) => {
        count(ended.outcome)
        outcome = record(ended.status, ended.responseBytes, ended.error)
      })
      // A whole answer is recorded before it is returned; a stream is recorded when it ends.
      await outcome
      return response
    } catch (error) {
      const response = proxyError(error, rpcId, logger)
      count(outcomeOfStatus(response.status))
      if (!(error instanceof AppError && error.status === 499)) await record(response.status, 0, error instanceof Error ? error.message : String(error))
      return response
    }
  }

  // The proxy is a plain route: the serving layer calls it without building a web Request (src/plain.ts).
  options.plainRoutes?.set(`POST ${A2A_ROUTE}`, forwardA2A)

  return new Elysia({ name: 'switchboard/agents', detail: { tags: ['agents'] } })
    .onError(({ error }) => registryError(error, logger))
    .post(
      '/workspaces',
      async ({ request }) => {
        await service.authenticateAdmin(request.headers.get('authorization'))
        const body = await read(request, model.CreateWorkspaceBody)
        const { workspace, token } = await service.createWorkspace({ id: body.id, name: body.name, role: body.role, parentId: body.parent_id })
        return new Response(JSON.stringify({ ...workspaceInfo(request, workspace, true), auth_token: token }), { status: 201, headers: JSON_HEADERS })
      },
      {
        parse: 'none',
        detail: { summary: 'Create a workspace (admin); its bearer token is shown once', requestBody: documentedBody(model.CreateWorkspaceBody) },
        response: { 201: model.CreatedWorkspace, ...errors, 409: ErrorBody },
      },
    )
    .get(
      '/workspaces',
      async ({ request }) => {
        await service.authenticateAdmin(request.headers.get('authorization'))
        return (await service.listWorkspaces()).map((workspace) => workspaceInfo(request, workspace, true))
      },
      { detail: { summary: 'List every workspace, removed ones included (admin)' }, response: { 200: v.array(model.WorkspaceInfo), ...errors } },
    )
    .get(
      '/workspaces/:id',
      async ({ request, params }) => {
        const id = service.parseId(params.id)
        const { workspace, caller } = await service.workspaceFor(request.headers.get('authorization'), request.headers.get('x-workspace-id'), id)
        return workspaceInfo(request, workspace, seesSecret(caller, id))
      },
      { detail: { summary: 'A workspace: itself, a peer it may reach, or any (admin); 410 once removed' }, response: { 200: model.WorkspaceInfo, ...errors } },
    )
    .delete(
      '/workspaces/:id',
      async ({ request, params }) => {
        await service.authenticateAdmin(request.headers.get('authorization'))
        const removed = await service.removeWorkspace(service.parseId(params.id))
        return { id: removed.id, status: 'removed', removed_at: iso(removed.removedAt) }
      },
      { detail: { summary: 'Remove a workspace and revoke its tokens (admin)' }, response: { 200: v.object({ id: v.string(), status: v.literal('removed'), removed_at: v.nullable(v.string()) }), ...errors } },
    )
    .post(
      '/workspaces/:id/tokens',
      async ({ request, params }) => {
        const id = service.parseId(params.id)
        const caller = await callerOf(request)
        const token = await service.rotateToken(caller, id)
        return new Response(JSON.stringify({ id, auth_token: token }), { status: 201, headers: JSON_HEADERS })
      },
      { parse: 'none', detail: { summary: 'Issue a new token and revoke the old ones (admin or the workspace itself)' }, response: { 201: model.TokenBody, ...errors } },
    )
    .get(
      '/workspaces/:id/activity',
      async ({ request, params, query }) => {
        const id = service.parseId(params.id)
        const caller = await callerOf(request)
        const paging = parseWith(model.ActivityQuery, query, 'query ')
        const page = await service.activity(caller, id, paging.limit as unknown as number, paging.cursor ?? null)
        return {
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
          })),
          next_cursor: page.next,
        }
      },
      { detail: { summary: 'Calls the workspace made or received, newest first (the workspace itself or admin); page with ?limit=&cursor=' }, response: { 200: model.ActivityResponse, ...errors } },
    )
    .get(
      '/workspaces/:id/.well-known/agent-card.json',
      async ({ request, params }) => {
        const id = service.parseId(params.id)
        const caller = await callerOf(request)
        const workspace = await service.discover(caller, id)
        if (workspace.agentCard === null) throw new AppError(404, 'NOT_FOUND', `workspace ${id} has not registered an agent card`)
        const body = JSON.stringify(rewriteAgentCard(workspace.agentCard, proxyUrlOf(request, id)))
        const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`
        const headers = { etag, 'cache-control': 'private, max-age=60' }
        const wanted = request.headers.get('if-none-match')
        if (wanted !== null && wanted.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag || tag.trim() === '*')) return new Response(null, { status: 304, headers })
        return new Response(body, { status: 200, headers: { ...headers, ...JSON_HEADERS } })
      },
      {
        detail: {
          summary: 'The agent card, its endpoints rewritten to point at this proxy (ETag, If-None-Match)',
          responses: { 200: { description: 'A2A agent card', content: { 'application/json': { schema: { type: 'object' } } } }, 304: { description: 'Not modified' } },
        },
      },
    )
    .post(A2A_ROUTE, plainHandler(forwardA2A), {
      parse: 'none',
      detail: {
        summary: 'Call an agent through the proxy (A2A JSON-RPC; streams relayed as server-sent events)',
        description:
          'Bearer token of the calling workspace (X-Workspace-ID optional, must match). A bare {method, params} is wrapped into a JSON-RPC envelope; a missing messageId is filled; v0.2 content becomes parts. Errors are JSON-RPC errors with the HTTP status of what went wrong (401, 403, 404, 410, 413, 502, 503, 504).',
        requestBody: { required: true, content: { 'application/json': { schema: { type: 'object' } } } },
        responses: {
          200: { description: "The agent's JSON-RPC response, or its event stream", content: { 'application/json': { schema: { type: 'object' } }, 'text/event-stream': { schema: { type: 'string' } } } },
        },
      },
    })
    .post(
      '/registry/register',
      async ({ request }) => {
        const body = await read(request, model.RegisterBody)
        const { workspace, token } = await service.register(request.headers.get('authorization'), request.headers.get('x-workspace-id'), {
          id: body.id,
          url: body.url,
          agentCard: body.agent_card,
          deliveryMode: body.delivery_mode,
        })
        return { status: 'registered' as const, id: workspace.id, ...(token === undefined ? {} : { auth_token: token, inbound_secret: workspace.inboundSecret }) }
      },
      { parse: 'none', detail: { summary: "Register an agent's URL and card", requestBody: documentedBody(model.RegisterBody) }, response: { 200: model.RegisterResponse, ...errors } },
    )
    .post(
      '/registry/heartbeat',
      async ({ request }) => {
        const caller = await callerOf(request)
        const body = await read(request, model.HeartbeatBody)
        await service.heartbeat(caller, {
          workspaceId: body.workspace_id,
          errorRate: body.error_rate,
          activeTasks: body.active_tasks,
          currentTask: body.current_task,
          uptimeSeconds: body.uptime_seconds,
        })
        return { status: 'ok' }
      },
      { parse: 'none', detail: { summary: 'Report liveness (every 30 s; offline after heartbeat_ttl_s; degraded when error_rate >= 0.5)', requestBody: documentedBody(model.HeartbeatBody) }, response: { 200: model.OkBody, ...errors } },
    )
    .post(
      '/registry/update-card',
      async ({ request }) => {
        const caller = await callerOf(request)
        const body = await read(request, model.UpdateCardBody)
        await service.updateCard(caller, body.workspace_id, body.agent_card)
        return { status: 'updated' }
      },
      { parse: 'none', detail: { summary: "Replace the workspace's agent card", requestBody: documentedBody(model.UpdateCardBody) }, response: { 200: model.OkBody, ...errors } },
    )
    .get(
      '/registry/discover/:id',
      async ({ request, params }) => {
        const id = service.parseId(params.id)
        const caller = await callerOf(request)
        return peerInfo(request, await service.discover(caller, id))
      },
      { detail: { summary: 'Find a workspace the caller may reach' }, response: { 200: model.PeerInfo, ...errors } },
    )
    .get(
      '/registry/:id/peers',
      async ({ request, params, query }) => {
        const id = service.parseId(params.id)
        const caller = await callerOf(request)
        const q = typeof query.q === 'string' ? query.q : undefined
        return (await service.peers(caller, id, q)).map((peer) => peerInfo(request, peer))
      },
      { detail: { summary: 'Siblings, parent and children of a workspace (?q= filters by name or role)' }, response: { 200: v.array(model.PeerInfo), ...errors } },
    )
}
