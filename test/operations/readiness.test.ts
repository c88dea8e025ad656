import { afterEach, describe, expect, it } from 'bun:test'
import { createApp } from '../../src/app'
import { call, makeApp, type TestApp } from '../support/app'
import { logger, makeTestBackend } from '../support/backend'

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
