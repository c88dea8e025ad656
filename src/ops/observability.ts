/**
 * What operators see of each request: a request id (accepted from
 * `X-Request-Id` or generated), one JSON log line, and the request metrics.
 * The serving layer calls `observeRequests` once and records every response
 * through it, errors and event streams included.
 */
import { randomUUID } from 'node:crypto'
import type { Backend } from '../backend/index'
import { credentialOf, type Authenticator } from '../http/auth'
import type { Logger } from './logger'
import type { JobState } from '../backend/workers'
import { memoized, MetricsRegistry, type Counter, type Histogram } from './metrics'

const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/

/** The caller's `X-Request-Id` when it is 1-128 characters of [A-Za-z0-9._-], else a new one. */
export function requestIdOf(header: string | string[] | undefined): string {
  return typeof header === 'string' && REQUEST_ID.test(header) ? header : randomUUID()
}

export interface SwitchboardMetrics {
  readonly registry: MetricsRegistry
  readonly requests: Counter
  readonly duration: Histogram
  readonly serverErrors: Counter
  readonly a2aCalls: Counter
  readonly exchangeEvents: Counter
  readonly webhookDeliveries: Counter
}

/** Seconds; from a cached read to a long-poll that runs to its full minute. */
const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
const ACTIVE_JOB_STATES: readonly JobState[] = ['pending', 'assigned', 'running', 'reassigning']

/** The registry and the metrics every Switchboard records; gauges read from the runtime are added by `collectRuntimeGauges`. */
export function createSwitchboardMetrics(): SwitchboardMetrics {
  const registry = new MetricsRegistry()
  return {
    registry,
    requests: registry.counter('switchboard_http_requests_total', 'HTTP requests answered, by method, route template and status.', ['method', 'route', 'status']),
    duration: registry.histogram('switchboard_http_request_duration_seconds', 'Time to answer a request (an event stream counts until it ends), by route template.', ['route'], DURATION_BUCKETS),
    serverErrors: registry.counter('switchboard_server_errors_total', 'Responses with a 5xx status (503: a backend, worker or agent was unavailable), by status.', ['status']),
    a2aCalls: registry.counter('switchboard_a2a_calls_total', 'A2A calls that reached the proxy, by how they ended: ok, rejected (4xx), agent_error (5xx from the agent, or a stream it broke off), unavailable (503), timeout (504, or a stream gone silent or past its ceiling), caller_gone, error.', ['outcome']),
    exchangeEvents: registry.counter('switchboard_exchange_events_total', 'Exchange events on this instance: mailboxes created and terminated, messages sent, delivered and returned to their mailbox after a failed stream write.', ['event']),
    webhookDeliveries: registry.counter('switchboard_webhook_deliveries_total', 'Webhook delivery attempts made on this instance, by outcome: delivered, retried (failed, tried again later), dead_lettered; and dropped (not queued: the subscription held webhook_backlog).', ['outcome']),
  }
}

/** Gauges read when scraped: open connections, connected workers and their slots, mailboxes and queued messages, active jobs; and the backend's failures. */
export function collectRuntimeGauges(metrics: SwitchboardMetrics, runtime: { readonly connections: number; readonly backend: Backend }): void {
  const { registry } = metrics
  const connections = registry.gauge('switchboard_open_connections', 'Client connections open on this instance: HTTP, event streams and worker WebSockets (see max_connections).')
  registry.collect([connections], () => connections.set({}, runtime.connections))
  const connected = registry.gauge('switchboard_workers_connected', 'Workers with an open socket, by agent name (every instance sharing the backend).', ['agent_name'])
  const slotsUsed = registry.gauge('switchboard_worker_slots_used', 'Jobs held or reserved by connected workers, by agent name.', ['agent_name'])
  const slotsTotal = registry.gauge('switchboard_worker_slots', 'Job capacity (max processes) of connected workers, by agent name.', ['agent_name'])
  registry.collect([connected, slotsUsed, slotsTotal], async () => {
    const byName = new Map<string, { workers: number; used: number; total: number }>()
    for (const worker of await runtime.backend.workers.listWorkers()) {
      if (worker.connection === null) continue
      const entry = byName.get(worker.agentName) ?? { workers: 0, used: 0, total: 0 }
      entry.workers++
      entry.used += worker.jobs.length + worker.reserved.length
      entry.total += worker.maxProcesses
      byName.set(worker.agentName, entry)
    }
    for (const [name, entry] of byName) {
      connected.set({ agent_name: name }, entry.workers)
      slotsUsed.set({ agent_name: name }, entry.used)
      slotsTotal.set({ agent_name: name }, entry.total)
    }
  })
  const mailboxes = registry.gauge('switchboard_mailboxes', 'Mailboxes in the store by state: active (every instance sharing the backend; gravestones are not counted).', ['state'])
  const queued = registry.gauge('switchboard_messages_queued', 'Messages waiting in active mailboxes, not yet received (every instance sharing the backend).')
  registry.collect([mailboxes, queued], async () => {
    const counts = await runtime.backend.mailboxes.counts()
    mailboxes.set({ state: 'active' }, counts.mailboxes)
    queued.set({}, counts.queued)
  })
  // The backend keeps the tally (src/backend/index.ts, createBackend); the counter catches up with it at each scrape.
  const backendErrors = registry.counter('switchboard_backend_errors_total', 'Backend store operations that failed other than by refusing the caller: unavailable (the store could not be reached), error (any other fault).', ['kind'])
  const failureKinds = ['unavailable', 'error'] as const
  for (const kind of failureKinds) backendErrors.inc({ kind }, 0)
  registry.collect([], () => {
    const failures = runtime.backend.failures
    if (failures) for (const kind of failureKinds) backendErrors.inc({ kind }, failures[kind] - backendErrors.get({ kind }))
  })
  // Finished jobs are kept for their history and only grow, so only the active states are counted.
  const jobs = registry.gauge('switchboard_jobs', 'Jobs in an active state (pending, assigned, running, reassigning).', ['state'])
  registry.collect([jobs], async () => {
    const counts = await Promise.all(ACTIVE_JOB_STATES.map((state) => runtime.backend.workers.listJobs({ state })))
    ACTIVE_JOB_STATES.forEach((state, index) => jobs.set({ state }, counts[index]!.length))
  })
  // What an autoscaler reads (docs/workers.md): how many jobs wait for a worker, and for how long the oldest has.
  const backlog = registry.gauge('switchboard_jobs_queued', 'Jobs waiting in the backlog for a worker with room, by agent name (every tenant and every instance sharing the backend).', ['agent_name'])
  const oldest = registry.gauge('switchboard_jobs_queued_oldest_age_seconds', 'How long the oldest job in the backlog has waited, by agent name.', ['agent_name'])
  registry.collect([backlog, oldest], async () => {
    const now = Date.now()
    const byName = new Map<string, { length: number; oldestCreatedAt: number }>()
    for (const queue of await runtime.backend.workers.listQueues()) {
      const entry = byName.get(queue.agentName) ?? { length: 0, oldestCreatedAt: Infinity }
      entry.length += queue.length
      entry.oldestCreatedAt = Math.min(entry.oldestCreatedAt, queue.oldestCreatedAt)
      byName.set(queue.agentName, entry)
    }
    for (const [name, entry] of byName) {
      backlog.set({ agent_name: name }, entry.length)
      oldest.set({ agent_name: name }, Math.max(0, now - entry.oldestCreatedAt) / 1000)
    }
  })
}

export interface FinishedRequest {
  method: string
  route: string
  status: number
  /** `performance.now()` when the request arrived. */
  startedAt: number
  requestId: string
  authorization: string | undefined
  /** The W3C traceparent the answer carried (A2A calls), whose trace id the log line shows. */
  traceparent?: string
}

/** Records finished requests into the runtime's metrics and, when the level allows, one `info` line each. */
export function observeRequests(runtime: { readonly metrics: SwitchboardMetrics; readonly logger: Logger; readonly auth: Authenticator }) {
  const { metrics, logger, auth } = runtime
  const logging = logger.enabled('info')
  const clientOf = (authorization: string | undefined): string | undefined => (auth.enabled ? auth.known(credentialOf(authorization))?.id : undefined)
  // The series each finished request is recorded into, kept by route, method and status: these are the same
  // few values again and again (route templates, node:http's methods, statuses), so finding one builds no key.
  const requestsOf = memoized((route: string) => memoized((method: string) => memoized((status: number) => metrics.requests.series({ method, route, status: String(status) }))))
  const durationOf = memoized((route: string) => metrics.duration.series({ route }))
  return {
    finish(request: FinishedRequest): void {
      const seconds = (performance.now() - request.startedAt) / 1000
      requestsOf(request.route)(request.method)(request.status).inc()
      durationOf(request.route).observe(seconds)
      if (request.status >= 500) metrics.serverErrors.inc({ status: String(request.status) })
      if (!logging) return
      const client = clientOf(request.authorization)
      logger.info('request', {
        method: request.method,
        route: request.route,
        status: request.status,
        duration_ms: Math.round(seconds * 100000) / 100,
        ...(client !== undefined ? { client } : {}),
        request_id: request.requestId,
        ...(request.traceparent !== undefined ? { trace_id: request.traceparent.slice(3, 35) } : {}),
      })
    },
  }
}
