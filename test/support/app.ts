/** Builds Switchboard for tests: in-process (`app.handle`) or on a real port. */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createApp, type CreateAppOptions } from '../../src/app'
import type { Config } from '../../src/config'
import { serve, type RunningServer } from '../../src/http/node'
import type { Backend } from '../../src/backend/index'
import { logger, makeTestBackend } from './backend'
import { tempDir } from './temp'

export type TestApp = ReturnType<typeof createApp>

/** What else an app may be made with: the resolver of agent host names, routes of the test's own, a logger to read. */
export type AppExtras = Pick<CreateAppOptions, 'resolve' | 'routes' | 'logger'>

/** A fresh app on the test backend. */
export async function makeApp(config: Partial<Config> = {}, backendOptions: Record<string, unknown> = {}, extras: AppExtras = {}): Promise<TestApp> {
  const backend = await makeTestBackend(backendOptions)
  try {
    return createApp({ backend, config: { log_level: 'silent', ...config }, logger, ...extras })
  } catch (error) {
    // A setting createApp refuses: the backend made for it goes (with its Redis keys) before the refusal reaches the test.
    await backend.close()
    throw error
  }
}

/** Sends one request through `app.handle`, with a body on any method. */
export function call(app: TestApp, method: string, path: string, body?: string, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> {
  return app.handle(
    new Request(`http://localhost${path}`, {
      method,
      body,
      signal,
      headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    }),
  )
}

/** A running server and the app behind it; `close` stops both. */
export interface TestServer {
  app: TestApp
  server: RunningServer
  url: string
  close(): Promise<void>
}

export async function startServer(config: Partial<Config> = {}, backendOptions: Record<string, unknown> = {}, extras: AppExtras = {}): Promise<TestServer> {
  return serveApp(await makeApp(config, backendOptions, extras))
}

/** Switchboard on a real port over a backend the test made itself (e.g. several instances sharing one Redis). */
export async function serveBackend(backend: Backend, config: Partial<Config> = {}): Promise<TestServer> {
  return serveApp(createApp({ backend, config: { log_level: 'silent', ...config }, logger }))
}

async function serveApp(app: TestApp): Promise<TestServer> {
  const server = await serve(app, { host: '127.0.0.1', port: 0 })
  return {
    app,
    server,
    url: server.url,
    async close() {
      await server.stop()
      await app.decorator.switchboard.close()
    },
  }
}

/** Writes a tokens file with the given token → client/groups entries; returns its path. */
export function writeTokensFile(entries: { token: string; client: string; groups?: string[] }[]): string {
  const dir = tempDir('tokens')
  const path = join(dir, 'tokens.toml')
  const toml = entries
    .map((entry) => `[[tokens]]\ntoken = ${JSON.stringify(entry.token)}\nclient = ${JSON.stringify(entry.client)}\ngroups = ${JSON.stringify(entry.groups ?? [])}\n`)
    .join('\n')
  writeFileSync(path, toml)
  return path
}
