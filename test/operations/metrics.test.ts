import { afterEach, describe, expect, it } from 'bun:test'
import net from 'node:net'
import { call, makeApp, type TestApp } from '../support/app'
import { TestWorker } from '../modules/workers/worker'
import { agentId, bodies, messageJson, userId } from '../support/academy'
import { openStream, rawRequest } from '../support/http'
import { startLoggedServer, type LoggedServer } from './support'
import { createApp } from '../../src/app'
import { logger, makeBackend } from '../support/backend'
import { deleteKeys, randomPrefix, testRedis } from '../support/redis'
import { eventually } from '../support/wait'

const redis = await testRedis()

let running: LoggedServer | null = null
let app: TestApp | null = null
const workers: TestWorker[] = []
afterEach(async () => {
  for (const worker of workers.splice(0)) await worker.close()
  await running?.close()
  running = null
  await app?.decorator.switchboard.close()
  app = null
})

/** The value of one sample line, e.g. `switchboard_jobs{state="running"}`; undefined when absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

const scrape = async (url: string, headers: Record<string, string> = {}) => (await fetch(`${url}/metrics`, { headers })).text()

describe('GET /metrics', () => {
  it('counts exchange events: mailboxes created and terminated, messages sent and delivered', async () => {
    app = await makeApp()
    const [user, agent] = [userId(), agentId()]
    await call(app, 'POST', '/mailbox', bodies.create(user))
    await call(app, 'POST', '/mailbox', bodies.create(agent))
    await call(app, 'PUT', '/message', bodies.send(messageJson(user, agent)))
    await call(app, 'PUT', '/message', bodies.send(messageJson(user, agent)))
    await call(app, 'GET', '/message', bodies.receive(agent, 1))
    await call(app, 'DELETE', '/mailbox', bodies.mailbox(agent))
    const text = await (await call(app, 'GET', '/metrics')).text()
    expect(sample(text, 'switchboard_exchange_events_total{event="created"}')).toBe(2)
    expect(sample(text, 'switchboard_exchange_events_total{event="sent"}')).toBe(2)
    expect(sample(text, 'switchboard_exchange_events_total{event="delivered"}')).toBe(1)
    expect(sample(text, 'switchboard_exchange_events_total{event="terminated"}')).toBe(1)
  })

  it('reports the active mailboxes and the messages queued in them, read from the backend', async () => {
    app = await makeApp()
    const [user, busy, closed] = [userId(), agentId(), agentId()]
    for (const id of [user, busy, closed]) await call(app, 'POST', '/mailbox', bodies.create(id))
    let text = await (await call(app, 'GET', '/metrics')).text()
    expect(text).toContain('# TYPE switchboard_mailboxes gauge')
    expect(sample(text, 'switchboard_mailboxes{state="active"}')).toBe(3)
    expect(sample(text, 'switchboard_messages_queued')).toBe(0)
    for (let i = 0; i < 3; i++) await call(app, 'PUT', '/message', bodies.send(messageJson(user, busy)))
    // Responses, so that terminating the mailbox sends no auto-replies back.
    for (let i = 0; i < 2; i++) await call(app, 'PUT', '/message', bodies.send(messageJson(user, closed, { kind: 'response' })))
    expect(sample(await (await call(app, 'GET', '/metrics')).text(), 'switchboard_messages_queued')).toBe(5)
    expect((await call(app, 'GET', '/message', bodies.receive(busy, 1))).status).toBe(200)
    await call(app, 'DELETE', '/mailbox', bodies.mailbox(closed))
    text = await (await call(app, 'GET', '/metrics')).text()
    expect(sample(text, 'switchboard_mailboxes{state="active"}')).toBe(2)
    expect(sample(text, 'switchboard_messages_queued')).toBe(2)
  })

  it.skipIf(redis.url === null)('reports the same mailbox and queue counts on every instance sharing a Redis', async () => {
    const prefix = randomPrefix()
    const instances = await Promise.all([0, 1].map(async () => createApp({ backend: await makeBackend('redis', { redis_url: redis.url!, redis_prefix: prefix }), config: { log_level: 'silent' }, logger })))
    try {
      const [first, second] = instances as [TestApp, TestApp]
      const [user, agent] = [userId(), agentId()]
      await call(first, 'POST', '/mailbox', bodies.create(user))
      await call(second, 'POST', '/mailbox', bodies.create(agent))
      await call(first, 'PUT', '/message', bodies.send(messageJson(user, agent)))
      await call(second, 'PUT', '/message', bodies.send(messageJson(user, agent)))
      for (const instance of instances) {
        const text = await (await call(instance, 'GET', '/metrics')).text()
        expect(sample(text, 'switchboard_mailboxes{state="active"}')).toBe(2)
        expect(sample(text, 'switchboard_messages_queued')).toBe(2)
      }
    } finally {
      for (const instance of instances) await instance.decorator.switchboard.close()
      await deleteKeys(redis.url!, prefix)
    }
  })

  it('counts failures of a store closed under it as backend errors, and refusals of the caller not at all', async () => {
    const backend = await makeBackend('sqlite')
    app = createApp({ backend, config: { log_level: 'silent' }, logger })
    const [user, agent] = [userId(), agentId()]
    await call(app, 'POST', '/mailbox', bodies.create(user))
    expect((await call(app, 'PUT', '/message', bodies.send(messageJson(user, agent)))).status).toBe(404)
    let text = await (await call(app, 'GET', '/metrics')).text()
    expect(sample(text, 'switchboard_backend_errors_total{kind="error"}')).toBe(0)
    expect(sample(text, 'switchboard_backend_errors_total{kind="unavailable"}')).toBe(0)
    await backend.close()
    expect((await call(app, 'POST', '/mailbox', bodies.create(agent))).status).toBe(500)
    text = await (await call(app, 'GET', '/metrics')).text()
    expect(sample(text, 'switchboard_backend_errors_total{kind="error"}')).toBeGreaterThanOrEqual(1)
    expect(sample(text, 'switchboard_backend_errors_total{kind="unavailable"}')).toBe(0)
  })

  it('counts requests by route template and status, with a latency histogram per route', async () => {
    running = await startLoggedServer({ log_level: 'warn' })
    await fetch(`${running.url}/workers/one`)
    await fetch(`${running.url}/workers/two`)
    await fetch(`${running.url}/healthz`)
    const response = await fetch(`${running.url}/metrics`)
    expect(response.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8')
    const text = await response.text()
    expect(sample(text, 'switchboard_http_requests_total{method="GET",route="/workers/:id",status="404"}')).toBe(2)
    expect(sample(text, 'switchboard_http_requests_total{method="GET",route="/healthz",status="200"}')).toBe(1)
    expect(text).not.toContain('/workers/one')
    expect(sample(text, 'switchboard_http_request_duration_seconds_count{route="/workers/:id"}')).toBe(2)
    expect(sample(text, 'switchboard_http_request_duration_seconds_bucket{route="/workers/:id",le="+Inf"}')).toBe(2)
    expect(text).toContain('# TYPE switchboard_http_request_duration_seconds histogram')
  })

  it('shows open event streams, connected workers with their slots, and active jobs', async () => {
    running = await startLoggedServer({ log_level: 'warn' })
    const agent = agentId()
    await rawRequest(`${running.url}/mailbox`, { method: 'POST', body: bodies.create(agent) })
    const stream = await openStream(`${running.url}/mailbox/listen`, { body: bodies.receive(agent, 10) })
    await stream.waitFor('retry')
    workers.push(await TestWorker.connect(running.url, { agentName: 'voice-agent', maxProcesses: 4, autoRun: true }))
    const job = await fetch(`${running.url}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ agent_name: 'voice-agent', room_id: 'room-1' }) })
    expect(job.status).toBe(201)
    let text = ''
    for (let attempt = 0; attempt < 50; attempt++) {
      text = await scrape(running.url)
      if (sample(text, 'switchboard_jobs{state="running"}') === 1) break
      await Bun.sleep(20)
    }
    expect(sample(text, 'switchboard_waiting_receivers{kind="stream"}')).toBe(1)
    expect(sample(text, 'switchboard_waiting_receivers{kind="poll"}')).toBe(0)
    expect(sample(text, 'switchboard_workers_connected{agent_name="voice-agent"}')).toBe(1)
    expect(sample(text, 'switchboard_worker_slots{agent_name="voice-agent"}')).toBe(4)
    expect(sample(text, 'switchboard_worker_slots_used{agent_name="voice-agent"}')).toBe(1)
    expect(sample(text, 'switchboard_jobs{state="running"}')).toBe(1)
    expect(sample(text, 'switchboard_jobs{state="pending"}')).toBe(0)
    stream.close()
  })

  it('counts the connections open on the instance, worker WebSockets included, and drops closed ones', async () => {
    running = await startLoggedServer({ log_level: 'warn' })
    const { port } = running.server
    /** Scrapes over a connection of its own, closed after the answer: it counts itself. */
    const connections = async () => {
      const socket = net.connect(port, '127.0.0.1')
      let text = ''
      socket.on('data', (chunk: Buffer) => (text += chunk.toString()))
      socket.write('GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
      await new Promise((resolve) => socket.on('close', resolve))
      return sample(text.slice(text.indexOf('\r\n\r\n') + 4), 'switchboard_open_connections')
    }
    expect(await connections()).toBe(1)
    const idle = [net.connect(port, '127.0.0.1'), net.connect(port, '127.0.0.1')]
    await Promise.all(idle.map((socket) => new Promise((resolve) => socket.once('connect', resolve))))
    const worker = await TestWorker.connect(running.url)
    await eventually(async () => (await connections()) === 4, 2000, 'four open connections (two idle sockets, a worker, the scrape)')
    for (const socket of idle) socket.destroy()
    await worker.close()
    await eventually(async () => (await connections()) === 1, 2000, 'only the scrape\'s own connection')
  })

  it('counts 5xx answers as server errors and A2A calls by outcome', async () => {
    running = await startLoggedServer({ log_level: 'warn', dispatch_timeout_ms: 50 })
    const noWorker = await fetch(`${running.url}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ agent_name: 'nobody', room_id: 'r' }) })
    expect(noWorker.status).toBe(503)
    const unknownAgent = await fetch(`${running.url}/workspaces/ws-missing/a2a`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'message/send', params: {} }),
    })
    expect(unknownAgent.status).toBeGreaterThanOrEqual(400)
    expect(unknownAgent.status).toBeLessThan(500)
    const text = await scrape(running.url)
    expect(sample(text, 'switchboard_server_errors_total{status="503"}')).toBe(1)
    expect(sample(text, 'switchboard_a2a_calls_total{outcome="rejected"}')).toBe(1)
  })

  it('answers 404 when metrics are off', async () => {
    app = await makeApp({ metrics: 'off' })
    expect((await call(app, 'GET', '/metrics')).status).toBe(404)
  })

  it('answers only the admin bearer token when metrics are admin-only', async () => {
    app = await makeApp({ metrics: 'admin', admin_token: 'operator-secret' })
    expect((await call(app, 'GET', '/metrics')).status).toBe(401)
    expect((await call(app, 'GET', '/metrics', undefined, { authorization: 'Bearer wrong' })).status).toBe(401)
    const allowed = await call(app, 'GET', '/metrics', undefined, { authorization: 'Bearer operator-secret' })
    expect(allowed.status).toBe(200)
    expect(await allowed.text()).toContain('# TYPE switchboard_http_requests_total counter')
  })

  it('refuses to start with metrics = admin and no admin token', async () => {
    await expect(makeApp({ metrics: 'admin' })).rejects.toThrow('admin needs admin_token')
  })

  it('is documented in the OpenAPI document under operations', async () => {
    app = await makeApp()
    const document = (await (await call(app, 'GET', '/swagger/json')).json()) as { paths: Record<string, Record<string, { tags?: string[] }>> }
    expect(document.paths['/metrics']?.get?.tags).toEqual(['operations'])
    expect(document.paths['/readyz']?.get?.tags).toEqual(['operations'])
  })
})
