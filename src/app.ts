/**
 * createApp builds Switchboard as an Elysia app without listening: tests
 * drive it through `app.handle`, hosts embed it, and `serve` (src/server.ts)
 * puts it on a port together with its WebSocket endpoints.
 */
import { randomUUID } from 'node:crypto'
import { Elysia } from 'elysia'
import * as v from 'valibot'
import type { Backend } from './backend/index'
import { createAuthenticator, type Authenticator } from './auth'
import { resolveConfig, type Config } from './config'
import { docs } from './docs'
import { NotFoundError } from './errors'
import { nativeError } from './http'
import { createLogger, type Logger } from './logger'
import { RateLimiter, rateLimitHook, WaitingLimit, callerKey } from './limits'
import { memoized, PROMETHEUS_CONTENT_TYPE } from './metrics'
import type { PlainRoutes } from './plain'
import { agentsModule } from './modules/agents/index'
import type { CallOutcome } from './modules/agents/proxy'
import { AgentsService } from './modules/agents/service'
import { AgentUrlGuard } from './modules/agents/ssrf'
import { exchangeModule } from './modules/exchange/index'
import { ExchangeService, type ExchangeEvent } from './modules/exchange/service'
import { workerSockets, workersModule } from './modules/workers/index'
import { WorkerService } from './modules/workers/service'
import { collectRuntimeGauges, createSwitchboardMetrics, type SwitchboardMetrics } from './observability'
import type { UpgradeHandler } from './server'
import { VERSION } from './version'

export interface CreateAppOptions {
  backend: Backend
  /** Full or partial configuration; missing settings take their defaults. */
  config?: Partial<Config>
  logger?: Logger
}

/** What the serving layer and the process need beyond plain HTTP routes. */
export interface SwitchboardRuntime {
  readonly config: Config
  readonly backend: Backend
  readonly logger: Logger
  readonly auth: Authenticator
  /** WebSocket endpoints by path, handled by the serving layer's upgrade event. */
  readonly upgrades: Map<string, UpgradeHandler>
  /**
   * Routes the serving layer calls without building a web Request (src/plain.ts), by
   * `METHOD /route/template`. They skip the app's global hooks, so it is left empty when there are any.
   */
  readonly plainRoutes: PlainRoutes
  /** Open long-polls and event streams, by kind. */
  readonly waiting: { poll: number; stream: number }
  /** Client connections the serving layer has open (HTTP, event streams, worker WebSockets). */
  connections: number
  /** Request counters, latency and the gauges read at each scrape of /metrics. */
  readonly metrics: SwitchboardMetrics
  /** Set once shutdown starts: /readyz answers 503 so balancers stop sending traffic. */
  draining: boolean
  /** Work to run as soon as shutdown starts, while HTTP requests still finish (close worker sockets). */
  readonly onDrain: (() => Promise<void> | void)[]
  /** Starts shutdown: reports not ready and runs the onDrain steps (once). */
  drain(): Promise<void>
  /** Work to run when the app shuts down (close sockets, stop timers), newest first. */
  readonly onClose: (() => Promise<void> | void)[]
  /** Drain if not done yet, stop modules, then close the backend. */
  close(): Promise<void>
}


export function createApp(options: CreateAppOptions) {
  const config = resolveConfig(options.config ?? {})
  const logger = options.logger ?? createLogger(config.log_level)
  const { backend } = options
  const auth = createAuthenticator(config)
  const runtime: SwitchboardRuntime = {
    config,
    backend,
    logger,
    auth,
    upgrades: new Map(),
    plainRoutes: new Map(),
    waiting: { poll: 0, stream: 0 },
    connections: 0,
    metrics: createSwitchboardMetrics(),
    draining: false,
    onDrain: [],
    async drain() {
      if (drained) return drained
      runtime.draining = true
      drained = runSteps(runtime.onDrain)
      return drained
    },
    onClose: [],
    async close() {
      await runtime.drain()
      await runSteps(runtime.onClose)
      await backend.close()
    },
  }
  let drained: Promise<void> | null = null
  async function runSteps(steps: (() => Promise<void> | void)[]): Promise<void> {
    for (const step of [...steps].reverse()) {
      try {
        await step()
      } catch (error) {
        logger.error('error while closing', { error: String(error) })
      }
    }
  }

  collectRuntimeGauges(runtime.metrics, runtime)
  // Counted on every send and every proxied call: each label's series (a handful: the unions below) is looked up once.
  const exchangeEventsOf = memoized((event: ExchangeEvent) => runtime.metrics.exchangeEvents.series({ event }))
  const a2aCallsOf = memoized((outcome: CallOutcome) => runtime.metrics.a2aCalls.series({ outcome }))

  const exchange = new ExchangeService(
    backend.mailboxes,
    {
      listenTimeout: config.listen_timeout,
      messageSizeLimitBytes: config.message_size_limit_kb * 1024,
      onEvent: (event) => exchangeEventsOf(event).inc(),
    },
    logger,
  )

  const agentUrls = new AgentUrlGuard({ allowPrivate: config.allow_private_agent_urls })
  const agents = new AgentsService(
    backend.agents,
    { adminToken: config.admin_token, openRegistration: config.open_registration, heartbeatTtlSeconds: config.heartbeat_ttl_s },
    agentUrls,
    logger,
  )

  const workers = new WorkerService(
    backend.workers,
    backend.events,
    backend.instances,
    {
      instanceId: randomUUID(),
      availabilityTimeoutMs: config.availability_timeout_ms,
      dispatchTimeoutMs: config.dispatch_timeout_ms,
      graceMs: config.worker_grace_s * 1000,
      lossAction: config.worker_loss_action,
      heartbeatMs: config.instance_heartbeat_s * 1000,
      assignmentUrl: config.public_url ?? '',
    },
    logger,
  )
  const workerEndpoint = workerSockets({ service: workers, auth, logger, pingSeconds: config.worker_ping_s, maxFrameBytes: config.max_ws_frame_kb * 1024 })
  runtime.upgrades.set('/agent', (request, socket, head) => workerEndpoint.handleUpgrade(request, socket, head))
  runtime.onDrain.push(async () => {
    await workers.stop()
    await workerEndpoint.close()
  })

  const rateLimiter = config.rate_limit_per_s > 0 ? new RateLimiter({ perSecond: config.rate_limit_per_s, burst: config.rate_limit_burst }) : null
  const waitingLimit = new WaitingLimit(config.max_waiting_per_client)

  // Plain routes skip the app's hooks, and the rate limit is its one global hook: with it on, every request goes through the app.
  const plainRoutes = rateLimiter ? undefined : runtime.plainRoutes
  const base = new Elysia({ name: 'switchboard' }).decorate('switchboard', runtime)
  // Global hook, added only when limiting is on: an empty hook still costs every request a call.
  if (rateLimiter) base.onRequest(rateLimitHook(rateLimiter, auth))
  return base
    .use(
      exchangeModule({
        service: exchange,
        auth,
        logger,
        bodyLimitBytes: config.max_body_kb * 1024,
        pingSeconds: config.sse_ping_s,
        plainRoutes,
        admitWaiting: (request) => waitingLimit.enter(callerKey(request.header('authorization'), request.remoteAddress, auth)),
        onWaiting: (kind, delta) => {
          runtime.waiting[kind] += delta
        },
      }),
    )
    .use(workersModule({ service: workers, auth, logger, bodyLimitBytes: config.max_body_kb * 1024, publicUrl: config.public_url }))
    .use(
      agentsModule({
        service: agents,
        urls: agentUrls,
        logger,
        bodyLimitBytes: config.max_body_kb * 1024,
        a2aBodyLimitBytes: config.a2a_body_limit_kb * 1024,
        publicUrl: config.public_url,
        onCallEnded: (outcome) => a2aCallsOf(outcome).inc(),
        plainRoutes,
        timeouts: {
          connectMs: config.a2a_connect_timeout_ms,
          headerMs: config.a2a_header_timeout_s * 1000,
          idleMs: config.a2a_idle_timeout_s * 1000,
          maxMs: config.a2a_max_duration_s * 1000,
        },
      }),
    )
    .onError(({ code, error }) => nativeError(code, error, logger))
    .use(docs(VERSION))
    .get('/healthz', () => ({ status: 'ok' as const, version: VERSION }), {
      detail: { tags: ['operations'], summary: 'The process is alive' },
      response: { 200: v.object({ status: v.literal('ok'), version: v.string() }) },
    })
    .get(
      '/readyz',
      async ({ set }) => {
        if (runtime.draining) {
          set.status = 503
          return { status: 'draining', backend: backend.name }
        }
        const ready = await backend.ready().catch(() => false)
        set.status = ready ? 200 : 503
        return { status: ready ? 'ready' : 'not ready', backend: backend.name }
      },
      {
        detail: { tags: ['operations'], summary: 'Ready for traffic: the backend is reachable and shutdown has not started (503 otherwise)' },
        response: { 200: v.object({ status: v.string(), backend: v.string() }), 503: v.object({ status: v.string(), backend: v.string() }) },
      },
    )
    .get(
      '/metrics',
      async ({ request }) => {
        if (config.metrics === 'off') throw new NotFoundError('metrics are off (--metrics)')
        if (config.metrics === 'admin') await agents.authenticateAdmin(request.headers.get('authorization'))
        const { text, failures } = await runtime.metrics.registry.render()
        for (const failure of failures) logger.warn('a metrics collector failed; its gauges are left out of this scrape', { error: String(failure) })
        return new Response(text, { headers: { 'content-type': PROMETHEUS_CONTENT_TYPE } })
      },
      {
        detail: {
          tags: ['operations'],
          summary: 'Metrics in the Prometheus text format (setting metrics: on, off = 404, admin = admin bearer token)',
          responses: {
            200: { description: 'Prometheus text format 0.0.4', content: { [PROMETHEUS_CONTENT_TYPE]: { schema: { type: 'string' } } } },
            401: { description: 'metrics = admin and no bearer token' },
            403: { description: 'metrics = admin and not the admin token' },
            404: { description: 'metrics = off' },
          },
        },
      },
    )
}

export type SwitchboardApp = ReturnType<typeof createApp>
