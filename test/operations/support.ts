/** A real server whose log lines are kept, for the operations tests. */
import { createApp } from '../../src/app'
import type { Config } from '../../src/config'
import { createLogger } from '../../src/ops/logger'
import { serve, type RunningServer } from '../../src/http/node'
import { makeTestBackend } from '../support/backend'

export interface LoggedServer {
  app: ReturnType<typeof createApp>
  server: RunningServer
  url: string
  /** Every log line so far, parsed. */
  lines: Record<string, unknown>[]
  close(): Promise<void>
}

export async function startLoggedServer(config: Partial<Config> = {}): Promise<LoggedServer> {
  const lines: Record<string, unknown>[] = []
  const logger = createLogger(config.log_level ?? 'info', (line) => lines.push(JSON.parse(line)))
  // A 1 MiB body limit, so a body over it is cheap to send.
  const app = createApp({ backend: await makeTestBackend(), config: { log_level: 'info', max_body_kb: 1024, ...config }, logger })
  const server = await serve(app, { host: '127.0.0.1', port: 0 })
  return {
    app,
    server,
    url: server.url,
    lines,
    async close() {
      await server.stop()
      await app.decorator.switchboard.close()
    },
  }
}
