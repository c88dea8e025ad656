/** What the serving layer (both adapters) and the process lifecycle need of a created app. */
import type { Backend } from '../backend/index'
import type { Config } from '../config'
import type { Logger } from '../ops/logger'
import type { SwitchboardMetrics } from '../ops/observability'
import type { Authenticator } from './auth'
import type { Pipeline } from './pipeline'

/** What the serving layer and the process lifecycle need. */
export interface SwitchboardRuntime {
  readonly config: Config
  readonly backend: Backend
  readonly logger: Logger
  readonly auth: Authenticator
  /** Every route, and the one pipeline both adapters hand requests to. */
  readonly pipeline: Pipeline
  /** Client connections the node:http adapter has open (it alone counts them). */
  connections: number
  /** Request counters, latency and the gauges read at each scrape of /metrics. */
  readonly metrics: SwitchboardMetrics
  /** True once shutdown has begun: /readyz answers 503 so balancers stop sending traffic. */
  readonly draining: boolean
  /** Starts shutdown: reports not ready and closes worker sockets (once). */
  drain(): Promise<void>
  /** Drain if not done yet, stop modules, then close the backend. */
  close(): Promise<void>
}

