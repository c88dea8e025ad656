/**
 * The native REST surface of the workers module: listing and filtering,
 * bad input, tenant isolation of jobs, and the OpenAPI document.
 */
import { afterEach, describe, expect, it } from 'bun:test'
import { startServer, writeTokensFile, type TestServer } from '../../support/app'
import { TestWorker } from './worker'

let server: TestServer | null = null
const workers: TestWorker[] = []
type Json = Record<string, any>

async function request(method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Json }> {
  const response = await fetch(server!.url + path, { method, headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers }, body })
  return { status: response.status, body: (await response.json()) as Json }
}

afterEach(async () => {
  for (const worker of workers.splice(0)) await worker.kill()
  await server?.close()
  server = null
})

describe('native routes', () => {
  it('lists jobs filtered by agent name, state and worker, newest first', async () => {
    server = await startServer()
    const voice = await TestWorker.connect(server.url, { agentName: 'voice' })
    const chat = await TestWorker.connect(server.url, { agentName: 'chat', autoRun: false })
    workers.push(voice, chat)
    const first = await request('POST', '/jobs', JSON.stringify({ agent_name: 'voice', room_id: 'a' }))
    const second = await request('POST', '/jobs', JSON.stringify({ agent_name: 'chat', room_id: 'b' }))
    const third = await request('POST', '/jobs', JSON.stringify({ agent_name: 'voice', room_id: 'c', metadata: { k: 1 }, room_options: { x: true } }))
    expect(third.body).toMatchObject({ agent_name: 'voice', room_id: 'c', state: 'assigned', metadata: { k: 1 }, room_options: { x: true } })
    const ids = (list: Json) => list.jobs.map((job: Json) => job.id)
    expect(ids((await request('GET', '/jobs')).body)).toEqual([third.body.id, second.body.id, first.body.id])
    expect(ids((await request('GET', '/jobs?agent_name=voice')).body)).toEqual([third.body.id, first.body.id])
    expect(ids((await request('GET', `/jobs?worker_id=${chat.workerId}`)).body)).toEqual([second.body.id])
    expect(ids((await request('GET', '/jobs?state=assigned')).body)).toEqual([second.body.id])
    expect(ids((await request('GET', '/jobs?limit=1')).body)).toEqual([third.body.id])
    const listed = (await request('GET', '/workers?agent_name=voice')).body.workers
    expect(listed.length).toBe(1)
    expect(listed[0]).toMatchObject({ id: voice.workerId, agent_name: 'voice', connected: true, load: 0.2, reserved: 0 })
    expect([...listed[0].jobs].sort()).toEqual([first.body.id, third.body.id].sort())
  })

  it('holds a page of GET /jobs to 8 MiB however large its jobs, and pages through all of them by cursor, each once', async () => {
    // max_field_kb raised so that each job carries 1.5 MiB: 12 of them are 18 MiB, more than two pages.
    server = await startServer({ max_field_kb: 2048, max_body_kb: 4096 })
    for (let i = 0; i < 12; i++) {
      // No worker serves the name: each dispatch fails, and the failed job is kept for its history.
      const refused = await request('POST', '/jobs', JSON.stringify({ agent_name: 'nobody', room_id: `room-${i}`, metadata: { pad: 'm'.repeat(1.5 * 1024 * 1024), i } }))
      expect(refused.status).toBe(503)
    }
    const firstPage = ((await request('GET', '/jobs?limit=9999')).body.jobs as Json[]).map((job) => job.id)
    expect(firstPage).toHaveLength(5)
    const seen: string[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const response = await fetch(`${server.url}/jobs?limit=9999${cursor === null ? '' : `&cursor=${cursor}`}`)
      const text = await response.text()
      expect(Buffer.byteLength(text)).toBeLessThanOrEqual(8 * 1024 * 1024 + 1024)
      const page = JSON.parse(text) as { jobs: Json[]; next_cursor: string | null }
      expect(page.jobs.length).toBeGreaterThan(0)
      seen.push(...page.jobs.map((job) => job.id))
      cursor = page.next_cursor
      pages++
    } while (cursor !== null && pages < 10)
    expect(pages).toBe(3)
    expect(seen).toHaveLength(12)
    expect(new Set(seen).size).toBe(12)
    expect(seen.slice(0, 5)).toEqual(firstPage)
  }, 60_000)

  it('answers bad input with 400 and a message naming what was wrong', async () => {
    server = await startServer()
    const cases: [string, string, string | undefined, string][] = [
      ['GET', '/jobs?state=bogus', undefined, 'state'],
      ['GET', '/jobs?limit=0', undefined, 'limit'],
      ['POST', '/jobs', JSON.stringify({ agent_name: '', room_id: 'r' }), 'agent_name'],
      ['POST', '/jobs', JSON.stringify({ agent_name: 'a' }), 'room_id'],
      ['POST', '/jobs', JSON.stringify({ agent_name: 'a', room_id: 'r', metadata: 'not an object' }), 'metadata'],
      ['POST', '/jobs', JSON.stringify({ agent_name: 'a', room_id: 'r', timeout_ms: -5 }), 'timeout_ms'],
      ['POST', '/jobs', '{"agent_name":', 'not valid JSON'],
      ['POST', '/jobs', undefined, 'empty'],
    ]
    for (const [method, path, body, mention] of cases) {
      const response = await request(method, path, body)
      expect({ path, body, status: response.status }).toEqual({ path, body, status: 400 })
      expect(response.body.error.code).toBe('BAD_REQUEST')
      expect(response.body.error.message).toContain(mention)
    }
    expect((await request('GET', '/jobs')).body.jobs).toEqual([])
  })

  it('keeps each tenant\'s jobs and workers to itself', async () => {
    server = await startServer({ auth: 'token', tokens_file: writeTokensFile([{ token: 'token-a', client: 'a' }, { token: 'token-b', client: 'b' }]) })
    const workerA = await TestWorker.connect(server.url, { token: 'token-a' })
    workers.push(workerA)
    const asA = { authorization: 'Bearer token-a' }
    const asB = { authorization: 'Bearer token-b' }
    // Tenant b has no worker of its own: a's worker is never offered b's job.
    const refused = await request('POST', '/jobs', JSON.stringify({ agent_name: 'voice-agent', room_id: 'r' }), asB)
    expect(refused.status).toBe(503)
    expect(refused.body.error.code).toBe('NO_WORKERS_REGISTERED')
    expect(workerA.frames.filter((frame) => frame.type === 'availability_request')).toEqual([])
    const job = await request('POST', '/jobs', JSON.stringify({ agent_name: 'voice-agent', room_id: 'r' }), asA)
    expect(job.status).toBe(201)
    expect((await request('GET', `/jobs/${job.body.id}`, undefined, asB)).status).toBe(404)
    expect((await request('DELETE', `/jobs/${job.body.id}`, undefined, asB)).status).toBe(404)
    expect((await request('POST', `/workers/${workerA.workerId}/drain`, undefined, asB)).status).toBe(404)
    expect((await request('GET', '/jobs', undefined, asB)).body.jobs.map((j: Json) => j.state)).toEqual(['failed'])
    expect((await request('GET', `/jobs/${job.body.id}`, undefined, asA)).body.state).not.toBe('cancelled')
  })
})

describe('OpenAPI document', () => {
  it('documents every workers route with a summary, the workers tag and its schemas', async () => {
    server = await startServer()
    const document = (await request('GET', '/swagger/json')).body
    const expected: [string, string][] = [
      ['/v2/agent/init-config', 'post'],
      ['/v2/agent/dispatch', 'post'],
      ['/workers', 'get'],
      ['/workers/{id}', 'get'],
      ['/workers/{id}/drain', 'post'],
      ['/jobs', 'post'],
      ['/jobs', 'get'],
      ['/jobs/{id}', 'get'],
      ['/jobs/{id}', 'delete'],
    ]
    for (const [path, method] of expected) {
      const operation = document.paths[path]?.[method]
      expect({ path, method, documented: operation !== undefined }).toEqual({ path, method, documented: true })
      expect(operation.tags).toEqual(['workers'])
      expect(typeof operation.summary).toBe('string')
      expect(Object.keys(operation.responses)).toContain(method === 'post' && path === '/jobs' ? '201' : '200')
    }
    const dispatchBody = document.paths['/v2/agent/dispatch'].post.requestBody.content['application/json'].schema
    expect(dispatchBody.required).toEqual(['meetingId', 'agentId'])
    const jobsQuery = document.paths['/jobs'].get.parameters.map((parameter: Json) => parameter.name).sort()
    expect(jobsQuery).toEqual(['agent_name', 'created_before', 'created_from', 'cursor', 'limit', 'room_id', 'state', 'worker_id'])
  })
})
