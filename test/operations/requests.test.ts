import { afterEach, describe, expect, it } from 'bun:test'
import { agentId, bodies } from '../support/academy'
import { openStream, rawRequest } from '../support/http'
import { startLoggedServer, type LoggedServer } from './support'

let running: LoggedServer | null = null
afterEach(async () => {
  await running?.close()
  running = null
})

const requestLines = (server: LoggedServer) => server.lines.filter((line) => line.msg === 'request')

describe('request ids and request logs', () => {
  it('returns the caller’s valid X-Request-Id and logs one line with method, route template, status and duration', async () => {
    running = await startLoggedServer()
    const response = await fetch(`${running.url}/workers/w-1`, { headers: { 'x-request-id': 'trace.42_A-b' } })
    expect(response.status).toBe(404)
    expect(response.headers.get('x-request-id')).toBe('trace.42_A-b')
    const [line] = requestLines(running)
    expect(line).toMatchObject({ level: 'info', method: 'GET', route: '/workers/:id', status: 404, request_id: 'trace.42_A-b' })
    expect(typeof line!.duration_ms).toBe('number')
  })

  it('replaces an X-Request-Id that is too long or has other characters with a generated one', async () => {
    running = await startLoggedServer()
    for (const bad of ['has space', 'x'.repeat(129), 'semi;colon']) {
      const response = await fetch(`${running.url}/healthz`, { headers: { 'x-request-id': bad } })
      const id = response.headers.get('x-request-id')
      expect(id).not.toBe(bad)
      expect(id).toMatch(/^[A-Za-z0-9._-]{1,128}$/)
    }
    const ids = requestLines(running).map((line) => line.request_id)
    expect(new Set(ids).size).toBe(3)
  })

  it('puts the request id on errors answered before routing and on event streams', async () => {
    running = await startLoggedServer()
    const tooLarge = await rawRequest(`${running.url}/mailbox`, { method: 'POST', body: 'x'.repeat(2 * 1024 * 1024), headers: { 'content-type': 'application/json' } })
    expect(tooLarge.status).toBe(413)
    expect(tooLarge.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/)
    const agent = agentId()
    expect((await rawRequest(`${running.url}/mailbox`, { method: 'POST', body: bodies.create(agent) })).status).toBe(200)
    const stream = await openStream(`${running.url}/mailbox/listen`, { body: bodies.receive(agent, 10), headers: { 'x-request-id': 'stream-1' } })
    expect(stream.status).toBe(200)
    expect(stream.headers['x-request-id']).toBe('stream-1')
    stream.close()
  })

  it('logs the client id of a valid bearer token and nothing about an invalid one', async () => {
    const { writeTokensFile } = await import('../support/app')
    running = await startLoggedServer({ auth: 'token', tokens_file: writeTokensFile([{ token: 's3cret', client: 'alice' }]) })
    await fetch(`${running.url}/workers`, { headers: { authorization: 'Bearer s3cret' } })
    await fetch(`${running.url}/workers`, { headers: { authorization: 'Bearer wrong' } })
    const [good, bad] = requestLines(running)
    expect(good).toMatchObject({ route: '/workers', status: 200, client: 'alice' })
    expect(bad).toMatchObject({ route: '/workers', status: 403 })
    expect(bad).not.toHaveProperty('client')
    expect(JSON.stringify(running.lines)).not.toContain('s3cret')
  })

  it('routes requests whose Host header is one to three characters long', async () => {
    running = await startLoggedServer()
    for (const host of ['a', 'db', 'api', 'a:1']) {
      const response = await rawRequest(`${running.url}/healthz`, { headers: { host } })
      expect(`${host} ${response.status}`).toBe(`${host} 200`)
    }
    const agent = agentId()
    const created = await rawRequest(`${running.url}/mailbox`, { method: 'POST', body: bodies.create(agent), headers: { host: 'hub' } })
    expect(created.status).toBe(200)
    const status = await rawRequest(`${running.url}/mailbox`, { body: bodies.mailbox(agent), headers: { host: 'hub' } })
    expect(JSON.parse(status.text)).toEqual({ status: 'ACTIVE' })
  })

  it('gives every whole answer its length, an empty one included', async () => {
    running = await startLoggedServer()
    const agent = agentId()
    const created = await rawRequest(`${running.url}/mailbox`, { method: 'POST', body: bodies.create(agent) })
    expect(created.status).toBe(200)
    expect(created.text).toBe('')
    expect(created.headers['content-length']).toBe('0')
    const health = await rawRequest(`${running.url}/healthz`)
    expect(health.headers['content-length']).toBe(String(Buffer.byteLength(health.text)))
  })

  it('builds no request line when the log level is above info', async () => {
    running = await startLoggedServer({ log_level: 'warn' })
    await fetch(`${running.url}/healthz`)
    expect(requestLines(running)).toEqual([])
  })
})
