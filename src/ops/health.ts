/** The operations routes: liveness, readiness and the Prometheus scrape. */
import * as v from 'valibot'
import type { Backend } from '../backend/index'
import type { Config } from '../config'
import { NotFoundError } from '../errors'
import { json } from '../http/reply'
import { route, type AnyRoute } from '../http/route'
import type { Logger } from './logger'
import { PROMETHEUS_CONTENT_TYPE, type MetricsRegistry } from './metrics'

export interface HealthRoutesOptions {
  config: Pick<Config, 'metrics'>
  backend: Backend
  registry: MetricsRegistry
  logger: Logger
  version: string
  /** True once shutdown has begun. */
  draining(): boolean
}

const Readiness = v.object({ status: v.string(), backend: v.string() })

export function healthRoutes(options: HealthRoutesOptions): AnyRoute[] {
  const { backend, registry, logger } = options
  const operations = { surface: 'native', tag: 'operations', unlimited: true } as const
  return [
    route({
      ...operations,
      access: 'none',
      method: 'GET',
      path: '/healthz',
      summary: 'The process is alive',
      responses: { 200: { description: 'Alive', schema: v.object({ status: v.literal('ok'), version: v.string() }) } },
      handle: () => json({ status: 'ok', version: options.version }),
    }),
    route({
      ...operations,
      access: 'none',
      method: 'GET',
      path: '/readyz',
      summary: 'Ready for traffic: the backend is reachable and shutdown has not started (503 otherwise)',
      responses: { 200: { description: 'Ready', schema: Readiness }, 503: { description: 'Draining, or the backend cannot be reached', schema: Readiness } },
      handle: async () => {
        if (options.draining()) return json({ status: 'draining', backend: backend.name }, 503)
        const ready = await backend.ready().catch(() => false)
        return json({ status: ready ? 'ready' : 'not ready', backend: backend.name }, ready ? 200 : 503)
      },
    }),
    route({
      ...operations,
      // metrics = admin: only with the admin token.
      access: options.config.metrics === 'admin' ? 'admin' : 'none',
      method: 'GET',
      path: '/metrics',
      summary: 'Metrics in the Prometheus text format (setting metrics: on, off = 404, admin = admin bearer token)',
      responses: {
        200: { description: 'Prometheus text format 0.0.4', schema: v.string(), contentType: PROMETHEUS_CONTENT_TYPE },
        401: { description: 'metrics = admin and no bearer token' },
        403: { description: 'metrics = admin and not the admin token' },
        404: { description: 'metrics = off' },
      },
      handle: async () => {
        if (options.config.metrics === 'off') throw new NotFoundError('metrics are off (--metrics)')
        const { text, failures } = await registry.render()
        for (const failure of failures) logger.warn('a metrics collector failed; its gauges are left out of this scrape', { error: String(failure) })
        return { status: 200, headers: { 'content-type': PROMETHEUS_CONTENT_TYPE }, body: text }
      },
    }),
  ]
}
