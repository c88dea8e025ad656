/**
 * A private Redis (never the shared one) killed while Switchboard serves:
 * every request that needs the store gets its 503 within a second for as
 * long as Redis stays away, and the instance is back once Redis is.
 */
import { afterAll, describe, expect, it } from 'bun:test'
import { createApp } from '../../src/app'
import { createBackend } from '../../src/backend/index'
import { loadPlugin } from '../../plugins/index'
import { createLogger } from '../../src/ops/logger'
import { serve, type RunningServer } from '../../src/http/node'
import { agentId, bodies, messageJson, userId, type Id } from '../support/academy'
import { rawRequest } from '../support/http'
import { spawnRedisServer } from '../support/redis'
import { eventually, freePort } from '../support/wait'

const binary = Bun.which('redis-server')
if (!binary) {
  if (process.env.CI === 'true') throw new Error('the Redis fail-fast test needs redis-server on PATH')
  console.warn('skipping the Redis fail-fast test: no redis-server binary on PATH')
}

/** The longest a request may take to be refused while Redis is unreachable. */
const FAIL_FAST_MS = 1000

describe.skipIf(!binary)('requests while Redis is unreachable', () => {
  let redis: ReturnType<typeof Bun.spawn> | null = null
  let server: RunningServer | null = null
  let closeApp: (() => Promise<void>) | null = null
  afterAll(async () => {
    await server?.stop()
    await closeApp?.()
    redis?.kill('SIGKILL')
  })

  /** A private redis-server on `port`, and one Switchboard on it with these plugin options serving two mailboxes (user, agent). */
  async function startOn(port: number, options: Record<string, unknown>): Promise<{ url: string; user: Id; agent: Id }> {
    const started = await spawnRedisServer(binary!, port)
    if (!started) throw new Error('redis-server did not start')
    redis = started.process
    const backend = await createBackend(await loadPlugin('redis'), { redis_url: `redis://127.0.0.1:${port}`, ...options }, { logger: createLogger('silent') })
    const app = createApp({ backend, config: { log_level: 'silent' }, logger: createLogger('silent') })
    closeApp = () => app.decorator.switchboard.close()
    server = await serve(app, { host: '127.0.0.1', port: 0 })
    const [user, agent] = [userId(), agentId()]
    for (const id of [user, agent]) expect((await rawRequest(`${server.url}/mailbox`, { method: 'POST', body: bodies.create(id) })).status).toBe(200)
    return { url: server.url, user, agent }
  }

  it('get their 503 within a second throughout the outage, and succeed again once Redis is back', async () => {
    const port = await freePort()
    const { url, user, agent } = await startOn(port, { redis_prefix: 'fail-fast' })

    redis!.kill('SIGKILL')
    await redis!.exited
    // Requests of each kind, spread over 6 s of outage: the reconnect backoff grows to 2 s meanwhile.
    const requests = [
      () => rawRequest(`${url}/message`, { method: 'PUT', body: bodies.send(messageJson(user, agent)) }),
      () => rawRequest(`${url}/mailbox`, { body: bodies.mailbox(agent) }),
      () => rawRequest(`${url}/message`, { body: bodies.receive(agent, 5) }),
      () => rawRequest(`${url}/workers`),
      () => rawRequest(`${url}/jobs`, { method: 'POST', body: JSON.stringify({ agent_name: 'voice', room_id: 'r1' }), headers: { 'content-type': 'application/json' } }),
    ]
    const timings: { status: number; ms: number }[] = []
    const outageEnds = Date.now() + 6000
    for (let round = 0; Date.now() < outageEnds; round++) {
      const startedAt = performance.now()
      const answer = await requests[round % requests.length]!()
      timings.push({ status: answer.status, ms: Math.round(performance.now() - startedAt) })
      await Bun.sleep(150)
    }
    const slowest = Math.max(...timings.map((timing) => timing.ms))
    console.log(`time to 503 while Redis is down: ${timings.length} requests, slowest ${slowest} ms, median ${timings.map((t) => t.ms).sort((a, b) => a - b)[timings.length >> 1]} ms`)
    expect(timings.filter((timing) => timing.status !== 503)).toEqual([])
    expect(timings.filter((timing) => timing.ms > FAIL_FAST_MS)).toEqual([])

    const restarted = await spawnRedisServer(binary!, port)
    if (!restarted) throw new Error('redis-server did not start again')
    redis = restarted.process
    await eventually(async () => (await rawRequest(`${url}/readyz`)).status === 200, 10_000, '/readyz ready after Redis is back')
    const [newUser, newAgent] = [userId(), agentId()]
    for (const id of [newUser, newAgent]) expect((await rawRequest(`${url}/mailbox`, { method: 'POST', body: bodies.create(id) })).status).toBe(200)
    const message = messageJson(newUser, newAgent)
    expect((await rawRequest(`${url}/message`, { method: 'PUT', body: bodies.send(message) })).status).toBe(200)
    expect(JSON.parse((await rawRequest(`${url}/message`, { body: bodies.receive(newAgent, 5) })).text)).toEqual({ message })
  }, 40_000)

  it('get their 503 within redis_command_timeout_ms from a Redis that stops answering with its connections open, and lose no message', async () => {
    // The first case's Switchboard and Redis go: this one has its own.
    await server?.stop()
    await closeApp?.()
    redis?.kill('SIGKILL')
    const { url, user, agent } = await startOn(await freePort(), { redis_prefix: 'stalled', redis_command_timeout_ms: 500 })
    const before = messageJson(user, agent)
    expect((await rawRequest(`${url}/message`, { method: 'PUT', body: bodies.send(before) })).status).toBe(200)

    // Stopped, not killed: its sockets stay open and nothing answers on them.
    redis!.kill('SIGSTOP')
    const timings: { what: string; status: number; ms: number }[] = []
    for (const [what, request] of [
      // A take sent to the stopped Redis: it runs when Redis wakes, and its message must come back to the mailbox.
      ['receive', () => rawRequest(`${url}/message`, { body: bodies.receive(agent, 5) })],
      ['mailbox', () => rawRequest(`${url}/mailbox`, { body: bodies.mailbox(agent) })],
      ['workers', () => rawRequest(`${url}/workers`)],
      ['readyz', () => rawRequest(`${url}/readyz`)],
    ] as const) {
      const startedAt = performance.now()
      const answer = await request()
      timings.push({ what, status: answer.status, ms: Math.round(performance.now() - startedAt) })
    }
    console.log(`time to 503 from a stopped Redis: ${timings.map((timing) => `${timing.what} ${timing.ms} ms`).join(', ')}`)
    expect(timings.map((timing) => timing.status)).toEqual([503, 503, 503, 503])
    expect(timings.filter((timing) => timing.ms > 1500)).toEqual([])

    redis!.kill('SIGCONT')
    await eventually(async () => (await rawRequest(`${url}/readyz`)).status === 200, 10_000, '/readyz ready after Redis answers again')
    // The message queued before the stall, taken by the timed-out receive when Redis woke, was given back: there, once.
    expect(JSON.parse((await rawRequest(`${url}/message`, { body: bodies.receive(agent, 5) })).text)).toEqual({ message: before })
    expect((await rawRequest(`${url}/message`, { body: bodies.receive(agent, 0.2) })).status).toBe(408)
  }, 40_000)
})
