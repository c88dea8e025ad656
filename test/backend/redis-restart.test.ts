/**
 * A private Redis (never the shared one) restarted with persistence off:
 * the instance reports not-ready while Redis is down, says clearly that the
 * data is gone once it is back, and serves a consistent empty store.
 */
import { afterAll, describe, expect, it } from 'bun:test'
import { createApp } from '../../src/app'
import { createBackend } from '../../src/backend/index'
import { loadPlugin } from '../../plugins/index'
import { createLogger } from '../../src/ops/logger'
import { serve, type RunningServer } from '../../src/http/node'
import { agentId, bodies, messageJson, userId } from '../support/academy'
import { rawRequest } from '../support/http'
import { spawnRedisServer } from '../support/redis'
import { eventually, freePort } from '../support/wait'

const binary = Bun.which('redis-server')
if (!binary) {
  if (process.env.CI === 'true') throw new Error('the Redis restart test needs redis-server on PATH')
  console.warn('skipping the Redis restart test: no redis-server binary on PATH')
}

describe.skipIf(!binary)('a Redis restarted without persistence', () => {
  let redis: ReturnType<typeof Bun.spawn> | null = null
  /** Starts the private Redis on `port`, without persistence. */
  const startRedis = async (port: number) => {
    const started = await spawnRedisServer(binary!, port)
    if (!started) throw new Error('redis-server did not start')
    return started.process
  }
  let server: RunningServer | null = null
  let closeApp: (() => Promise<void>) | null = null
  let closeOther: (() => Promise<void>) | null = null
  afterAll(async () => {
    await server?.stop()
    await closeApp?.()
    await closeOther?.()
    redis?.kill('SIGKILL')
  })

  it('is reported, and the instance goes on from a consistent empty store', async () => {
    const port = await freePort()
    redis = await startRedis(port)
    const lines: string[] = []
    const logger = createLogger('warn', (line) => lines.push(line))
    const backend = await createBackend(await loadPlugin('redis'), { redis_url: `redis://127.0.0.1:${port}`, redis_prefix: 'restart' }, { logger })
    const app = createApp({ backend, config: { log_level: 'warn' }, logger })
    closeApp = () => app.decorator.switchboard.close()
    server = await serve(app, { host: '127.0.0.1', port: 0 })
    const url = server.url
    // A second instance on the same store: it must notice too, though the first may write the new marker before it looks.
    const otherLines: string[] = []
    const other = await createBackend(await loadPlugin('redis'), { redis_url: `redis://127.0.0.1:${port}`, redis_prefix: 'restart' }, { logger: createLogger('warn', (line) => otherLines.push(line)) })
    closeOther = () => other.close()

    const [user, agent] = [userId(), agentId()]
    for (const id of [user, agent]) expect((await rawRequest(`${url}/mailbox`, { method: 'POST', body: bodies.create(id) })).status).toBe(200)
    expect((await rawRequest(`${url}/message`, { method: 'PUT', body: bodies.send(messageJson(user, agent)) })).status).toBe(200)

    redis.kill('SIGKILL')
    await redis.exited
    await eventually(async () => (await rawRequest(`${url}/readyz`)).status === 503, 5000, '/readyz not ready while Redis is down')
    const during = await rawRequest(`${url}/mailbox`, { body: bodies.mailbox(agent) })
    expect(during.status).toBeLessThan(600)

    redis = await startRedis(port)
    await eventually(async () => (await rawRequest(`${url}/readyz`)).status === 200, 10_000, '/readyz ready after Redis is back')
    await eventually(async () => lines.some((line) => line.includes('Redis lost the data of this store')), 5000, 'the loss reported in the log')
    await eventually(async () => otherLines.some((line) => line.includes('Redis lost the data of this store')), 5000, 'the loss reported by the second instance')
    expect(lines.filter((line) => line.includes('Redis lost the data of this store'))).toHaveLength(1)

    const old = await rawRequest(`${url}/mailbox`, { body: bodies.mailbox(agent) })
    expect([old.status, old.text]).toEqual([200, '{"status":"MISSING"}'])
    const stats = await rawRequest(`${url}/mailbox/stats`, { body: bodies.mailbox(agent) })
    expect(JSON.parse(stats.text)).toEqual({ incoming: 0, outgoing: 0, completed: 0, in_progress: 0, queued: 0 })
    const [newUser, newAgent] = [userId(), agentId()]
    for (const id of [newUser, newAgent]) expect((await rawRequest(`${url}/mailbox`, { method: 'POST', body: bodies.create(id) })).status).toBe(200)
    const message = messageJson(newUser, newAgent)
    expect((await rawRequest(`${url}/message`, { method: 'PUT', body: bodies.send(message) })).status).toBe(200)
    const received = await rawRequest(`${url}/message`, { body: bodies.receive(newAgent, 5) })
    expect(JSON.parse(received.text)).toEqual({ message })
  }, 30_000)
})
