/**
 * The worker WebSocket protocol on a real listening server: registration,
 * reconnection and supersede, pings, bad frames, authentication.
 */
import { afterEach, describe, expect, it } from 'bun:test'
import WebSocket from 'ws'
import { startServer, writeTokensFile, type TestServer } from '../../support/app'
import { eventually } from '../../support/wait'
import { startLoggedServer, type LoggedServer } from '../../operations/support'
import { TestWorker } from './worker'

let server: TestServer | null = null
const workers: TestWorker[] = []

async function start(config: Parameters<typeof startServer>[0] = {}): Promise<TestServer> {
  server = await startServer(config)
  return server
}

async function connect(options: Parameters<typeof TestWorker.connect>[1] = {}): Promise<TestWorker> {
  const worker = await TestWorker.connect(server!.url, options)
  workers.push(worker)
  return worker
}

const runtime = () => server!.app.decorator.switchboard
const json = async (path: string, init: RequestInit = {}) => {
  const response = await fetch(server!.url + path, init)
  return { status: response.status, body: (await response.json()) as Record<string, any> }
}

let logged: LoggedServer | null = null

afterEach(async () => {
  for (const worker of workers.splice(0)) await worker.kill()
  await server?.close()
  server = null
  await logged?.close()
  logged = null
})

describe('registration', () => {
  it('answers register first and mints a worker id when the worker proposes none', async () => {
    await start()
    const worker = await connect({ workerId: '' })
    expect(worker.frames[0]).toEqual({ type: 'register', success: true, worker_id: worker.workerId })
    expect(worker.workerId).toMatch(/^[0-9a-f-]{36}$/)
    const { body } = await json(`/workers/${worker.workerId}`)
    expect(body).toMatchObject({ id: worker.workerId, agent_name: 'voice-agent', status: 'available', connected: true, max_processes: 10, load_threshold: 0.75, jobs: [] })
  })

  it('keeps the worker id a worker proposes', async () => {
    await start()
    const worker = await connect({ workerId: 'worker-7' })
    expect(worker.workerId).toBe('worker-7')
  })

  it('mints a new id when the proposed one is not a usable id', async () => {
    await start()
    const worker = await connect({ workerId: 'has spaces/and slashes' })
    expect(worker.workerId).not.toBe('has spaces/and slashes')
    expect(worker.workerId).toMatch(/^[0-9a-f-]{36}$/)
  })

  it('refuses a register frame without agent_name with a register reply saying why, then closes', async () => {
    await start()
    const worker = await TestWorker.open(server!.url, {}, false)
    workers.push(worker)
    worker.send({ type: 'register', worker_id: '' })
    const reply = await worker.waitFor((frame) => frame.type === 'register')
    expect(reply.success).toBe(false)
    expect(String(reply.message)).toContain('agent_name')
    expect((await worker.closed).code).toBe(1008)
  })

  it('refuses capabilities past 64 entries or 256 characters each, naming the bound, and takes them within it', async () => {
    await start()
    for (const [capabilities, wording] of [[Array.from({ length: 65 }, (_, i) => `c${i}`), 'at most 64 entries'], [['x'.repeat(257)], 'at most 256 characters']] as const) {
      const worker = await TestWorker.open(server!.url, {}, false)
      workers.push(worker)
      worker.send({ type: 'register', worker_id: '', agent_name: 'voice-agent', capabilities })
      const reply = await worker.waitFor((frame) => frame.type === 'register')
      expect(reply.success).toBe(false)
      expect(String(reply.message)).toContain(wording)
      expect((await worker.closed).code).toBe(1008)
    }
    const within = await TestWorker.open(server!.url, {}, false)
    workers.push(within)
    within.send({ type: 'register', worker_id: '', agent_name: 'voice-agent', capabilities: Array.from({ length: 64 }, () => 'y'.repeat(256)) })
    expect((await within.waitFor((frame) => frame.type === 'register')).success).toBe(true)
  })

  it('closes a socket that sends no register message within worker_register_timeout_s, with a refused register reply and 1008', async () => {
    await start({ worker_register_timeout_s: 0.5 })
    const silent = await TestWorker.open(server!.url, {}, false)
    workers.push(silent)
    // One that registers in time stays past the deadline.
    const registered = await connect()
    const startedAt = Date.now()
    const closed = await Promise.race([silent.closed, Bun.sleep(3000).then(() => null)])
    expect(closed).toEqual({ code: 1008, reason: 'registration timeout' })
    expect(Date.now() - startedAt).toBeLessThan(2000)
    expect(silent.frames).toEqual([{ type: 'register', success: false, message: 'no register message within 0.5 s (worker_register_timeout_s)' }])
    expect(registered.isOpen).toBe(true)
    await eventually(() => runtime().connections === 1, 2000, 'the silent socket released')
  })

  it('supersedes the old socket when the same worker id registers again, keeping its jobs', async () => {
    await start()
    const first = await connect({ workerId: 'w-supersede' })
    const created = await json('/jobs', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ agent_name: 'voice-agent', room_id: 'r1' }) })
    expect(created.status).toBe(201)
    await first.waitForAssignment(created.body.id)
    // The real client reconnects without closing its old socket.
    const second = await connect({ workerId: 'w-supersede' })
    expect(second.workerId).toBe('w-supersede')
    expect((await first.closed).code).toBe(4000)
    const { body } = await json('/workers/w-supersede')
    expect(body.connected).toBe(true)
    expect(body.jobs).toEqual([created.body.id])
    // Updates now come from the new socket and are applied.
    second.update(created.body.id, 'completed')
    await eventually(async () => (await json(`/jobs/${created.body.id}`)).body.state === 'completed', 5000, 'job completed')
  })

  it('removes a worker without jobs when its socket closes', async () => {
    await start()
    const worker = await connect()
    await worker.close()
    await eventually(async () => (await json(`/workers/${worker.workerId}`)).status === 404, 5000, 'worker removed')
  })
})

describe('frames', () => {
  it('answers an application ping with a pong of exactly type and timestamp', async () => {
    await start()
    const worker = await connect()
    worker.send({ type: 'ping', timestamp: 1234 })
    expect(await worker.waitFor((frame) => frame.type === 'pong')).toEqual({ type: 'pong', timestamp: 1234 })
  })

  it('keeps a worker that sends non-JSON, unknown types and wrongly typed fields, and still dispatches to it', async () => {
    await start()
    const worker = await connect()
    worker.sendRaw('this is not json')
    worker.sendRaw('[1, 2, 3]')
    worker.send({ type: 'teleport', to: 'mars' })
    worker.send({ type: 'job_update', job_id: 42, status: 'running' })
    worker.send({ type: 'status_update', status: 'exhausted', load: 'high' })
    worker.send({ type: 'availability_response', job_id: 'nope', available: 'yes' })
    worker.send({ type: 'job_update', job_id: 'unknown-job', status: 'completed' })
    worker.send({ type: 'ping', timestamp: 1 })
    await worker.waitFor((frame) => frame.type === 'pong')
    expect(worker.isOpen).toBe(true)
    const created = await json('/jobs', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ agent_name: 'voice-agent', room_id: 'r1' }) })
    expect(created.status).toBe(201)
    await worker.waitForAssignment(created.body.id)
    expect(worker.protocolErrors).toEqual([])
  })

  it('logs ignored frames at warn, one line per socket per interval counting the rest, never with the worker\'s own text', async () => {
    logged = await startLoggedServer({ log_level: 'debug' })
    const worker = await TestWorker.connect(logged.url)
    workers.push(worker)
    const marker = `caller-text-${crypto.randomUUID()}`
    const sent = 300
    for (let index = 0; index < sent / 6; index++) {
      worker.sendRaw(`${marker} not json`)
      worker.send({ type: marker })
      worker.send({ type: 'job_update', job_id: 42, status: marker })
      worker.send({ type: 'status_update', status: marker })
      worker.send({ type: 'availability_response', job_id: marker, available: marker })
      worker.sendRegister()
    }
    worker.send({ type: 'ping', timestamp: 1 })
    await worker.waitFor((frame) => frame.type === 'pong')
    expect(worker.isOpen).toBe(true)
    await worker.close()
    expect(logged.lines.filter((line) => line.level === 'error').length).toBe(0)
    expect(JSON.stringify(logged.lines)).not.toContain(marker)
    await eventually(() => logged!.lines.some((line) => line.suppressed !== undefined), 2000, 'the count of the lines left out')
    expect(JSON.stringify(logged.lines)).not.toContain(marker)
    const ignored = logged.lines.filter((line) => line.msg === 'worker sent frames that were ignored')
    // The first, then the count of the others when the socket closed.
    expect(ignored).toHaveLength(2)
    expect(ignored[0]).toMatchObject({ level: 'warn', worker: worker.workerId, problem: 'not JSON' })
    expect(ignored[1]).toMatchObject({ level: 'warn', worker: worker.workerId, suppressed: sent - 1 })
  })

  it('applies status updates: a worker reporting draining gets no jobs, reporting available again does', async () => {
    await start()
    const worker = await connect()
    worker.send({ type: 'status_update', worker_id: worker.workerId, agent_name: 'voice-agent', status: 'draining', load: 0.5, job_count: 0 })
    await eventually(async () => (await json(`/workers/${worker.workerId}`)).body.status === 'draining', 5000, 'status draining')
    expect((await json(`/workers/${worker.workerId}`)).body.reported_load).toBe(0.5)
    const refused = await json('/jobs', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ agent_name: 'voice-agent', room_id: 'r1' }) })
    expect(refused.status).toBe(503)
    expect(refused.body.error.message).toBe('No workers available')
    worker.send({ type: 'status_update', worker_id: worker.workerId, agent_name: 'voice-agent', status: 'available', load: 0, job_count: 0 })
    await eventually(async () => (await json(`/workers/${worker.workerId}`)).body.status === 'available', 5000, 'status available')
    const created = await json('/jobs', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ agent_name: 'voice-agent', room_id: 'r1' }) })
    expect(created.status).toBe(201)
  })

  it('drops a worker that stops answering WebSocket pings', async () => {
    await start({ worker_ping_s: 0.05 })
    // A raw socket that never answers pings (autoPong off), registered by hand.
    const ws = new WebSocket(server!.url.replace('http', 'ws') + '/agent', { autoPong: false })
    const closed = new Promise<void>((resolve) => ws.on('close', () => resolve()))
    await new Promise((resolve) => ws.once('open', resolve))
    ws.send(JSON.stringify({ type: 'register', worker_id: 'silent', agent_name: 'voice-agent' }))
    await closed
    await eventually(async () => (await json('/workers/silent')).status === 404, 5000, 'silent worker removed')
  })

  it('keeps a worker that answers WebSocket pings', async () => {
    await start({ worker_ping_s: 0.05 })
    const worker = await connect()
    await Bun.sleep(400)
    expect(worker.isOpen).toBe(true)
    expect((await json(`/workers/${worker.workerId}`)).body.connected).toBe(true)
  })
})

describe('authentication', () => {
  const tokens = () => writeTokensFile([
    { token: 'token-a', client: 'tenant-a' },
    { token: 'token-b', client: 'tenant-b' },
  ])

  it('refuses the WebSocket upgrade with an unknown token', async () => {
    await start({ auth: 'token', tokens_file: tokens() })
    await expect(TestWorker.connect(server!.url, { token: 'wrong' })).rejects.toThrow('403')
  })

  it('accepts any token when auth is off', async () => {
    await start()
    const worker = await connect({ token: 'anything-at-all' })
    expect(worker.workerId).not.toBe('')
  })

  it('shows each tenant only its own workers and keeps another tenant from taking over a worker id', async () => {
    await start({ auth: 'token', tokens_file: tokens() })
    const a = await connect({ token: 'token-a', workerId: 'shared-name' })
    const b = await connect({ token: 'token-b', workerId: 'shared-name' })
    expect(a.workerId).toBe('shared-name')
    expect(b.workerId).not.toBe('shared-name')
    expect(a.isOpen).toBe(true)
    const listA = await json('/workers', { headers: { authorization: 'Bearer token-a' } })
    const listB = await json('/workers', { headers: { authorization: 'Bearer token-b' } })
    expect(listA.body.workers.map((w: { id: string }) => w.id)).toEqual(['shared-name'])
    expect(listB.body.workers.map((w: { id: string }) => w.id)).toEqual([b.workerId])
    expect((await json('/workers/shared-name', { headers: { authorization: 'Bearer token-b' } })).status).toBe(404)
    expect((await json('/workers')).status).toBe(401)
  })

  it('answers init-config with a ws:// registry URL the worker can join "agent" onto', async () => {
    await start()
    const { status, body } = await json('/v2/agent/init-config', { method: 'POST', headers: { authorization: 'some-token' } })
    expect(status).toBe(200)
    expect(body).toEqual({ success: true, data: { registryUrl: server!.url.replace('http://', 'ws://') } })
    // /agent is a route of the table: its upgrade is the worker socket, a plain request is told to upgrade.
    expect(runtime().pipeline.upgradeOf('/agent')).not.toBeNull()
    const plain = await json('/agent', { method: 'GET' })
    expect(plain.status).toBe(426)
    expect(plain.body).toEqual({ error: { code: 'UPGRADE_REQUIRED', message: 'GET /agent takes a WebSocket upgrade (Upgrade: websocket)' } })
  })
})
