import { afterEach, describe, expect, it } from 'bun:test'
import { createApp } from '../../src/app'
import { call, makeApp, type TestApp } from '../support/app'
import { logger, makeTestBackend } from '../support/backend'
import { serve } from '../../src/http/node'
import { BUN, runToEnd } from '../support/process'
import { freePort } from '../support/wait'

let app: TestApp | null = null
afterEach(async () => {
  await app?.decorator.switchboard.close()
  app = null
})

describe('GET /readyz', () => {
  it('is ready while the backend is ready and shutdown has not started', async () => {
    app = await makeApp()
    const response = await call(app, 'GET', '/readyz')
    expect(response.status).toBe(200)
    expect(await response.json()).toMatchObject({ status: 'ready' })
  })

  it('answers 503 draining once shutdown has started, while /healthz stays 200', async () => {
    app = await makeApp()
    void app.decorator.switchboard.drain()
    const response = await call(app, 'GET', '/readyz')
    expect(response.status).toBe(503)
    expect(await response.json()).toMatchObject({ status: 'draining' })
    expect((await call(app, 'GET', '/healthz')).status).toBe(200)
  })

  it('answers 503 when the backend reports not ready or fails to answer', async () => {
    const backend = await makeTestBackend()
    let ready: () => Promise<boolean> = async () => false
    app = createApp({ backend: { ...backend, ready: () => ready() }, config: { log_level: 'silent' }, logger })
    expect((await call(app, 'GET', '/readyz')).status).toBe(503)
    ready = async () => {
      throw new Error('connection refused')
    }
    const failing = await call(app, 'GET', '/readyz')
    expect(failing.status).toBe(503)
    expect(await failing.json()).toMatchObject({ status: 'not ready' })
  })
})

describe('switchboard healthcheck', () => {
  /** Runs the command with these flags: its exit code and what it said. */
  const healthcheck = (...flags: string[]) => runToEnd([BUN, 'src/main.ts', 'healthcheck', ...flags])

  it('exits 0 while the server of its settings is ready, 1 naming the answer once it drains', async () => {
    app = await makeApp()
    const server = await serve(app, { host: '127.0.0.1', port: 0 })
    try {
      const ready = await healthcheck('--port', String(server.port))
      expect(ready.stderr).toBe('')
      expect(ready.code).toBe(0)
      // SWITCHBOARD_HOST=0.0.0.0 as in the container image: asked on loopback.
      expect((await runToEnd([BUN, 'src/main.ts', 'healthcheck'], { SWITCHBOARD_HOST: '0.0.0.0', SWITCHBOARD_PORT: String(server.port) })).code).toBe(0)
      void app.decorator.switchboard.drain()
      const draining = await healthcheck('--port', String(server.port))
      expect(draining.code).toBe(1)
      expect(draining.stderr).toBe(`switchboard healthcheck: http://127.0.0.1:${server.port}/readyz answered 503\n`)
    } finally {
      await server.stop()
    }
  })

  it('exits 1 naming the address when nothing answers there', async () => {
    const port = await freePort()
    const refused = await healthcheck('--port', String(port))
    expect(refused.code).toBe(1)
    expect(refused.stderr).toStartWith(`switchboard healthcheck: http://127.0.0.1:${port}/readyz: `)
  })
})
