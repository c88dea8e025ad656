import { afterEach, describe, expect, it } from 'bun:test'
import { startServer, type TestServer } from '../support/app'

let running: TestServer | null = null
afterEach(async () => {
  await running?.close()
  running = null
})

const preflight = (url: string, origin: string) =>
  fetch(`${url}/workspaces/ws-1/a2a`, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' } })

describe('CORS', () => {
  it('answers a preflight from a listed origin with 204 and the allowed methods and headers', async () => {
    running = await startServer({ cors_origins: 'https://console.example, https://other.example' })
    const response = await preflight(running.url, 'https://console.example')
    expect(response.status).toBe(204)
    expect(response.headers.get('access-control-allow-origin')).toBe('https://console.example')
    expect(response.headers.get('access-control-allow-methods')).toContain('POST')
    expect(response.headers.get('access-control-allow-headers')).toContain('authorization')
    expect(response.headers.get('vary')).toBe('Origin')
  })

  it('sets the CORS headers on answers to a listed origin, errors included, and exposes X-Request-Id', async () => {
    running = await startServer({ cors_origins: 'https://console.example' })
    for (const path of ['/healthz', '/workers/missing']) {
      const response = await fetch(`${running.url}${path}`, { headers: { origin: 'https://console.example' } })
      expect(response.headers.get('access-control-allow-origin')).toBe('https://console.example')
      expect(response.headers.get('access-control-expose-headers')).toContain('x-request-id')
    }
  })

  it('serves a request from an origin that is not listed as usual, without CORS headers', async () => {
    running = await startServer({ cors_origins: 'https://console.example' })
    const response = await fetch(`${running.url}/healthz`, { headers: { origin: 'https://elsewhere.example' } })
    expect(response.status).toBe(200)
    expect(response.headers.get('access-control-allow-origin')).toBeNull()
    expect((await preflight(running.url, 'https://elsewhere.example')).headers.get('access-control-allow-origin')).toBeNull()
  })

  it('allows every origin with *', async () => {
    running = await startServer({ cors_origins: '*' })
    const response = await fetch(`${running.url}/healthz`, { headers: { origin: 'https://anywhere.example' } })
    expect(response.headers.get('access-control-allow-origin')).toBe('*')
  })

  it('adds no CORS headers by default, while still serving requests that carry an Origin', async () => {
    running = await startServer()
    const response = await fetch(`${running.url}/healthz`, { headers: { origin: 'https://console.example' } })
    expect(response.status).toBe(200)
    expect(response.headers.get('access-control-allow-origin')).toBeNull()
    expect((await preflight(running.url, 'https://console.example')).status).not.toBe(204)
  })
})
