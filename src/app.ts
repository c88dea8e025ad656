/**
 * createApp builds Switchboard without listening: the services, the route
 * table (each module's descriptors) and the pipeline that runs them, exposed
 * as an Elysia app. Tests drive it through `app.handle`, hosts embed it, and
 * `serve` (src/http/node.ts) puts the same pipeline on a port together with
 * the WebSocket endpoints.
 */
import { randomUUID } from 'node:crypto'
import type { Backend } from './backend/index'
import { ConfigError, resolveConfig, type Config } from './config'
import { createAuthenticator, credentialOf, type Authenticator } from './http/auth'
import { corsPolicy } from './http/cors'
import { docsRoutes } from './http/docs'
import { elysiaApp } from './http/elysia'
import { callerKey, RateLimiter, WaitingLimit } from './http/limits'
import { Pipeline, type Resolvers } from './http/pipeline'
import type { AnyRoute, Credentials } from './http/route'
import type { SwitchboardRuntime } from './http/runtime'
import { UnauthorizedError } from './errors'
import { a2aRestStreamChannel, a2aStreamChannel, agentsRoutes } from './modules/agents/routes'
import type { CallOutcome } from './modules/agents/proxy'
import { AgentsService } from './modules/agents/service'
import { CardSigner, CardVerifier, readSigningKeyFile } from './modules/agents/signing'
import { AgentUrlGuard, type Resolver } from './modules/agents/ssrf'
import { exchangeRoutes, listenStreamChannel } from './modules/exchange/routes'
import { ExchangeService, type ExchangeEvent } from './modules/exchange/service'
import { workerSocketChannel, workerSockets, workersRoutes } from './modules/workers/routes'
import { WorkerService } from './modules/workers/service'
import type { Viewer } from './modules/events/model'
import { eventsRoutes, eventsStreamChannel } from './modules/events/routes'
import { EventService } from './modules/events/service'
import { WebhookService, type DeliveryOutcome } from './modules/events/webhooks'
import { healthRoutes } from './ops/health'
import { createLogger, logWriter, type Logger } from './ops/logger'
import { memoized } from './ops/metrics'
import { collectRuntimeGauges, createSwitchboardMetrics } from './ops/observability'
import { VERSION } from './version'

export interface CreateAppOptions {
  backend: Backend
  /** Full or partial configuration; missing settings take their defaults. */
  config?: Partial<Config>
  logger?: Logger
  /** How agent host names are resolved (default: the system resolver). */
  resolve?: Resolver
  /** Routes of the host's own, run by the same pipeline and documented alike. */
  routes?: readonly AnyRoute[]
}

/** The operator's card-signing key, read at start-up so a bad file stops Switchboard with the reason. */
function signingKeyOf(path: string) {
  try {
    return readSigningKeyFile(path)
  } catch (error) {
    throw new ConfigError(`invalid setting "card_signing_key" (--card-signing-key / SWITCHBOARD_CARD_SIGNING_KEY): ${(error as Error).message}`)
  }
}

export function createApp(options: CreateAppOptions) {
  const config = resolveConfig(options.config ?? {})
  const logger = options.logger ?? createLogger(config.log_level, config.log_file ? logWriter(config.log_file) : undefined)
  const { backend } = options
  const auth = createAuthenticator(config)
  const metrics = createSwitchboardMetrics()
  let draining = false
  // Counted on every send and every proxied call: each label's series (a handful: the unions below) is looked up once.
  const exchangeEventsOf = memoized((event: ExchangeEvent) => metrics.exchangeEvents.series({ event }))
  const a2aCallsOf = memoized((outcome: CallOutcome) => metrics.a2aCalls.series({ outcome }))
  const webhookOutcomesOf = memoized((outcome: DeliveryOutcome) => metrics.webhookDeliveries.series({ outcome }))

  // Marked so the offline sweep can tell app instances from the other heartbeats a backend keeps (Redis's in-flight messages).
  const instanceId = `${APP_INSTANCE}${randomUUID()}`
  const events = new EventService(backend.eventLog, { pingSeconds: config.sse_ping_s, streamBuffer: config.event_stream_buffer, retained: config.events_retained }, logger)
  const emit = events.emit
  const exchange = new ExchangeService(
    backend.mailboxes,
    {
      listenTimeout: config.listen_timeout,
      messageSizeLimitBytes: config.message_size_limit_kb * 1024,
      onEvent: (event) => exchangeEventsOf(event).inc(),
      emit,
    },
    logger,
  )
  const agentUrls = new AgentUrlGuard({ allowPrivate: config.allow_private_agent_urls, resolve: options.resolve })
  const agents = new AgentsService(
    backend.agents,
    { adminToken: config.admin_token, openRegistration: config.open_registration, heartbeatTtlSeconds: config.heartbeat_ttl_s, allowUnverifiedCards: config.allow_unverified_cards, emit },
    agentUrls,
    logger,
    new CardVerifier(agentUrls, { cacheMs: 300_000, cacheEntries: 1000, timeoutMs: config.a2a_connect_timeout_ms, maxBytes: 64 * 1024 }),
  )
  const cardSigner = new CardSigner(config.card_signing_key === undefined ? { store: backend.agents } : { jwk: signingKeyOf(config.card_signing_key) })
  const webhooks = new WebhookService(
    backend.webhooks,
    events,
    backend.events,
    agentUrls,
    {
      perTenant: config.webhooks_per_tenant,
      backlog: config.webhook_backlog,
      attempts: config.webhook_attempts,
      backoffMs: config.webhook_backoff_ms,
      timeoutMs: config.webhook_timeout_ms,
      onOutcome: (outcome) => webhookOutcomesOf(outcome).inc(),
    },
    logger,
  )
  const offlineSweep = sweepingOffline(agents, backend, instanceId, config.instance_heartbeat_s * 1000, logger)
  /** Who a request's credentials name, for the events routes: a tokens-file client, else the operator or a workspace. */
  const viewerOf = async (credentials: Credentials): Promise<Viewer> => {
    const credential = credentialOf(credentials.token === null ? undefined : `Bearer ${credentials.token}`)
    const client = auth.known(credential)
    if (client !== null) return { kind: 'client', id: client.id }
    if (credentials.token !== null) {
      try {
        const caller = await agents.authenticate(credentials.token, credentials.workspaceId)
        return caller.kind === 'admin' ? { kind: 'admin' } : { kind: 'workspace', id: caller.id }
      } catch (error) {
        // With auth none, a token that names no workspace is the anonymous client's, as on every client route.
        if (auth.enabled) throw error
      }
    }
    return { kind: 'client', id: auth.client(credential).id }
  }
  const workers = new WorkerService(
    backend.workers,
    backend.events,
    backend.instances,
    {
      instanceId,
      availabilityTimeoutMs: config.availability_timeout_ms,
      dispatchTimeoutMs: config.dispatch_timeout_ms,
      graceMs: config.worker_grace_s * 1000,
      lossAction: config.worker_loss_action,
      heartbeatMs: config.instance_heartbeat_s * 1000,
      assignmentUrl: config.public_url ?? '',
      jobQueueMax: config.job_queue_max,
      jobQueueClientMax: config.job_queue_client_max,
      jobPendingTtlMs: config.job_pending_ttl_s * 1000,
      emit,
    },
    logger,
  )
  const workerEndpoint = workerSockets({
    service: workers,
    auth,
    logger,
    pingSeconds: config.worker_ping_s,
    maxFrameBytes: config.max_ws_frame_kb * 1024,
    registerTimeoutSeconds: config.worker_register_timeout_s,
  })

  const waitingLimit = new WaitingLimit(config.max_waiting_per_client)
  // A malformed Authorization header is the bearer parser's to refuse, for each kind of caller alike.
  const workspaceToken = (credential: Parameters<Resolvers['workspace']>[0]): string | null => {
    if (credential.kind === 'other') throw new UnauthorizedError('Authorization header must be "Bearer <token>"')
    return credential.kind === 'bearer' ? credential.token : null
  }
  const resolvers: Resolvers = {
    client: (credential) => auth.client(credential),
    worker: (credential) => auth.worker(credential),
    workspace: (credential, workspaceId) => agents.authenticate(workspaceToken(credential), workspaceId),
    admin: (credential) => agents.authenticateAdmin(workspaceToken(credential)),
  }
  const routes: AnyRoute[] = [
    ...exchangeRoutes({
      service: exchange,
      logger,
      pingSeconds: config.sse_ping_s,
      metrics: metrics.registry,
      replay: { windowMs: config.sse_replay_s * 1000, maxBytes: config.sse_replay_kb * 1024 },
      admitWaiting: (request) => waitingLimit.enter(callerKey(credentialOf(request.header('authorization')), request.remoteAddress, auth)),
    }),
    ...workersRoutes({
      service: workers,
      publicUrl: config.public_url,
      maxFieldBytes: config.max_field_kb * 1024,
      upgrade: (request, socket, head) => workerEndpoint.handleUpgrade(request, socket, head),
    }),
    ...agentsRoutes({
      service: agents,
      urls: agentUrls,
      logger,
      a2aBodyLimitBytes: config.a2a_body_limit_kb * 1024,
      a2aResponseLimitBytes: config.a2a_response_limit_kb * 1024,
      publicUrl: config.public_url,
      maxFieldBytes: config.max_field_kb * 1024,
      signer: cardSigner,
      onCallEnded: (outcome) => a2aCallsOf(outcome).inc(),
      timeouts: {
        connectMs: config.a2a_connect_timeout_ms,
        headerMs: config.a2a_header_timeout_s * 1000,
        idleMs: config.a2a_idle_timeout_s * 1000,
        maxMs: config.a2a_max_duration_s * 1000,
      },
    }),
    ...eventsRoutes({
      service: events,
      webhooks,
      viewerOf,
      admitWaiting: (request) => waitingLimit.enter(callerKey(credentialOf(request.header('authorization')), request.remoteAddress, auth)),
    }),
    ...healthRoutes({ config, backend, registry: metrics.registry, logger, version: VERSION, draining: () => draining }),
    ...docsRoutes(() => routes, [workerSocketChannel, listenStreamChannel, eventsStreamChannel, a2aStreamChannel, a2aRestStreamChannel], VERSION),
    ...(options.routes ?? []),
  ]
  const pipeline = new Pipeline({
    routes,
    logger,
    bodyLimitBytes: config.max_body_kb * 1024,
    resolvers,
    auth,
    rateLimiter: config.rate_limit_per_s > 0 ? new RateLimiter({ perSecond: config.rate_limit_per_s, burst: config.rate_limit_burst }) : null,
    cors: corsPolicy(config.cors_origins),
    draining: () => draining,
  })

  let drained: Promise<void> | null = null
  const runtime: SwitchboardRuntime = {
    config,
    backend,
    logger,
    auth,
    pipeline,
    connections: 0,
    metrics,
    get draining() {
      return draining
    },
    drain() {
      if (drained) return drained
      draining = true
      drained = (async () => {
        try {
          clearInterval(offlineSweep)
          await workers.stop()
          await workerEndpoint.close()
          await webhooks.stop()
          await events.stop()
        } catch (error) {
          logger.error('error while draining', { error: String(error) })
        }
      })()
      return drained
    },
    async close() {
      await runtime.drain()
      await backend.close()
    },
  }
  collectRuntimeGauges(metrics, runtime)
  // The worker service is decorated so operators' tooling and tests can inspect what is in flight.
  return elysiaApp(runtime).decorate('workerService', workers)
}

/** How the id of an app instance starts, in the heartbeats of the instances. */
const APP_INSTANCE = 'app-'

/**
 * Emits workspace.offline as heartbeat TTLs run out: every `periodMs` the instance with the lowest id among the
 * live ones sweeps the time since its last sweep (one sweeper, so each transition is told once while the set of
 * instances is stable; a sweeper that dies takes its last period's transitions with it).
 */
function sweepingOffline(agents: AgentsService, backend: Backend, instanceId: string, periodMs: number, logger: Logger): ReturnType<typeof setInterval> {
  let since = Date.now()
  const timer = setInterval(async () => {
    const now = Date.now()
    try {
      const alive = await backend.instances.alive()
      if ([instanceId, ...alive.filter((id) => id.startsWith(APP_INSTANCE))].sort()[0] === instanceId) await agents.sweepOffline(since, now)
      since = now
    } catch (error) {
      logger.warn('events: the workspace offline sweep failed; it is tried again next period', { error: String(error) })
    }
  }, periodMs)
  timer.unref?.()
  return timer
}

export type SwitchboardApp = ReturnType<typeof createApp>
export type { SwitchboardRuntime }
